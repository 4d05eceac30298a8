//! `provgate check`: the operator's pre-flight.
//!
//! For every listener and route it reports the certificate (subject, issuer, serial, key,
//! signature, validity, CN), the **vendor CA family** that issued it and so which device
//! families trust it, and the TLS in effect; then warns about what makes old devices fail:
//!
//! | code | when |
//! |---|---|
//! | `expired`, `expiring` | the certificate is past, or within 30 days of, its not-after |
//! | `dh_above_1024` | a legacy/auto profile uses a DH group above 1024 bits |
//! | `no_rsa_key_exchange` | a legacy/auto profile's ciphers (or the key) rule out RSA key exchange |
//! | `rustls_cannot_use_key` | an `auto` route whose key rustls cannot sign with (all OpenSSL) |
//! | `extra_chain_certificates` | a legacy/auto route sends more than the leaf |
//! | `cn_not_fqdn` | a legacy/auto route's certificate CN is not a host name (devices resolve it) |
//! | `sni_not_in_certificate` | a route matches an SNI name that the certificate's CN/SANs do not cover |
//! | `client_root_as_server_issuer` | a server certificate issued by a vendor *client* root |
//! | `key_readable_by_others` | a private key file's mode gives group or others access (e.g. `0644`) |
//! | `max_connections_above_descriptors` | `limits.max_connections` is above what the open-file limit allows ((limit - reserve) / 2); it is lowered at start |
//! | `listen_backlog_above_somaxconn` | a listener's `listen_backlog` is above `net.core.somaxconn`, which caps it |
//! | `cn_wildcard`, `name_only_in_san`, `cn_does_not_resolve`, `cn_resolves_elsewhere` | what the device's own name check (CN looked up, A records, compared with the address it connected to) finds; see `dns` |
//! | `unknown_cipher` | a profile's `ciphers` holds a word OpenSSL 3 ignores (unknown or pre-1.1.0 name, TLS 1.3 suite, misplaced `DEFAULT`, or nothing this build can serve) |
//!
//! Each route also shows the TLS in effect: the configured OpenSSL string *and* the suites
//! OpenSSL resolves from it on this build for the route's versions and key, in server order;
//! the DH group; session tickets; the rustls suite order.
//!
//! The report is plain data (`Serialize`), printed as a table or as JSON (`--json`).
//!
//! Layout: this file runs the check and holds the report types; `vendors` is the vendor CA
//! table, `families` which devices trust which vendor CA, `warnings` the warning rules,
//! `names` the certificate-name rules, `dns` the CN lookups, `text` the table.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{EngineKind, SniPattern, Target};
use crate::snapshot::Snapshot;
use crate::tls::certs::LoadedCert;
use crate::tls::legacy::Suite;
use crate::tls::x509::{common_name, load_pem_certs, name_to_string};
use crate::tls::Engines;

mod dns;
mod families;
mod names;
mod text;
mod vendors;
mod warnings;

pub(crate) use dns::log_in_background;
pub use dns::{DnsReport, LOOKUP_TIMEOUT};
pub(crate) use families::{devices_trusting, DeviceTrust};
pub use names::looks_like_fqdn;
pub use vendors::{issuing_vendor_ca, vendor_ca, VendorCa};

use names::dns_names;
use vendors::ca_name_text;

#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub valid: bool,
    pub certificates: Vec<CertificateReport>,
    pub client_cas: Vec<ClientCaReport>,
    pub listeners: Vec<ListenerReport>,
    /// The certificates' CNs looked up as the devices do (or skipped, `--offline`).
    pub dns: DnsReport,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Serialize)]
