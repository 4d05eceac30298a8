//! What the device tests about the certificate's name: it looks up the CN (A records only) and
//! compares the addresses with the one it connected to. So for every certificate a legacy or
//! auto route serves:
//!
//! | code | when |
//! |---|---|
//! | `cn_wildcard` | the CN is `*.something`: devices look it up as it is |
//! | `name_only_in_san` | the certificate's DNS SANs name a host the CN does not (devices read only the CN) |
//! | `cn_does_not_resolve` | the CN has no A record (lookup failed, timed out, or IPv6 only) |
//! | `cn_resolves_elsewhere` | none of its A addresses is one the listener binds (when it binds specific addresses) or lists in `public_addresses` |
//!
//! The lookups use the system resolver (getaddrinfo, as `/etc/hosts` and the devices' DNS
//! would answer), every name in its own thread at the same time, and stop waiting after one
//! timeout for all of them: a slow resolver never holds up `check` or serving. `run` logs the
//! same warnings at start and after each reload, from a background thread.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;

use super::names::dns_names;
use super::Warning;
use crate::config::{EngineKind, Listener, Target};
use crate::snapshot::Snapshot;
use crate::tls::x509::common_name;

/// How long `check` and the start/reload hook wait for all lookups together.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What `check` reports about the lookups.
#[derive(Debug, Serialize)]
pub struct DnsReport {
    /// `--offline`: no lookup was made, `cn_does_not_resolve` and `cn_resolves_elsewhere`
    /// were not checked.
    pub skipped: bool,
    /// The bound on all lookups together, in milliseconds (`None` when skipped).
    pub timeout_ms: Option<u64>,
    /// Each CN looked up, with its A addresses or why there are none.
    pub names: Vec<NameLookup>,
}

#[derive(Debug, Serialize)]
pub struct NameLookup {
    pub name: String,
    pub addresses: Vec<Ipv4Addr>,
    /// Why there is no A address (resolver error, timeout, IPv6 only); `None` when resolved.
    pub error: Option<String>,
}

/// One name's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Its IPv4 addresses (at least one), sorted.
    V4(Vec<Ipv4Addr>),
    /// No A address; why, in words.
    None(String),
}

/// A certificate served by a legacy/auto route, and where.
struct Served {
    certificate: String,
    cn: Option<String>,
    sans: Vec<String>,
    uses: Vec<Use>,
}

/// One listener (and route) that serves the certificate to old devices.
struct Use {
    listener: String,
    route: String,
    /// What a device may have connected to; `None` when the listener binds a wildcard
    /// address and lists no `public_addresses` (anything goes).
    accepts: Option<Vec<IpNet>>,
    /// The listener's binds (and route `local` match, public addresses), in words.
    binds: String,
}

/// The host part of a CN (`prov.example.com/spa` -> `prov.example.com`).
fn cn_host(cn: &str) -> &str {
    cn.split('/').next().unwrap_or_default()
}

/// Whether a CN host part is something a resolver can be asked about (one or more labels of
/// letters, digits and hyphens); anything else is `cn_not_fqdn`'s business.
fn resolvable(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with("*.")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Every certificate a legacy/auto route serves, with its listeners, in config order.
fn served(s: &Snapshot) -> Vec<Served> {
    let mut out: Vec<Served> = Vec::new();
    for l in s.config.listeners.iter().filter(|l| !l.plain) {
        let targets = std::iter::once(("(default)", &l.defaults, &[][..])).chain(
            l.routes
                .iter()
                .map(|r| (r.name.as_str(), &r.target, &r.matches.local[..])),
        );
        for (route, t, local) in targets {
            let Some((name, cert)) = legacy_certificate(s, t) else {
                continue;
            };
            let entry = match out.iter().position(|c| c.certificate == name) {
                Some(i) => &mut out[i],
                None => {
                    let leaf = cert.chain.first();
                    out.push(Served {
                        certificate: name.to_string(),
                        cn: leaf.and_then(|c| common_name(c)),
                        sans: leaf.map(|c| dns_names(c)).unwrap_or_default(),
                        uses: Vec::new(),
                    });
                    let last = out.len() - 1;
                    &mut out[last]
                }
            };
            let u = listener_use(l, route, local);
            // One warning per listener and address set, not per route.
            if !entry
                .uses
                .iter()
                .any(|e| e.listener == u.listener && e.accepts == u.accepts)
            {
                entry.uses.push(u);
            }
        }
    }
    out
}

/// The target's certificate, when its profile is legacy or auto (what old devices reach).
fn legacy_certificate<'a>(
    s: &'a Snapshot,
    t: &'a Target,
) -> Option<(&'a str, &'a crate::tls::certs::LoadedCert)> {
    let profile = s.config.profiles.get(&t.profile)?;
    if !matches!(profile.engine, EngineKind::Legacy | EngineKind::Auto) {
        return None;
    }
    let name = t.certificate.as_deref()?;
    Some((name, s.certificates.get(name)?))
}

