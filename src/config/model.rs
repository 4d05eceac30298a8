//! The validated configuration: [`Config`] and the types it is made of (listeners, routes,
//! targets, backends, identity, limits, admin), with their defaults. Names in them are known
//! to exist; TLS profiles are in [`super::tls`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{ClientAuthMode, OnLimit, ProxyProtocol, VerifyLevel};
use super::tls::{Profile, TlsVersion};
use crate::hello::HelloFormat;

/// Default for everything before the HTTP phase of a connection.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Host header for requests that carry none (HTTP/1.0); `None`: the SNI, else the CN of
    /// the certificate the route presented, else the backend address.
    pub host: Option<String>,
    /// Requests in flight to the backend at most (so connections to it at most); `None`:
    /// bounded only by the connection limits. More wait in arrival order.
    pub max_connections: Option<usize>,
    /// A request waiting for one of `max_connections` gets 503 (with Retry-After) after this.
    pub queue_timeout: Duration,
    /// An idle pooled (keep-alive) connection to the backend is closed after this, before a
    /// backend's own keep-alive timeout can close it under a request.
    pub idle_timeout: Duration,
}

/// Default `backends.<name>.idle_timeout`: below Apache's default `KeepAliveTimeout` (5 s),
/// the shortest common backend keep-alive, so a pooled connection is never reused just as the
/// backend closes it.
pub const DEFAULT_BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Default `backends.<name>.queue_timeout`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    pub name: String,
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// A name pattern for SNI: an exact host name or `*.suffix` (one label, as in certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPattern {
    Exact(String),
    Wildcard(String),
}

impl SniPattern {
    pub fn matches(&self, sni: &str) -> bool {
        match self {
            SniPattern::Exact(name) => name.eq_ignore_ascii_case(sni),
            SniPattern::Wildcard(suffix) => sni.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
            }),
        }
    }
}

impl fmt::Display for SniPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPattern::Exact(n) => f.write_str(n),
            SniPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// What a route matches on. Every non-empty list must match (AND); within a list, any entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub local: Vec<IpNet>,
    pub sni: Vec<SniPattern>,
    pub source: Vec<IpNet>,
    pub client_hello: Option<HelloMatch>,
}

/// ClientHello traits a route can require; every given test must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelloMatch {
    pub format: Option<HelloFormat>,
    /// The highest version offered is at most this.
    pub max_version: Option<TlsVersion>,
    /// Any of these exact JA4 strings.
    pub ja4: Vec<String>,
    /// Offers any of these suites (IANA codes).
    pub offers_cipher: Vec<u16>,
}

/// Client-certificate verification for a listener or route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// PEM files with the trusted roots (and intermediates); empty when `mode` is off.
    pub ca: Vec<PathBuf>,
    pub verify_level: VerifyLevel,
    /// Ignore the validity dates of the device certificate and its chain (`allow_expired`).
    pub allow_expired: bool,
    /// Refused certificate serials, as [`serial_key`] spells them.
    pub deny_serials: Vec<String>,
    /// When `Some`, only these certificate serials ([`serial_key`]) are admitted.
    pub allow_serials: Option<Vec<String>>,
}

impl ClientAuth {
    pub const OFF: ClientAuth = ClientAuth {
        mode: ClientAuthMode::Off,
        ca: Vec::new(),
        verify_level: VerifyLevel::Legacy,
        allow_expired: false,
        deny_serials: Vec::new(),
        allow_serials: None,
    };
}

/// A certificate serial in hex (`0A:1B:2C`, `0a1b2c`, `00:0a:1b:2c`) as lower-case hex digits
/// without colons or leading zeros, the one spelling lists and certificates are compared in;
/// `None` when it is not hex.
pub fn serial_key(hex: &str) -> Option<String> {
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed
    })
}

/// Certificate, profile, backend and device checks for a connection (names into [`Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `None` on plain-HTTP listeners.
    pub certificate: Option<String>,
    pub profile: String,
    pub backend: String,
    pub client_auth: ClientAuth,
    /// Refuse (403) a request whose path holds a MAC other than the certificate's.
    pub require_mac_match: bool,
    /// A route's own source allow/deny lists (checked before its TLS handshake).
    pub access: Access,
}

/// Header names for what the backend learns about the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub verify: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint: String,
    pub not_after: String,
    pub cert: String,
    pub cert_chain: String,
    pub mac: String,
    pub device_serial: String,
    pub product: String,
    pub generic: String,
}

impl IdentityHeaders {
    /// Every name, for stripping client-sent copies.
    pub fn all(&self) -> [&str; 12] {
        [
            &self.verify,
            &self.subject,
            &self.issuer,
            &self.serial,
            &self.fingerprint,
            &self.not_after,
            &self.cert,
            &self.cert_chain,
            &self.mac,
            &self.device_serial,
            &self.product,
            &self.generic,
        ]
    }
}

/// Default pattern for a MAC in a provisioning path: `/spa000e08abcdef.cfg`,
/// `/profiles/000E08ABCDEF.xml`, ... (12 hex digits ending the file name).
pub const DEFAULT_MAC_PATH_PATTERN: &str =
    r"(?i)(?:^|/)(?:spa|cp|ata)?([0-9a-f]{12})\.(?:cfg|xml)$";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub headers: IdentityHeaders,
    pub forward_chain: bool,
    /// As configured, or [`DEFAULT_MAC_PATH_PATTERN`]; compiled: [`Identity::mac_path`].
    pub mac_path_pattern: String,
    /// `mac_path_pattern`, compiled once by the validator.
    pub(super) mac_path: MacPath,
    pub preset: crate::identity_headers::Preset,
    pub dn_format: crate::identity_headers::DnFormat,
    /// Operator-named client headers to remove (lower-case), beyond the built-in families.
    pub strip_request_headers: Vec<String>,
}

