//! The YAML as written by the operator: serde types that mirror the file one to one.
//!
//! Nothing here is checked beyond its shape (`deny_unknown_fields` catches typos); the
//! conversion into [`super::Config`] does the semantic checks and names the key at fault.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    pub certificates: BTreeMap<String, RawCertificate>,
    #[serde(default)]
    pub tls_profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub reload: Option<RawReload>,
    /// One line per request (see [`crate::access_log`]).
    #[serde(default)]
    pub access_log: Option<crate::access_log::AccessLogConfig>,
}

/// Process-wide resource limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Absent: what the open-file limit allows (see `admission.rs`).
    pub max_connections: Option<usize>,
    /// At a connection limit: `wait` (stop accepting; the kernel's listen queue holds the
    /// rest) or `close` (accept and close at once).
    #[serde(default)]
    pub on_limit: Option<OnLimit>,
    /// TLS handshakes (with their ClientHello sniff) in progress at once, process-wide.
    pub max_handshakes: Option<usize>,
    /// Idle keep-alive backend connections kept, process-wide (pingora's pool).
    pub backend_idle_pool: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keepalive_timeout: Option<Duration>,
    pub max_request_headers: Option<usize>,
    pub max_request_header_bytes: Option<usize>,
    pub max_request_body_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    #[serde(default)]
    pub watch: bool,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

/// What an accept loop does at `limits.max_connections` or a listener's `max_connections`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLimit {
    /// Stop accepting until a connection ends; the kernel's listen queue holds the rest.
    #[default]
    Wait,
    /// Accept and close at once (counted in `provgate_refused_connections_total`).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Any,
}

/// Client-certificate verification, per listener and overridable per route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub mode: ClientAuthMode,
    #[serde(default)]
    pub ca: Option<OneOrMany<PathBuf>>,
    #[serde(default)]
    pub verify_level: Option<VerifyLevel>,
    /// Accept device certificates outside their validity dates (chain and signatures checked).
    #[serde(default)]
    pub allow_expired: bool,
    /// Certificate serials (hex) refused; values, not strings, so a YAML number is reported.
    #[serde(default)]
    pub deny_serials: Option<Vec<serde_yaml::Value>>,
    /// When set, only these certificate serials (hex) are admitted.
    #[serde(default)]
    pub allow_serials: Option<Vec<serde_yaml::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLevel {
    /// Accept SHA-1/MD5 signatures and 1024-bit keys (the devices' certificates).
    Legacy,
    /// OpenSSL's defaults (security level 1).
    Strict,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Names of the identity headers and related settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub headers: RawIdentityHeaders,
    /// Also forward the presented intermediates as RFC 9440 `Client-Cert-Chain`.
    #[serde(default)]
    pub forward_chain: Option<bool>,
    /// Regex whose first capture group is the MAC in a request path.
    #[serde(default)]
    pub mac_path_pattern: Option<String>,
    /// Which ecosystem's header names and value formats to emit.
    #[serde(default)]
    pub preset: Option<crate::identity_headers::Preset>,
    #[serde(default)]
    pub dn_format: Option<crate::identity_headers::DnFormat>,
    /// More client-sent header names to remove, beyond the built-in families.
    #[serde(default)]
    pub strip_request_headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    pub verify: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub fingerprint: Option<String>,
    pub not_after: Option<String>,
    pub cert: Option<String>,
    pub cert_chain: Option<String>,
    pub mac: Option<String>,
    pub device_serial: Option<String>,
    pub product: Option<String>,
    pub generic: Option<String>,
}

/// The admin listener (`/healthz`, `/readyz`, `/metrics`, `/fingerprints`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
    /// Client addresses/CIDRs allowed to connect; empty or absent: any.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Show MACs and serials in `/fingerprints` User-Agents (masked by default).
    #[serde(default)]
    pub show_device_ids: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: String,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// Host header for requests that carry none (HTTP/1.0).
    #[serde(default)]
    pub host: Option<String>,
    /// Requests in flight to this backend at most; more wait in a FIFO queue.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// How long a request may wait for a backend connection before it gets 503.
    #[serde(default, with = "humantime_serde")]
    pub queue_timeout: Option<Duration>,
    /// An idle pooled connection to this backend is closed after this.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub chain: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    #[serde(default)]
    pub ciphers: Option<String>,
    #[serde(default)]
    pub dh_bits: Option<u32>,
    #[serde(default)]
    pub dh_group: Option<DhGroup>,
    /// A PEM file with the operator's own DH group (nginx's `ssl_dhparam`), replacing the
    /// built-in one; relative to the config file's folder.
    #[serde(default)]
    pub dh_params: Option<PathBuf>,
    /// Session tickets: `on` (the default) or `off`.
    #[serde(default)]
    pub session_tickets: Option<OnOff>,
}

/// A switch written `on` or `off` (YAML booleans are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OnOff;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("on or off")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<OnOff, E> {
                Ok(if v { OnOff::On } else { OnOff::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OnOff, E> {
                match v {
                    "on" => Ok(OnOff::On),
                    "off" => Ok(OnOff::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Which fixed 1024-bit DH group the legacy engine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DhGroup {
    /// RFC 2409 Oakley group 2: a safe prime, what Apache 2.2-era servers sent the devices.
    Rfc2409,
    /// RFC 5114 section 2.1: a 160-bit prime-order subgroup, so OpenSSL uses 160-bit private
    /// exponents and a DHE handshake costs the server far less.
    Rfc5114,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub bind: Vec<String>,
    /// Required unless `tls: plain`.
    #[serde(default)]
    pub certificate: Option<String>,
    /// A TLS profile name, or `plain` for HTTP without TLS.
    #[serde(default)]
    pub tls: Option<String>,
    pub backend: String,
    /// Everything before the HTTP phase (hello sniff and TLS handshake) must finish within this.
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
    #[serde(default)]
    pub require_mac_match: Option<bool>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// The kernel's queue of connections not yet accepted (capped by net.core.somaxconn).
    #[serde(default)]
    pub listen_backlog: Option<u32>,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// The IPv4 addresses devices connect to when they are not the bound ones (NAT, a PROXY
    /// protocol load balancer); `check` accepts a CN resolving to one of them.
    #[serde(default)]
    pub public_addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: RawMatch,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
    #[serde(default)]
    pub require_mac_match: Option<bool>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub local: Vec<String>,
    #[serde(default)]
    pub sni: Vec<String>,
    #[serde(default)]
    pub source: Vec<String>,
    #[serde(default)]
    pub client_hello: Option<RawHelloMatch>,
}

/// Tests on the sniffed ClientHello (old devices send no SNI; their hellos tell them apart).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelloMatch {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    #[serde(default)]
    pub ja4: Vec<String>,
    #[serde(default)]
    pub offers_cipher: Vec<String>,
}
