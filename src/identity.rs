//! Device identity from a client certificate: the verification outcome, the certificate's
//! facts, and the SPA device fields (MAC, serial, product) the provisioning backend decides on.
//!
//! Device certificates carry the product in OU, the serial in L and the MAC in an attribute the
//! vendor guides call "S" — stateOrProvinceName (2.5.4.8) or surname (2.5.4.4), so both are read
//! by OID, with CN as the last resort. Units made before firmware 2.0 carry the generic
//! `L=ciscogeneric` certificate.

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref, X509};

/// The outcome of client-certificate verification, as forwarded to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// A certificate was presented and verified.
    Success,
    /// No certificate was presented (or client auth is off).
    None,
    /// A certificate was presented and failed; the reason in a few words.
    Failed(String),
}

impl std::fmt::Display for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verify::Success => f.write_str("SUCCESS"),
            Verify::None => f.write_str("NONE"),
            Verify::Failed(reason) => write!(f, "FAILED:{reason}"),
        }
    }
}

/// SPA device fields parsed from the subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// 12 lower-case hex digits.
    pub mac: Option<String>,
    pub serial: Option<String>,
    pub product: Option<String>,
    /// The pre-2.0 generic certificate (`L=ciscogeneric`): it identifies no unit.
    pub generic: bool,
}

/// What the backend learns about the client certificate.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub verify: Verify,
    /// The presented chain, leaf first (empty when none was presented).
    pub chain: Vec<X509>,
}

impl ClientIdentity {
    pub fn none() -> Self {
        ClientIdentity {
            verify: Verify::None,
            chain: Vec::new(),
        }
    }

    pub fn leaf(&self) -> Option<&X509> {
        self.chain.first()
    }
}

fn entry(name: &X509NameRef, nid: Nid) -> Option<String> {
    name.entries_by_nid(nid)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

/// A MAC in any common spelling (`000e08abcdef`, `00:0E:08:AB:CD:EF`, `000e.08ab.cdef`) as 12
/// lower-case hex digits.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.' | ' '))
        .collect();
    (hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

pub fn device(cert: &X509Ref) -> Device {
    let subject = cert.subject_name();
    let st = entry(subject, Nid::STATEORPROVINCENAME);
    let sn = entry(subject, Nid::SURNAME);
    let cn = entry(subject, Nid::COMMONNAME);
    let serial = entry(subject, Nid::LOCALITYNAME);
    let generic = [&serial, &st, &sn].iter().any(|v| {
        v.as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("ciscogeneric"))
    });
    let mac = [&st, &sn, &cn]
        .iter()
        .find_map(|v| v.as_deref().and_then(normalize_mac));
    Device {
        mac,
        serial,
        product: entry(subject, Nid::ORGANIZATIONALUNITNAME),
        generic,
    }
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

/// Lower-case hex SHA-256 of the DER certificate.
pub fn fingerprint_sha256(cert: &X509Ref) -> String {
    cert.digest(MessageDigest::sha256())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// Upper-case hex serial number.
pub fn serial_hex(cert: &X509Ref) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// not-after as RFC 3339 UTC (`2035-01-01T00:00:00Z`).
pub fn not_after_rfc3339(cert: &X509Ref) -> String {
    let secs = crate::tls::certs::asn1_to_unix(cert.not_after());
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 9440 `Client-Cert` value: the DER certificate as a structured-field byte sequence.
pub fn rfc9440(cert: &X509Ref) -> String {
    let der = cert.to_der().unwrap_or_default();
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// RFC 9440 `Client-Cert-Chain`: the certificates after the leaf, as a structured-field list.
pub fn rfc9440_chain(chain: &[X509]) -> String {
    chain
        .iter()
        .skip(1)
        .map(|c| rfc9440(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertSpec};

    fn device_cert(subject: Vec<(&str, &str)>) -> X509 {
        let ca = Ca::new("Test Device Root", "test").unwrap();
        let spec = CertSpec {
            subject,
            dns_names: vec![],
            ..CertSpec::legacy_server("x")
        };
        ca.issue(&spec).unwrap().0
    }

    #[test]
    fn mac_from_st_then_surname_then_cn() {
        let st = device_cert(vec![
            ("OU", "SPA-962"),
            ("L", "88012BA01234"),
            ("ST", "000E08ABCDEF"),
        ]);
        assert_eq!(
            device(&st),
            Device {
                mac: Some("000e08abcdef".into()),
                serial: Some("88012BA01234".into()),
                product: Some("SPA-962".into()),
                generic: false
            }
        );
        let sn = device_cert(vec![
            ("OU", "SPA-962"),
            ("L", "88012BA01234"),
            ("SN", "00:0e:08:ab:cd:ef"),
        ]);
        assert_eq!(device(&sn).mac.as_deref(), Some("000e08abcdef"));
        let cn = device_cert(vec![("CN", "000e08abcdef")]);
        assert_eq!(device(&cn).mac.as_deref(), Some("000e08abcdef"));
        let none = device_cert(vec![("CN", "not a mac")]);
        assert_eq!(device(&none).mac, None);
    }

    #[test]
    fn generic_certificate_is_flagged() {
        let g = device_cert(vec![
            ("OU", "cisco.com"),
            ("L", "ciscogeneric"),
            ("ST", "ciscogeneric"),
        ]);
        let d = device(&g);
        assert!(d.generic);
        assert_eq!(d.mac, None);
    }

    #[test]
    fn rfc4514_reverses_and_escapes() {
        let c = device_cert(vec![("C", "US"), ("O", "Acme, Inc."), ("CN", "#a+b ")]);
        assert_eq!(
            rfc4514(c.subject_name()),
            "CN=\\#a\\+b\\ ,O=Acme\\, Inc.,C=US"
        );
        let s = device_cert(vec![("SN", "000e08abcdef")]);
        assert_eq!(rfc4514(s.subject_name()), "2.5.4.4=000e08abcdef");
    }

    #[test]
    fn verify_strings() {
        assert_eq!(Verify::Success.to_string(), "SUCCESS");
        assert_eq!(Verify::None.to_string(), "NONE");
        assert_eq!(
            Verify::Failed("unknown CA".into()).to_string(),
            "FAILED:unknown CA"
        );
    }

    #[test]
    fn rfc9440_is_colon_wrapped_base64_der() {
        let c = device_cert(vec![("CN", "x")]);
        let v = rfc9440(&c);
        assert!(v.starts_with(':') && v.ends_with(':'));
        let der = base64::engine::general_purpose::STANDARD
            .decode(v.trim_matches(':'))
            .unwrap();
        assert_eq!(X509::from_der(&der).unwrap(), c);
    }
}
