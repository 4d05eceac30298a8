//! The warning rules: what in a profile, a certificate or a route makes old devices fail (the
//! codes listed in the module doc of `check`), each rule in the order the report lists them.

use super::names::{covers, dns_names, looks_like_fqdn};
use super::vendors::{CaRole, VendorCa};
use super::Warning;
use crate::config::{EngineKind, Profile, SniPattern};
use crate::snapshot::Snapshot;
use crate::tls::certs::LoadedCert;
use crate::tls::x509::common_name;

/// A certificate within this many days of its not-after is reported as expiring.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What OpenSSL silently ignores in the profiles' cipher strings (one warning per word and
/// profile, not per route).
pub(super) fn profile_warnings(s: &Snapshot, warnings: &mut Vec<Warning>) {
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

/// The certificate's own warnings (expiry, key-file mode, a client root as issuer); `warn`
/// attaches them to the certificate.
pub(super) fn certificate_warnings(
    c: &LoadedCert,
    now: i64,
    days_left: i64,
    vendor: Option<&VendorCa>,
    warn: &mut impl FnMut(&'static str, String),
) {
    let i = &c.info;
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
}

/// A TLS route's warnings, for its profile `p` and certificate `c`; `serves_legacy` when the
/// profile's engine is legacy or auto. `warn` attaches them to the listener and route.
pub(super) fn route_warnings(
    p: &Profile,
    c: &LoadedCert,
    serves_legacy: bool,
    sni: &[SniPattern],
    warn: &mut impl FnMut(&'static str, String),
) {
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

/// Process limits the host cannot carry: `limits.max_connections` above what the open-file
/// limit allows (`open_files`, as `run` would raise it), and listen backlogs above
/// `net.core.somaxconn`.
pub(super) fn limit_warnings(
    s: &Snapshot,
    open_files: Option<u64>,
    somaxconn: Option<u32>,
    warnings: &mut Vec<Warning>,
) {
    let c = &s.config;
    let reserve = crate::admission::descriptor_reserve(c);
    if let (Some(configured), Some(files)) = (c.limits.max_connections, open_files) {
        let cap = crate::admission::descriptor_cap(files, reserve);
        if configured > cap {
            warnings.push(Warning {
                code: "max_connections_above_descriptors",
                listener: None,
                route: None,
                certificate: None,
                message: format!(
                    "limits.max_connections {configured} is above what the open-file limit \
                     here allows ({cap}: ({files} - {reserve} reserved) / 2, two descriptors \
                     per proxied connection); provgate lowers it to {cap} at start (raise \
                     LimitNOFILE / `ulimit -n`)"
                ),
            });
        }
    }
    for l in &c.listeners {
        if let Some(max) = somaxconn.filter(|&max| max < l.listen_backlog) {
            warnings.push(Warning {
                code: "listen_backlog_above_somaxconn",
                listener: Some(l.name.clone()),
                route: None,
                certificate: None,
                message: format!(
                    "listener '{}': listen_backlog {} is above net.core.somaxconn ({max}), \
                     which caps it; raise the sysctl for the queue to hold a storm",
                    l.name, l.listen_backlog
                ),
            });
        }
    }
}
