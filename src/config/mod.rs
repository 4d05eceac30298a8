//! Configuration: the YAML file -> a validated [`Config`]. This file is the public API
//! ([`Config::load`], [`Config::from_yaml`]) and re-exports every type; the layers are:
//!
//! ```text
//! config.yaml (text)
//!    │  serde (serde_path_to_error names the key of a shape error)
//!    ▼
//! raw.rs       RawConfig: the file's shape, nothing more; unknown keys (typos) fail
//!    │  validate/  every semantic check, in file order: mod.rs (the sections, shared
//!    │             checks), profiles.rs (tls_profiles), listeners.rs (listeners, routes)
//!    ▼
//! model.rs     Config: names known to exist, defaults filled in, paths absolute
//! tls.rs       the TLS vocabulary it uses (versions, engines, built-in profiles, ciphers)
//!    │  crate::snapshot: certificates loaded, TLS contexts built, routes compiled
//!    ▼
//! the running proxy
//! ```
//!
//! Every problem becomes one [`ConfigError`] (error.rs) naming the file, the key path (as in
//! `listeners[0].routes[1].match.sni`) and what is wrong. Loading certificates and building TLS
//! contexts happens in [`crate::snapshot`], which reports its failures the same way, so that
//! `provgate check`, start-up and reload all share one validation.

mod error;
mod model;
pub mod raw;
mod tls;
mod validate;

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::ConfigError;
pub use model::serial_key;
pub use model::{
    default_max_handshakes, Access, AdminOptions, Backend, CertificateSpec, ClientAuth, Config,
    HelloMatch, Identity, IdentityHeaders, Limits, Listener, Reload, Route, RouteMatch, SniPattern,
    Target, DEFAULT_ADMIN_HEADER_TIMEOUT, DEFAULT_ADMIN_IDLE_TIMEOUT,
    DEFAULT_ADMIN_MAX_CONNECTIONS, DEFAULT_BACKEND_IDLE_POOL, DEFAULT_BACKEND_IDLE_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_LISTENER_MAX_CONNECTIONS,
    DEFAULT_LISTEN_BACKLOG, DEFAULT_MAC_PATH_PATTERN, DEFAULT_MAX_HANDSHAKES_CAP,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_READ_TIMEOUT,
};
pub use raw::{ClientAuthMode, DhGroup, OnLimit, ProxyProtocol, VerifyLevel};
pub use tls::{
    cipher_code, DhParams, EngineKind, Profile, TlsVersion, DH_GROUP_BITS, LEGACY_CIPHERS,
    MAX_LEGACY_DH_BITS, PLAIN,
};

use raw::RawConfig;

impl Config {
    /// Read and validate a config file (certificates are loaded later, by the snapshot build).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_yaml(file, &text)
    }

    /// Validate YAML text as if it had been read from `file` (relative paths resolve against
    /// `file`'s folder).
    pub fn from_yaml(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = match e.path().to_string() {
                p if p == "." => "(top level)".to_string(),
                p => p,
            };
            ConfigError::invalid(file, key, e.into_inner())
        })?;
        validate::config(file, raw)
    }
}
