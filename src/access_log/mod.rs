//! Access log: one line per HTTP request, for fail2ban, log analysers and device support.
//!
//! On by default to stdout (diagnostics from `tracing` stay on stderr). Configured under the
//! top-level `access_log` key:
//!
//! ```yaml
//! access_log:
//!   format: combined    # combined (default) | json
//!   target: stdout      # stdout (default) | stderr | off | /path/to/file (reopened on SIGUSR1)
//! ```
//!
//! # Why a thread
//!
//! Lines are formatted on the caller's thread (cheap, no locks) and handed to one dedicated
//! writer thread through a bounded [`std::sync::mpsc::sync_channel`] (8192 lines). The proxy's
//! async tasks only ever `try_send`: a slow disk, a full pipe or a stopped terminal on stdout
//! fills the channel and further lines are dropped and counted ([`AccessLog::dropped`]) rather
//! than stalling request handling. The writer buffers (`BufWriter`) and flushes whenever the
//! channel is momentarily empty, so lines appear promptly when idle and in large writes when
//! busy. A write error is reported once through `tracing::warn!`, not per line.
//!
//! # Formats
//!
//! * `combined`: Apache/nginx "combined", so fail2ban's stock apache/nginx filters and goaccess
//!   read it, followed by provgate's own `key=value` fields:
//!
//!   ```text
//!   192.0.2.7 - - [01/Dec/2026:16:04:05 +0000] "GET /spa/cfg.xml?a=1 HTTP/1.1" 200 1234 "-" "Cisco/SPA504G-7.6.2" listener=spa route=cisco local=198.51.100.1:443 host="prov.example" sni=prov.example tls=tls1.0 cipher=AES128-SHA ja4=t10d... verify=SUCCESS mac=001122334455 serial="CBT1234" product="SPA504G" bytes_in=0 ms=12.345
//!   ```
//!
//!   Time is UTC. Response size is `-` when no body bytes were sent; status is `0` when no
//!   response was sent at all. Every byte that is a control character, `"`, `\`, or not
//!   printable ASCII is written as `\xHH` (like nginx's `escape=default`); in the unquoted
//!   `key=value` fields and in the request line's method and target a space is escaped too
//!   (`\x20`), so every field stays one whitespace-free token. Empty or absent values are `-`.
//! * `json`: one JSON object per line, keys `time` (RFC 3339 UTC with milliseconds), `client`,
//!   `client_port`, `local`, `listener`, `route`, `method`, `target`, `version`, `status`,
//!   `bytes_in`, `bytes_out`, `duration_ms`, `user_agent`, `referer`, `host`, `sni`,
//!   `tls_version`, `cipher`, `ja4`, `verify`, `mac`, `serial`, `product`. Absent values (and an
//!   empty `sni`, `cipher`, `ja4`) are `null`; byte strings are decoded as lossy UTF-8.
//!
//! Attacker-controlled fields are capped before escaping (request target 2048 bytes, user agent,
//! referer and host 512, everything else 256); a cut field ends with `...`. A line never
//! contains a raw newline.
//!
//! # Files
//!
//! This file holds the configuration types, [`Entry`] and the [`AccessLog`] handle; `format`
//! writes the lines (escaping, caps, dates) and `writer` runs the thread, the channel and the
//! reopen.

