//! Which devices trust which vendor CA family: the vendor CA list and the operators' field
//! cross-compatibility table of docs/legacy-devices.md, as data (the binary carries it; nothing
//! reads the document at run time).
//!
//! The vendor list is a minimum: most devices accept more than one CA, which is what the field
//! rows add. Each row says where it comes from, so an operator can weigh a vendor statement
//! against one operator's report.

use serde::Serialize;

/// The family names, exactly as `VendorCa.family` spells them (src/check/vendors.rs).
const LINKSYS: &str = "Linksys CA";
const SIPURA: &str = "Sipura CA";
const CISCO_SB: &str = "Cisco Small Business CA";
const CISCO_2K: &str = "Cisco 2k Small Business CA (Provisioning Root Authority 2)";

/// Where the vendor-list rows come from.
const VENDOR_LIST: &str = "vendor CA list (vendor provisioning guides; docs/legacy-devices.md)";
/// Where the field rows come from.
const FIELD_TEST: &str =
    "operator field test (Cisco community, \"SPA certificate authority (CA) list\", 2015-2022)";

/// One device family (at a firmware) and the vendor CA families it trusts.
#[derive(Debug, Serialize)]
pub struct DeviceTrust {
    /// The device family, as the source names it (`SPA508G`, `SPA112/122`).
    pub device: &'static str,
    /// The firmware the row holds for (`7.5.4`, `>= 1.3.3`, `any`).
    pub firmware: &'static str,
    /// The `VendorCa.family` names this firmware accepts.
    pub trusts: &'static [&'static str],
    /// What else the operator should know (an exception, what it rejects); may be empty.
    pub note: &'static str,
    /// Where the row comes from.
    pub source: &'static str,
}

/// The table: vendor-list rows first, then the field rows.
pub(crate) const DEVICE_TRUST: &[DeviceTrust] = &[
    // The vendor CA list.
    DeviceTrust {
        device: "SPA112/122, SPA232D",
        firmware: ">= 1.3.3",
        trusts: &[CISCO_2K],
        note: "",
        source: VENDOR_LIST,
    },
    DeviceTrust {
        device: "SPA5xx",
        firmware: ">= 7.5.6",
        trusts: &[CISCO_2K],
        note: "",
        source: VENDOR_LIST,
    },
    DeviceTrust {
        device: "CP-78xx/88xx-3PCC, ATA19x",
        firmware: "any",
        trusts: &[CISCO_2K],
        note: "",
        source: VENDOR_LIST,
    },
    DeviceTrust {
        device: "SPA112/122, SPA232D, SPA301/303, SPA5xx, SRP521/541",
        firmware: "any",
        trusts: &[CISCO_SB],
        note: "",
        source: VENDOR_LIST,
    },
    DeviceTrust {
        device: "PAP2, WRTP, RTP",
        firmware: "any",
        trusts: &[LINKSYS],
        note: "",
        source: VENDOR_LIST,
    },
    DeviceTrust {
        device: "PAP2T, WRP400, SPA2000/2102, SPA3000/3102, SPA9xx (901..962), SPA3xx, SPA5xx",
        firmware: "any",
        trusts: &[SIPURA],
        note: "",
        source: VENDOR_LIST,
    },
    // The field cross-compatibility table.
    DeviceTrust {
        device: "PAP2T",
        firmware: "5.1.6(LS)",
        trusts: &[LINKSYS, SIPURA],
        note: "rejects the Cisco SB CA",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA112",
        firmware: "1.3.1(003)",
        trusts: &[LINKSYS, SIPURA, CISCO_SB],
        note: "",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA232D",
        firmware: "1.3.1(003_240)",
        trusts: &[LINKSYS, SIPURA, CISCO_SB],
        note: "",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA-962",
        firmware: "6.1.5(a)",
        trusts: &[LINKSYS, SIPURA],
        note: "rejects the Cisco SB CA",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA508G",
        firmware: "7.5.4",
        trusts: &[LINKSYS, SIPURA, CISCO_SB],
        note: "",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA508G",
        firmware: ">= 7.6.2",
        trusts: &[SIPURA, CISCO_SB],
        note: "rejects the Linksys CA: the Linksys root embedded in SPA50x expired end of June \
               2015 and 7.6.2+ checks dates (error 10)",
        source: FIELD_TEST,
    },
    DeviceTrust {
        device: "SPA525G2",
        firmware: "7.5.4",
        trusts: &[LINKSYS, SIPURA, CISCO_SB],
        note: "",
        source: FIELD_TEST,
    },
];

/// The rows whose firmware trusts `family` (a `VendorCa.family` name), vendor list first.
/// Empty for a family no device trusts as a server issuer (the client root) or an unknown name.
pub(crate) fn devices_trusting(family: &str) -> Vec<&'static DeviceTrust> {
    DEVICE_TRUST
        .iter()
        .filter(|d| d.trusts.contains(&family))
        .collect()
}

impl DeviceTrust {
    /// `SPA508G 7.5.4`, `PAP2, WRTP, RTP (any firmware)`: the row in a few words.
    pub(crate) fn label(&self) -> String {
        if self.firmware == "any" {
            format!("{} (any firmware)", self.device)
        } else {
            format!("{} {}", self.device, self.firmware)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::vendors::{CaRole, VENDOR_CAS};

    #[test]
    fn every_family_name_is_a_vendor_family() {
        for row in DEVICE_TRUST {
            for f in row.trusts {
                let ca = VENDOR_CAS.iter().find(|v| v.family == *f);
                assert!(ca.is_some(), "{} names unknown family {f:?}", row.device);
                assert_eq!(ca.map(|c| c.role), Some(CaRole::Server));
            }
            assert!(!row.source.is_empty());
        }
    }

    #[test]
    fn the_field_table_as_documented() {
        let labels = |family| {
            devices_trusting(family)
                .iter()
                .filter(|d| d.source == FIELD_TEST)
                .map(|d| d.label())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(LINKSYS),
            [
                "PAP2T 5.1.6(LS)",
                "SPA112 1.3.1(003)",
                "SPA232D 1.3.1(003_240)",
                "SPA-962 6.1.5(a)",
                "SPA508G 7.5.4",
                "SPA525G2 7.5.4"
            ]
        );
        assert_eq!(
            labels(CISCO_SB),
            [
                "SPA112 1.3.1(003)",
                "SPA232D 1.3.1(003_240)",
                "SPA508G 7.5.4",
                "SPA508G >= 7.6.2",
                "SPA525G2 7.5.4"
            ]
        );
        assert_eq!(labels(SIPURA).len(), 7, "every field row trusts Sipura");
        let sipura = devices_trusting(SIPURA);
        assert!(sipura.iter().any(|d| d.device.starts_with("PAP2T, WRP400")));
        assert!(devices_trusting("Cisco Small Business Client Root Authority").is_empty());
        assert!(devices_trusting("Let's Encrypt").is_empty());
    }
}
