//! Configuration: YAML ([`raw`]) -> validated [`Config`].
//!
//! Every problem becomes one [`ConfigError`] naming the file, the key path (as in
//! `listeners[0].routes[1].match.sni`) and what is wrong. Loading certificates and building TLS
//! contexts happens in [`crate::snapshot`], which reports its failures the same way, so that
//! `provgate check`, start-up and reload all share one validation.

pub mod raw;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::hello::HelloFormat;

pub use raw::{ClientAuthMode, DhGroup, ProxyProtocol, VerifyLevel};
use raw::{RawClientAuth, RawConfig, RawIdentity, RawListener, RawProfile, RawRoute};

/// Default for everything before the HTTP phase of a connection.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(file: &Path, key: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::Invalid {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// A TLS protocol version as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 5] = [
        TlsVersion::Ssl3,
        TlsVersion::Tls10,
        TlsVersion::Tls11,
        TlsVersion::Tls12,
        TlsVersion::Tls13,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "ssl3",
            TlsVersion::Tls10 => "tls1.0",
            TlsVersion::Tls11 => "tls1.1",
            TlsVersion::Tls12 => "tls1.2",
            TlsVersion::Tls13 => "tls1.3",
        }
    }

    /// The version's wire code (0x0300 for SSLv3 ... 0x0304 for TLS 1.3).
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Ssl3 => 0x0300,
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which TLS implementation a profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// OpenSSL (vendored 3.x) at security level 0: SSLv3 (when listed) up to TLS 1.2.
    Legacy,
    /// rustls: TLS 1.2 and 1.3.
    Modern,
    /// Per connection: rustls when the ClientHello and the key allow it, else OpenSSL.
    Auto,
    /// No TLS: the listener speaks HTTP (`tls: plain`; firmware and encrypted profiles).
    Plain,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Legacy => "legacy",
            EngineKind::Modern => "modern",
            EngineKind::Auto => "auto",
            EngineKind::Plain => "plain",
        }
    }
}

/// Cipher order for the legacy engine: RSA key exchange first (old devices list DHE first and
/// fail on large groups), then DHE with the fixed group, then 3DES (RSA, then DHE: 0x000a,
/// 0x0016); modern suites last, for TLS 1.2 clients that land on a legacy listener. OpenSSL 3
/// names only: OpenSSL ignores unknown names silently (the pre-1.1.0 `EDH-RSA-DES-CBC3-SHA`
/// once left 0x0016 out), which `cipher_names_are_openssl3_names` guards against.
pub const LEGACY_CIPHERS: &str = "AES256-SHA:AES128-SHA:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:\
DES-CBC3-SHA:DHE-RSA-DES-CBC3-SHA:AES256-GCM-SHA384:AES128-GCM-SHA256:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-GCM-SHA256";

/// The DH group the legacy engine uses by default: PAP2T and SPA5xx < 7.5.2b fail above it.
pub const MAX_LEGACY_DH_BITS: u32 = 1024;
/// Fixed DH group sizes a profile may name (0 = no DHE). 2048 is there for operators whose
/// devices on a route all cope with it; `check` warns about anything above 1024.
pub const DH_GROUP_BITS: [u32; 3] = [0, 1024, 2048];

/// The profile name that turns TLS off on a listener.
pub const PLAIN: &str = "plain";

/// A resolved TLS profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub engine: EngineKind,
    pub versions: BTreeSet<TlsVersion>,
    /// OpenSSL cipher string for the legacy engine (ignored by rustls).
    pub ciphers: String,
    /// 0 = no DHE; otherwise the fixed DH group size used by the legacy engine.
    pub dh_bits: u32,
    /// Which 1024-bit group (`dh_bits: 1024` only; ignored when `dh_params` is set).
    pub dh_group: DhGroup,
    /// The operator's own DH group (`dh_params: FILE`) instead of the built-in one.
    pub dh_params: Option<DhParams>,
    /// Session tickets: RFC 5077 tickets on OpenSSL (TLS 1.0-1.2), TLS 1.3 tickets on rustls.
    /// On by default (what both libraries do unless told otherwise).
    pub session_tickets: bool,
}

/// A DH group from an operator's PEM file, checked when the config was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct DhParams {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
    /// The file as read (public parameters only).
    pub pem: Vec<u8>,
    /// Size of the prime.
    pub bits: u32,
}

impl fmt::Debug for DhParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhParams")
            .field("path", &self.path)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl Profile {
    fn builtin(name: &str) -> Option<Profile> {
        use TlsVersion::*;
        let (engine, versions): (EngineKind, &[TlsVersion]) = match name {
            "legacy" => (EngineKind::Legacy, &[Tls10, Tls11, Tls12]),
            "modern" => (EngineKind::Modern, &[Tls12, Tls13]),
            "auto" => (EngineKind::Auto, &[Tls10, Tls11, Tls12, Tls13]),
            PLAIN => (EngineKind::Plain, &[]),
            _ => return None,
        };
        Some(Profile {
            name: name.to_string(),
            engine,
            versions: versions.iter().copied().collect(),
            ciphers: LEGACY_CIPHERS.to_string(),
            dh_bits: MAX_LEGACY_DH_BITS,
            dh_group: DhGroup::Rfc2409,
            dh_params: None,
            session_tickets: true,
        })
    }

    /// Versions the legacy (OpenSSL) side serves: everything up to TLS 1.2.
    pub fn legacy_versions(&self) -> BTreeSet<TlsVersion> {
        let mut v = self.versions.clone();
        v.remove(&TlsVersion::Tls13);
        v
    }

    /// Versions the modern (rustls) side serves: TLS 1.2 and 1.3.
    pub fn modern_versions(&self) -> BTreeSet<TlsVersion> {
        self.versions
            .iter()
            .copied()
            .filter(|v| *v >= TlsVersion::Tls12)
            .collect()
    }

    /// Whether the profile's cipher string names RC4 (needs OpenSSL's legacy provider).
    pub fn wants_rc4(&self) -> bool {
        self.ciphers.to_ascii_uppercase().contains("RC4")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Host header for requests that carry none (HTTP/1.0); `None`: the SNI, else the CN of
    /// the certificate the route presented, else the backend address.
    pub host: Option<String>,
}

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
}

