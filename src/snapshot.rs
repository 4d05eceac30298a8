//! Config -> runtime: certificates parsed, TLS contexts built, routes resolved. A snapshot is
//! built whole before it is used; connections load it once (`ArcSwap`) and keep it, so a reload
//! is "build, then swap" and a failed build leaves the running snapshot untouched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{Config, ConfigError, Target};
use crate::route::{ListenerRt, RouteRt};
use crate::tls::certs::LoadedCert;
use crate::tls::ServerTls;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub certificates: BTreeMap<String, Arc<LoadedCert>>,
    pub listeners: HashMap<String, Arc<ListenerRt>>,
}

impl Snapshot {
    pub fn build(config: Config) -> Result<Snapshot, ConfigError> {
        let file = config.file.clone();
        let mut certificates = BTreeMap::new();
        for (name, spec) in &config.certificates {
            let cert = LoadedCert::load(spec)
                .map_err(|e| ConfigError::invalid(&file, format!("certificates.{name}"), e))?;
            certificates.insert(name.clone(), Arc::new(cert));
        }

        // One TLS context per (certificate, profile) pair, shared by every route that uses it.
        let mut contexts: HashMap<(String, String), Arc<ServerTls>> = HashMap::new();
        let mut listeners = HashMap::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let mut build = |key: String,
                             name: &str,
                             t: &Target|
             -> Result<Arc<RouteRt>, ConfigError> {
                let pair = (t.certificate.clone(), t.profile.clone());
                let tls = match contexts.get(&pair) {
                    Some(tls) => tls.clone(),
                    None => {
                        let (cert, profile) = match (
                            certificates.get(&t.certificate),
                            config.profiles.get(&t.profile),
                        ) {
                            (Some(c), Some(p)) => (c, p),
                            _ => return Err(ConfigError::invalid(&file, key, "unresolved name")),
                        };
                        let tls = ServerTls::build(cert, profile).map_err(|e| {
                            ConfigError::invalid(
                                &file,
                                key.clone(),
                                format!(
                                    "certificate '{}' with TLS profile '{}': {e}",
                                    t.certificate, t.profile
                                ),
                            )
                        })?;
                        let tls = Arc::new(tls);
                        contexts.insert(pair, tls.clone());
                        tls
                    }
                };
                let backend = config.backends.get(&t.backend).ok_or_else(|| {
                    ConfigError::invalid(&file, key.clone(), "unresolved backend")
                })?;
                Ok(Arc::new(RouteRt {
                    name: Arc::from(name),
                    certificate: t.certificate.clone(),
                    profile: t.profile.clone(),
                    tls,
                    backend: Arc::new(backend.clone()),
                }))
            };
            let default = build(format!("listeners[{i}]"), &l.name, &l.defaults)?;
            let routes = l
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    build(format!("listeners[{i}].routes[{j}]"), &r.name, &r.target)
                        .map(|rt| (r.matches.clone(), rt))
                })
                .collect::<Result<Vec<_>, _>>()?;
            listeners.insert(
                l.name.clone(),
                Arc::new(ListenerRt {
                    name: Arc::from(l.name.as_str()),
                    routes,
                    default,
                    handshake_timeout: l.handshake_timeout,
                }),
            );
        }
        Ok(Snapshot {
            config,
            certificates,
            listeners,
        })
    }

    /// Read, validate and build in one go: what `run`, `check` and reload all do.
    pub fn load(file: &std::path::Path) -> Result<Snapshot, ConfigError> {
        Snapshot::build(Config::load(file)?)
    }
}
