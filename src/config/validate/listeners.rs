//! Validating `listeners`: bind addresses, a listener's default target, `tls: plain`, and
//! each route's match (local, SNI, source, ClientHello) and target overrides.

use std::path::{Path, PathBuf};

use super::Validator;
use crate::config::model::{
    serial_key, Access, ClientAuth, Config, HelloMatch, Listener, Route, RouteMatch, SniPattern,
    Target, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_LISTENER_MAX_CONNECTIONS, DEFAULT_LISTEN_BACKLOG,
};
use crate::config::raw::{
    ClientAuthMode, ProxyProtocol, RawClientAuth, RawHelloMatch, RawListener, RawRoute, VerifyLevel,
};
use crate::config::tls::{cipher_code, PLAIN};
use crate::config::ConfigError;
use crate::hello::HelloFormat;

impl Validator<'_> {
    pub(super) fn listener(
        &self,
        key: &str,
        l: RawListener,
        cfg: &Config,
    ) -> Result<Listener, ConfigError> {
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
                (Some(c), false) => Some(self.named(
                    "certificate",
                    Some("certificates"),
                    &format!("{key}.certificate"),
                    c,
                    &cfg.certificates,
                )?),
                (None, false) => {
                    return Err(self.err(
                        format!("{key}.certificate"),
                        "is required: the server certificate this listener presents \
                         (or tls: plain for HTTP without TLS)",
                    ))
                }
            },
            profile: self.named(
                "TLS profile",
                None,
                &format!("{key}.tls"),
                l.tls.as_deref().unwrap_or("auto"),
                &cfg.profiles,
            )?,
            backend: self.named(
                "backend",
                Some("backends"),
                &format!("{key}.backend"),
                &l.backend,
                &cfg.backends,
            )?,
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
            listen_backlog: match l.listen_backlog {
                Some(0) => {
                    return Err(self.err(format!("{key}.listen_backlog"), "must be at least 1"))
                }
                Some(n) => n,
                None => DEFAULT_LISTEN_BACKLOG,
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
            public_addresses: self.public_addresses(key, &l.public_addresses)?,
        })
    }

    /// `public_addresses`: IPv4 addresses (devices look up A records only).
    fn public_addresses(
        &self,
        key: &str,
        list: &[String],
    ) -> Result<Vec<std::net::Ipv4Addr>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => Ok(a),
                Ok(std::net::IpAddr::V6(_)) => Err(self.err(
                    format!("{key}.public_addresses[{i}]"),
                    format!(
                        "'{s}' is an IPv6 address; devices look up A records only, so list \
                         the IPv4 addresses they connect to"
                    ),
                )),
                Err(_) => Err(self.err(
                    format!("{key}.public_addresses[{i}]"),
                    format!("'{s}' is not an IPv4 address (no port, no CIDR)"),
                )),
            })
            .collect()
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
                Some(c) => Some(self.named(
                    "certificate",
                    Some("certificates"),
                    &format!("{key}.certificate"),
                    c,
                    &cfg.certificates,
                )?),
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
                Some(t) => {
                    self.named("TLS profile", None, &format!("{key}.tls"), t, &cfg.profiles)?
                }
                None => defaults.profile.clone(),
            },
            backend: match &r.backend {
                Some(b) => self.named(
                    "backend",
                    Some("backends"),
                    &format!("{key}.backend"),
                    b,
                    &cfg.backends,
                )?,
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
        let deny_serials = self
            .serials(&format!("{key}.deny_serials"), raw.deny_serials)?
            .unwrap_or_default();
        let allow_serials = self.serials(&format!("{key}.allow_serials"), raw.allow_serials)?;
        if allow_serials.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(self.err(
                format!("{key}.allow_serials"),
                "is empty, which would refuse every device; leave it out to admit any serial",
            ));
        }
        if raw.mode == ClientAuthMode::Off
            && (raw.allow_expired || !deny_serials.is_empty() || allow_serials.is_some())
        {
            return Err(self.err(
                key,
                "allow_expired, deny_serials and allow_serials need mode optional or required \
                 (with mode off no client certificate is asked for)",
            ));
        }
        Ok(ClientAuth {
            mode: raw.mode,
            ca,
            verify_level: raw.verify_level.unwrap_or(VerifyLevel::Legacy),
            allow_expired: raw.allow_expired,
            deny_serials,
            allow_serials,
        })
    }

    /// `deny_serials` / `allow_serials`: certificate serials in hex, with or without colons,
    /// any case, as [`serial_key`] spells them. A YAML number is refused rather than guessed at
    /// (`1234` and `0x1a` are read as numbers, not as the hex digits written).
    fn serials(
        &self,
        key: &str,
        list: Option<Vec<serde_yaml::Value>>,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(list) = list else {
            return Ok(None);
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                let at = format!("{key}[{i}]");
                match v {
                    serde_yaml::Value::String(s) => serial_key(s.trim()).ok_or_else(|| {
                        self.err(
                            at,
                            format!(
                                "'{s}' is not a certificate serial in hex \
                                 (e.g. \"0A:1B:2C\" or \"0a1b2c\")"
                            ),
                        )
                    }),
                    serde_yaml::Value::Number(n) => Err(self.err(
                        at,
                        format!(
                            "YAML reads this as the number {n}; quote the serial as written \
                             (e.g. \"0a1b2c\") so its hex digits are kept"
                        ),
                    )),
                    _ => {
                        Err(self.err(at, "is not a certificate serial in hex (e.g. \"0A:1B:2C\")"))
                    }
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn hello_match(&self, key: &str, raw: &RawHelloMatch) -> Result<HelloMatch, ConfigError> {
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
            .map(|v| self.tls_version(&format!("{key}.max_version"), v))
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
}