mod format;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use format::{format_combined, format_json};
pub use writer::reopen_on_sigusr1;

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Apache/nginx combined format plus provgate's `key=value` fields.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// Where lines go. Deserialises from a string: "stdout" | "stderr" | "off" | anything else = a
/// file path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// Standard output (the default).
    #[default]
    Stdout,
    /// Standard error (mixed with the diagnostics).
    Stderr,
    /// No access log.
    Off,
    /// A file, opened for append (created if missing), reopened on [`AccessLog::reopen`].
    File(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stdout => f.write_str("stdout"),
            Target::Stderr => f.write_str("stderr"),
            Target::Off => f.write_str("off"),
            Target::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"stdout\", \"stderr\", \"off\" or a file path")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Target, E> {
                match v {
                    "" => Err(E::custom(
                        "access_log target must not be empty: use stdout, stderr, off or a file path",
                    )),
                    "stdout" => Ok(Target::Stdout),
                    "stderr" => Ok(Target::Stderr),
                    "off" => Ok(Target::Off),
                    path => Ok(Target::File(PathBuf::from(path))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// The `access_log` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Line format.
    #[serde(default)]
    pub format: Format,
    /// Where lines go.
    #[serde(default)]
    pub target: Target,
}

/// One finished request. Borrowed, so building it costs nothing when the log is off.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the request started.
    pub time: SystemTime,
    /// The real client (after PROXY protocol).
    pub client: SocketAddr,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// Listener name.
    pub listener: &'a str,
    /// Route name.
    pub route: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Full request-target with query, raw bytes.
    pub target: &'a [u8],
    /// "HTTP/1.0" / "HTTP/1.1".
    pub version: &'a str,
    /// Response status; 0 = no response was sent.
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Time from request start to the end of the response.
    pub duration: Duration,
    /// User-Agent header.
    pub user_agent: Option<&'a [u8]>,
    /// Referer header.
    pub referer: Option<&'a [u8]>,
    /// Host header.
    pub host: Option<&'a [u8]>,
    /// TLS server name indication.
    pub sni: Option<&'a str>,
    /// "tls1.0", ... or "plain".
    pub tls_version: &'a str,
    /// Cipher suite; "" for plain.
    pub cipher: &'a str,
    /// JA4 fingerprint; "" for plain.
    pub ja4: &'a str,
    /// Client certificate verification: "SUCCESS" | "NONE" | "FAILED:...".
    pub verify: &'a str,
    /// Device MAC address.
    pub mac: Option<&'a str>,
    /// Device serial number.
    pub serial: Option<&'a str>,
    /// Device product name.
    pub product: Option<&'a str>,
}

/// The running log: a dedicated writer thread fed by a bounded channel, so a slow disk or a
/// blocked stdout never stalls the proxy's async tasks. Cheap to clone (Arc inside).
///
/// The writer thread exits (after a final flush) when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Option<Arc<writer::Inner>>,
    format: Format,
}

impl AccessLog {
    /// Starts the log. A file target is opened (append, create) before this returns, so a bad
    /// path fails start-up with the io error. `Off` gives a log whose [`enabled`](Self::enabled)
    /// is false and that spawns no thread.
    ///
    /// # Errors
    ///
    /// Opening the file (the message names the path; the kind is the original one), or
    /// spawning the writer thread.
    pub fn start(cfg: &AccessLogConfig) -> io::Result<AccessLog> {
        Ok(AccessLog {
            inner: writer::Inner::start(&cfg.target)?.map(Arc::new),
            format: cfg.format,
        })
    }

    /// Whether lines are written at all; callers may skip building an [`Entry`] when false.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The configured line format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Formats `e` on the caller's thread and hands the line to the writer without blocking;
    /// when the writer has fallen 8192 lines behind, the line is dropped and counted.
    /// Returns false when the line was dropped (the writer fell behind) or the log is off.
    pub fn log(&self, e: &Entry<'_>) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let mut line = String::with_capacity(512);
        match self.format {
            Format::Combined => format_combined(e, &mut line),
            Format::Json => format_json(e, &mut line),
        }
        line.push('\n');
        inner.send(line)
    }

    /// Asks the writer to reopen the file (after logrotate moved it). No-op for stdout, stderr
    /// and off. Never blocks: the request is remembered even if the channel is full.
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            inner.reopen();
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.dropped())
    }

    /// Waits (at most `timeout`) until everything sent so far is written and flushed. Blocks
    /// the calling thread: for shutdown and tests, not for async request paths (use
    /// `spawn_blocking` there).
    pub fn flush_blocking(&self, timeout: Duration) {
        if let Some(inner) = &self.inner {
            inner.flush_blocking(timeout);
        }
    }
}
