//! The three proxies' configuration files: the templates in `bench/templates/` (compiled in),
//! filled in by `{{name}}` substitution. Every placeholder must get a value and every value a
//! placeholder, so a template and this file cannot drift apart silently.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

const PROVGATE: &str = include_str!("../../bench/templates/provgate.yaml");
const HAPROXY: &str = include_str!("../../bench/templates/haproxy.cfg");
const NGINX: &str = include_str!("../../bench/templates/nginx.conf");
const OPENSSL: &str = include_str!("../../bench/templates/openssl.cnf");

/// The legacy ports' OpenSSL cipher string (all three; `:@SECLEVEL=0` is added where needed).
pub const LEGACY_CIPHERS: &str = "AES128-SHA:DHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256";
pub const TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/// Timeouts given to every proxy (handshake, request headers, idle keep-alive, client side).
pub const PROXY_TIMEOUT_S: u64 = 120;
/// P7: the cap on connections to the slow backend (provgate `max_connections`, HAProxy server
/// `maxconn`, nginx `max_conns`).
pub const SLOW_MAX_CONNS: usize = 64;
/// P7: how long a request may wait for one of those connections (provgate `queue_timeout`,
/// HAProxy `timeout queue`; nginx has no queue).
pub const QUEUE_TIMEOUT_S: u64 = 60;

/// What the three configurations have in common: ports, certificate and DH files.
pub struct Setup<'a> {
    pub legacy: SocketAddr,
    pub modern: SocketAddr,
    /// TLS like `legacy`, forwarding to the slow backend (P7).
    pub slow: SocketAddr,
    /// Plain HTTP, forwarding to the main backend (P9, P10).
    pub plain: SocketAddr,
    pub backend: SocketAddr,
    /// The 50 ms backend (P7).
    pub slow_backend: SocketAddr,
    /// Certificate (PEM) and key (PKCS#8 PEM), separately (provgate, nginx).
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Certificate followed by key in one file (HAProxy's `crt`).
    pub cert_and_key: &'a Path,
    /// The DH group as PEM parameters (HAProxy, nginx).
    pub dh_params: &'a Path,
    /// provgate's name for the same group (`dh_group`).
    pub dh_group: &'a str,
}

impl Setup<'_> {
    /// The values every template uses.
    fn common(&self) -> Vec<(&'static str, String)> {
        vec![
            ("legacy_addr", self.legacy.to_string()),
            ("modern_addr", self.modern.to_string()),
            ("slow_addr", self.slow.to_string()),
            ("plain_addr", self.plain.to_string()),
            ("backend_addr", self.backend.to_string()),
            ("slow_backend_addr", self.slow_backend.to_string()),
            ("slow_max_conns", SLOW_MAX_CONNS.to_string()),
            ("timeout_s", PROXY_TIMEOUT_S.to_string()),
            ("legacy_ciphers", LEGACY_CIPHERS.to_string()),
        ]
    }
}

/// `provgate.yaml`.
pub fn provgate(s: &Setup) -> Result<String> {
    let mut v = s.common();
    v.extend([
        ("cert", s.cert.display().to_string()),
        ("key", s.key.display().to_string()),
        ("dh_group", s.dh_group.to_string()),
        ("queue_timeout_s", QUEUE_TIMEOUT_S.to_string()),
    ]);
    fill("provgate.yaml", PROVGATE, &v)
}

/// `haproxy.cfg`; `maxconn` is the global one (what the open-file limit allows).
pub fn haproxy(s: &Setup, maxconn: u64) -> Result<String> {
    let mut v = s.common();
    v.extend([
        ("cert_and_key", s.cert_and_key.display().to_string()),
        ("dh_params", s.dh_params.display().to_string()),
        ("tls13_suites", TLS13_SUITES.to_string()),
        ("maxconn", maxconn.to_string()),
        ("queue_timeout_s", QUEUE_TIMEOUT_S.to_string()),
    ]);
    fill("haproxy.cfg", HAPROXY, &v)
}

/// `nginx.conf`; `dir` holds its pid file and error log, `tmp` its temporary files.
pub fn nginx(s: &Setup, dir: &Path, tmp: &Path) -> Result<String> {
    let mut v = s.common();
    v.extend([
        ("dir", dir.display().to_string()),
        ("tmp", tmp.display().to_string()),
        ("cert", s.cert.display().to_string()),
        ("key", s.key.display().to_string()),
        ("dh_params", s.dh_params.display().to_string()),
    ]);
    fill("nginx.conf", NGINX, &v)
}

/// `OPENSSL_CONF` for HAProxy and nginx (no placeholders): security level 0 as the system
/// default, because both load the DH group before they apply the cipher string.
pub fn openssl_cnf() -> Result<String> {
    fill("openssl.cnf", OPENSSL, &[])
}

/// Replace every `{{name}}` in `template` with its value (one pass: values are not scanned).
pub fn fill(file: &str, template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 512);
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("template {file}: unclosed {{{{"))?;
        let name = &after[..end];
        let i = values
            .iter()
            .position(|(k, _)| *k == name)
            .ok_or_else(|| anyhow!("template {file}: no value for {{{{{name}}}}}"))?;
        used[i] = true;
        out.push_str(&values[i].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        bail!("template {file}: no {{{{{}}}}} placeholder", values[i].0);
    }
    Ok(out)
}