pub struct CertificateReport {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub key: String,
    pub signature: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub cn: Option<String>,
    pub cn_is_fqdn: bool,
    pub dns_names: Vec<String>,
    pub chain_length: usize,
    /// The vendor CA that issued it, and the devices that trust it; `None` when unknown.
    pub vendor_ca: Option<&'static VendorCa>,
    /// The devices whose firmware trusts that vendor CA (vendor list and field reports, each
    /// row with its source); empty when the issuer is not a server vendor CA.
    pub devices: Vec<&'static DeviceTrust>,
    /// Why rustls cannot use the key, when it cannot.
    pub rustls_unusable: Option<String>,
    pub key_file: String,
    /// The key file's permission bits, as `0600`.
    pub key_mode: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClientCaReport {
    pub file: String,
    pub subject: String,
    pub not_after: String,
    pub vendor_ca: Option<&'static VendorCa>,
}

#[derive(Debug, Serialize)]
pub struct ListenerReport {
    pub name: String,
    pub bind: Vec<String>,
    pub routes: Vec<RouteReport>,
}

#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// `(default)` for the listener's defaults.
    pub name: String,
    pub sni: Vec<String>,
    pub backend: String,
    /// `None` on plain-HTTP listeners.
    pub certificate: Option<String>,
    pub profile: String,
    pub engine: String,
    pub versions: Vec<&'static str>,
    /// The OpenSSL cipher string, for routes the legacy engine can serve.
    pub openssl_ciphers: Option<String>,
    /// What OpenSSL makes of it on this build: the suites the route's versions and key can
    /// use, in server order.
    pub openssl_suites: Option<Vec<Suite>>,
    pub dh_bits: Option<u32>,
    /// The built-in 1024-bit group in use, when `dh_bits` is 1024 and no `dh_params` is set.
    pub dh_group: Option<crate::config::DhGroup>,
    /// The operator's DH parameter file, when the profile names one.
    pub dh_params: Option<String>,
    /// The DH group in words (which group, how many bits, or no DHE).
    pub dh: Option<String>,
    /// Session tickets (`session_tickets`), for TLS routes.
    pub session_tickets: Option<bool>,
    /// rustls's suites in server order, for routes rustls serves.
    pub rustls_suites: Option<Vec<&'static str>>,
    pub client_auth: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub listener: Option<String>,
    pub route: Option<String>,
    pub certificate: Option<String>,
    pub message: String,
}

/// Check a loaded snapshot without DNS lookups (as `--offline`); `now` is seconds since the
/// Unix epoch.
pub fn check(s: &Snapshot, now: i64) -> Report {
    report(s, now, None)
}

/// Check a loaded snapshot and look up the certificates' CNs, all lookups together bounded by
/// `timeout` (`LOOKUP_TIMEOUT` for `provgate check`).
pub fn check_with_lookups(s: &Snapshot, now: i64, timeout: std::time::Duration) -> Report {
    report(s, now, Some(timeout))
}