fn listener_use(l: &Listener, route: &str, local: &[IpNet]) -> Use {
    let local: Vec<IpNet> = local
        .iter()
        .filter(|n| matches!(n, IpNet::V4(_)))
        .copied()
        .collect();
    let wildcard = l.bind.iter().any(|b| b.ip().is_unspecified());
    let bound: Option<Vec<IpNet>> = (!wildcard).then(|| {
        l.bind
            .iter()
            .filter_map(|b| match b.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(a) => a.to_ipv4_mapped(),
            })
            .map(|a| IpNet::from(IpAddr::V4(a)))
            .filter(|a| local.is_empty() || local.iter().any(|n| n.contains(a)))
            .collect()
    });
    // A wildcard bind narrowed by the route's `local` match: the addresses it matches.
    let bound = bound.or_else(|| (!local.is_empty()).then(|| local.clone()));
    let public = l
        .public_addresses
        .iter()
        .map(|a| IpNet::from(IpAddr::V4(*a)));
    let accepts = match bound {
        Some(b) => Some(b.into_iter().chain(public).collect()),
        None if l.public_addresses.is_empty() => None,
        None => Some(public.collect()),
    };
    let mut binds = format!(
        "listener '{}' binds {}",
        l.name,
        l.bind
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !local.is_empty() {
        let nets: Vec<String> = local.iter().map(ToString::to_string).collect();
        binds.push_str(&format!(
            ", route '{route}' matches local {}",
            nets.join(", ")
        ));
    }
    if l.public_addresses.is_empty() {
        binds.push_str(" (no public_addresses)");
    } else {
        let public: Vec<String> = l.public_addresses.iter().map(ToString::to_string).collect();
        binds.push_str(&format!(", public_addresses {}", public.join(", ")));
    }
    Use {
        listener: l.name.clone(),
        route: route.to_string(),
        accepts,
        binds,
    }
}

