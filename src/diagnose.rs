//! Plain-words reasons for failed handshakes: what the client offered against what the route's
//! profile allows, so an operator can fix the config without a packet capture.

use crate::config::{EngineKind, Profile};
use crate::hello::{cipher_name, ClientHello};
use crate::tls::{Engine, Reason};

/// The families a cipher name belongs to, for a short summary ("DHE", "RC4", ...).
fn family(name: &str) -> &'static str {
    if name.starts_with("TLS_AES") || name.starts_with("TLS_CHACHA") {
        "TLS 1.3"
    } else if name.contains("EXP") {
        "export"
    } else if name.contains("RC4") {
        "RC4"
    } else if name.contains("DES-CBC3") || name.contains("3DES") {
        "3DES"
    } else if name.starts_with("ECDHE") {
        "ECDHE"
    } else if name.starts_with("DHE") || name.starts_with("EDH") {
        "DHE"
    } else if name.contains("SCSV") {
        ""
    } else if name.starts_with("AES") {
        "AES (RSA key exchange)"
    } else {
        "other"
    }
}

pub fn offered_cipher_names(h: &ClientHello) -> Vec<String> {
    h.cipher_suites
        .iter()
        .map(|c| cipher_name(*c).map_or_else(|| format!("0x{c:04x}"), str::to_string))
        .collect()
}

pub fn offered_versions(h: &ClientHello) -> String {
    if h.supported_versions.is_empty() {
        format!("up to {}", h.client_version)
    } else {
        h.supported_versions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One sentence explaining a failed handshake.
pub fn explain(
    reason: Reason,
    engine: Engine,
    h: &ClientHello,
    p: &Profile,
    detail: &str,
) -> String {
    let allowed_versions: Vec<&str> = match engine {
        Engine::Legacy => p.legacy_versions().iter().map(|v| v.name()).collect(),
        Engine::Modern => p.modern_versions().iter().map(|v| v.name()).collect(),
        Engine::Plain => Vec::new(),
    };
    match reason {
        Reason::NoSharedCipher => {
            let mut fams: Vec<&str> = offered_cipher_names(h)
                .iter()
                .map(|n| family(n))
                .filter(|f| !f.is_empty())
                .collect();
            fams.dedup();
            let mut seen = Vec::new();
            for f in fams {
                if !seen.contains(&f) {
                    seen.push(f);
                }
            }
            let allows = match engine {
                Engine::Legacy => format!("allows '{}'", p.ciphers),
                Engine::Modern => "is served by rustls (TLS 1.3 and ECDHE AEAD suites only)".into(),
                Engine::Plain => "speaks plain HTTP".into(),
            };
            let dh = if engine == Engine::Legacy && p.dh_bits == 0 {
                " with DHE off (dh_bits: 0)"
            } else {
                ""
            };
            format!(
                "client offers only {} suites; profile '{}' {allows}{dh}",
                seen.join(" and "),
                p.name
            )
        }
        Reason::ProtocolVersion => format!(
            "client offers {} ({}); profile '{}' on the {} engine serves {}{}",
            offered_versions(h),
            if h.format == crate::hello::HelloFormat::Sslv2 {
                "SSLv2-format hello"
            } else {
                "TLS hello"
            },
            p.name,
            engine.name(),
            allowed_versions.join(", "),
            if p.engine == EngineKind::Modern {
                "; old devices need tls: legacy or auto"
            } else {
                ""
            }
        ),
        Reason::NoCertificate => {
            "client sent no certificate, and client_auth is required on this route".to_string()
        }
        Reason::UnknownCa => {
            format!("client certificate does not chain to the configured client_auth CA ({detail})")
        }
        Reason::BadCertificate => format!("client certificate rejected ({detail})"),
        Reason::ClientAlert => format!(
            "the client aborted the handshake with an alert ({detail}); often it does not trust \
             the route's certificate (wrong CA family?) or rejects its dates"
        ),
        Reason::ClientClosed => "the client closed the connection during the handshake".into(),
        Reason::Internal => format!("internal error: {detail}"),
    }
}
