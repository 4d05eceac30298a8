//! The identity headers of each [`Preset`](super::headers::Preset): one emitter per front
//! proxy (provgate, Apache mod_ssl, nginx, HAProxy, Traefik, Envoy, RFC 9440) with its names and
//! value formats, and HAProxy's `X509_V_ERR_*` codes.

use base64::Engine as _;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref, X509};

use super::headers::{dn, DnFormat, Out};
use super::{ClientIdentity, Verify};
use crate::config::IdentityHeaders;
use crate::tls::x509;

fn entry_value(data: &openssl::asn1::Asn1StringRef) -> String {
    data.to_string().unwrap_or_default()
}

/// The value of the first (or last) attribute of this type.
fn attr(name: &X509NameRef, nid: Nid, last: bool) -> Option<String> {
    let mut it = name.entries_by_nid(nid);
    let e = if last { it.last() } else { it.next() };
    e.map(|e| entry_value(e.data()))
}

/// provgate's own names and values, exactly as before presets existed (the former
/// `proxy::identity_headers`), except that DNs follow `dn_format`.
pub(super) fn provgate(
    out: &mut Out,
    id: &ClientIdentity,
    f: DnFormat,
    h: &IdentityHeaders,
    forward_chain: bool,
) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push(&h.subject, dn(leaf.subject_name(), f));
    out.push(&h.issuer, dn(leaf.issuer_name(), f));
    out.push(&h.serial, x509::serial_hex(leaf));
    out.push(&h.fingerprint, x509::fingerprint_sha256(leaf));
    out.push(&h.not_after, x509::not_after_rfc3339(leaf));
    out.push(&h.cert, super::rfc9440(leaf));
    if forward_chain && id.chain.len() > 1 {
        out.push(&h.cert_chain, super::rfc9440_chain(&id.chain));
    }
}

/// mod_ssl's `SSL_CLIENT_{S,I}_DN_<x>` components (first occurrence, as mod_ssl returns for the
/// bare name). `UID` is x500UniqueIdentifier there, not userId; kept as mod_ssl has it.
const MOD_SSL_DN_PARTS: &[(&str, Nid)] = &[
    ("C", Nid::COUNTRYNAME),
    ("ST", Nid::STATEORPROVINCENAME),
    ("L", Nid::LOCALITYNAME),
    ("O", Nid::ORGANIZATIONNAME),
    ("OU", Nid::ORGANIZATIONALUNITNAME),
    ("CN", Nid::COMMONNAME),
    ("T", Nid::TITLE),
    ("I", Nid::INITIALS),
    ("G", Nid::GIVENNAME),
    ("S", Nid::SURNAME),
    ("D", Nid::DESCRIPTION),
    ("UID", Nid::X500UNIQUEIDENTIFIER),
    ("Email", Nid::PKCS9_EMAILADDRESS),
];

