//! Identity headers under other proxies' names: what the backend learns about the client
//! certificate, spelled the way the front end it used to sit behind (Apache mod_ssl, nginx,
//! HAProxy, Traefik, Envoy, RFC 9440) spelled it, and the list of header families a client must
//! never be able to send itself.
//!
//! Two halves:
//! - [`is_identity_header`] / [`STRIPPED_FAMILIES`]: every client-sent header in one of those
//!   families is removed before forwarding, whatever preset is in use, so a device (or anyone
//!   else) cannot forge `SSL_CLIENT_VERIFY: SUCCESS` for a backend that reads another proxy's
//!   names. Names compare ignoring case and treating `_` and `-` alike, because nginx
//!   (`underscores_in_headers`) and Apache's CGI environment fold them together.
//! - [`headers`]: the headers provgate sends for a connection, in the [`Preset`]'s names and
//!   value formats. The verification result is always sent, the certificate's facts whenever one
//!   was presented, and the SPA device fields (MAC, serial, product, generic) only when it
//!   verified, always under provgate's configured names, because `require_mac_match` and device
//!   support read those whatever the preset.
//!
//! Every emitted name is hyphenated (nginx and Apache drop names with `_`) and every value is
//! visible ASCII: formats that percent-encode do so, anything else non-ASCII becomes `?`.

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref, X509};

use crate::config::IdentityHeaders;
use crate::identity::{self, ClientIdentity, Verify};

/// Whose header names and value formats the backend expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// provgate's own (configurable) names: `X-Client-*`, RFC 9440 `Client-Cert`.
    #[default]
    Provgate,
    /// mod_ssl variables as `RequestHeader set SSL-Client-... "%{SSL_CLIENT_...}s"` sends them.
    Apache,
    /// The names commonly mapped from nginx's `$ssl_client_*` variables (`X-SSL-Client-*`).
    Nginx,
    /// The `http-request set-header X-SSL-...` idiom over `ssl_c_*` fetches.
    Haproxy,
    /// Traefik's PassTLSClientCert middleware.
    Traefik,
    /// Envoy's `X-Forwarded-Client-Cert`.
    #[serde(alias = "xfcc")]
    Envoy,
    /// RFC 9440 `Client-Cert` / `Client-Cert-Chain` only.
    Rfc9440,
}

/// How distinguished names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnFormat {
    /// `CN=x,O=Sipura,C=US` ([`identity::rfc4514`]); what Apache >= 2.3.11 and nginx send.
    #[default]
    Rfc4514,
    /// `/C=US/O=Sipura/CN=x` ([`dn_legacy`]); Apache `LegacyDNStringFormat`,
    /// nginx `$ssl_client_s_dn_legacy`, HAProxy's default `ssl_c_s_dn`.
    Legacy,
}

/// The header families stripped from every request, as human text (README, `check`). A trailing
/// `*` means "this prefix"; matching ignores case and treats `_` and `-` alike, so
/// `SSL-Client-*` also covers mod_ssl's `SSL_CLIENT_*`.
pub const STRIPPED_FAMILIES: &[&str] = &[
    // HAProxy's `X-SSL` (1 on TLS) and everything under it; nginx mappings (`X-SSL-Client-*`).
    "X-SSL",
    "X-SSL-*",
    // provgate's defaults, Django/Kong-style `X-Client-Cert-*`.
    "X-Client-*",
    // Apache mod_ssl names (SSL_CLIENT_* / SSL-Client-*), Keycloak's `ssl-client-cert`.
    "SSL-Client-*",
    // Keycloak's Apache/HAProxy chain headers (`CERT_CHAIN_0..9`).
    "Cert-Chain-*",
    // Envoy/Istio XFCC and the `X-Forwarded-Client-Cert-S-DN` style.
    "X-Forwarded-Client-Cert*",
    // Traefik PassTLSClientCert.
    "X-Forwarded-Tls-Client-Cert*",
    // RFC 9440.
    "Client-Cert*",
    // provgate's device fields.
    "X-Device-*",
    // IIS ARR and AWS ALB mTLS: not asked for, but the same kind of trust header.
    "X-ARR-ClientCert",
    "X-Amzn-Mtls-Clientcert*",
];

/// A header-name byte folded for comparison: lower case, `_` as `-`.
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

