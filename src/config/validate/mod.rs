//! The validator: [`RawConfig`] (the YAML's shape) -> [`Config`], one [`ConfigError`] naming
//! the key path for the first problem. This file walks the sections in order and holds the
//! shared checks; [`profiles`] does `tls_profiles`, [`listeners`] the listeners and routes.

mod listeners;
mod profiles;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::model::{
    AdminOptions, Backend, CertificateSpec, Config, Identity, IdentityHeaders, Limits, MacPath,
    Reload, DEFAULT_ADMIN_HEADER_TIMEOUT, DEFAULT_ADMIN_IDLE_TIMEOUT,
    DEFAULT_ADMIN_MAX_CONNECTIONS, DEFAULT_BACKEND_IDLE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAC_PATH_PATTERN, DEFAULT_QUEUE_TIMEOUT, DEFAULT_READ_TIMEOUT,
};
use super::raw::{self, RawBackend, RawConfig, RawIdentity};
use super::tls::TlsVersion;
use super::ConfigError;

/// Check `raw` as read from `file` and build the validated [`Config`].
pub(super) fn config(file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    Validator { file }.config(raw)
}

/// Turns the raw sections into validated ones; every error names `file` and the key path.
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

        let backends = self.backends(raw.backends)?;

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

    fn backends(
        &self,
        raw: BTreeMap<String, RawBackend>,
    ) -> Result<BTreeMap<String, Backend>, ConfigError> {
        let mut backends = BTreeMap::new();
        for (name, b) in raw {
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
                    max_connections: match b.max_connections {
                        Some(0) => {
                            return Err(
                                self.err(format!("{key}.max_connections"), "must be at least 1")
                            )
                        }
                        n => n,
                    },
                    queue_timeout: self.positive(
                        &format!("{key}.queue_timeout"),
                        b.queue_timeout.unwrap_or(DEFAULT_QUEUE_TIMEOUT),
                    )?,
                    idle_timeout: self.positive(
                        &format!("{key}.idle_timeout"),
                        b.idle_timeout.unwrap_or(DEFAULT_BACKEND_IDLE_TIMEOUT),
                    )?,
                },
            );
        }
        Ok(backends)
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
            max_connections: match raw.max_connections {
                Some(n) => Some(count("max_connections", Some(n), n)?),
                None => None,
            },
            on_limit: raw.on_limit.unwrap_or(d.on_limit),
            max_handshakes: count("max_handshakes", raw.max_handshakes, d.max_handshakes)?,
            // pingora's pool cannot be switched off: at size 0 it evicts before it inserts.
            backend_idle_pool: count(
                "backend_idle_pool",
                raw.backend_idle_pool,
                d.backend_idle_pool,
            )?,
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
        let mac_path = match regex::Regex::new(&pattern) {
            Ok(re) if re.captures_len() >= 2 => MacPath(re),
            Ok(_) => {
                return Err(self.err(
                    "identity.mac_path_pattern",
                    "needs a capture group around the MAC",
                ))
            }
            Err(e) => return Err(self.err("identity.mac_path_pattern", e)),
        };
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
            mac_path,
            preset: raw.preset.unwrap_or_default(),
            dn_format: raw.dn_format.unwrap_or_default(),
            strip_request_headers,
        })
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

    /// `name` as a reference to a `kind` defined in `known` ("no certificate named 'x' under
    /// certificates (known: a, b)"); `under` is the section that defines them, when the message
    /// should say so (TLS profiles also come built in, so they name none).
    fn named<V>(
        &self,
        kind: &str,
        under: Option<&str>,
        key: &str,
        name: &str,
        known: &BTreeMap<String, V>,
    ) -> Result<String, ConfigError> {
        if known.contains_key(name) {
            return Ok(name.to_string());
        }
        let under = under.map(|s| format!(" under {s}")).unwrap_or_default();
        Err(self.err(
            key,
            format!(
                "no {kind} named '{name}'{under} (known: {})",
                list(known.keys())
            ),
        ))
    }

    /// A TLS version by its config name (`tls_profiles.*.versions`, `client_hello.max_version`).
    fn tls_version(&self, key: &str, v: &str) -> Result<TlsVersion, ConfigError> {
        TlsVersion::parse(v).ok_or_else(|| {
            self.err(
                key,
                format!("unknown version '{v}' (use ssl3, tls1.0, tls1.1, tls1.2, tls1.3)"),
            )
        })
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

    fn positive(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.err(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    }
}

/// The names in a "(known: ...)" list, or `none`.
fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}
