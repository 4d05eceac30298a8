//! The built-in vendor CA table (Cisco, Linksys, Sipura) and how a certificate's issuer, or a
//! CA's own name, is matched against it.

use openssl::nid::Nid;
use openssl::x509::X509Ref;
use serde::Serialize;

/// What a vendor CA signs: device-facing server certificates, or the devices' own client
/// certificates (a client root belongs in `client_auth.ca`, never behind a server certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaRole {
    Server,
    Client,
}

/// One vendor CA, recognised by (case-insensitive) fragments of the issuer DN.
#[derive(Debug, Serialize)]
pub struct VendorCa {
    pub family: &'static str,
    pub role: CaRole,
    /// Device families whose firmware trusts this CA (docs/legacy-devices.md, vendor CA list).
    pub devices: &'static str,
    #[serde(skip)]
    issuer_contains: &'static [&'static str],
}

/// The built-in table, most specific first (the first match wins). Source: the vendors'
/// provisioning guides as summarised in legacy-devices.md; the issuer fragments are the CA
/// names the vendors use, so a re-issued root with the same name is still recognised.
pub const VENDOR_CAS: &[VendorCa] = &[
    VendorCa {
        family: "Cisco Small Business Client Root Authority",
        role: CaRole::Client,
        devices: "signs device client certificates (SPA1xx/2xx/5xx, CP-78xx/88xx-3PCC); use it as client_auth.ca",
        issuer_contains: &["client root authority"],
    },
    VendorCa {
        family: "Cisco 2k Small Business CA (Provisioning Root Authority 2)",
        role: CaRole::Server,
        devices: "SPA112/122 fw >= 1.3.3, SPA232D fw >= 1.3.3, SPA5xx fw >= 7.5.6, CP-78xx/88xx-3PCC, ATA19x",
        issuer_contains: &["provisioning root authority 2", "cisco 2k"],
    },
    VendorCa {
        family: "Cisco Small Business CA",
        role: CaRole::Server,
        devices: "SPA112/122, SPA232D, SPA301/303, SPA5xx, SRP521/541",
        issuer_contains: &["cisco small business"],
    },
    VendorCa {
        family: "Linksys CA",
        role: CaRole::Server,
        devices: "PAP2, WRTP, RTP",
        issuer_contains: &["linksys"],
    },
    VendorCa {
        family: "Sipura CA",
        role: CaRole::Server,
        devices: "PAP2T, WRP400, SPA2000/2102, SPA3000/3102, SPA9xx (901..962), SPA3xx, SPA5xx",
        issuer_contains: &["sipura"],
    },
];

/// The vendor CA a CA's name text (its O, OU and CN values) names, if any.
pub fn vendor_ca(ca_name: &str) -> Option<&'static VendorCa> {
    let ca_name = ca_name.to_ascii_lowercase();
    VENDOR_CAS
        .iter()
        .find(|ca| ca.issuer_contains.iter().any(|f| ca_name.contains(f)))
}

/// The vendor CA that issued `cert`. Only the issuer's organisation and CA names count (a
/// leaf called `prov.sipura.example` says nothing), and a self-signed certificate has no
/// vendor: no device trusts it.
pub fn issuing_vendor_ca(cert: &X509Ref) -> Option<&'static VendorCa> {
    let (issuer, subject) = (cert.issuer_name(), cert.subject_name());
    let self_signed = issuer.try_cmp(subject).is_ok_and(|o| o.is_eq());
    if self_signed {
        return None;
    }
    vendor_ca(&ca_name_text(issuer))
}

/// The O, OU and CN values of a name, joined: what vendor CAs are recognised by.
pub(super) fn ca_name_text(name: &openssl::x509::X509NameRef) -> String {
    [
        Nid::ORGANIZATIONNAME,
        Nid::ORGANIZATIONALUNITNAME,
        Nid::COMMONNAME,
    ]
    .iter()
    .flat_map(|nid| name.entries_by_nid(*nid))
    .filter_map(|e| e.data().to_string().ok())
    .collect::<Vec<_>>()
    .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_table_recognises_each_family_by_issuer() {
        let family = |dn: &str| vendor_ca(dn).map(|v| v.family);
        assert_eq!(
            family("C=US, O=Sipura Technology, CN=Sipura CA"),
            Some("Sipura CA")
        );
        assert_eq!(family("O=Linksys, CN=Linksys CA"), Some("Linksys CA"));
        assert_eq!(
            family("O=Cisco Small Business, CN=Cisco Small Business CA"),
            Some("Cisco Small Business CA")
        );
        assert_eq!(
            family("O=Cisco, CN=Provisioning Root Authority 2"),
            Some("Cisco 2k Small Business CA (Provisioning Root Authority 2)")
        );
        let client =
            vendor_ca("O=Cisco Small Business, CN=Cisco Small Business Client Root Authority 2")
                .unwrap();
        assert_eq!(client.role, CaRole::Client);
        assert_eq!(family("CN=Let's Encrypt R3"), None);
    }

    #[test]
    fn the_real_client_root_fixture_is_recognised() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cisco-sb-client-root-authority-2.pem"
        ));
        let Ok(pem) = pem else {
            panic!("fixture tests/data/cisco-sb-client-root-authority-2.pem missing");
        };
        let cert = openssl::x509::X509::from_pem(&pem).unwrap();
        let ca = vendor_ca(&ca_name_text(cert.subject_name())).unwrap();
        assert_eq!(ca.role, CaRole::Client);
    }

    #[test]
    fn only_the_issuing_ca_names_count_and_self_signed_has_no_vendor() {
        use crate::pki::{Ca, CertSpec};
        let ops = Ca::new("Example Ops CA", "Example").unwrap();
        let (leaf, _) = ops.issue(&CertSpec::server("prov.sipura.test")).unwrap();
        assert!(
            issuing_vendor_ca(&leaf).is_none(),
            "a leaf name says nothing"
        );
        let sipura = Ca::new("Sipura CA (test)", "provgate tests").unwrap();
        let (leaf, _) = sipura.issue(&CertSpec::server("prov.example.com")).unwrap();
        assert_eq!(
            issuing_vendor_ca(&leaf).map(|v| v.family),
            Some("Sipura CA")
        );
        let pem = sipura.cert_pem().unwrap();
        let root = openssl::x509::X509::from_pem(&pem).unwrap();
        assert!(issuing_vendor_ca(&root).is_none(), "self-signed");
    }
}
