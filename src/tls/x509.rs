//! X.509 helpers in one place: PEM loading that names the file and the problem, subject CN,
//! serial, fingerprints, distinguished names (RFC 4514, OpenSSL's slash form, the one-line form
//! of `check` and logs) and certificate times.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1TimeRef;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref, X509};

/// Why a PEM certificate file gave no certificates. Names the file.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// OpenSSL could not parse a certificate in the file.
    #[error("{path}: no PEM certificate found ({detail})")]
    Parse { path: PathBuf, detail: String },
    /// The file holds no `BEGIN CERTIFICATE` block.
    #[error("{path}: no PEM certificate found")]
    Empty { path: PathBuf },
}

/// The certificates of a PEM file, in file order (at least one).
///
/// # Errors
///
/// The file cannot be read, a certificate in it cannot be parsed, or it holds none.
pub fn load_pem_certs(path: &Path) -> Result<Vec<X509>, X509Error> {
    let pem = std::fs::read(path).map_err(|source| X509Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pem_certs(path, &pem)
}

/// The certificates of PEM text already read from `path` (named in the errors), at least one.
///
/// # Errors
///
/// A certificate cannot be parsed, or there is none.
pub fn parse_pem_certs(path: &Path, pem: &[u8]) -> Result<Vec<X509>, X509Error> {
    let certs = X509::stack_from_pem(pem).map_err(|e| X509Error::Parse {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(X509Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first attribute of this type in a name, when it is text.
pub fn entry_text(name: &X509NameRef, nid: Nid) -> Option<String> {
    name.entries_by_nid(nid)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// The subject's first CN, when it is text.
pub fn common_name(cert: &X509Ref) -> Option<String> {
    entry_text(cert.subject_name(), Nid::COMMONNAME)
}

/// Upper-case hex serial number (`0A1B`; empty if OpenSSL cannot convert it).
pub fn serial_hex(cert: &X509Ref) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Lower-case hex SHA-256 of the DER certificate, no separators.
pub fn fingerprint_sha256(cert: &X509Ref) -> String {
    cert.digest(MessageDigest::sha256())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// Upper-case hex SHA-1 of the DER certificate, no separators (HAProxy's `ssl_c_sha1,hex`).
pub fn fingerprint_sha1(cert: &X509Ref) -> String {
    cert.digest(MessageDigest::sha1())
        .map(|d| d.iter().map(|b| format!("{b:02X}")).collect())
        .unwrap_or_default()
}

/// RFC 4514 string form of a distinguished name: most specific RDN first, the standard short
/// names (CN, L, ST, O, OU, C, STREET, DC, UID) and dotted OIDs for the rest, special
/// characters escaped.
pub fn rfc4514(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = match e.object().nid() {
                Nid::COMMONNAME => "CN".to_string(),
                Nid::LOCALITYNAME => "L".to_string(),
                Nid::STATEORPROVINCENAME => "ST".to_string(),
                Nid::ORGANIZATIONNAME => "O".to_string(),
                Nid::ORGANIZATIONALUNITNAME => "OU".to_string(),
                Nid::COUNTRYNAME => "C".to_string(),
                Nid::STREETADDRESS => "STREET".to_string(),
                Nid::DOMAINCOMPONENT => "DC".to_string(),
                Nid::USERID => "UID".to_string(),
                // RFC 4514 wants dotted OIDs for types without a standard short name.
                Nid::SURNAME => "2.5.4.4".to_string(),
                Nid::SERIALNUMBER => "2.5.4.5".to_string(),
                Nid::TITLE => "2.5.4.12".to_string(),
                Nid::GIVENNAME => "2.5.4.42".to_string(),
                Nid::PKCS9_EMAILADDRESS => "1.2.840.113549.1.9.1".to_string(),
                _ => e.object().to_string(),
            };
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={}", escape_rfc4514(&value))
        })
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc4514(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
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
        for b in e.data().to_string().unwrap_or_default().bytes() {
            match b {
                b'/' | b'\\' => out.push_str(&format!("\\x{b:02X}")),
                0x20..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\x{b:02X}")),
            }
        }
    }
    out
}

/// A one-line distinguished name for people (`provgate check`, logs), in certificate order,
/// `, ` separated, unescaped: `C=US, O=Sipura, CN=...`; a value that is not text is `?`.
pub fn name_to_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = match e.object().nid() {
                Nid::COMMONNAME => "CN".to_string(),
                Nid::ORGANIZATIONNAME => "O".to_string(),
                Nid::ORGANIZATIONALUNITNAME => "OU".to_string(),
                Nid::COUNTRYNAME => "C".to_string(),
                Nid::STATEORPROVINCENAME => "ST".to_string(),
                Nid::LOCALITYNAME => "L".to_string(),
                nid => nid
                    .short_name()
                    .map(str::to_string)
                    .unwrap_or_else(|_| e.object().to_string()),
            };
            let value = e.data().to_string().unwrap_or_else(|_| "?".to_string());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds since the Unix epoch for an ASN.1 time (0 if OpenSSL cannot compute it).
pub fn asn1_to_unix(t: &Asn1TimeRef) -> i64 {
    openssl::asn1::Asn1Time::from_unix(0)
        .ok()
        .and_then(|epoch| epoch.diff(t).ok())
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0)
}

/// An ASN.1 time as RFC 3339 UTC (`2035-01-01T00:00:00Z`); times before 1970 as the epoch.
pub fn asn1_rfc3339(t: &Asn1TimeRef) -> String {
    let secs = asn1_to_unix(t);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// not-after as RFC 3339 UTC (`2035-01-01T00:00:00Z`).
pub fn not_after_rfc3339(cert: &X509Ref) -> String {
    asn1_rfc3339(cert.not_after())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertSpec};

    fn cert(subject: Vec<(&str, &str)>) -> X509 {
        let ca = Ca::new("Test Device Root", "test").unwrap();
        let spec = CertSpec {
            subject,
            dns_names: vec![],
            ..CertSpec::legacy_server("x")
        };
        ca.issue(&spec).unwrap().0
    }

    #[test]
    fn rfc4514_reverses_and_escapes() {
        let c = cert(vec![("C", "US"), ("O", "Acme, Inc."), ("CN", "#a+b ")]);
        assert_eq!(
            rfc4514(c.subject_name()),
            "CN=\\#a\\+b\\ ,O=Acme\\, Inc.,C=US"
        );
        let s = cert(vec![("SN", "000e08abcdef")]);
        assert_eq!(rfc4514(s.subject_name()), "2.5.4.4=000e08abcdef");
    }

    #[test]
    fn one_line_names_and_common_name() {
        let c = cert(vec![("C", "US"), ("O", "Sipura"), ("CN", "prov.example")]);
        assert_eq!(
            name_to_string(c.subject_name()),
            "C=US, O=Sipura, CN=prov.example"
        );
        assert_eq!(
            dn_legacy(c.subject_name()),
            "/C=US/O=Sipura/CN=prov.example"
        );
        assert_eq!(common_name(&c).as_deref(), Some("prov.example"));
        assert_eq!(common_name(&cert(vec![("O", "x")])), None);
    }

    #[test]
    fn serial_fingerprints_and_times() {
        let c = cert(vec![("CN", "x")]);
        let serial = serial_hex(&c);
        assert!(!serial.is_empty());
        assert!(serial
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        let sha256 = fingerprint_sha256(&c);
        assert_eq!(sha256.len(), 64);
        assert!(sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        let sha1 = fingerprint_sha1(&c);
        assert_eq!(sha1.len(), 40);
        assert!(sha1.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')));
        let t = openssl::asn1::Asn1Time::from_str("20350101000000Z").unwrap();
        assert_eq!(asn1_to_unix(&t), 2_051_222_400);
        assert_eq!(asn1_rfc3339(&t), "2035-01-01T00:00:00Z");
        let rfc3339 = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").unwrap();
        assert!(rfc3339.is_match(&not_after_rfc3339(&c)));
    }

    #[test]
    fn pem_loading_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load_pem_certs(&missing).unwrap_err();
        assert!(matches!(e, X509Error::Read { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read {}: ", missing.display())),
            "{e}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = load_pem_certs(&empty).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: no PEM certificate found", empty.display())
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_pem_certs(&broken).unwrap_err();
        assert!(matches!(e, X509Error::Parse { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: no PEM certificate found (", broken.display())),
            "{e}"
        );

        let ca = Ca::new("Root", "test").unwrap();
        let good = dir.path().join("good.pem");
        let mut pem = ca.cert.to_pem().unwrap();
        pem.extend(cert(vec![("CN", "x")]).to_pem().unwrap());
        std::fs::write(&good, pem).unwrap();
        let certs = load_pem_certs(&good).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], ca.cert);
    }
}
