//! Tests of the identity module: device fields and verification strings here, the shared
//! fixture (an SPA-shaped device certificate under a test root) for [`headers`] and [`presets`].

mod headers;
mod presets;

use base64::Engine as _;
use openssl::x509::X509;

use super::{device, rfc9440, ClientIdentity, Device, Verify};
use crate::config::IdentityHeaders;
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
