//! Device identity from a client certificate: the verification outcome, the certificate's
//! facts, and the SPA device fields (MAC, serial, product) the provisioning backend decides on.
//!
//! Device certificates carry the product in OU, the serial in L and the MAC in an attribute the
//! vendor guides call "S" — stateOrProvinceName (2.5.4.8) or surname (2.5.4.4), so both are read
//! by OID, with CN as the last resort. Units made before firmware 2.0 carry the generic
//! `L=ciscogeneric` certificate.
//!
//! [`headers`] turns an identity into the headers the backend receives (`presets` spells them
//! like other proxies); the X.509 helpers themselves live in `tls/x509.rs`.

pub mod headers;
mod presets;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use openssl::nid::Nid;
use openssl::x509::{X509Ref, X509};

use crate::tls::x509::entry_text;
// Paths kept for tests/identity.rs and the provgate preset's reference test.
pub use crate::tls::x509::{fingerprint_sha256, not_after_rfc3339, rfc4514, serial_hex};

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

    /// A verified device certificate outside its validity dates (expired or not yet valid),
    /// which only `client_auth.allow_expired` lets verify. An expired vendor root alone does
    /// not count: the header is about the device's own certificate.
    pub fn expired(&self) -> bool {
        self.verify == Verify::Success && self.leaf().is_some_and(outside_validity)
    }
}

/// True when now is before the certificate's notBefore or after its notAfter (an unreadable
/// clock or date counts as outside).
fn outside_validity(cert: &X509) -> bool {
    let Ok(now) = openssl::asn1::Asn1Time::days_from_now(0) else {
        return true;
    };
    let before = cert.not_before().compare(&now).map(|o| o.is_gt());
    let after = cert.not_after().compare(&now).map(|o| o.is_lt());
    !matches!((before, after), (Ok(false), Ok(false)))
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
    let st = entry_text(subject, Nid::STATEORPROVINCENAME);
    let sn = entry_text(subject, Nid::SURNAME);
    let cn = entry_text(subject, Nid::COMMONNAME);
    let serial = entry_text(subject, Nid::LOCALITYNAME);
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
        product: entry_text(subject, Nid::ORGANIZATIONALUNITNAME),
        generic,
    }
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