/// Apache: `SSL-Client-Verify`, `-S-DN`, `-S-DN-<x>`, `-I-DN`, `-I-DN-<x>`, `-M-Serial`,
/// `-V-Start`, `-V-End`, `-Cert`, and with `forward_chain` `-Cert-Chain-<n>`.
///
/// The per-component names (`SSL-Client-S-DN-OU`, `-L`, `-ST`, `-S`, and the issuer's) are what
/// SPA-era CGI scripts read (Cisco's example prints `SSL_CLIENT_I_DN_OU`/`_L`/`_S`); only the
/// components the name has are sent.
pub(super) fn apache(out: &mut Out, id: &ClientIdentity, f: DnFormat, chain: &[X509]) {
    out.push("SSL-Client-Verify", id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    for (side, name) in [("S", leaf.subject_name()), ("I", leaf.issuer_name())] {
        out.push(&format!("SSL-Client-{side}-DN"), dn(name, f));
        for (part, nid) in MOD_SSL_DN_PARTS {
            if let Some(v) = attr(name, *nid, false) {
                out.push(&format!("SSL-Client-{side}-DN-{part}"), v);
            }
        }
    }
    out.push("SSL-Client-M-Serial", x509::serial_hex(leaf));
    out.push("SSL-Client-V-Start", leaf.not_before().to_string());
    out.push("SSL-Client-V-End", leaf.not_after().to_string());
    out.push("SSL-Client-Cert", pem_one_line(leaf));
    // SSL_CLIENT_CERT_CHAIN_n: the certificates after the leaf, from 0.
    for (i, c) in chain.iter().skip(1).enumerate() {
        out.push(&format!("SSL-Client-Cert-Chain-{i}"), pem_one_line(c));
    }
}

/// nginx: `X-SSL-Client-Verify`, `-S-DN`, `-I-DN`, `-Serial`, `-Fingerprint`, `-V-Start`,
/// `-V-End`, `-Escaped-Cert` (nginx has no chain variable).
pub(super) fn nginx(out: &mut Out, id: &ClientIdentity, f: DnFormat) {
    out.push("X-SSL-Client-Verify", id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push("X-SSL-Client-S-DN", dn(leaf.subject_name(), f));
    out.push("X-SSL-Client-I-DN", dn(leaf.issuer_name(), f));
    out.push("X-SSL-Client-Serial", x509::serial_hex(leaf));
    out.push(
        "X-SSL-Client-Fingerprint",
        x509::fingerprint_sha1(leaf).to_ascii_lowercase(),
    );
    out.push("X-SSL-Client-V-Start", leaf.not_before().to_string());
    out.push("X-SSL-Client-V-End", leaf.not_after().to_string());
    out.push("X-SSL-Client-Escaped-Cert", pct_encode(&pem(leaf), false));
}

/// HAProxy: `X-SSL`, `X-SSL-Client-Cert`, `X-SSL-Client-Verify` always; with a certificate
/// `X-SSL-Client-DN`, `-CN`, `X-SSL-Issuer`, `X-SSL-Client-SHA1`, `-Not-Before`, `-Not-After`.
/// Values are the bare fetch output (`%[ssl_c_s_dn]`, not the `%{+Q}` quoted form).
pub(super) fn haproxy(out: &mut Out, id: &ClientIdentity, f: DnFormat) {
    out.push("X-SSL", "1");
    let presented = id.leaf().is_some() || id.verify != Verify::None;
    out.push("X-SSL-Client-Cert", if presented { "1" } else { "0" });
    out.push("X-SSL-Client-Verify", verify_code(&id.verify).to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push("X-SSL-Client-DN", dn(leaf.subject_name(), f));
    // ssl_c_s_dn(cn): the last occurrence by default.
    if let Some(cn) = attr(leaf.subject_name(), Nid::COMMONNAME, true) {
        out.push("X-SSL-Client-CN", cn);
    }
    out.push("X-SSL-Issuer", dn(leaf.issuer_name(), f));
    out.push("X-SSL-Client-SHA1", x509::fingerprint_sha1(leaf));
    out.push("X-SSL-Client-Not-Before", asn1_short(leaf.not_before()));
    out.push("X-SSL-Client-Not-After", asn1_short(leaf.not_after()));
}

/// Traefik: `X-Forwarded-Tls-Client-Cert` and `X-Forwarded-Tls-Client-Cert-Info` (with a
/// certificate), and provgate's verify header, since Traefik has none.
///
/// Modelled on traefik's `pkg/middlewares/passtlsclientcert` (read from its source, not run):
/// - Cert: each certificate's PEM body (base64 DER, no line breaks) `url.QueryEscape`d, joined
///   by `,`, as Traefik v2 sends it (v3 dropped the escaping; a v3 reader must URL-decode).
/// - Info: `Subject="..";Issuer="..";SerialNumber="<decimal>";NB="<unix>";NA="<unix>";SAN=".."`
///   per certificate, `,` between certificates, the whole `url.QueryEscape`d. Subject and Issuer
///   are Traefik's own field list (`DC`, `C`, `ST`, `L`, `O`, `OU` (subject only), `SN` =
///   serialNumber, `CN`; comma-joined, unescaped), not a DN string, so `dn_format` does not apply.
///
/// The chain (after the leaf) is included in both only with `forward_chain`.
pub(super) fn traefik(out: &mut Out, id: &ClientIdentity, h: &IdentityHeaders, chain: &[X509]) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    let certs: Vec<&X509Ref> = if chain.is_empty() {
        vec![leaf]
    } else {
        chain.iter().map(|c| &**c).collect()
    };
    let b64 = |c: &X509Ref| {
        base64::engine::general_purpose::STANDARD.encode(c.to_der().unwrap_or_default())
    };
    let cert = certs
        .iter()
        .map(|c| pct_encode(&b64(c), true))
        .collect::<Vec<_>>()
        .join(",");
    out.push("X-Forwarded-Tls-Client-Cert", cert);
    let info = certs
        .iter()
        .map(|c| traefik_info(c))
        .collect::<Vec<_>>()
        .join(",");
    out.push("X-Forwarded-Tls-Client-Cert-Info", pct_encode(&info, true));
}

fn traefik_info(c: &X509Ref) -> String {
    let mut fields = Vec::new();
    let subject = traefik_dn(c.subject_name(), true);
    if !subject.is_empty() {
        fields.push(format!("Subject=\"{subject}\""));
    }
    let issuer = traefik_dn(c.issuer_name(), false);
    if !issuer.is_empty() {
        fields.push(format!("Issuer=\"{issuer}\""));
    }
    if let Some(sn) = c
        .serial_number()
        .to_bn()
        .ok()
        .and_then(|b| b.to_dec_str().ok().map(|s| s.to_string()))
    {
        fields.push(format!("SerialNumber=\"{sn}\""));
    }
    let unix = x509::asn1_to_unix;
    fields.push(format!("NB=\"{}\"", unix(c.not_before())));
    fields.push(format!("NA=\"{}\"", unix(c.not_after())));
    let sans = sans(c);
    if !sans.is_empty() {
        fields.push(format!("SAN=\"{}\"", sans.join(",")));
    }
    fields.join(";")
}

/// Traefik's `getSubjectDNInfo` / `getIssuerDNInfo` over Go's `pkix.Name`: DC values in order,
/// then every C, ST, L, O (and OU for the subject), then the last serialNumber and the last CN.
fn traefik_dn(name: &X509NameRef, subject: bool) -> String {
    let all = |nid: Nid| -> Vec<String> {
        name.entries_by_nid(nid)
            .map(|e| entry_value(e.data()))
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut parts = Vec::new();
    let mut add = |key: &str, values: Vec<String>| {
        parts.extend(values.into_iter().map(|v| format!("{key}={v}")));
    };
    add("DC", all(Nid::DOMAINCOMPONENT));
    add("C", all(Nid::COUNTRYNAME));
    add("ST", all(Nid::STATEORPROVINCENAME));
    add("L", all(Nid::LOCALITYNAME));
    add("O", all(Nid::ORGANIZATIONNAME));
    if subject {
        add("OU", all(Nid::ORGANIZATIONALUNITNAME));
    }
    let last = |nid| all(nid).pop().into_iter().collect::<Vec<_>>();
    add("SN", last(Nid::SERIALNUMBER));
    add("CN", last(Nid::COMMONNAME));
    parts.join(",")
}

/// Go's order: DNS names, e-mail addresses, IP addresses, URIs.
fn sans(c: &X509Ref) -> Vec<String> {
    let Some(names) = c.subject_alt_names() else {
        return Vec::new();
    };
    let dns = names.iter().filter_map(|n| n.dnsname().map(str::to_string));
    let email = names.iter().filter_map(|n| n.email().map(str::to_string));
    let ip = names.iter().filter_map(|n| {
        n.ipaddress().and_then(|b| match b.len() {
            4 => <[u8; 4]>::try_from(b)
                .ok()
                .map(|a| std::net::Ipv4Addr::from(a).to_string()),
            16 => <[u8; 16]>::try_from(b)
                .ok()
                .map(|a| std::net::Ipv6Addr::from(a).to_string()),
            _ => None,
        })
    });
    let uri = names.iter().filter_map(|n| n.uri().map(str::to_string));
    dns.chain(email).chain(ip).chain(uri).collect()
}

/// Envoy: provgate's verify header, and with a certificate
/// `X-Forwarded-Client-Cert: Hash=<sha256 hex>;Cert="<URL-encoded PEM>"[;Chain="<URL-encoded
/// PEMs, leaf first>"];Subject="<dn>"` (Envoy's field order; no `By=`, provgate has no SAN of
/// its own to name). `Chain` is Envoy's: the whole chain including the leaf.
pub(super) fn envoy(
    out: &mut Out,
    id: &ClientIdentity,
    f: DnFormat,
    h: &IdentityHeaders,
    chain: &[X509],
) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    let mut xfcc = format!(
        "Hash={};Cert=\"{}\"",
        x509::fingerprint_sha256(leaf),
        pct_encode(&pem(leaf), false)
    );
    if !chain.is_empty() {
        let pems: String = chain.iter().map(|c| pem(c)).collect();
        xfcc.push_str(&format!(";Chain=\"{}\"", pct_encode(&pems, false)));
    }
    // XFCC quoted values escape '"' with a backslash; RFC 4514 already writes it `\"`.
    let subject = match f {
        DnFormat::Rfc4514 => dn(leaf.subject_name(), f),
        DnFormat::Legacy => dn(leaf.subject_name(), f).replace('"', "\\\""),
    };
    xfcc.push_str(&format!(";Subject=\"{subject}\""));
    out.push("X-Forwarded-Client-Cert", xfcc);
}

/// RFC 9440: provgate's verify header, `Client-Cert`, and with `forward_chain`
/// `Client-Cert-Chain` (under `names.cert` / `names.cert_chain`).
pub(super) fn rfc9440(
    out: &mut Out,
    id: &ClientIdentity,
    h: &IdentityHeaders,
    forward_chain: bool,
) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push(&h.cert, super::rfc9440(leaf));
    if forward_chain && id.chain.len() > 1 {
        out.push(&h.cert_chain, super::rfc9440_chain(&id.chain));
    }
}

fn pem(c: &X509Ref) -> String {
    String::from_utf8_lossy(&c.to_pem().unwrap_or_default()).into_owned()
}

/// The PEM on one line, newlines as spaces: what Apache's `%{SSL_CLIENT_CERT}s` in a
/// `RequestHeader` produces.
pub(super) fn pem_one_line(c: &X509Ref) -> String {
    pem(c).trim_end().replace(['\r', '\n'], " ")
}

/// Percent-encoding of the UTF-8 bytes, keeping RFC 3986 unreserved characters, upper-case hex:
/// nginx's `NGX_ESCAPE_URI_COMPONENT` (`$ssl_client_escaped_cert`) and, over a PEM, exactly
/// Envoy's encoding. `query` writes a space as `+`, as Go's `url.QueryEscape` (Traefik) does.
fn pct_encode(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if query => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// HAProxy's `ssl_c_notbefore`/`ssl_c_notafter`: the ASN.1 time as encoded, `YYMMDDhhmmssZ`
/// (UTCTime, years 1950-2049 as RFC 5280 requires) or `YYYYMMDDhhmmssZ` (GeneralizedTime).
pub(super) fn asn1_short(t: &openssl::asn1::Asn1TimeRef) -> String {
    // `2035-01-01T00:00:00Z` -> `20350101000000Z`.
    let digits: String = x509::asn1_rfc3339(t)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let year: u32 = digits.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    match digits.get(2..) {
        Some(short) if (1950..2050).contains(&year) => format!("{short}Z"),
        _ => format!("{digits}Z"),
    }
}

/// HAProxy's `ssl_c_verify`: 0 when the certificate verified or none was presented, else the
/// OpenSSL `X509_V_ERR_*` code, recovered from the reason text
/// (`X509_verify_cert_error_string`), which is all [`Verify::Failed`] keeps. A reason that is not
/// an OpenSSL verification message (a parse error, provgate's own refusals) gives 1,
/// `X509_V_ERR_UNSPECIFIED`.
fn verify_code(v: &Verify) -> i32 {
    match v {
        Verify::Success | Verify::None => 0,
        Verify::Failed(reason) => X509_V_ERRORS
            .iter()
            .find(|(_, text)| text.eq_ignore_ascii_case(reason.trim()))
            .map_or(1, |(code, _)| *code),
    }
}

/// `X509_V_ERR_*` codes and their `X509_verify_cert_error_string` texts, from OpenSSL 3.x
/// (`crypto/x509/x509_txt.c`, `include/openssl/x509_vfy.h.in`; the vendored version). The two
/// OpenSSL 1.x spellings that changed in 3.0 are listed too.
const X509_V_ERRORS: &[(i32, &str)] = &[
    (1, "unspecified certificate verification error"),
    (2, "unable to get issuer certificate"),
    (3, "unable to get certificate CRL"),
    (4, "unable to decrypt certificate's signature"),
    (5, "unable to decrypt CRL's signature"),
    (6, "unable to decode issuer public key"),
    (7, "certificate signature failure"),
    (8, "CRL signature failure"),
    (
        9,
        "certificate is not yet valid or the system clock is incorrect",
    ),
    (9, "certificate is not yet valid"),
    (10, "certificate has expired"),
    (11, "CRL is not yet valid"),
    (12, "CRL has expired"),
    (13, "format error in certificate's notBefore field"),
    (14, "format error in certificate's notAfter field"),
    (15, "format error in CRL's lastUpdate field"),
    (16, "format error in CRL's nextUpdate field"),
    (17, "out of memory"),
    (18, "self-signed certificate"),
    (18, "self signed certificate"),
    (19, "self-signed certificate in certificate chain"),
    (19, "self signed certificate in certificate chain"),
    (20, "unable to get local issuer certificate"),
    (21, "unable to verify the first certificate"),
    (22, "certificate chain too long"),
    (23, "certificate revoked"),
    (24, "issuer certificate doesn't have a public key"),
    (25, "path length constraint exceeded"),
    (26, "unsuitable certificate purpose"),
    (27, "certificate not trusted"),
    (28, "certificate rejected"),
    (29, "subject issuer mismatch"),
    (30, "authority and subject key identifier mismatch"),
    (31, "authority and issuer serial number mismatch"),
    (32, "key usage does not include certificate signing"),
    (33, "unable to get CRL issuer certificate"),
    (34, "unhandled critical extension"),
    (35, "key usage does not include CRL signing"),
    (36, "unhandled critical CRL extension"),
    (37, "invalid non-CA certificate (has CA markings)"),
    (38, "proxy path length constraint exceeded"),
    (39, "key usage does not include digital signature"),
    (
        40,
        "proxy certificates not allowed, please set the appropriate flag",
    ),
    (41, "invalid or inconsistent certificate extension"),
    (42, "invalid or inconsistent certificate policy extension"),
    (43, "no explicit policy"),
    (44, "different CRL scope"),
    (45, "unsupported extension feature"),
    (46, "RFC 3779 resource not subset of parent's resources"),
    (47, "permitted subtree violation"),
    (48, "excluded subtree violation"),
    (49, "name constraints minimum and maximum not supported"),
    (50, "application verification failure"),
    (51, "unsupported name constraint type"),
    (52, "unsupported or invalid name constraint syntax"),
    (53, "unsupported or invalid name syntax"),
    (54, "CRL path validation error"),
    (55, "path loop"),
    (56, "Suite B: certificate version invalid"),
    (57, "Suite B: invalid public key algorithm"),
    (58, "Suite B: invalid ECC curve"),
    (59, "Suite B: invalid signature algorithm"),
    (60, "Suite B: curve not allowed for this LOS"),
    (61, "Suite B: cannot sign P-384 with P-256"),
    (62, "hostname mismatch"),
    (63, "email address mismatch"),
    (64, "IP address mismatch"),
    (65, "no matching DANE TLSA records"),
    (66, "EE certificate key too weak"),
    (67, "CA certificate key too weak"),
    (68, "CA signature digest algorithm too weak"),
    (69, "invalid certificate verification context"),
    (70, "issuer certificate lookup error"),
    (
        71,
        "Certificate Transparency required, but no valid SCTs found",
    ),
    (72, "proxy subject name violation"),
    (73, "OCSP verification needed"),
    (74, "OCSP verification failed"),
    (75, "OCSP unknown cert"),
    (76, "Cannot find certificate signature algorithm"),
    (
        77,
        "subject signature algorithm and issuer public key algorithm mismatch",
    ),
    (78, "cert info signature and signature algorithm mismatch"),
    (79, "invalid CA certificate"),
    (80, "Path length invalid for non-CA cert"),
    (81, "Path length given without key usage keyCertSign"),
    (82, "Key usage keyCertSign invalid for non-CA cert"),
    (83, "Issuer name empty"),
    (84, "Subject name empty"),
    (85, "Missing Authority Key Identifier"),
    (86, "Missing Subject Key Identifier"),
    (87, "Empty Subject Alternative Name extension"),
    (
        88,
        "Subject empty and Subject Alt Name extension not critical",
    ),
    (89, "Basic Constraints of CA cert not marked critical"),
    (90, "Authority Key Identifier marked critical"),
    (91, "Subject Key Identifier marked critical"),
    (92, "CA cert does not include key usage extension"),
    (93, "Using cert extension requires at least X509v3"),
    (94, "Certificate public key has explicit ECC parameters"),
    (95, "Raw public key untrusted, no trusted keys configured"),
    (96, "OCSP response(s) invalid"),
    (97, "OCSP response signature verification failure"),
    (
        98,
        "OCSP response not yet valid (contains a date in the future)",
    ),
    (99, "OCSP response has expired"),
    (100, "no OCSP response available for certificate"),
];