impl ClientAuth {
    pub const OFF: ClientAuth = ClientAuth {
        mode: ClientAuthMode::Off,
        ca: Vec::new(),
        verify_level: VerifyLevel::Legacy,
    };
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
    pub mac_path_pattern: String,
    pub preset: crate::identity_headers::Preset,
    pub dn_format: crate::identity_headers::DnFormat,
    /// Operator-named client headers to remove (lower-case), beyond the built-in families.
    pub strip_request_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `listener/name` or `listener/routes[i]`; used in logs and (later) metrics.
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
    /// Open connections allowed on this listener (all its addresses); more are closed at once.
    pub max_connections: usize,
    pub proxy_protocol: ProxyProtocol,
    /// Peers allowed to send a PROXY header.
    pub trusted_proxies: Vec<IpNet>,
    /// Client addresses checked before TLS (after PROXY protocol).
    pub access: Access,
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

pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_LISTENER_MAX_CONNECTIONS: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections allowed in total.
    pub max_connections: usize,
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
            max_connections: DEFAULT_MAX_CONNECTIONS,
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
/// section); see [`crate::admin`] for how the limits apply. All are read at start only.
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
        Validator { file }.config(raw)
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
        ConfigError::invalid(self.file, key, message)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let (admin, admin_options) = match raw.admin {
            Some(a) => {
                let (listen, options) = self.admin(a)?;
                (Some(listen), options)
            }
            None => (None, AdminOptions::default()),
        };

        let mut backends = BTreeMap::new();
        for (name, b) in raw.backends {
            let key = format!("backends.{name}");
            let address = self.resolve(&format!("{key}.address"), &b.address)?;
            backends.insert(
                name.clone(),
                Backend {
                    name,
                    address,
                    connect_timeout: self.positive(
                        &format!("{key}.connect_timeout"),
                        b.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                    )?,
                    read_timeout: self.positive(
                        &format!("{key}.read_timeout"),
                        b.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
                    )?,
                    host: match b.host {
                        Some(h) if h.is_empty() || http::HeaderValue::from_str(&h).is_err() => {
                            return Err(self.err(
                                format!("{key}.host"),
                                format!("{h:?} is not a valid Host header value"),
                            ))
                        }
                        h => h,
                    },
                },
            );
        }

        let base_dir = self.file.parent().unwrap_or(Path::new("."));
        let certificates = raw
            .certificates
            .into_iter()
            .map(|(name, c)| {
                let spec = CertificateSpec {
                    name: name.clone(),
                    chain: base_dir.join(c.chain),
                    key: base_dir.join(c.key),
                };
                (name, spec)
            })
            .collect();

        let profiles = self.profiles(&raw.tls_profiles)?;
        let identity = self.identity(raw.identity.unwrap_or_default())?;
        let limits = self.limits(raw.limits.unwrap_or_default())?;
        let reload = {
            let r = raw.reload.unwrap_or_default();
            Reload {
                watch: r.watch,
                interval: self.positive(
                    "reload.interval",
                    r.interval.unwrap_or(Duration::from_secs(2)),
                )?,
            }
        };

        let mut cfg = Config {
            file: self.file.to_path_buf(),
            admin,
            admin_options,
            backends,
            certificates,
            profiles,
            listeners: Vec::new(),
            identity,
            limits,
            reload,
            access_log: {
                let mut log = raw.access_log.unwrap_or_default();
                if let crate::access_log::Target::File(path) = &log.target {
                    log.target = crate::access_log::Target::File(base_dir.join(path));
                }
                log
            },
        };

