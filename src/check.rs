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
//! | `unknown_cipher` | a profile's `ciphers` holds a word OpenSSL 3 ignores (unknown or pre-1.1.0 name, TLS 1.3 suite, misplaced `DEFAULT`, or nothing this build can serve) |
//!
//! Each route also shows the TLS in effect: the configured OpenSSL string *and* the suites
//! OpenSSL resolves from it on this build for the route's versions and key, in server order;
//! the DH group; session tickets; the rustls suite order.
//!
//! The report is plain data (`Serialize`), printed as a table or as JSON (`--json`).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::nid::Nid;
use openssl::x509::X509Ref;
use serde::Serialize;

use crate::config::{EngineKind, SniPattern, Target};
use crate::snapshot::Snapshot;
use crate::tls::certs::LoadedCert;
use crate::tls::legacy::Suite;
use crate::tls::Engines;

/// A certificate within this many days of its not-after is reported as expiring.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

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
fn ca_name_text(name: &openssl::x509::X509NameRef) -> String {
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub valid: bool,
    pub certificates: Vec<CertificateReport>,
    pub client_cas: Vec<ClientCaReport>,
    pub listeners: Vec<ListenerReport>,
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

/// Check a loaded snapshot; `now` is seconds since the Unix epoch.
pub fn check(s: &Snapshot, now: i64) -> Report {
    let mut warnings = Vec::new();
    let certificates: Vec<CertificateReport> = s
        .certificates
        .values()
        .map(|c| certificate_report(c, now, &mut warnings))
        .collect();

    profile_warnings(s, &mut warnings);

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

    Report {
        file: s.config.file.display().to_string(),
        valid: true,
        certificates,
        client_cas,
        listeners,
        warnings,
    }
}

/// What OpenSSL silently ignores in the profiles' cipher strings (one warning per word and
/// profile, not per route).
fn profile_warnings(s: &Snapshot, warnings: &mut Vec<Warning>) {
    for p in s.config.profiles.values() {
        if !matches!(p.engine, EngineKind::Legacy | EngineKind::Auto) {
            continue;
        }
        for issue in crate::tls::legacy::cipher_issues(&p.ciphers) {
            warnings.push(Warning {
                code: "unknown_cipher",
                listener: None,
                route: None,
                certificate: None,
                message: format!(
                    "tls_profiles.{}.ciphers: {issue}; no suite is served for it",
                    p.name
                ),
            });
        }
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
    if i.not_after_unix <= now {
        warn(
            "expired",
            format!(
                "certificate '{}' expired on {}; firmware 7.6.2+ refuses it (error 10)",
                c.name, i.not_after
            ),
        );
    } else if days_left < EXPIRY_WARNING_DAYS {
        warn(
            "expiring",
            format!(
                "certificate '{}' expires in {days_left} days ({})",
                c.name, i.not_after
            ),
        );
    }
    if let Some(mode) = c.key_too_open() {
        warn(
            "key_readable_by_others",
            format!(
                "private key file {} of certificate '{}' is readable by group or others \
                 (mode {mode:04o}); chmod 600 it",
                c.key_file.display(),
                c.name
            ),
        );
    }
    if vendor.is_some_and(|v| v.role == CaRole::Client) {
        warn(
            "client_root_as_server_issuer",
            format!(
                "certificate '{}' is issued by a device client-certificate root ({}); devices \
                 do not trust it for servers",
                c.name, i.issuer
            ),
        );
    }
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
        rustls_unusable: c.rustls.as_ref().err().cloned(),
        key_file: c.key_file.display().to_string(),
        key_mode: c.key_mode.map(|m| format!("{m:04o}")),
    }
}

fn client_ca_report(file: &std::path::Path) -> Vec<ClientCaReport> {
    let certs = std::fs::read(file)
        .ok()
        .and_then(|pem| openssl::x509::X509::stack_from_pem(&pem).ok())
        .unwrap_or_default();
    certs
        .iter()
        .map(|c| {
            let subject = crate::tls::certs::name_to_string(c.subject_name());
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
        if serves_legacy {
            if p.dh_bits > 1024 {
                warn(
                    "dh_above_1024",
                    format!(
                        "profile '{}' uses a {}-bit DH group; PAP2T and SPA5xx before 7.5.2b fail \
                         silently on DHE above 1024 bits (use dh_bits: 1024 or 0)",
                        p.name, p.dh_bits
                    ),
                );
            }
            let rsa_key = c.key.rsa().is_ok();
            if !rsa_key || !crate::tls::legacy::offers_rsa_key_exchange(&p.ciphers) {
                let why = if rsa_key {
                    format!("profile '{}' ciphers '{}' have none", p.name, p.ciphers)
                } else {
                    format!("certificate '{}' has a {} key", c.name, c.info.key)
                };
                warn(
                    "no_rsa_key_exchange",
                    format!(
                        "no RSA key exchange ({why}); old firmware needs AES256-SHA or \
                         AES128-SHA with an RSA key"
                    ),
                );
            }
            if c.info.chain_len > 1 {
                warn(
                    "extra_chain_certificates",
                    format!(
                        "certificate '{}' is sent with {} extra certificate(s); legacy devices \
                         expect the leaf directly signed by the vendor CA they carry",
                        c.name,
                        c.info.chain_len - 1
                    ),
                );
            }
            let cn = c.chain.first().and_then(|l| common_name(l));
            if !cn.as_deref().is_some_and(looks_like_fqdn) {
                warn(
                    "cn_not_fqdn",
                    format!(
                        "certificate '{}' CN {:?} is not a host name; devices resolve the CN and \
                         compare it with the address they connected to",
                        c.name,
                        cn.unwrap_or_default()
                    ),
                );
            }
        }
        if p.engine == EngineKind::Auto {
            if let Err(why) = &c.rustls {
                warn(
                    "rustls_cannot_use_key",
                    format!(
                        "profile '{}' is auto but rustls cannot use certificate '{}' ({why}); \
                         every client is served by OpenSSL",
                        p.name, c.name
                    ),
                );
            }
        }
        let names: Vec<String> = c
            .chain
            .first()
            .map(|leaf| {
                common_name(leaf)
                    .into_iter()
                    .chain(dns_names(leaf))
                    .collect()
            })
            .unwrap_or_default();
        for pattern in sni {
            if !names.iter().any(|n| covers(n, pattern)) {
                warn(
                    "sni_not_in_certificate",
                    format!(
                        "route matches SNI '{pattern}' but certificate '{}' names only {}",
                        c.name,
                        if names.is_empty() {
                            "nothing".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
        }
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
        client_auth: format!("{:?}", t.client_auth.mode).to_lowercase(),
    }
}

use crate::tls::certs::common_name;

fn dns_names(cert: &X509Ref) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A host name with at least two labels, optionally followed by `/anything` (the devices
/// accept a CN like `prov.example.com/spa`); IP addresses are not host names.
pub fn looks_like_fqdn(cn: &str) -> bool {
    let host = cn.split('/').next().unwrap_or_default();
    let host = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    labels.len() >= 2
        && host.parse::<std::net::IpAddr>().is_err()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a certificate name (CN or SAN, maybe `*.suffix`) covers an SNI pattern.
fn covers(cert_name: &str, pattern: &SniPattern) -> bool {
    let cert_name = cert_name.split('/').next().unwrap_or_default();
    match pattern {
        SniPattern::Exact(host) => {
            cert_name.eq_ignore_ascii_case(host)
                || cert_name
                    .strip_prefix("*.")
                    .is_some_and(|suffix| SniPattern::Wildcard(suffix.to_string()).matches(host))
        }
        SniPattern::Wildcard(suffix) => cert_name
            .strip_prefix("*.")
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix)),
    }
}

impl Report {
    /// Warnings make a `--strict` check fail.
    pub fn exit_code(&self, strict: bool) -> u8 {
        u8::from(strict && !self.warnings.is_empty())
    }

    /// The human table.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}: valid", self.file);
        let _ = writeln!(out, "\ncertificates");
        for c in &self.certificates {
            let family = c.vendor_ca.map_or_else(
                || "unknown issuer (not a built-in vendor CA)".to_string(),
                |v| format!("{} -> trusted by {}", v.family, v.devices),
            );
            let _ = writeln!(out, "  {}", c.name);
            let _ = writeln!(out, "    subject    {}", c.subject);
            let _ = writeln!(out, "    issuer     {}", c.issuer);
            let _ = writeln!(out, "    vendor CA  {family}");
            let _ = writeln!(
                out,
                "    CN         {} ({})",
                c.cn.as_deref().unwrap_or("-"),
                if c.cn_is_fqdn {
                    "host name"
                } else {
                    "not a host name"
                }
            );
            if !c.dns_names.is_empty() {
                let _ = writeln!(out, "    DNS names  {}", c.dns_names.join(", "));
            }
            let _ = writeln!(out, "    serial     {}", c.serial);
            let _ = writeln!(
                out,
                "    key        {}; signed {}; chain of {}",
                c.key, c.signature, c.chain_length
            );
            let _ = writeln!(
                out,
                "    valid      {} .. {} ({} days left)",
                c.not_before, c.not_after, c.days_left
            );
            if let Some(why) = &c.rustls_unusable {
                let _ = writeln!(out, "    rustls     cannot use it: {why}");
            }
            if let Some(mode) = &c.key_mode {
                let _ = writeln!(out, "    key file   {} (mode {mode})", c.key_file);
            }
        }
        if !self.client_cas.is_empty() {
            let _ = writeln!(out, "\nclient certificate CAs");
            for ca in &self.client_cas {
                let family = ca
                    .vendor_ca
                    .map_or("not a built-in vendor CA", |v| v.family);
                let _ = writeln!(
                    out,
                    "  {}: {} (until {}; {family})",
                    ca.file, ca.subject, ca.not_after
                );
            }
        }
        for l in &self.listeners {
            let _ = writeln!(out, "\nlistener {}  bind {}", l.name, l.bind.join(", "));
            for r in &l.routes {
                let sni = if r.sni.is_empty() {
                    String::new()
                } else {
                    format!("  sni {}", r.sni.join(", "))
                };
                let _ = writeln!(out, "  route {}{sni}", r.name);
                let _ = writeln!(
                    out,
                    "    certificate {}  backend {}  client_auth {}",
                    r.certificate.as_deref().unwrap_or("none (plain HTTP)"),
                    r.backend,
                    r.client_auth
                );
                let versions = if r.versions.is_empty() {
                    String::new()
                } else {
                    format!("; versions {}", r.versions.join(", "))
                };
                let _ = writeln!(out, "    tls {}: {}{versions}", r.profile, r.engine);
                if let Some(ciphers) = &r.openssl_ciphers {
                    let _ = writeln!(out, "    OpenSSL ciphers (configured) {ciphers}");
                }
                if let Some(suites) = &r.openssl_suites {
                    let list: Vec<String> = suites
                        .iter()
                        .map(|s| format!("{} ({})", s.name, s.id))
                        .collect();
                    let list = if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    };
                    let _ = writeln!(
                        out,
                        "    OpenSSL suites (server order, this build, this key) {list}"
                    );
                }
                if let Some(dh) = &r.dh {
                    let _ = writeln!(out, "    DH {dh}");
                }
                if let Some(suites) = &r.rustls_suites {
                    let _ = writeln!(
                        out,
                        "    rustls suites (server order) {}",
                        suites.join(", ")
                    );
                }
                if let Some(on) = r.session_tickets {
                    let _ = writeln!(out, "    session tickets {}", if on { "on" } else { "off" });
                }
            }
        }
        let _ = writeln!(out, "\nwarnings: {}", self.warnings.len());
        for w in &self.warnings {
            let place = match (&w.listener, &w.route) {
                (Some(l), Some(r)) => format!("{l} {r}: "),
                _ => String::new(),
            };
            let _ = writeln!(out, "  WARNING [{}] {place}{}", w.code, w.message);
        }
        out
    }
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

    #[test]
    fn fqdn_heuristic() {
        for ok in [
            "prov.example.com",
            "prov.example.com/spa",
            "*.example.net",
            "a-b.c.org.",
        ] {
            assert!(looks_like_fqdn(ok), "{ok}");
        }
        for bad in [
            "localhost",
            "10.0.0.1",
            "prov_x.example.com",
            "",
            "a..b",
            "x.123",
        ] {
            assert!(!looks_like_fqdn(bad), "{bad}");
        }
    }

    #[test]
    fn sni_coverage_by_certificate_names() {
        let exact = SniPattern::Exact("a.example.com".into());
        let wild = SniPattern::Wildcard("example.com".into());
        assert!(covers("a.example.com", &exact));
        assert!(covers("*.example.com", &exact));
        assert!(!covers(
            "*.example.com",
            &SniPattern::Exact("b.a.example.com".into())
        ));
        assert!(covers("*.example.com", &wild));
        assert!(!covers("a.example.com", &wild));
        assert!(!covers("other.test", &exact));
    }
}