impl Identity {
    /// The compiled `mac_path_pattern` (checked to have a capture group around the MAC).
    pub fn mac_path(&self) -> &regex::Regex {
        &self.mac_path.0
    }
}

/// A compiled MAC path pattern; equal when the pattern texts are (`Regex` has no `PartialEq`).
#[derive(Clone)]
pub(super) struct MacPath(pub(super) regex::Regex);

impl PartialEq for MacPath {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for MacPath {}

impl fmt::Debug for MacPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `listener/name` or `listener/routes[i]`; used in logs and as a metric label.
    pub name: String,
    pub matches: RouteMatch,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bind: Vec<SocketAddr>,
    /// `tls: plain`: HTTP without TLS; routes match on local and source address only.
    pub plain: bool,
    pub defaults: Target,
    pub routes: Vec<Route>,
    pub handshake_timeout: Duration,
    /// Open connections allowed on this listener (all its addresses); at the limit the
    /// listener waits or closes, as `limits.on_limit` says.
    pub max_connections: usize,
    /// listen(2) backlog of each of its sockets.
    pub listen_backlog: u32,
    pub proxy_protocol: ProxyProtocol,
    /// Peers allowed to send a PROXY header.
    pub trusted_proxies: Vec<IpNet>,
    /// Client addresses checked before TLS (after PROXY protocol).
    pub access: Access,
    /// `public_addresses`: where devices connect when that is not a bound address (NAT, a
    /// PROXY-protocol load balancer); what a certificate's CN may resolve to.
    pub public_addresses: Vec<std::net::Ipv4Addr>,
}

/// Source allow/deny lists: deny wins; a non-empty allow list admits only its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Access {
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

pub const DEFAULT_LISTENER_MAX_CONNECTIONS: usize = 5_000;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// Default `limits.backend_idle_pool` (pingora's own default pool size).
pub const DEFAULT_BACKEND_IDLE_POOL: usize = 128;

/// `limits.max_handshakes` is at most this by default, however many cores.
pub const DEFAULT_MAX_HANDSHAKES_CAP: usize = 512;

/// `limits.max_handshakes` by default: 64 per available core, at most
/// [`DEFAULT_MAX_HANDSHAKES_CAP`].
pub fn default_max_handshakes() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_mul(64).min(DEFAULT_MAX_HANDSHAKES_CAP)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections allowed in total, as configured; `None`: what the open-file limit
    /// allows. Either way it is capped at start by the descriptors (`admission.rs`).
    pub max_connections: Option<usize>,
    /// At a connection limit: stop accepting (`wait`) or accept and close (`close`).
    pub on_limit: OnLimit,
    /// TLS handshakes in progress at once, process-wide (first come, first served).
    pub max_handshakes: usize,
    /// Idle keep-alive backend connections kept, process-wide (pingora's connection pool is
    /// one LRU for all backends); at least 1. Counted in the descriptor reserve.
    pub backend_idle_pool: usize,
    /// The request line and headers must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    pub max_request_headers: usize,
    pub max_request_header_bytes: usize,
    pub max_request_body_bytes: u64,
    /// How long in-flight requests get on SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            on_limit: OnLimit::Wait,
            max_handshakes: default_max_handshakes(),
            backend_idle_pool: DEFAULT_BACKEND_IDLE_POOL,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_request_headers: 100,
            max_request_header_bytes: 16 * 1024,
            max_request_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    pub watch: bool,
    pub interval: Duration,
}

pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin listener's settings besides `admin.listen` (defaults without an `admin:`
/// section); see `admin.rs` for how the limits apply. All are read at start only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// Clients allowed to connect (empty: any); others are closed before a byte is read.
    pub allow: Vec<IpNet>,
    /// Open admin connections at most; more are accepted and closed at once.
    pub max_connections: usize,
    /// A request line and headers must arrive within this (from accept, or from the first
    /// byte of a later request on a keep-alive connection).
    pub header_timeout: Duration,
    /// A connection with no request in progress (or whose peer stops reading) is closed
    /// after this.
    pub idle_timeout: Duration,
    /// `/fingerprints` shows User-Agents unmasked (MACs and serials).
    pub show_device_ids: bool,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            allow: Vec::new(),
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            header_timeout: DEFAULT_ADMIN_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_ADMIN_IDLE_TIMEOUT,
            show_device_ids: false,
        }
    }
}

impl AdminOptions {
    /// Whether a client address may use the admin port (IPv4-mapped IPv6 counts as IPv4).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// A validated configuration. Names used by listeners and routes are known to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    /// Where the admin listener binds (`admin.listen`); none: no admin listener.
    pub admin: Option<SocketAddr>,
    /// The rest of the `admin:` section.
    pub admin_options: AdminOptions,
    pub backends: BTreeMap<String, Backend>,
    pub certificates: BTreeMap<String, CertificateSpec>,
    pub profiles: BTreeMap<String, Profile>,
    pub listeners: Vec<Listener>,
    pub identity: Identity,
    pub limits: Limits,
    pub reload: Reload,
    pub access_log: crate::access_log::AccessLogConfig,
}