/// The CNs to look up: every resolvable CN of a certificate a legacy/auto route serves.
pub(crate) fn names_to_resolve(s: &Snapshot) -> BTreeSet<String> {
    served(s)
        .iter()
        .filter_map(|c| c.cn.as_deref().map(cn_host))
        .filter(|h| resolvable(h))
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// Look every name up at once through the system resolver, keeping IPv4 answers (what an A
/// lookup returns); a name without an answer within `timeout` (for all names together) is
/// reported as timed out. Lookups still running then are left to finish on their own thread.
pub(crate) fn resolve_all(
    names: &BTreeSet<String>,
    timeout: Duration,
) -> BTreeMap<String, Resolution> {
    let (tx, rx) = mpsc::channel();
    let mut out = BTreeMap::new();
    for name in names {
        let (tx, thread_name) = (tx.clone(), name.clone());
        let spawned = std::thread::Builder::new()
            .name("provgate-dns".into())
            .spawn(move || {
                let answer = (thread_name.as_str(), 0u16)
                    .to_socket_addrs()
                    .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
                let _ = tx.send((thread_name, answer));
            });
        if let Err(e) = spawned {
            out.insert(
                name.clone(),
                Resolution::None(format!("cannot start a lookup thread: {e}")),
            );
        }
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    while out.len() < names.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((name, answer)) = rx.recv_timeout(left) else {
            break;
        };
        out.insert(name, resolution(answer));
    }
    for name in names {
        out.entry(name.clone()).or_insert_with(|| {
            Resolution::None(format!("no answer within {} ms", timeout.as_millis()))
        });
    }
    out
}

fn resolution(answer: std::io::Result<Vec<IpAddr>>) -> Resolution {
    match answer {
        Err(e) => Resolution::None(format!("lookup failed: {e}")),
        Ok(addrs) => {
            let v4: BTreeSet<Ipv4Addr> = addrs
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect();
            if !v4.is_empty() {
                Resolution::V4(v4.into_iter().collect())
            } else if addrs.is_empty() {
                Resolution::None("the resolver returned no address".to_string())
            } else {
                let v6: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                Resolution::None(format!(
                    "no A record, only IPv6 ({}); devices look up A records only",
                    v6.join(", ")
                ))
            }
        }
    }
}

/// The name warnings that need no lookup: `cn_wildcard`, `name_only_in_san`.
pub(crate) fn name_warnings(s: &Snapshot) -> Vec<Warning> {
    let mut out = Vec::new();
    for c in served(s) {
        let warn = |code, message| Warning {
            code,
            listener: None,
            route: None,
            certificate: Some(c.certificate.clone()),
            message,
        };
        let host = c.cn.as_deref().map(cn_host).unwrap_or_default();
        if host.starts_with("*.") {
            out.push(warn(
                "cn_wildcard",
                format!(
                    "certificate '{}' CN {host:?} is a wildcard; devices look the CN up as \
                     it is and do not accept wildcards: reissue it with the host name the \
                     devices use as CN (one certificate per name)",
                    c.certificate
                ),
            ));
        }
        let in_san = c
            .sans
            .iter()
            .any(|n| n.eq_ignore_ascii_case(host.trim_end_matches('.')));
        if !c.sans.is_empty() && !in_san {
            let cn_is = if super::looks_like_fqdn(host) {
                format!("its CN {host:?} is a different name")
            } else {
                format!(
                    "its CN {:?} is not a host name",
                    c.cn.as_deref().unwrap_or_default()
                )
            };
            out.push(warn(
                "name_only_in_san",
                format!(
                    "certificate '{}' names {} only in its subjectAltName and {cn_is}; \
                     devices read only the CN (they resolve it and compare it with the \
                     address they connected to): reissue it with CN = the host name the \
                     devices use (e.g. {})",
                    c.certificate,
                    c.sans.join(", "),
                    c.sans[0]
                ),
            ));
        }
    }
    out
}

/// The lookup warnings, `cn_does_not_resolve` and `cn_resolves_elsewhere`, from the answers
/// `resolve_all` gave for `names_to_resolve`.
pub(crate) fn lookup_warnings(
    s: &Snapshot,
    answers: &BTreeMap<String, Resolution>,
) -> Vec<Warning> {
    let mut out = Vec::new();
    for c in served(s) {
        let Some(cn) = c.cn.as_deref() else { continue };
        let host = cn_host(cn);
        if !resolvable(host) {
            continue;
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let Some(answer) = answers.get(&key) else {
            continue;
        };
        match answer {
            Resolution::None(why) => {
                let binds: Vec<&str> = c.uses.iter().map(|u| u.binds.as_str()).collect();
                out.push(Warning {
                    code: "cn_does_not_resolve",
                    listener: None,
                    route: None,
                    certificate: Some(c.certificate.clone()),
                    message: format!(
                        "certificate '{}' CN {host:?} does not resolve to an IPv4 address \
                         ({why}); it is served where {}; devices look up the CN and refuse \
                         the server when it does not resolve: add an A record for {host} \
                         pointing at the address the devices connect to",
                        c.certificate,
                        binds.join("; ")
                    ),
                });
            }
            Resolution::V4(addrs) => {
                for u in &c.uses {
                    let Some(accepts) = &u.accepts else { continue };
                    let hit = addrs
                        .iter()
                        .any(|a| accepts.iter().any(|n| n.contains(&IpAddr::V4(*a))));
                    if hit {
                        continue;
                    }
                    let resolved: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                    out.push(Warning {
                        code: "cn_resolves_elsewhere",
                        listener: Some(u.listener.clone()),
                        route: Some(u.route.clone()),
                        certificate: Some(c.certificate.clone()),
                        message: format!(
                            "certificate '{}' CN {host:?} resolves to {}, but {}; a device \
                             compares the CN's address with the one it connected to and \
                             refuses the server: point the A record of {host} at the \
                             listener's address, bind the listener there, or list the \
                             address devices connect to (NAT, load balancer) in the \
                             listener's public_addresses",
                            c.certificate,
                            resolved.join(", "),
                            u.binds
                        ),
                    });
                }
            }
        }
    }
    out
}

/// Look the names up (bounded by `timeout`) and report them with the lookup warnings.
pub(crate) fn check(s: &Snapshot, timeout: Duration) -> (DnsReport, Vec<Warning>) {
    let answers = resolve_all(&names_to_resolve(s), timeout);
    let warnings = lookup_warnings(s, &answers);
    let names = answers
        .into_iter()
        .map(|(name, r)| match r {
            Resolution::V4(addresses) => NameLookup {
                name,
                addresses,
                error: None,
            },
            Resolution::None(why) => NameLookup {
                name,
                addresses: Vec::new(),
                error: Some(why),
            },
        })
        .collect();
    let report = DnsReport {
        skipped: false,
        timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        names,
    };
    (report, warnings)
}

/// `--offline`: nothing looked up.
pub(crate) fn skipped() -> DnsReport {
    DnsReport {
        skipped: true,
        timeout_ms: None,
        names: Vec::new(),
    }
}

/// At start and after a reload: the same name and lookup warnings as `check`, logged from a
/// background thread once the snapshot is live (serving never waits for DNS). `when` says
/// which (`start`, `reload`).
pub fn log_in_background(
    s: Arc<Snapshot>,
    when: &'static str,
    found: impl FnOnce(Vec<Warning>) + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("provgate-dns-check".into())
        .spawn(move || {
            let mut warnings = name_warnings(&s);
            let names = names_to_resolve(&s);
            let answers = resolve_all(&names, LOOKUP_TIMEOUT);
            warnings.extend(lookup_warnings(&s, &answers));
            for w in &warnings {
                tracing::warn!(
                    code = w.code,
                    certificate = w.certificate.as_deref().unwrap_or_default(),
                    listener = w.listener.as_deref().unwrap_or_default(),
                    when,
                    "{}",
                    w.message
                );
            }
            let count = warnings.len();
            // Stored before the line below, so whoever reads the line finds them stored.
            found(warnings);
            tracing::info!(
                when,
                ?names,
                warnings = count,
                "certificate names checked against DNS (A records, as devices look them up)"
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the certificate-name DNS check");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_ipv4_only() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            resolution(Ok(vec![v6, v4, v4])),
            Resolution::V4(vec![Ipv4Addr::LOCALHOST])
        );
        assert!(matches!(resolution(Ok(vec![v6])), Resolution::None(w) if w.contains("only IPv6")));
        assert!(matches!(resolution(Ok(vec![])), Resolution::None(_)));
    }

    #[test]
    fn cn_host_and_resolvable() {
        assert_eq!(cn_host("prov.example.com/spa"), "prov.example.com");
        assert!(resolvable("localhost"));
        assert!(!resolvable("*.example.com"));
        assert!(!resolvable("Example Ops"));
        assert!(!resolvable(""));
    }

    #[test]
    fn lookups_are_bounded_and_parallel() {
        let names: BTreeSet<String> = ["localhost", "x.provgate-test.invalid"]
            .into_iter()
            .map(String::from)
            .collect();
        let start = Instant::now();
        let answers = resolve_all(&names, Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(answers.len(), 2);
        assert!(
            matches!(&answers["localhost"], Resolution::V4(a) if a.contains(&Ipv4Addr::LOCALHOST))
        );
        assert!(matches!(
            &answers["x.provgate-test.invalid"],
            Resolution::None(_)
        ));
    }
}