        if raw.listeners.is_empty() {
            return Err(self.err("listeners", "at least one listener is required"));
        }
        let mut names = HashSet::new();
        let mut binds: BTreeMap<SocketAddr, String> = BTreeMap::new();
        if let Some(admin) = cfg.admin.filter(|a| a.port() != 0) {
            binds.insert(admin, "admin.listen".to_string());
        }
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let key = format!("listeners[{i}]");
            if !names.insert(l.name.clone()) {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("duplicate listener name '{}'", l.name),
                ));
            }
            let listener = self.listener(&key, l, &cfg)?;
            for (j, addr) in listener.bind.iter().enumerate() {
                let here = format!("{key}.bind[{j}]");
                // Port 0 asks the OS for a fresh port each time, so it cannot collide.
                if addr.port() == 0 {
                    continue;
                }
                if let Some(other) = binds.insert(*addr, here.clone()) {
                    return Err(self.err(
                        here,
                        format!("duplicate bind address {addr} (also used by {other})"),
                    ));
                }
            }
            cfg.listeners.push(listener);
        }
        Ok(cfg)
    }

    fn profiles(
        &self,
        raw: &BTreeMap<String, RawProfile>,
    ) -> Result<BTreeMap<String, Profile>, ConfigError> {
        if raw.contains_key(PLAIN) {
            return Err(self.err(
                format!("tls_profiles.{PLAIN}"),
                "'plain' is reserved (tls: plain means HTTP without TLS); pick another name",
            ));
        }
        let mut out: BTreeMap<String, Profile> = ["legacy", "modern", "auto", PLAIN]
            .into_iter()
            .filter_map(Profile::builtin)
            .map(|p| (p.name.clone(), p))
            .collect();
        for name in raw.keys() {
            let p = self.resolve_profile(name, raw, &mut Vec::new())?;
            out.insert(name.clone(), p);
        }
        Ok(out)
    }

    fn resolve_profile(
        &self,
        name: &str,
        raw: &BTreeMap<String, RawProfile>,
        seen: &mut Vec<String>,
    ) -> Result<Profile, ConfigError> {
        let key = format!("tls_profiles.{name}");
        let Some(rp) = raw.get(name) else {
            return Profile::builtin(name)
                .ok_or_else(|| self.err(&key, format!("unknown TLS profile '{name}'")));
        };
        if seen.iter().any(|s| s == name) {
            return Err(self.err(
                format!("{key}.base"),
                format!(
                    "profiles inherit in a loop: {} -> {name}",
                    seen.join(" -> ")
                ),
            ));
        }
        seen.push(name.to_string());
        let base_name = rp.base.as_deref().unwrap_or("legacy");
        if base_name == PLAIN {
            return Err(self.err(
                format!("{key}.base"),
                "plain is not a TLS profile to build on; write tls: plain on the listener",
            ));
        }
        let mut p = if raw.contains_key(base_name) {
            self.resolve_profile(base_name, raw, seen)?
        } else {
            Profile::builtin(base_name).ok_or_else(|| {
                self.err(
                    format!("{key}.base"),
                    format!(
                        "unknown base profile '{base_name}' (built-ins: legacy, modern, auto; \
                         or a profile defined under tls_profiles)"
                    ),
                )
            })?
        };
        p.name = name.to_string();
        if let Some(vs) = &rp.versions {
            let mut set = BTreeSet::new();
            for (i, v) in vs.iter().enumerate() {
                let parsed = TlsVersion::parse(v).ok_or_else(|| {
                    self.err(
                        format!("{key}.versions[{i}]"),
                        format!("unknown version '{v}' (use ssl3, tls1.0, tls1.1, tls1.2, tls1.3)"),
                    )
                })?;
                set.insert(parsed);
            }
            if set.is_empty() {
                return Err(self.err(format!("{key}.versions"), "lists no version"));
            }
            p.versions = set;
        }
        if let Some(c) = &rp.ciphers {
            if c.trim().is_empty() {
                return Err(self.err(format!("{key}.ciphers"), "is empty"));
            }
            p.ciphers = c.clone();
        }
        if let Some(bits) = rp.dh_bits {
            p.dh_bits = bits;
        }
        self.dh_settings(&key, rp, &mut p)?;
        if let Some(t) = rp.session_tickets {
            p.session_tickets = t.is_on();
        }
        self.check_profile(&key, &p)?;
        if rp.ciphers.is_some() && matches!(p.engine, EngineKind::Legacy | EngineKind::Auto) {
            for issue in crate::tls::legacy::cipher_issues(&p.ciphers) {
                tracing::warn!(
                    key = %format!("{key}.ciphers"),
                    "{}: {issue}",
                    self.file.display()
                );
            }
        }
        Ok(p)
    }

    /// `dh_group` and `dh_params` (the more specific profile wins over its base; one profile
    /// may not name both). The file must hold a group no larger than `dh_bits` allows (1024 by
    /// default, 2048 with `dh_bits: 2048`) and of at least 1024 bits.
    fn dh_settings(&self, key: &str, rp: &RawProfile, p: &mut Profile) -> Result<(), ConfigError> {
        if let (Some(_), Some(_)) = (rp.dh_group, &rp.dh_params) {
            return Err(self.err(
                format!("{key}.dh_group"),
                "dh_group picks a built-in group and dh_params names your own; keep one",
            ));
        }
        if let Some(group) = rp.dh_group {
            p.dh_group = group;
            p.dh_params = None;
        }
        if let Some(file) = &rp.dh_params {
            let dh_key = format!("{key}.dh_params");
            if p.dh_bits == 0 {
                return Err(self.err(
                    dh_key,
                    "dh_bits is 0 (no DHE), so no DH group is used; remove one of them",
                ));
            }
            let path = self.file.parent().unwrap_or(Path::new(".")).join(file);
            let pem = std::fs::read(&path)
                .map_err(|e| self.err(&dh_key, format!("cannot read {}: {e}", path.display())))?;
            let bits = crate::tls::legacy::dh_params_bits(&pem)
                .map_err(|e| self.err(&dh_key, format!("{}: {e}", path.display())))?;
            p.dh_params = Some(DhParams { path, pem, bits });
        } else if p.dh_bits == 0 {
            // An inherited file is dropped with DHE.
            p.dh_params = None;
        }
        if let Some(own) = &p.dh_params {
            let at = if rp.dh_params.is_some() {
                format!("{key}.dh_params")
            } else {
                format!("{key}.dh_bits")
            };
            if own.bits < MAX_LEGACY_DH_BITS {
                return Err(self.err(
                    at,
                    format!(
                        "{} holds a {}-bit group, weaker than the built-in {MAX_LEGACY_DH_BITS}-bit \
                         ones; use at least {MAX_LEGACY_DH_BITS} bits",
                        own.path.display(),
                        own.bits
                    ),
                ));
            }
            if own.bits > p.dh_bits {
                return Err(self.err(
                    at,
                    format!(
                        "{} holds a {}-bit group but dh_bits is {} (old devices fail above \
                         {MAX_LEGACY_DH_BITS}); set dh_bits: 2048 to serve it anyway",
                        own.path.display(),
                        own.bits,
                        p.dh_bits
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_profile(&self, key: &str, p: &Profile) -> Result<(), ConfigError> {
        match p.engine {
            EngineKind::Legacy => {
                if p.versions.contains(&TlsVersion::Tls13) {
                    return Err(self.err(
                        format!("{key}.versions"),
                        "tls1.3 is not served by the legacy engine (OpenSSL here serves \
                         ssl3..tls1.2); use base: auto to add rustls for TLS 1.3 clients",
                    ));
                }
            }
            EngineKind::Modern => {
                if let Some(v) = p.versions.iter().find(|v| **v < TlsVersion::Tls12) {
                    return Err(self.err(
                        format!("{key}.versions"),
                        format!(
                            "{v} is not served by the modern engine (rustls: tls1.2 and tls1.3); \
                             use base: legacy or auto"
                        ),
                    ));
                }
            }
            EngineKind::Auto | EngineKind::Plain => {}
        }
        if p.dh_group == DhGroup::Rfc5114
            && p.dh_params.is_none()
            && p.dh_bits != MAX_LEGACY_DH_BITS
        {
            return Err(self.err(
                format!("{key}.dh_group"),
                format!(
                    "rfc5114 is a {MAX_LEGACY_DH_BITS}-bit group, but dh_bits is {}",
                    p.dh_bits
                ),
            ));
        }
        if !DH_GROUP_BITS.contains(&p.dh_bits) {
            return Err(self.err(
                format!("{key}.dh_bits"),
                format!(
                    "{} is not supported: use 0 (no DHE), {MAX_LEGACY_DH_BITS} (the fixed group \
                     old devices need) or 2048",
                    p.dh_bits
                ),
            ));
        }
        self.check_ciphers(key, p)
    }

    /// A cipher string must leave the legacy engine at least one suite for the profile's
    /// versions on this OpenSSL build; unknown names inside it are warnings only (OpenSSL
    /// strings mix suite names with keywords such as `HIGH` or `!aNULL`).
    fn check_ciphers(&self, key: &str, p: &Profile) -> Result<(), ConfigError> {
        if !matches!(p.engine, EngineKind::Legacy | EngineKind::Auto)
            || p.legacy_versions().is_empty()
        {
            return Ok(());
        }
        let no_dhe = if p.dh_bits == 0 {
            " once DHE is struck (dh_bits: 0)"
        } else {
            ""
        };
        match crate::tls::legacy::effective_suites(p) {
            Ok(suites) if !suites.is_empty() => Ok(()),
            Ok(_) => Err(self.err(
                format!("{key}.ciphers"),
                format!(
                    "'{}' selects no cipher suite that {} can use{no_dhe} on this OpenSSL build",
                    p.ciphers,
                    p.legacy_versions()
                        .iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Err(why) => Err(self.err(
                format!("{key}.ciphers"),
                format!(
                    "OpenSSL selects no cipher suite from '{}'{no_dhe}: {why}",
                    p.ciphers
                ),
            )),
        }
    }

    fn listener(&self, key: &str, l: RawListener, cfg: &Config) -> Result<Listener, ConfigError> {
        if l.bind.is_empty() {
            return Err(self.err(format!("{key}.bind"), "lists no address"));
        }
        let bind = l
            .bind
            .iter()
            .enumerate()
            .map(|(j, b)| self.socket_addr(&format!("{key}.bind[{j}]"), b))
            .collect::<Result<Vec<_>, _>>()?;
        let plain = l.tls.as_deref() == Some(PLAIN);
        if plain {
            self.check_plain(key, &l)?;
        }
        let defaults = Target {
            certificate: match (&l.certificate, plain) {
                (_, true) => None,
                (Some(c), false) => {
                    Some(self.certificate_ref(&format!("{key}.certificate"), c, cfg)?)
                }
                (None, false) => {
                    return Err(self.err(
                        format!("{key}.certificate"),
                        "is required: the server certificate this listener presents \
                         (or tls: plain for HTTP without TLS)",
                    ))
                }
            },
            profile: self.profile_ref(&format!("{key}.tls"), l.tls.as_deref(), cfg)?,
            backend: self.backend_ref(&format!("{key}.backend"), &l.backend, cfg)?,
            client_auth: match l.client_auth {
                Some(ca) => self.client_auth(&format!("{key}.client_auth"), ca)?,
                None => ClientAuth::OFF,
            },
            require_mac_match: l.require_mac_match.unwrap_or(false),
            access: Access::default(),
        };
        let routes = l
            .routes
            .into_iter()
            .enumerate()
            .map(|(j, r)| self.route(&format!("{key}.routes[{j}]"), &l.name, j, r, &defaults, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listener {
            name: l.name,
            bind,
            plain,
            defaults,
            routes,
            handshake_timeout: self.positive(
                &format!("{key}.handshake_timeout"),
                l.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            )?,
            max_connections: match l.max_connections {
                Some(0) => {
                    return Err(self.err(format!("{key}.max_connections"), "must be at least 1"))
                }
                Some(n) => n,
                None => DEFAULT_LISTENER_MAX_CONNECTIONS,
            },
            proxy_protocol: l.proxy_protocol.unwrap_or(ProxyProtocol::Off),
            trusted_proxies: {
                let t = self.cidrs(&format!("{key}.trusted_proxies"), &l.trusted_proxies)?;
                if l.proxy_protocol.is_some_and(|p| p != ProxyProtocol::Off) && t.is_empty() {
                    return Err(self.err(
                        format!("{key}.trusted_proxies"),
                        "is required with proxy_protocol (the load balancers' addresses)",
                    ));
                }
                t
            },
            access: Access {
                allow: self.cidrs(&format!("{key}.allow"), &l.allow)?,
                deny: self.cidrs(&format!("{key}.deny"), &l.deny)?,
            },
        })
    }

    /// A `tls: plain` listener has no certificate, client auth, or TLS-only route matches.
    fn check_plain(&self, key: &str, l: &RawListener) -> Result<(), ConfigError> {
        let no_tls = "a plain listener (tls: plain) serves HTTP without TLS";
        if l.certificate.is_some() {
            return Err(self.err(
                format!("{key}.certificate"),
                format!("{no_tls}; remove the certificate"),
            ));
        }
        if l.client_auth
            .as_ref()
            .is_some_and(|c| c.mode != ClientAuthMode::Off)
        {
            return Err(self.err(
                format!("{key}.client_auth"),
                format!("{no_tls}, so there is no client certificate to verify"),
            ));
        }
        for (j, r) in l.routes.iter().enumerate() {
            let rk = format!("{key}.routes[{j}]");
            let tls_only = [
                ("match.sni", !r.matches.sni.is_empty()),
                ("match.client_hello", r.matches.client_hello.is_some()),
                ("certificate", r.certificate.is_some()),
                ("tls", r.tls.is_some()),
                ("client_auth", r.client_auth.is_some()),
            ];
            if let Some((field, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(self.err(
                    format!("{rk}.{field}"),
                    format!("{no_tls}; routes match on local and source addresses only"),
                ));
            }
        }
        Ok(())
    }

    fn limits(&self, raw: raw::RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let count = |key: &str, v: Option<usize>, default: usize| -> Result<usize, ConfigError> {
            match v {
                Some(0) => Err(self.err(format!("limits.{key}"), "must be at least 1")),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        Ok(Limits {
            max_connections: count("max_connections", raw.max_connections, d.max_connections)?,
            header_timeout: self.positive(
                "limits.header_timeout",
                raw.header_timeout.unwrap_or(d.header_timeout),
            )?,
            keepalive_timeout: self.positive(
                "limits.keepalive_timeout",
                raw.keepalive_timeout.unwrap_or(d.keepalive_timeout),
            )?,
            max_request_headers: count(
                "max_request_headers",
                raw.max_request_headers,
                d.max_request_headers,
            )?,
            max_request_header_bytes: count(
                "max_request_header_bytes",
                raw.max_request_header_bytes,
                d.max_request_header_bytes,
            )?,
            max_request_body_bytes: raw
                .max_request_body_bytes
                .unwrap_or(d.max_request_body_bytes),
            shutdown_grace: raw.shutdown_grace.unwrap_or(d.shutdown_grace),
        })
    }

    fn route(
        &self,
        key: &str,
        listener: &str,
        index: usize,
        r: RawRoute,
        defaults: &Target,
        cfg: &Config,
    ) -> Result<Route, ConfigError> {
        let m = &r.matches;
        let matches = RouteMatch {
            local: self.cidrs(&format!("{key}.match.local"), &m.local)?,
            sni: m
                .sni
                .iter()
                .enumerate()
                .map(|(i, s)| self.sni_pattern(&format!("{key}.match.sni[{i}]"), s))
                .collect::<Result<_, _>>()?,
            source: self.cidrs(&format!("{key}.match.source"), &m.source)?,
            client_hello: m
                .client_hello
                .as_ref()
                .map(|h| self.hello_match(&format!("{key}.match.client_hello"), h))
                .transpose()?,
        };
        let target = Target {
            certificate: match &r.certificate {
                Some(c) => Some(self.certificate_ref(&format!("{key}.certificate"), c, cfg)?),
                None => defaults.certificate.clone(),
            },
            profile: match r.tls.as_deref() {
                Some(PLAIN) => {
                    return Err(self.err(
                        format!("{key}.tls"),
                        "a route cannot turn TLS off; put plain HTTP on its own listener \
                         (tls: plain)",
                    ))
                }
                Some(t) => self.profile_ref(&format!("{key}.tls"), Some(t), cfg)?,
                None => defaults.profile.clone(),
            },
            backend: match &r.backend {
                Some(b) => self.backend_ref(&format!("{key}.backend"), b, cfg)?,
                None => defaults.backend.clone(),
            },
            client_auth: match r.client_auth {
                Some(ca) => self.client_auth(&format!("{key}.client_auth"), ca)?,
                None => defaults.client_auth.clone(),
            },
            require_mac_match: r.require_mac_match.unwrap_or(defaults.require_mac_match),
            access: Access {
                allow: self.cidrs(&format!("{key}.allow"), &r.allow)?,
                deny: self.cidrs(&format!("{key}.deny"), &r.deny)?,
            },
        };
        let name = match r.name {
            Some(n) => format!("{listener}/{n}"),
            None => format!("{listener}/routes[{index}]"),
        };
        Ok(Route {
            name,
            matches,
            target,
        })
    }

    fn client_auth(&self, key: &str, raw: RawClientAuth) -> Result<ClientAuth, ConfigError> {
        let base_dir = self.file.parent().unwrap_or(Path::new("."));
        let ca: Vec<PathBuf> = raw
            .ca
            .map(|c| c.into_vec())
            .unwrap_or_default()
            .into_iter()
            .map(|p| base_dir.join(p))
            .collect();
        if raw.mode != ClientAuthMode::Off && ca.is_empty() {
            return Err(self.err(
                format!("{key}.ca"),
                "is required when mode is optional or required (PEM roots to verify devices against)",
            ));
        }
        Ok(ClientAuth {
            mode: raw.mode,
            ca,
            verify_level: raw.verify_level.unwrap_or(VerifyLevel::Legacy),
        })
    }

    fn identity(&self, raw: RawIdentity) -> Result<Identity, ConfigError> {
        let h = raw.headers;
        let name = |field: &str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_string());
            if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                return Err(self.err(
                    format!("identity.headers.{field}"),
                    format!("'{v}' is not a valid HTTP header name"),
                ));
            }
            Ok(v)
        };
        let headers = IdentityHeaders {
            verify: name("verify", h.verify, "X-Client-Verify")?,
            subject: name("subject", h.subject, "X-Client-Subject")?,
            issuer: name("issuer", h.issuer, "X-Client-Issuer")?,
            serial: name("serial", h.serial, "X-Client-Serial")?,
            fingerprint: name("fingerprint", h.fingerprint, "X-Client-Fingerprint-SHA256")?,
            not_after: name("not_after", h.not_after, "X-Client-Not-After")?,
            cert: name("cert", h.cert, "Client-Cert")?,
            cert_chain: name("cert_chain", h.cert_chain, "Client-Cert-Chain")?,
            mac: name("mac", h.mac, "X-Device-MAC")?,
            device_serial: name("device_serial", h.device_serial, "X-Device-Serial")?,
            product: name("product", h.product, "X-Device-Product")?,
            generic: name("generic", h.generic, "X-Device-Generic-Cert")?,
        };
        let mut seen = HashSet::new();
        for n in headers.all() {
            if !seen.insert(n.to_ascii_lowercase()) {
                return Err(self.err("identity.headers", format!("'{n}' is used twice")));
            }
        }
        let pattern = raw
            .mac_path_pattern
            .unwrap_or_else(|| DEFAULT_MAC_PATH_PATTERN.to_string());
        match regex::Regex::new(&pattern) {
            Ok(re) if re.captures_len() >= 2 => {}
            Ok(_) => {
                return Err(self.err(
                    "identity.mac_path_pattern",
                    "needs a capture group around the MAC",
                ))
            }
            Err(e) => return Err(self.err("identity.mac_path_pattern", e)),
        }
        let mut strip_request_headers = Vec::new();
        for (i, n) in raw.strip_request_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                return Err(self.err(
                    format!("identity.strip_request_headers[{i}]"),
                    format!("'{n}' is not a valid HTTP header name"),
                ));
            }
            strip_request_headers.push(n.to_ascii_lowercase());
        }
        Ok(Identity {
            headers,
            forward_chain: raw.forward_chain.unwrap_or(false),
            mac_path_pattern: pattern,
            preset: raw.preset.unwrap_or_default(),
            dn_format: raw.dn_format.unwrap_or_default(),
            strip_request_headers,
        })
    }

    fn hello_match(&self, key: &str, raw: &raw::RawHelloMatch) -> Result<HelloMatch, ConfigError> {
        let format = match raw.format.as_deref() {
            None => None,
            Some("tls") => Some(HelloFormat::Tls),
            Some("sslv2") => Some(HelloFormat::Sslv2),
            Some(other) => {
                return Err(self.err(
                    format!("{key}.format"),
                    format!("'{other}' is not a hello format (tls or sslv2)"),
                ))
            }
        };
        let max_version = raw
            .max_version
            .as_deref()
            .map(|v| {
                TlsVersion::parse(v).ok_or_else(|| {
                    self.err(
                        format!("{key}.max_version"),
                        format!("unknown version '{v}' (use ssl3, tls1.0, tls1.1, tls1.2, tls1.3)"),
                    )
                })
            })
            .transpose()?;
        for (i, j) in raw.ja4.iter().enumerate() {
            let parts: Vec<&str> = j.split('_').collect();
            if parts.len() != 3 || parts[0].len() != 10 || !j.is_ascii() {
                return Err(self.err(
                    format!("{key}.ja4[{i}]"),
                    format!("'{j}' is not a JA4 fingerprint (like t13d1516h2_8daaf6152771_b186095e22b6)"),
                ));
            }
        }
        let offers_cipher = raw
            .offers_cipher
            .iter()
            .enumerate()
            .map(|(i, name)| {
                cipher_code(name).ok_or_else(|| {
                    self.err(
                        format!("{key}.offers_cipher[{i}]"),
                        format!("unknown cipher suite '{name}' (OpenSSL name, IANA TLS 1.3 name, or 0x1234)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(HelloMatch {
            format,
            max_version,
            ja4: raw.ja4.clone(),
            offers_cipher,
        })
    }

    fn certificate_ref(&self, key: &str, name: &str, cfg: &Config) -> Result<String, ConfigError> {
        if cfg.certificates.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(self.err(
                key,
                format!(
                    "no certificate named '{name}' under certificates (known: {})",
                    list(cfg.certificates.keys())
                ),
            ))
        }
    }

    fn backend_ref(&self, key: &str, name: &str, cfg: &Config) -> Result<String, ConfigError> {
        if cfg.backends.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(self.err(
                key,
                format!(
                    "no backend named '{name}' under backends (known: {})",
                    list(cfg.backends.keys())
                ),
            ))
        }
    }

    fn profile_ref(
        &self,
        key: &str,
        name: Option<&str>,
        cfg: &Config,
    ) -> Result<String, ConfigError> {
        let name = name.unwrap_or("auto");
        if cfg.profiles.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(self.err(
                key,
                format!(
                    "no TLS profile named '{name}' (known: {})",
                    list(cfg.profiles.keys())
                ),
            ))
        }
    }

    fn admin(&self, a: raw::RawAdmin) -> Result<(SocketAddr, AdminOptions), ConfigError> {
        let listen = self.socket_addr("admin.listen", &a.listen)?;
        let options = AdminOptions {
            allow: self.cidrs("admin.allow", &a.allow)?,
            max_connections: match a.max_connections {
                Some(0) => return Err(self.err("admin.max_connections", "must be at least 1")),
                Some(n) => n,
                None => DEFAULT_ADMIN_MAX_CONNECTIONS,
            },
            header_timeout: self.positive(
                "admin.header_timeout",
                a.header_timeout.unwrap_or(DEFAULT_ADMIN_HEADER_TIMEOUT),
            )?,
            idle_timeout: self.positive(
                "admin.idle_timeout",
                a.idle_timeout.unwrap_or(DEFAULT_ADMIN_IDLE_TIMEOUT),
            )?,
            show_device_ids: a.show_device_ids.unwrap_or(false),
        };
        Ok((listen, options))
    }

    fn socket_addr(&self, key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        s.parse().map_err(|_| {
            self.err(
                key,
                format!("'{s}' is not an IP:port (write IPv6 as \"[::1]:8443\")"),
            )
        })
    }

    /// A backend address: IP:port, or host:port resolved now (at load and at every reload).
    fn resolve(&self, key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        if let Ok(addr) = s.parse() {
            return Ok(addr);
        }
        match s.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| self.err(key, format!("'{s}' resolves to no address"))),
            Err(e) => Err(self.err(key, format!("'{s}' is not a host:port that resolves: {e}"))),
        }
    }

    fn cidrs(&self, key: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.err(
                            format!("{key}[{i}]"),
                            format!("'{s}' is not an IP address or CIDR"),
                        )
                    })
            })
            .collect()
    }

    fn sni_pattern(&self, key: &str, s: &str) -> Result<SniPattern, ConfigError> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, host) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return Err(self.err(
                key,
                format!("'{s}' is not a host name or '*.domain' pattern"),
            ));
        }
        Ok(if wild {
            SniPattern::Wildcard(host.to_string())
        } else {
            SniPattern::Exact(host.to_string())
        })
    }

    fn positive(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.err(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    }
}