fn starts_with_folded(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

fn eq_folded(a: &str, b: &str) -> bool {
    a.len() == b.len() && starts_with_folded(a, b)
}

/// True when a client-sent header with this (any-case) name must be removed before forwarding:
/// a name in one of [`STRIPPED_FAMILIES`] or in `extra` (the operator's configured identity
/// names, e.g. `IdentityHeaders::all()`, which may lie outside the families). Compares
/// ignoring case and treating `_` and `-` alike; allocates nothing (it runs on every header of
/// every request).
pub fn is_identity_header(name: &str, extra: &[String]) -> bool {
    STRIPPED_FAMILIES
        .iter()
        .any(|family| match family.strip_suffix('*') {
            Some(prefix) => starts_with_folded(name, prefix),
            None => eq_folded(name, family),
        })
        || extra.iter().any(|e| eq_folded(name, e))
}

/// `/C=US/O=Sipura/CN=x`: the OpenSSL `X509_NAME_oneline` form (Apache `LegacyDNStringFormat`,
/// nginx `$ssl_client_s_dn_legacy`): RDNs in certificate order, least specific first, `/`
/// separated, OpenSSL short names (`SN` is surname, `serialNumber`, `emailAddress`), dotted OIDs
/// for unknown types. Like OpenSSL, bytes outside printable ASCII are written `\xHH` (of the
/// UTF-8 value); unlike OpenSSL, `/` and `\` in a value are too (`\x2F`, `\x5C`), so the string
/// always splits on `/` and decodes unambiguously.
pub fn dn_legacy(name: &X509NameRef) -> String {
    let mut out = String::new();
    for e in name.entries() {
        let key = match e.object().nid().short_name() {
            Ok(sn) => sn.to_string(),
            Err(_) => e.object().to_string(),
        };
        out.push('/');
        out.push_str(&key);
        out.push('=');
        for b in entry_value(e.data()).bytes() {
            match b {
                b'/' | b'\\' => out.push_str(&format!("\\x{b:02X}")),
                0x20..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\x{b:02X}")),
            }
        }
    }
    out
}

/// A distinguished name in the chosen format.
pub fn dn(name: &X509NameRef, f: DnFormat) -> String {
    match f {
        DnFormat::Rfc4514 => identity::rfc4514(name),
        DnFormat::Legacy => dn_legacy(name),
    }
}

fn entry_value(data: &openssl::asn1::Asn1StringRef) -> String {
    data.to_string().unwrap_or_default()
}

/// The value of the first (or last) attribute of this type.
fn attr(name: &X509NameRef, nid: Nid, last: bool) -> Option<String> {
    let mut it = name.entries_by_nid(nid);
    let e = if last { it.last() } else { it.next() };
    e.map(|e| entry_value(e.data()))
}

/// The identity headers to send for a connection. `names` is used by the Provgate preset
/// (operator-configurable names) and, for every preset, for the device fields; the other presets
/// use their ecosystem's fixed names. Traefik, Envoy and RFC 9440 have no verification header of
/// their own, so they add provgate's (`names.verify`).
///
/// The verification result is always sent; certificate facts whenever one was presented; device
/// fields only on [`Verify::Success`]. Names never contain `_` (a configured one is hyphenated);
/// values are visible ASCII.
pub fn headers(
    id: &ClientIdentity,
    preset: Preset,
    dn: DnFormat,
    names: &IdentityHeaders,
    forward_chain: bool,
) -> Vec<(String, String)> {
    let mut out = Out(Vec::new());
    let chain: &[X509] = if forward_chain { &id.chain } else { &[] };
    match preset {
        Preset::Provgate => provgate(&mut out, id, dn, names, forward_chain),
        Preset::Apache => apache(&mut out, id, dn, chain),
        Preset::Nginx => nginx(&mut out, id, dn),
        Preset::Haproxy => haproxy(&mut out, id, dn),
        Preset::Traefik => traefik(&mut out, id, names, chain),
        Preset::Envoy => envoy(&mut out, id, dn, names, chain),
        Preset::Rfc9440 => rfc9440(&mut out, id, names, forward_chain),
    }
    if id.verify == Verify::Success {
        if let Some(leaf) = id.leaf() {
            let d = identity::device(leaf);
            if let Some(mac) = d.mac {
                out.push(&names.mac, mac);
            }
            if let Some(serial) = d.serial {
                out.push(&names.device_serial, serial);
            }
            if let Some(product) = d.product {
                out.push(&names.product, product);
            }
            out.push(&names.generic, d.generic.to_string());
        }
    }
    out.0
        .into_iter()
        .map(|(n, v)| (n.replace('_', "-"), visible_ascii(&v)))
        .collect()
}

struct Out(Vec<(String, String)>);

impl Out {
    fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }
}

