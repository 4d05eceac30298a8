//! Config -> runtime: certificates parsed, TLS contexts built, routes resolved. A snapshot is
//! built whole before it is used; connections load it once (`ArcSwap`) and keep it, so a reload
//! is "build, then swap" and a failed build leaves the running snapshot untouched.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::config::{ClientAuth, Config, ConfigError, EngineKind, Target};
use crate::route::{self, IdentityPolicy};
use crate::tls::certs::LoadedCert;
use crate::tls::client_auth::ClientVerifier;
use crate::tls::ServerTls;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub certificates: BTreeMap<String, Arc<LoadedCert>>,
    pub listeners: HashMap<String, Arc<route::Listener>>,
}

/// Builds each distinct piece once: a TLS context per (certificate, profile, client auth), a
/// client verifier per client-auth setting.
struct Builder<'a> {
    config: &'a Config,
    certificates: BTreeMap<String, Arc<LoadedCert>>,
    verifiers: HashMap<ClientAuth, Option<Arc<ClientVerifier>>>,
    contexts: HashMap<(Option<String>, String, ClientAuth), Arc<ServerTls>>,
    identity: Arc<IdentityPolicy>,
    /// One set of connection slots per backend with `max_connections`.
    backend_slots: HashMap<String, Arc<tokio::sync::Semaphore>>,
}

impl Builder<'_> {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::invalid(&self.config.file, key, message)
    }

    fn verifier(
        &mut self,
        key: &str,
        auth: &ClientAuth,
    ) -> Result<Option<Arc<ClientVerifier>>, ConfigError> {
        if let Some(v) = self.verifiers.get(auth) {
            return Ok(v.clone());
        }
        let v = ClientVerifier::load(auth)
            .map_err(|e| self.err(&format!("{key}.client_auth.ca"), e))?
            .map(Arc::new);
        self.verifiers.insert(auth.clone(), v.clone());
        Ok(v)
    }

    fn route(
        &mut self,
        key: &str,
        name: &str,
        t: &Target,
    ) -> Result<Arc<route::Route>, ConfigError> {
        let ctx_key = (
            t.certificate.clone(),
            t.profile.clone(),
            t.client_auth.clone(),
        );
        let tls = match self.contexts.get(&ctx_key) {
            Some(tls) => tls.clone(),
            None => {
                let Some(profile) = self.config.profiles.get(&t.profile) else {
                    return Err(self.err(key, "unresolved TLS profile name"));
                };
                let tls = match &t.certificate {
                    // Plain HTTP: no certificate, no client verification.
                    None if profile.engine == EngineKind::Plain => ServerTls::plain(),
                    None => return Err(self.err(key, "a TLS listener needs a certificate")),
                    Some(cert_name) => {
                        let client = self.verifier(key, &t.client_auth)?;
                        let Some(cert) = self.certificates.get(cert_name) else {
                            return Err(self.err(key, "unresolved certificate name"));
                        };
                        ServerTls::build(cert, profile, client).map_err(|e| {
                            self.err(
                                key,
                                format!(
                                    "certificate '{cert_name}' with TLS profile '{}': {e}",
                                    t.profile
                                ),
                            )
                        })?
                    }
                };
                let tls = Arc::new(tls);
                self.contexts.insert(ctx_key, tls.clone());
                tls
            }
        };
        let backend = self
            .config
            .backends
            .get(&t.backend)
            .ok_or_else(|| self.err(key, "unresolved backend"))?;
        Ok(Arc::new(route::Route {
            name: Arc::from(name),
            certificate: t.certificate.clone(),
            profile: self.config.profiles[&t.profile].clone(),
            tls,
            backend_slots: backend.max_connections.map(|n| {
                self.backend_slots
                    .entry(backend.name.clone())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(n)))
                    .clone()
            }),
            upstream: crate::proxy::backend_peer(backend),
            backend: Arc::new(backend.clone()),
            require_mac_match: t.require_mac_match,
            identity: self.identity.clone(),
            access: t.access.clone(),
            server_name: t
                .certificate
                .as_ref()
                .and_then(|c| self.certificates.get(c))
                .and_then(|c| c.chain.first())
                .and_then(|leaf| crate::tls::certs::common_name(leaf))
                .and_then(|cn| cn.split('/').next().map(str::to_string))
                .filter(|name| !name.is_empty()),
        }))
    }
}

impl Snapshot {
    pub fn build(config: Config) -> Result<Snapshot, ConfigError> {
        let mut certificates = BTreeMap::new();
        for (name, spec) in &config.certificates {
            let cert = LoadedCert::load(spec).map_err(|e| {
                ConfigError::invalid(&config.file, format!("certificates.{name}"), e)
            })?;
            certificates.insert(name.clone(), Arc::new(cert));
        }
        // Compiled once, by the config validation.
        let mac_path = config.identity.mac_path().clone();
        let mut b = Builder {
            config: &config,
            certificates,
            verifiers: HashMap::new(),
            contexts: HashMap::new(),
            backend_slots: HashMap::new(),
            identity: Arc::new(IdentityPolicy {
                headers: config.identity.headers.clone(),
                forward_chain: config.identity.forward_chain,
                mac_path,
                preset: config.identity.preset,
                dn_format: config.identity.dn_format,
                strip_request_headers: config.identity.strip_request_headers.clone(),
            }),
        };
        let mut listeners = HashMap::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let key = format!("listeners[{i}]");
            let default = b.route(&key, &l.name, &l.defaults)?;
            let mut routes = Vec::new();
            for (j, r) in l.routes.iter().enumerate() {
                let rt = b.route(&format!("{key}.routes[{j}]"), &r.name, &r.target)?;
                routes.push((r.matches.clone(), rt));
            }
            listeners.insert(
                l.name.clone(),
                Arc::new(route::Listener {
                    name: Arc::from(l.name.as_str()),
                    config: l.clone(),
                    routes,
                    default,
                }),
            );
        }
        let certificates = b.certificates;
        Ok(Snapshot {
            config,
            certificates,
            listeners,
        })
    }

    /// Read, validate and build in one go: what `run`, `check` and reload all do.
    pub fn load(file: &Path) -> Result<Snapshot, ConfigError> {
        Snapshot::build(Config::load(file)?)
    }
}