/// A cipher suite's code from its OpenSSL name, its TLS 1.3 IANA name, or `0x....`.
pub fn cipher_code(name: &str) -> Option<u16> {
    if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        return u16::from_str_radix(hex, 16).ok();
    }
    (0..=u16::MAX)
        .find(|c| crate::hello::cipher_name(*c).is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
backends:
  b: { address: "127.0.0.1:8080", connect_timeout: 500ms, read_timeout: 1m }
certificates:
  c: { chain: certs/c.pem, key: certs/c.key }
listeners:
  - name: l
    bind: ["127.0.0.1:8443", "[::1]:8443"]
    certificate: c
    backend: b
"#;

    fn load(extra: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(
            Path::new("/etc/provgate/config.yaml"),
            &format!("{BASE}{extra}"),
        )
    }

    fn err(extra: &str) -> String {
        load(extra).unwrap_err().to_string()
    }

    const PLAIN: &str =
        "  - name: http\n    bind: [\"127.0.0.1:8080\"]\n    tls: plain\n    backend: b\n";

    #[test]
    fn plain_listener_needs_no_certificate_and_refuses_tls_settings() {
        let c = load(PLAIN).unwrap();
        let http = &c.listeners[1];
        assert!(http.plain);
        assert_eq!(http.defaults.certificate, None);
        assert_eq!(http.defaults.profile, "plain");
        assert!(!c.listeners[0].plain);
        for (extra, key, says) in [
            (
                "    certificate: c\n",
                "listeners[1].certificate",
                "remove the certificate",
            ),
            (
                "    client_auth: { mode: optional, ca: ca.pem }\n",
                "listeners[1].client_auth",
                "no client certificate",
            ),
            (
                "    routes:\n      - match: { sni: [a.example] }\n",
                "listeners[1].routes[0].match.sni",
                "local and source addresses only",
            ),
            (
                "    routes:\n      - match: { source: [10.0.0.0/8] }\n        tls: legacy\n",
                "listeners[1].routes[0].tls",
                "local and source addresses only",
            ),
        ] {
            let e = err(&format!("{PLAIN}{extra}"));
            assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
        }
        // Plain routes on addresses are fine.
        load(&format!(
            "{PLAIN}    routes:\n      - match: {{ source: [10.0.0.0/8] }}\n"
        ))
        .unwrap();
    }

    #[test]
    fn tls_listener_needs_a_certificate_and_plain_is_reserved() {
        let e = err("  - name: x\n    bind: [\"127.0.0.1:9\"]\n    backend: b\n");
        assert!(e.contains("listeners[1].certificate: is required"), "{e}");
        let e = err("    routes:\n      - tls: plain\n");
        assert!(
            e.contains("listeners[0].routes[0].tls") && e.contains("own listener"),
            "{e}"
        );
        let e = err("tls_profiles:\n  plain: { base: legacy }\n");
        assert!(
            e.contains("tls_profiles.plain") && e.contains("reserved"),
            "{e}"
        );
        let e = err("tls_profiles:\n  p: { base: plain }\n");
        assert!(e.contains("tls_profiles.p.base"), "{e}");
    }

    #[test]
    fn backend_host_access_log_and_identity_keys() {
        let c = Config::from_yaml(
            Path::new("/etc/provgate/config.yaml"),
            &BASE.replace(
                "read_timeout: 1m }",
                "read_timeout: 1m, host: prov.example.com }",
            ),
        )
        .unwrap();
        assert_eq!(c.backends["b"].host.as_deref(), Some("prov.example.com"));
        let e = Config::from_yaml(
            Path::new("/c.yaml"),
            &BASE.replace("read_timeout: 1m }", "read_timeout: 1m, host: \"a\\nb\" }"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("backends.b.host"), "{e}");
        let c = load(
            "access_log: { format: json, target: /var/log/provgate/access.log }\n\
             identity: { preset: nginx, dn_format: legacy, strip_request_headers: [X-Tenant] }\n",
        )
        .unwrap();
        assert_eq!(c.access_log.format, crate::access_log::Format::Json);
        assert_eq!(c.identity.preset, crate::identity_headers::Preset::Nginx);
        assert_eq!(
            c.identity.dn_format,
            crate::identity_headers::DnFormat::Legacy
        );
        assert_eq!(
            c.identity.strip_request_headers,
            vec!["x-tenant".to_string()]
        );
        let e = err("access_log: { target: \"\" }\n");
        assert!(e.contains("access_log.target"), "{e}");
        let e = err("identity: { preset: iis }\n");
        assert!(e.contains("identity.preset"), "{e}");
    }

    #[test]
    fn defaults_durations_and_paths() {
        let c = load("").unwrap();
        let b = &c.backends["b"];
        assert_eq!(b.connect_timeout, Duration::from_millis(500));
        assert_eq!(b.read_timeout, Duration::from_secs(60));
        assert_eq!(c.listeners[0].defaults.profile, "auto");
        assert_eq!(c.listeners[0].handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
        assert_eq!(c.listeners[0].bind.len(), 2);
        assert_eq!(
            c.certificates["c"].chain,
            PathBuf::from("/etc/provgate/certs/c.pem")
        );
    }

    #[test]
    fn profiles_inherit_and_are_checked_per_engine() {
        let c = load(
            "tls_profiles:\n  a: { base: legacy, versions: [ssl3, tls1.0] }\n  b: { base: a, dh_bits: 0 }\n",
        )
        .unwrap();
        let b = &c.profiles["b"];
        assert_eq!(b.engine, EngineKind::Legacy);
        assert_eq!(
            b.versions.iter().copied().collect::<Vec<_>>(),
            vec![TlsVersion::Ssl3, TlsVersion::Tls10]
        );
        assert_eq!(b.dh_bits, 0);

        let e = err("tls_profiles:\n  m: { base: modern, versions: [tls1.0] }\n");
        assert!(
            e.contains("tls_profiles.m.versions") && e.contains("tls1.0"),
            "{e}"
        );
        let e = err("tls_profiles:\n  x: { base: y }\n  y: { base: x }\n");
        assert!(e.contains("loop"), "{e}");
        let e = err("tls_profiles:\n  x: { dh_bits: 2048, dh_group: rfc5114 }\n");
        assert!(
            e.contains("tls_profiles.x.dh_group") && e.contains("1024-bit"),
            "{e}"
        );
        let e = err("tls_profiles:\n  x: { dh_bits: 4096 }\n");
        assert!(
            e.contains("tls_profiles.x.dh_bits") && e.contains("4096"),
            "{e}"
        );
        let e = err("tls_profiles:\n  x: { versions: [tls9] }\n");
        assert!(e.contains("tls_profiles.x.versions[0]"), "{e}");
    }

    #[test]
    fn builtin_cipher_string_names_only_openssl3_suites() {
        // OpenSSL drops unknown names without a word; 0x0016 was lost to a pre-1.1.0 name.
        assert_eq!(crate::tls::legacy::cipher_issues(LEGACY_CIPHERS), vec![]);
        assert!(LEGACY_CIPHERS.contains(":DHE-RSA-DES-CBC3-SHA:"));
        let c = load("").unwrap();
        for name in ["legacy", "auto", "modern"] {
            assert!(c.profiles[name].session_tickets, "{name}");
            assert_eq!(c.profiles[name].dh_params, None, "{name}");
        }
    }

    #[test]
    fn ciphers_that_select_nothing_are_errors_unknown_names_are_not() {
        // Unknown words are warnings (check / start-up log); something is still selected.
        let c =
            load("tls_profiles:\n  x: { ciphers: \"AES128-SHA:EDH-RSA-DES-CBC3-SHA\" }\n").unwrap();
        assert_eq!(c.profiles["x"].ciphers, "AES128-SHA:EDH-RSA-DES-CBC3-SHA");
        for (yaml, says) in [
            (
                "x: { ciphers: \"EDH-RSA-DES-CBC3-SHA\" }",
                "no cipher match",
            ),
            ("x: { ciphers: \"AES128-SHA:#bad\" }", "invalid command"),
            (
                "x: { versions: [tls1.0], ciphers: \"AES128-GCM-SHA256\" }",
                "that tls1.0 can use",
            ),
            (
                "x: { dh_bits: 0, ciphers: \"DHE-RSA-AES128-SHA\" }",
                "once DHE is struck (dh_bits: 0)",
            ),
        ] {
            let e = err(&format!("tls_profiles:\n  {yaml}\n"));
            assert!(
                e.contains("tls_profiles.x.ciphers") && e.contains(says),
                "{yaml}: {e}"
            );
        }
        // The modern engine ignores the string.
        load("tls_profiles:\n  m: { base: modern, ciphers: \"NOPE\" }\n").unwrap();
    }

    #[test]
    fn session_tickets_on_off() {
        let c = load(
            "tls_profiles:\n  a: { session_tickets: off }\n  b: { base: a }\n  \
             c: { base: a, session_tickets: on }\n  d: { session_tickets: false }\n",
        )
        .unwrap();
        let on = |n: &str| c.profiles[n].session_tickets;
        assert_eq!(
            (on("a"), on("b"), on("c"), on("d")),
            (false, false, true, false)
        );
        let e = err("tls_profiles:\n  a: { session_tickets: maybe }\n");
        assert!(
            e.contains("tls_profiles.a.session_tickets") && e.contains("on or off"),
            "{e}"
        );
    }

    #[test]
    fn dh_params_files_resolve_beside_the_config_and_are_checked() {
        use openssl::bn::BigNum;
        use openssl::dh::Dh;
        let dir = tempfile::tempdir().unwrap();
        let pem = |p: BigNum| {
            Dh::from_pqg(p, None, BigNum::from_u32(2).unwrap())
                .unwrap()
                .params_to_pem()
                .unwrap()
        };
        std::fs::create_dir(dir.path().join("dh")).unwrap();
        let files = [
            (
                "dh/1024.pem",
                pem(BigNum::get_rfc2409_prime_1024().unwrap()),
            ),
            ("2048.pem", pem(BigNum::get_rfc3526_prime_2048().unwrap())),
            ("768.pem", pem(BigNum::get_rfc2409_prime_768().unwrap())),
            ("composite.pem", {
                let mut p = BigNum::get_rfc2409_prime_1024().unwrap();
                p.add_word(1).unwrap();
                pem(p)
            }),
            (
                "junk.pem",
                b"-----BEGIN DH PARAMETERS-----\nnope\n".to_vec(),
            ),
        ];
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let file = dir.path().join("config.yaml");
        let load =
            |profiles: &str| Config::from_yaml(&file, &format!("{BASE}tls_profiles:\n{profiles}"));
        let err = |profiles: &str| load(profiles).unwrap_err().to_string();

        let c = load(
            "  own: { dh_params: dh/1024.pem }\n  big: { dh_bits: 2048, dh_params: 2048.pem }\n  \
             child: { base: own }\n  nodhe: { base: own, dh_bits: 0 }\n  \
             back: { base: own, dh_group: rfc5114 }\n",
        )
        .unwrap();
        let own = c.profiles["own"].dh_params.as_ref().unwrap();
        assert_eq!(own.path, dir.path().join("dh/1024.pem"));
        assert_eq!(own.bits, 1024);
        assert_eq!(c.profiles["big"].dh_params.as_ref().unwrap().bits, 2048);
        assert_eq!(c.profiles["child"].dh_params, c.profiles["own"].dh_params);
        assert_eq!(c.profiles["nodhe"].dh_params, None, "no DHE drops the file");
        assert_eq!(
            c.profiles["back"].dh_params, None,
            "a built-in group replaces it"
        );
        assert_eq!(c.profiles["back"].dh_group, DhGroup::Rfc5114);

        for (profiles, key, says) in [
            (
                "  x: { dh_params: 2048.pem }\n",
                "x.dh_params",
                "set dh_bits: 2048",
            ),
            (
                "  x: { dh_bits: 2048, dh_params: 2048.pem }\n  y: { base: x, dh_bits: 1024 }\n",
                "y.dh_bits",
                "2048-bit group but dh_bits is 1024",
            ),
            (
                "  x: { dh_params: 768.pem }\n",
                "x.dh_params",
                "768-bit group, weaker",
            ),
            (
                "  x: { dh_params: composite.pem }\n",
                "x.dh_params",
                "not prime",
            ),
            (
                "  x: { dh_params: junk.pem }\n",
                "x.dh_params",
                "no PEM 'DH PARAMETERS'",
            ),
            (
                "  x: { dh_params: missing.pem }\n",
                "x.dh_params",
                "cannot read",
            ),
            (
                "  x: { dh_bits: 0, dh_params: dh/1024.pem }\n",
                "x.dh_params",
                "dh_bits is 0",
            ),
            (
                "  x: { dh_group: rfc5114, dh_params: dh/1024.pem }\n",
                "x.dh_group",
                "keep one",
            ),
        ] {
            let e = err(profiles);
            assert!(
                e.contains(&format!("tls_profiles.{key}")) && e.contains(says),
                "{profiles}: {e}"
            );
        }
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = err("    routes:\n      - match: { sni: [\"bad name!\"] }\n");
        assert!(e.contains("listeners[0].routes[0].match.sni[0]"), "{e}");
        let e = err("    routes:\n      - match: { source: [\"10.0.0.0/33\"] }\n");
        assert!(e.contains("listeners[0].routes[0].match.source[0]"), "{e}");
        let e = err("    routes:\n      - match: { color: [red] }\n");
        assert!(e.contains("unknown field `color`"), "{e}");
        let e = err("    routes:\n      - backend: nope\n");
        assert!(
            e.contains("listeners[0].routes[0].backend") && e.contains("'nope'"),
            "{e}"
        );
        let e = Config::from_yaml(Path::new("x.yaml"), "listeners: []\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.yaml: listeners: at least one listener"),
            "{e}"
        );
        let e = Config::from_yaml(Path::new("x.yaml"), "listeners: [\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.yaml: "), "{e}");
    }

    #[test]
    fn routes_inherit_listener_defaults_and_accept_plain_ips() {
        let c = load(
            "    tls: legacy\n    routes:\n      - match: { local: [\"192.0.2.10\"], sni: [\"*.Example.NET.\"] }\n        tls: modern\n",
        )
        .unwrap();
        let r = &c.listeners[0].routes[0];
        assert_eq!(r.name, "l/routes[0]");
        assert_eq!(r.target.certificate.as_deref(), Some("c"));
        assert_eq!(r.target.profile, "modern");
        assert_eq!(
            r.matches.local,
            vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            r.matches.sni,
            vec![SniPattern::Wildcard("example.net".into())]
        );
    }
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    const BASE: &str = r#"
backends:
  b: { address: "127.0.0.1:8080" }
certificates:
  c: { chain: c.pem, key: c.key }
listeners:
  - { name: l, bind: ["127.0.0.1:8443"], certificate: c, backend: b }
"#;

    fn load(admin: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(
            Path::new("/etc/provgate/config.yaml"),
            &format!("{BASE}admin: {admin}\n"),
        )
    }

    fn err(admin: &str) -> String {
        load(admin).unwrap_err().to_string()
    }

    #[test]
    fn admin_defaults() {
        let c = load(r#"{ listen: "0.0.0.0:9900" }"#).unwrap();
        assert_eq!(c.admin, Some("0.0.0.0:9900".parse().unwrap()));
        let o = &c.admin_options;
        assert_eq!(o, &AdminOptions::default());
        assert!(o.allow.is_empty());
        assert_eq!(o.max_connections, 64);
        assert_eq!(o.header_timeout, Duration::from_secs(5));
        assert_eq!(o.idle_timeout, Duration::from_secs(30));
        assert!(!o.show_device_ids);
        assert!(o.admits("192.0.2.1".parse().unwrap()));
        // No admin section: no listener, and the same defaults (device ids masked).
        let c = Config::from_yaml(Path::new("/c.yaml"), BASE).unwrap();
        assert_eq!(c.admin, None);
        assert_eq!(c.admin_options, AdminOptions::default());
    }

    #[test]
    fn admin_keys_are_read() {
        let c = load(
            r#"{ listen: "127.0.0.1:9900", allow: ["10.0.0.0/8", "192.0.2.7", "fd00::/8"], max_connections: 4, header_timeout: 1s, idle_timeout: 2m, show_device_ids: true }"#,
        )
        .unwrap();
        let o = &c.admin_options;
        assert_eq!(
            o.allow,
            ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
                .iter()
                .map(|s| s.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(o.max_connections, 4);
        assert_eq!(o.header_timeout, Duration::from_secs(1));
        assert_eq!(o.idle_timeout, Duration::from_secs(120));
        assert!(o.show_device_ids);
        for (ip, admitted) in [
            ("10.1.2.3", true),
            ("::ffff:10.1.2.3", true),
            ("192.0.2.7", true),
            ("::ffff:192.0.2.8", false),
            ("127.0.0.1", false),
            ("fd12::1", true),
            ("::1", false),
        ] {
            assert_eq!(o.admits(ip.parse().unwrap()), admitted, "{ip}");
        }
    }

    #[test]
    fn admin_errors_name_the_key() {
        for (admin, key, says) in [
            (
                r#"{ listen: "127.0.0.1:9900", allow: ["10.0.0.0/8", "10.0.0.0/33"] }"#,
                "admin.allow[1]: '10.0.0.0/33' is not an IP address or CIDR",
                "",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", allow: [localhost] }"#,
                "admin.allow[0]",
                "not an IP address or CIDR",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", max_connections: 0 }"#,
                "admin.max_connections",
                "at least 1",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", header_timeout: 0s }"#,
                "admin.header_timeout",
                "greater than zero",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", idle_timeout: 0ms }"#,
                "admin.idle_timeout",
                "greater than zero",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", idle_timeout: soon }"#,
                "admin.idle_timeout",
                "",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", max_connections: -1 }"#,
                "admin.max_connections",
                "",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", show_device_ids: maybe }"#,
                "admin.show_device_ids",
                "",
            ),
            (
                r#"{ listen: "127.0.0.1:9900", allow_from: [] }"#,
                "admin",
                "unknown field `allow_from`",
            ),
            (r#"{ listen: "localhost:9900" }"#, "admin.listen", "IP:port"),
        ] {
            let e = err(admin);
            assert!(
                e.starts_with("/etc/provgate/config.yaml: ") && e.contains(key) && e.contains(says),
                "{admin}: {e}"
            );
        }
    }
}