/// Visible ASCII (and space) kept, anything else `?`: what today's provgate headers do.
fn visible_ascii(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// provgate's own names and values, exactly as before presets existed (the former
/// `proxy::identity_headers`), except that DNs follow `dn_format`.
fn provgate(
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
    out.push(&h.serial, identity::serial_hex(leaf));
    out.push(&h.fingerprint, identity::fingerprint_sha256(leaf));
    out.push(&h.not_after, identity::not_after_rfc3339(leaf));
    out.push(&h.cert, identity::rfc9440(leaf));
    if forward_chain && id.chain.len() > 1 {
        out.push(&h.cert_chain, identity::rfc9440_chain(&id.chain));
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
fn apache(out: &mut Out, id: &ClientIdentity, f: DnFormat, chain: &[X509]) {
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
    out.push("SSL-Client-M-Serial", identity::serial_hex(leaf));
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
fn nginx(out: &mut Out, id: &ClientIdentity, f: DnFormat) {
    out.push("X-SSL-Client-Verify", id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push("X-SSL-Client-S-DN", dn(leaf.subject_name(), f));
    out.push("X-SSL-Client-I-DN", dn(leaf.issuer_name(), f));
    out.push("X-SSL-Client-Serial", identity::serial_hex(leaf));
    out.push(
        "X-SSL-Client-Fingerprint",
        sha1_hex(leaf).to_ascii_lowercase(),
    );
    out.push("X-SSL-Client-V-Start", leaf.not_before().to_string());
    out.push("X-SSL-Client-V-End", leaf.not_after().to_string());
    out.push("X-SSL-Client-Escaped-Cert", pct_encode(&pem(leaf), false));
}

/// HAProxy: `X-SSL`, `X-SSL-Client-Cert`, `X-SSL-Client-Verify` always; with a certificate
/// `X-SSL-Client-DN`, `-CN`, `X-SSL-Issuer`, `X-SSL-Client-SHA1`, `-Not-Before`, `-Not-After`.
/// Values are the bare fetch output (`%[ssl_c_s_dn]`, not the `%{+Q}` quoted form).
fn haproxy(out: &mut Out, id: &ClientIdentity, f: DnFormat) {
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
    out.push("X-SSL-Client-SHA1", sha1_hex(leaf));
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
fn traefik(out: &mut Out, id: &ClientIdentity, h: &IdentityHeaders, chain: &[X509]) {
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
    let unix = crate::tls::certs::asn1_to_unix;
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
fn envoy(out: &mut Out, id: &ClientIdentity, f: DnFormat, h: &IdentityHeaders, chain: &[X509]) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    let mut xfcc = format!(
        "Hash={};Cert=\"{}\"",
        identity::fingerprint_sha256(leaf),
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
fn rfc9440(out: &mut Out, id: &ClientIdentity, h: &IdentityHeaders, forward_chain: bool) {
    out.push(&h.verify, id.verify.to_string());
    let Some(leaf) = id.leaf() else {
        return;
    };
    out.push(&h.cert, identity::rfc9440(leaf));
    if forward_chain && id.chain.len() > 1 {
        out.push(&h.cert_chain, identity::rfc9440_chain(&id.chain));
    }
}

fn pem(c: &X509Ref) -> String {
    String::from_utf8_lossy(&c.to_pem().unwrap_or_default()).into_owned()
}

/// The PEM on one line, newlines as spaces: what Apache's `%{SSL_CLIENT_CERT}s` in a
/// `RequestHeader` produces.
fn pem_one_line(c: &X509Ref) -> String {
    pem(c).trim_end().replace(['\r', '\n'], " ")
}

/// Upper-case hex SHA-1 of the DER certificate, no separators.
fn sha1_hex(c: &X509Ref) -> String {
    c.digest(MessageDigest::sha1())
        .map(|d| d.iter().map(|b| format!("{b:02X}")).collect())
        .unwrap_or_default()
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
fn asn1_short(t: &openssl::asn1::Asn1TimeRef) -> String {
    let secs = crate::tls::certs::asn1_to_unix(t);
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    // `2035-01-01T00:00:00Z` -> `20350101000000Z`.
    let digits: String = humantime::format_rfc3339_seconds(when)
        .to_string()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertSpec};
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509VerifyResult};

    const ALL: [Preset; 7] = [
        Preset::Provgate,
        Preset::Apache,
        Preset::Nginx,
        Preset::Haproxy,
        Preset::Traefik,
        Preset::Envoy,
        Preset::Rfc9440,
    ];

    fn names() -> IdentityHeaders {
        IdentityHeaders {
            verify: "X-Client-Verify".into(),
            subject: "X-Client-Subject".into(),
            issuer: "X-Client-Issuer".into(),
            serial: "X-Client-Serial".into(),
            fingerprint: "X-Client-Fingerprint-SHA256".into(),
            not_after: "X-Client-Not-After".into(),
            cert: "Client-Cert".into(),
            cert_chain: "Client-Cert-Chain".into(),
            mac: "X-Device-MAC".into(),
            device_serial: "X-Device-Serial".into(),
            product: "X-Device-Product".into(),
            generic: "X-Device-Generic-Cert".into(),
        }
    }

    struct Fixture {
        ca: Ca,
        verified: ClientIdentity,
        failed: ClientIdentity,
        none: ClientIdentity,
    }

    /// An SPA-shaped device certificate (`OU=<product>, L=<serial>, ST=<mac>`, SHA-1, RSA 1024)
    /// under a test root, presented with its root.
    fn fixture() -> Fixture {
        let ca = Ca::new("Device Client Root (test)", "Sipura").unwrap();
        let (leaf, _) = ca
            .issue(&CertSpec {
                subject: vec![
                    ("C", "US"),
                    ("O", "Sipura"),
                    ("OU", "SPA-962"),
                    ("L", "88012BA01234"),
                    ("ST", "000e08abcdef"),
                    ("CN", "spa962"),
                ],
                dns_names: vec![],
                ..CertSpec::legacy_server("unused")
            })
            .unwrap();
        let chain = vec![leaf, ca.cert.clone()];
        Fixture {
            verified: ClientIdentity {
                verify: Verify::Success,
                chain: chain.clone(),
            },
            failed: ClientIdentity {
                verify: Verify::Failed("unable to get local issuer certificate".into()),
                chain,
            },
            none: ClientIdentity::none(),
            ca,
        }
    }

    fn header_names(h: &[(String, String)]) -> Vec<&str> {
        h.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
        h.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {h:?}"))
    }

    fn pct_decode(s: &str, query: bool) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                }
                b'+' if query => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }

    const DEVICE: [&str; 4] = [
        "X-Device-MAC",
        "X-Device-Serial",
        "X-Device-Product",
        "X-Device-Generic-Cert",
    ];

    #[test]
    fn strips_every_family_and_nothing_else() {
        let extra = vec!["x-provisioning-token".to_string()];
        for name in [
            "X-SSL-Client-Verify",
            "SSL_CLIENT_VERIFY",
            "SSL-Client-Verify",
            "ssl_client_s_dn_ou",
            "x-ssl-client-dn",
            "X-SSL",
            "x_ssl",
            "X-SSL-Verify",
            "X-Forwarded-Client-Cert",
            "X-Forwarded-Client-Cert-S-DN",
            "X-Forwarded-Tls-Client-Cert",
            "X-Forwarded-Tls-Client-Cert-Info",
            "X-Client-Cert-Subject-DN",
            "X-Client-Verify",
            "HTTP_X_CLIENT_CERT_VERIFY".trim_start_matches("HTTP_"),
            "Client-Cert",
            "Client-Cert-Chain",
            "client_cert",
            "CERT_CHAIN_0",
            "X-Device-MAC",
            "x_device_mac",
            "X-Provisioning-Token",
            "X_PROVISIONING_TOKEN",
        ] {
            assert!(is_identity_header(name, &extra), "{name} must be stripped");
        }
        for name in [
            "Host",
            "User-Agent",
            "Authorization",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "Content-Type",
            "Content-Length",
            "X-Request-Id",
            "Accept",
            "X-SSLy",
            "SSL-Protocol",
            "Forwarded",
        ] {
            assert!(!is_identity_header(name, &extra), "{name} must pass");
        }
        // Every family as written matches itself.
        for family in STRIPPED_FAMILIES {
            let example = family.replace('*', "-Anything");
            assert!(is_identity_header(&example, &[]), "{family}");
        }
    }

    #[test]
    fn preset_names_for_verified_failed_and_no_certificate() {
        let fx = fixture();
        let h = names();
        let cases: [(Preset, &[&str], &[&str]); 7] = [
            (
                Preset::Provgate,
                &["X-Client-Verify"],
                &[
                    "X-Client-Verify",
                    "X-Client-Subject",
                    "X-Client-Issuer",
                    "X-Client-Serial",
                    "X-Client-Fingerprint-SHA256",
                    "X-Client-Not-After",
                    "Client-Cert",
                ],
            ),
            (
                Preset::Apache,
                &["SSL-Client-Verify"],
                &[
                    "SSL-Client-Verify",
                    "SSL-Client-S-DN",
                    "SSL-Client-S-DN-C",
                    "SSL-Client-S-DN-ST",
                    "SSL-Client-S-DN-L",
                    "SSL-Client-S-DN-O",
                    "SSL-Client-S-DN-OU",
                    "SSL-Client-S-DN-CN",
                    "SSL-Client-I-DN",
                    "SSL-Client-I-DN-O",
                    "SSL-Client-I-DN-CN",
                    "SSL-Client-M-Serial",
                    "SSL-Client-V-Start",
                    "SSL-Client-V-End",
                    "SSL-Client-Cert",
                ],
            ),
            (
                Preset::Nginx,
                &["X-SSL-Client-Verify"],
                &[
                    "X-SSL-Client-Verify",
                    "X-SSL-Client-S-DN",
                    "X-SSL-Client-I-DN",
                    "X-SSL-Client-Serial",
                    "X-SSL-Client-Fingerprint",
                    "X-SSL-Client-V-Start",
                    "X-SSL-Client-V-End",
                    "X-SSL-Client-Escaped-Cert",
                ],
            ),
            (
                Preset::Haproxy,
                &["X-SSL", "X-SSL-Client-Cert", "X-SSL-Client-Verify"],
                &[
                    "X-SSL",
                    "X-SSL-Client-Cert",
                    "X-SSL-Client-Verify",
                    "X-SSL-Client-DN",
                    "X-SSL-Client-CN",
                    "X-SSL-Issuer",
                    "X-SSL-Client-SHA1",
                    "X-SSL-Client-Not-Before",
                    "X-SSL-Client-Not-After",
                ],
            ),
            (
                Preset::Traefik,
                &["X-Client-Verify"],
                &[
                    "X-Client-Verify",
                    "X-Forwarded-Tls-Client-Cert",
                    "X-Forwarded-Tls-Client-Cert-Info",
                ],
            ),
            (
                Preset::Envoy,
                &["X-Client-Verify"],
                &["X-Client-Verify", "X-Forwarded-Client-Cert"],
            ),
            (
                Preset::Rfc9440,
                &["X-Client-Verify"],
                &["X-Client-Verify", "Client-Cert"],
            ),
        ];
        for (preset, without, with_cert) in cases {
            let none = headers(&fx.none, preset, DnFormat::Rfc4514, &h, false);
            assert_eq!(
                header_names(&none),
                without,
                "{preset:?} without a certificate"
            );
            let failed = headers(&fx.failed, preset, DnFormat::Rfc4514, &h, false);
            assert_eq!(
                header_names(&failed),
                with_cert,
                "{preset:?} failed: no device fields"
            );
            let verified = headers(&fx.verified, preset, DnFormat::Rfc4514, &h, false);
            let mut expected = with_cert.to_vec();
            expected.extend(DEVICE);
            assert_eq!(header_names(&verified), expected, "{preset:?} verified");
            assert_eq!(get(&verified, "X-Device-MAC"), "000e08abcdef");
            assert_eq!(get(&verified, "X-Device-Serial"), "88012BA01234");
            assert_eq!(get(&verified, "X-Device-Product"), "SPA-962");
            assert_eq!(get(&verified, "X-Device-Generic-Cert"), "false");
        }
        let none = headers(&fx.none, Preset::Haproxy, DnFormat::Rfc4514, &h, false);
        assert_eq!(
            none,
            [
                ("X-SSL".to_string(), "1".to_string()),
                ("X-SSL-Client-Cert".into(), "0".into()),
                ("X-SSL-Client-Verify".into(), "0".into()),
            ]
        );
    }

    #[test]
    fn chains_only_with_forward_chain() {
        let fx = fixture();
        let h = names();
        let with = |p| headers(&fx.verified, p, DnFormat::Rfc4514, &h, true);
        let without = |p| headers(&fx.verified, p, DnFormat::Rfc4514, &h, false);
        let root_pem = pem_one_line(&fx.ca.cert);
        assert_eq!(
            get(&with(Preset::Apache), "SSL-Client-Cert-Chain-0"),
            root_pem
        );
        assert!(!header_names(&without(Preset::Apache)).contains(&"SSL-Client-Cert-Chain-0"));
        for p in [Preset::Provgate, Preset::Rfc9440] {
            assert_eq!(
                get(&with(p), "Client-Cert-Chain"),
                identity::rfc9440_chain(&fx.verified.chain)
            );
            assert!(!header_names(&without(p)).contains(&"Client-Cert-Chain"));
        }
        let xfcc = with(Preset::Envoy);
        let xfcc = get(&xfcc, "X-Forwarded-Client-Cert");
        let chain = xfcc
            .split(";Chain=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let pems = String::from_utf8(pct_decode(chain, false)).unwrap();
        let certs = X509::stack_from_pem(pems.as_bytes()).unwrap();
        assert_eq!(certs, fx.verified.chain);
        assert!(!get(&without(Preset::Envoy), "X-Forwarded-Client-Cert").contains("Chain="));
        let t = with(Preset::Traefik);
        let certs: Vec<&str> = get(&t, "X-Forwarded-Tls-Client-Cert").split(',').collect();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            get(&t, "X-Forwarded-Tls-Client-Cert-Info")
                .matches("Subject%3D")
                .count(),
            2
        );
    }

    #[test]
    fn no_underscores_in_names_and_visible_ascii_values() {
        let ca = Ca::new("Root \"R\"", "Zürich/Süd").unwrap();
        let (odd, _) = ca
            .issue(&CertSpec {
                subject: vec![
                    ("O", "Acme/Sub, \"Q\""),
                    ("CN", "Grüße\tx"),
                    ("ST", "000e08abcdef"),
                ],
                dns_names: vec!["prov.example"],
                ..CertSpec::legacy_server("unused")
            })
            .unwrap();
        let fx = fixture();
        let odd = ClientIdentity {
            verify: Verify::Success,
            chain: vec![odd, ca.cert.clone()],
        };
        let mut h = names();
        h.verify = "X_Client_Verify".into();
        h.mac = "X_Device_MAC".into();
        for id in [&fx.verified, &fx.failed, &fx.none, &odd] {
            for preset in ALL {
                for f in [DnFormat::Rfc4514, DnFormat::Legacy] {
                    for chain in [false, true] {
                        for (n, v) in headers(id, preset, f, &h, chain) {
                            assert!(!n.contains('_'), "{preset:?}: {n}");
                            assert!(http::HeaderName::from_bytes(n.as_bytes()).is_ok(), "{n}");
                            assert!(
                                v.bytes().all(|b| (0x20..0x7f).contains(&b)),
                                "{preset:?} {n}: {v}"
                            );
                            assert!(http::HeaderValue::from_str(&v).is_ok(), "{n}: {v}");
                            // Whatever provgate sends, a client could not have sent.
                            let extra: Vec<String> =
                                h.all().iter().map(|s| s.to_ascii_lowercase()).collect();
                            assert!(is_identity_header(&n, &extra), "{n} is not stripped");
                        }
                    }
                }
            }
        }
        let v = headers(&odd, Preset::Provgate, DnFormat::Rfc4514, &h, false);
        assert_eq!(get(&v, "X-Client-Verify"), "SUCCESS");
        assert_eq!(get(&v, "X-Device-MAC"), "000e08abcdef");
    }

    #[test]
    fn legacy_dn_is_slash_form_in_certificate_order() {
        let fx = fixture();
        let leaf = fx.verified.leaf().unwrap();
        assert_eq!(
            dn_legacy(leaf.subject_name()),
            "/C=US/O=Sipura/OU=SPA-962/L=88012BA01234/ST=000e08abcdef/CN=spa962"
        );
        assert_eq!(
            dn(leaf.subject_name(), DnFormat::Rfc4514),
            "CN=spa962,ST=000e08abcdef,L=88012BA01234,OU=SPA-962,O=Sipura,C=US"
        );
        assert_eq!(
            dn(leaf.issuer_name(), DnFormat::Legacy),
            "/O=Sipura/CN=Device Client Root (test)"
        );
        let ca = Ca::new("x", "y").unwrap();
        let (odd, _) = ca
            .issue(&CertSpec {
                subject: vec![
                    ("O", "Acme/Sub\\"),
                    ("CN", "Müller"),
                    ("SN", "000e08abcdef"),
                ],
                dns_names: vec![],
                ..CertSpec::legacy_server("unused")
            })
            .unwrap();
        let legacy = dn_legacy(odd.subject_name());
        assert_eq!(
            legacy,
            "/O=Acme\\x2FSub\\x5C/CN=M\\xC3\\xBCller/SN=000e08abcdef"
        );
        assert!(legacy.is_ascii());
        assert_eq!(legacy.matches('/').count(), 3);
    }

    /// The provgate preset's reference: `identity_headers()` as it was in src/proxy/mod.rs
    /// before the presets, kept verbatim so the default cannot drift.
    /// The identity headers for a connection. The verification result is always sent; the
    /// certificate's facts whenever one was presented (so a failure can be diagnosed); the device
    /// fields only when it verified, so a backend never acts on an unverified MAC.
    fn todays_headers<'a>(
        id: &crate::identity::ClientIdentity,
        rt: &'a crate::route::IdentityRt,
    ) -> Vec<(&'a str, String)> {
        let h = &rt.headers;
        let mut out = vec![(h.verify.as_str(), id.verify.to_string())];
        let Some(leaf) = id.leaf() else {
            return out;
        };
        out.push((
            h.subject.as_str(),
            crate::identity::rfc4514(leaf.subject_name()),
        ));
        out.push((
            h.issuer.as_str(),
            crate::identity::rfc4514(leaf.issuer_name()),
        ));
        out.push((h.serial.as_str(), crate::identity::serial_hex(leaf)));
        out.push((
            h.fingerprint.as_str(),
            crate::identity::fingerprint_sha256(leaf),
        ));
        out.push((
            h.not_after.as_str(),
            crate::identity::not_after_rfc3339(leaf),
        ));
        out.push((h.cert.as_str(), crate::identity::rfc9440(leaf)));
        if rt.forward_chain && id.chain.len() > 1 {
            out.push((
                h.cert_chain.as_str(),
                crate::identity::rfc9440_chain(&id.chain),
            ));
        }
        if id.verify == crate::identity::Verify::Success {
            let d = crate::identity::device(leaf);
            if let Some(mac) = d.mac {
                out.push((h.mac.as_str(), mac));
            }
            if let Some(serial) = d.serial {
                out.push((h.device_serial.as_str(), serial));
            }
            if let Some(product) = d.product {
                out.push((h.product.as_str(), product));
            }
            out.push((h.generic.as_str(), d.generic.to_string()));
        }
        // Header values must be visible ASCII; anything else in a DN is escaped away here.
        out.into_iter()
            .map(|(n, v)| {
                let clean: String = v
                    .chars()
                    .map(|c| {
                        if c.is_ascii() && !c.is_ascii_control() {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                (n, clean)
            })
            .collect()
    }

    #[test]
    fn provgate_preset_is_todays_headers() {
        let fx = fixture();
        let mac_path = regex::Regex::new(crate::config::DEFAULT_MAC_PATH_PATTERN).unwrap();
        for forward_chain in [false, true] {
            let rt = crate::route::IdentityRt {
                headers: names(),
                forward_chain,
                mac_path: mac_path.clone(),
                preset: Preset::Provgate,
                dn_format: DnFormat::Rfc4514,
                strip_request_headers: Vec::new(),
            };
            for id in [&fx.verified, &fx.failed, &fx.none] {
                let today: Vec<(String, String)> = todays_headers(id, &rt)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                let now = headers(
                    id,
                    Preset::Provgate,
                    DnFormat::Rfc4514,
                    &rt.headers,
                    forward_chain,
                );
                assert_eq!(now, today);
            }
        }
        let legacy = headers(
            &fx.verified,
            Preset::Provgate,
            DnFormat::Legacy,
            &names(),
            false,
        );
        assert_eq!(
            get(&legacy, "X-Client-Subject"),
            "/C=US/O=Sipura/OU=SPA-962/L=88012BA01234/ST=000e08abcdef/CN=spa962"
        );
    }

    #[test]
    fn apache_and_nginx_values() {
        let fx = fixture();
        let leaf = fx.verified.leaf().unwrap();
        let a = headers(
            &fx.failed,
            Preset::Apache,
            DnFormat::Legacy,
            &names(),
            false,
        );
        assert_eq!(
            get(&a, "SSL-Client-Verify"),
            "FAILED:unable to get local issuer certificate"
        );
        assert_eq!(get(&a, "SSL-Client-S-DN"), dn_legacy(leaf.subject_name()));
        assert_eq!(get(&a, "SSL-Client-S-DN-CN"), "spa962");
        assert_eq!(get(&a, "SSL-Client-S-DN-OU"), "SPA-962");
        assert_eq!(get(&a, "SSL-Client-I-DN-CN"), "Device Client Root (test)");
        let serial = get(&a, "SSL-Client-M-Serial");
        assert!(serial
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(serial, identity::serial_hex(leaf));
        // mod_ssl / ASN1_TIME_print: `Dec  1 16:04:05 2026 GMT`.
        let date = regex::Regex::new(r"^[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d \d{4} GMT$").unwrap();
        assert!(date.is_match(get(&a, "SSL-Client-V-Start")));
        assert!(date.is_match(get(&a, "SSL-Client-V-End")));
        let cert = get(&a, "SSL-Client-Cert");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE----- MII"));
        assert!(cert.ends_with(" -----END CERTIFICATE-----"));
        let body: String = cert
            .trim_start_matches("-----BEGIN CERTIFICATE-----")
            .trim_end_matches("-----END CERTIFICATE-----")
            .split(' ')
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(X509::from_der(&der).unwrap(), *leaf);

        let n = headers(
            &fx.verified,
            Preset::Nginx,
            DnFormat::Rfc4514,
            &names(),
            false,
        );
        assert_eq!(get(&n, "X-SSL-Client-Verify"), "SUCCESS");
        assert_eq!(
            get(&n, "X-SSL-Client-S-DN"),
            identity::rfc4514(leaf.subject_name())
        );
        let sha1: String = leaf
            .digest(MessageDigest::sha1())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(get(&n, "X-SSL-Client-Fingerprint"), sha1);
        assert!(date.is_match(get(&n, "X-SSL-Client-V-End")));
        let escaped = get(&n, "X-SSL-Client-Escaped-Cert");
        assert!(escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
        assert!(!escaped.contains(['+', '/', '=', ' ']));
        assert_eq!(X509::from_pem(&pct_decode(escaped, false)).unwrap(), *leaf);
        let none = headers(&fx.none, Preset::Nginx, DnFormat::Rfc4514, &names(), false);
        assert_eq!(get(&none, "X-SSL-Client-Verify"), "NONE");
    }

    /// The reason text of a real OpenSSL verification.
    fn verify_against(roots: &[&X509], leaf: &X509) -> X509VerifyResult {
        let mut b = X509StoreBuilder::new().unwrap();
        for r in roots {
            b.add_cert((*r).clone()).unwrap();
        }
        let store = b.build();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &Stack::new().unwrap(), |c| {
            c.verify_cert()?;
            Ok(c.error())
        })
        .unwrap()
    }

    #[test]
    fn haproxy_values_and_verify_codes() {
        let fx = fixture();
        let leaf = fx.verified.leaf().unwrap();
        let v = headers(
            &fx.verified,
            Preset::Haproxy,
            DnFormat::Legacy,
            &names(),
            false,
        );
        assert_eq!(get(&v, "X-SSL"), "1");
        assert_eq!(get(&v, "X-SSL-Client-Cert"), "1");
        assert_eq!(get(&v, "X-SSL-Client-Verify"), "0");
        assert_eq!(get(&v, "X-SSL-Client-DN"), dn_legacy(leaf.subject_name()));
        assert_eq!(get(&v, "X-SSL-Client-CN"), "spa962");
        assert_eq!(
            get(&v, "X-SSL-Issuer"),
            "/O=Sipura/CN=Device Client Root (test)"
        );
        assert_eq!(get(&v, "X-SSL-Client-SHA1"), sha1_hex(leaf));
        assert!(sha1_hex(leaf)
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(sha1_hex(leaf).len(), 40);
        let yymmdd = regex::Regex::new(r"^\d{12}Z$").unwrap();
        assert!(yymmdd.is_match(get(&v, "X-SSL-Client-Not-Before")));
        assert!(yymmdd.is_match(get(&v, "X-SSL-Client-Not-After")));
        let r = headers(
            &fx.verified,
            Preset::Haproxy,
            DnFormat::Rfc4514,
            &names(),
            false,
        );
        assert_eq!(
            get(&r, "X-SSL-Client-DN"),
            identity::rfc4514(leaf.subject_name())
        );

        // Codes recovered from OpenSSL's own reason strings.
        let stranger = Ca::new("Somebody Else's Root", "elsewhere").unwrap();
        let (expired, _) = fx
            .ca
            .issue(&CertSpec {
                not_before_days: -30,
                not_after_days: -1,
                ..CertSpec::legacy_server("old")
            })
            .unwrap();
        for (roots, cert, code) in [
            (vec![&stranger.cert], leaf, 20),
            (vec![&fx.ca.cert], &expired, 10),
        ] {
            let r = verify_against(&roots, cert);
            assert_eq!(r.as_raw(), code);
            let id = ClientIdentity {
                verify: Verify::Failed(r.error_string().to_string()),
                chain: vec![cert.clone()],
            };
            let h = headers(&id, Preset::Haproxy, DnFormat::Legacy, &names(), false);
            assert_eq!(get(&h, "X-SSL-Client-Verify"), code.to_string());
            assert_eq!(get(&h, "X-SSL-Client-Cert"), "1");
        }
        let parse = ClientIdentity {
            verify: Verify::Failed("certificate cannot be parsed".into()),
            chain: vec![],
        };
        let h = headers(&parse, Preset::Haproxy, DnFormat::Legacy, &names(), false);
        assert_eq!(
            header_names(&h),
            ["X-SSL", "X-SSL-Client-Cert", "X-SSL-Client-Verify"]
        );
        assert_eq!(get(&h, "X-SSL-Client-Cert"), "1");
        assert_eq!(get(&h, "X-SSL-Client-Verify"), "1");
    }

    #[test]
    fn haproxy_time_is_utctime_or_generalized() {
        let t = openssl::asn1::Asn1Time::from_str("20261201160405Z").unwrap();
        assert_eq!(asn1_short(&t), "261201160405Z");
        let t = openssl::asn1::Asn1Time::from_str("20510101000000Z").unwrap();
        assert_eq!(asn1_short(&t), "20510101000000Z");
    }

    #[test]
    fn traefik_values() {
        let ca = Ca::new("Device Client Root (test)", "Sipura").unwrap();
        let (leaf, _) = ca
            .issue(&CertSpec {
                subject: vec![
                    ("C", "US"),
                    ("O", "Sipura"),
                    ("OU", "SPA-962"),
                    ("CN", "a b"),
                ],
                dns_names: vec!["prov.example", "alt.example"],
                ..CertSpec::legacy_server("unused")
            })
            .unwrap();
        let id = ClientIdentity {
            verify: Verify::Success,
            chain: vec![leaf.clone(), ca.cert.clone()],
        };
        let t = headers(&id, Preset::Traefik, DnFormat::Legacy, &names(), false);
        assert_eq!(get(&t, "X-Client-Verify"), "SUCCESS");
        let cert = get(&t, "X-Forwarded-Tls-Client-Cert");
        assert!(!cert.contains(['+', '/', '=', ',']));
        let der = base64::engine::general_purpose::STANDARD
            .decode(pct_decode(cert, true))
            .unwrap();
        assert_eq!(X509::from_der(&der).unwrap(), leaf);
        let info = String::from_utf8(pct_decode(
            get(&t, "X-Forwarded-Tls-Client-Cert-Info"),
            true,
        ))
        .unwrap();
        let serial = leaf
            .serial_number()
            .to_bn()
            .unwrap()
            .to_dec_str()
            .unwrap()
            .to_string();
        let nb = crate::tls::certs::asn1_to_unix(leaf.not_before());
        let na = crate::tls::certs::asn1_to_unix(leaf.not_after());
        assert_eq!(
            info,
            format!(
                "Subject=\"C=US,O=Sipura,OU=SPA-962,CN=a b\";\
                 Issuer=\"O=Sipura,CN=Device Client Root (test)\";\
                 SerialNumber=\"{serial}\";NB=\"{nb}\";NA=\"{na}\";\
                 SAN=\"prov.example,alt.example\""
            )
        );
        assert!(get(&t, "X-Forwarded-Tls-Client-Cert-Info").starts_with("Subject%3D%22C%3DUS%2C"));
    }

    #[test]
    fn envoy_and_rfc9440_values() {
        let fx = fixture();
        let leaf = fx.verified.leaf().unwrap();
        let e = headers(
            &fx.failed,
            Preset::Envoy,
            DnFormat::Rfc4514,
            &names(),
            false,
        );
        assert_eq!(
            get(&e, "X-Client-Verify"),
            "FAILED:unable to get local issuer certificate"
        );
        let xfcc = get(&e, "X-Forwarded-Client-Cert");
        let prefix = format!("Hash={};Cert=\"", identity::fingerprint_sha256(leaf));
        assert!(xfcc.starts_with(&prefix), "{xfcc}");
        let cert = xfcc[prefix.len()..].split('"').next().unwrap();
        assert!(cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
        assert_eq!(X509::from_pem(&pct_decode(cert, false)).unwrap(), *leaf);
        assert!(xfcc.ends_with(&format!(
            ";Subject=\"{}\"",
            identity::rfc4514(leaf.subject_name())
        )));

        // A legacy DN with a quote stays one quoted XFCC value.
        let ca = Ca::new("x", "y").unwrap();
        let (q, _) = ca
            .issue(&CertSpec {
                subject: vec![("O", "say \"hi\""), ("CN", "q")],
                dns_names: vec![],
                ..CertSpec::legacy_server("unused")
            })
            .unwrap();
        let id = ClientIdentity {
            verify: Verify::Success,
            chain: vec![q.clone()],
        };
        let e = headers(&id, Preset::Envoy, DnFormat::Legacy, &names(), false);
        assert!(get(&e, "X-Forwarded-Client-Cert").ends_with(";Subject=\"/O=say \\\"hi\\\"/CN=q\""));
        let e = headers(&id, Preset::Envoy, DnFormat::Rfc4514, &names(), false);
        assert!(get(&e, "X-Forwarded-Client-Cert").ends_with(";Subject=\"CN=q,O=say \\\"hi\\\"\""));

        let r = headers(
            &fx.verified,
            Preset::Rfc9440,
            DnFormat::Rfc4514,
            &names(),
            false,
        );
        assert_eq!(get(&r, "Client-Cert"), identity::rfc9440(leaf));
    }

    #[test]
    fn presets_deserialize_by_lowercase_name() {
        let p: Preset = serde_yaml::from_str("haproxy").unwrap();
        assert_eq!(p, Preset::Haproxy);
        let p: Preset = serde_yaml::from_str("rfc9440").unwrap();
        assert_eq!(p, Preset::Rfc9440);
        let p: Preset = serde_yaml::from_str("xfcc").unwrap();
        assert_eq!(p, Preset::Envoy);
        let f: DnFormat = serde_yaml::from_str("legacy").unwrap();
        assert_eq!(f, DnFormat::Legacy);
        assert_eq!(Preset::default(), Preset::Provgate);
        assert_eq!(DnFormat::default(), DnFormat::Rfc4514);
    }
}