fn report(s: &Snapshot, now: i64, lookups: Option<std::time::Duration>) -> Report {
    let mut warnings = Vec::new();
    let certificates: Vec<CertificateReport> = s
        .certificates
        .values()
        .map(|c| certificate_report(c, now, &mut warnings))
        .collect();

    warnings::profile_warnings(s, &mut warnings);
    // As `run` would find them: the open-file limit raised to the hard one.
    let open_files = rlimit::increase_nofile_limit(u64::MAX)
        .ok()
        .or_else(crate::admission::open_file_limit);
    warnings::limit_warnings(s, open_files, crate::accept::somaxconn(), &mut warnings);

    let mut client_cas = Vec::new();
    let mut seen = BTreeSet::new();
    let targets = s
        .config
        .listeners
        .iter()
        .flat_map(|l| std::iter::once(&l.defaults).chain(l.routes.iter().map(|r| &r.target)));
    for t in targets {
        for file in &t.client_auth.ca {
            if seen.insert(file.clone()) {
                client_cas.extend(client_ca_report(file));
            }
        }
    }

    let listeners = s
        .config
        .listeners
        .iter()
        .map(|l| {
            let routes = std::iter::once(("(default)".to_string(), &l.defaults, &[][..]))
                .chain(
                    l.routes
                        .iter()
                        .map(|r| (r.name.clone(), &r.target, &r.matches.sni[..])),
                )
                .map(|(route, t, sni)| route_report(s, &l.name, &route, t, sni, &mut warnings))
                .collect();
            ListenerReport {
                name: l.name.clone(),
                bind: l.bind.iter().map(ToString::to_string).collect(),
                routes,
            }
        })
        .collect();

    warnings.extend(dns::name_warnings(s));
    let dns = match lookups {
        Some(timeout) => {
            let (dns, found) = dns::check(s, timeout);
            warnings.extend(found);
            dns
        }
        None => dns::skipped(),
    };

    Report {
        file: s.config.file.display().to_string(),
        valid: true,
        certificates,
        client_cas,
        listeners,
        dns,
        warnings,
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn certificate_report(c: &LoadedCert, now: i64, warnings: &mut Vec<Warning>) -> CertificateReport {
    let i = &c.info;
    let leaf = c.chain.first();
    let cn = leaf.and_then(|l| common_name(l));
    let dns_names = leaf.map(|l| dns_names(l)).unwrap_or_default();
    let days_left = (i.not_after_unix - now).div_euclid(86_400);
    let vendor = leaf.and_then(|l| issuing_vendor_ca(l));
    let mut warn = |code, message: String| {
        warnings.push(Warning {
            code,
            listener: None,
            route: None,
            certificate: Some(c.name.clone()),
            message,
        })
    };
    warnings::certificate_warnings(c, now, days_left, vendor, &mut warn);
    CertificateReport {
        name: c.name.clone(),
        subject: i.subject.clone(),
        issuer: i.issuer.clone(),
        serial: i.serial.clone(),
        key: i.key.clone(),
        signature: i.signature.clone(),
        not_before: i.not_before.clone(),
        not_after: i.not_after.clone(),
        days_left,
        cn_is_fqdn: cn.as_deref().is_some_and(looks_like_fqdn),
        cn,
        dns_names,
        chain_length: i.chain_len,
        vendor_ca: vendor,
        devices: vendor
            .map(|v| devices_trusting(v.family))
            .unwrap_or_default(),
        rustls_unusable: c.rustls.as_ref().err().cloned(),
        key_file: c.key_file.display().to_string(),
        key_mode: c.key_mode.map(|m| format!("{m:04o}")),
    }
}

fn client_ca_report(file: &std::path::Path) -> Vec<ClientCaReport> {
    let certs = load_pem_certs(file).unwrap_or_default();
    certs
        .iter()
        .map(|c| {
            let subject = name_to_string(c.subject_name());
            ClientCaReport {
                file: file.display().to_string(),
                vendor_ca: vendor_ca(&ca_name_text(c.subject_name())),
                subject,
                not_after: c.not_after().to_string(),
            }
        })
        .collect()
}

fn route_report(
    s: &Snapshot,
    listener: &str,
    route: &str,
    t: &Target,
    sni: &[SniPattern],
    warnings: &mut Vec<Warning>,
) -> RouteReport {
    let mut warn = |code, message: String| {
        warnings.push(Warning {
            code,
            listener: Some(listener.to_string()),
            route: Some(route.to_string()),
            certificate: t.certificate.clone(),
            message,
        })
    };
    // Names exist: the config was validated before the snapshot was built.
    let profile = s.config.profiles.get(&t.profile);
    let cert = t.certificate.as_ref().and_then(|c| s.certificates.get(c));
    let engines = s
        .listeners
        .get(listener)
        .and_then(|rt| {
            std::iter::once(&rt.default)
                .chain(rt.routes.iter().map(|(_, r)| r))
                .find(|r| *r.name == *route || (route == "(default)" && *r.name == *listener))
        })
        .map(|r| r.tls.clone());
    let engine = match engines.as_deref().map(|t| &t.engines) {
        Some(Engines::Legacy(_)) => "legacy (OpenSSL)".to_string(),
        Some(Engines::Modern(_)) => "modern (rustls)".to_string(),
        Some(Engines::Auto {
            modern: Some(_), ..
        }) => "auto (rustls for TLS 1.2+ hellos it can serve, else OpenSSL)".to_string(),
        Some(Engines::Auto { modern: None, .. }) => "auto, OpenSSL only".to_string(),
        Some(Engines::Plain) => "plain HTTP (no TLS)".to_string(),
        None => "unknown".to_string(),
    };
    let serves_legacy =
        profile.is_some_and(|p| matches!(p.engine, EngineKind::Legacy | EngineKind::Auto));
    if let (Some(p), Some(c)) = (profile, cert) {
        warnings::route_warnings(p, c, serves_legacy, sni, &mut warn);
    }

    RouteReport {
        name: route.to_string(),
        sni: sni.iter().map(ToString::to_string).collect(),
        backend: t.backend.clone(),
        certificate: t.certificate.clone(),
        profile: t.profile.clone(),
        engine,
        versions: profile
            .map(|p| p.versions.iter().map(|v| v.name()).collect())
            .unwrap_or_default(),
        openssl_ciphers: profile.filter(|_| serves_legacy).map(|p| p.ciphers.clone()),
        openssl_suites: profile.filter(|_| serves_legacy).map(|p| {
            crate::tls::legacy::effective_suites(p)
                .unwrap_or_default()
                .into_iter()
                .filter(|suite| cert.is_none_or(|c| suite.usable_with(c.key.id())))
                .collect()
        }),
        dh_bits: profile.filter(|_| serves_legacy).map(|p| p.dh_bits),
        dh_group: profile
            .filter(|p| serves_legacy && p.dh_bits == 1024 && p.dh_params.is_none())
            .map(|p| p.dh_group),
        dh_params: profile
            .filter(|p| serves_legacy && p.dh_bits != 0)
            .and_then(|p| p.dh_params.as_ref())
            .map(|d| d.path.display().to_string()),
        dh: profile
            .filter(|_| serves_legacy)
            .map(crate::tls::legacy::describe_dh),
        session_tickets: profile
            .filter(|p| p.engine != EngineKind::Plain)
            .map(|p| p.session_tickets),
        rustls_suites: matches!(
            engines.as_deref().map(|t| &t.engines),
            Some(Engines::Modern(_))
                | Some(Engines::Auto {
                    modern: Some(_),
                    ..
                })
        )
        .then(crate::tls::modern::suite_names),
        client_auth: client_auth_words(&t.client_auth),
    }
}

impl Report {
    /// Warnings make a `--strict` check fail.
    pub fn exit_code(&self, strict: bool) -> u8 {
        u8::from(strict && !self.warnings.is_empty())
    }
}

/// The route's client-certificate policy in a few words: the mode, then what relaxes or
/// narrows it (`allow_expired`, the serial lists).
fn client_auth_words(a: &crate::config::ClientAuth) -> String {
    let mut words = format!("{:?}", a.mode).to_lowercase();
    if a.allow_expired {
        words.push_str(", allow_expired (dates not checked)");
    }
    if !a.deny_serials.is_empty() {
        words.push_str(&format!(", deny_serials {}", a.deny_serials.len()));
    }
    if let Some(allow) = &a.allow_serials {
        words.push_str(&format!(", allow_serials {}", allow.len()));
    }
    words
}

#[cfg(test)]
mod client_auth_tests {
    use super::client_auth_words;
    use crate::config::{ClientAuth, ClientAuthMode};

    #[test]
    fn the_route_line_says_what_relaxes_or_narrows_client_auth() {
        assert_eq!(client_auth_words(&ClientAuth::OFF), "off");
        let a = ClientAuth {
            mode: ClientAuthMode::Required,
            allow_expired: true,
            deny_serials: vec!["1a".into(), "2b".into()],
            allow_serials: Some(vec!["3c".into()]),
            ..ClientAuth::OFF
        };
        assert_eq!(
            client_auth_words(&a),
            "required, allow_expired (dates not checked), deny_serials 2, allow_serials 1"
        );
    }
}
