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

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines the writer thread may fall behind before lines are dropped.
const CHANNEL_CAPACITY: usize = 8192;
/// Size of the writer's `BufWriter`.
const WRITE_BUFFER: usize = 64 * 1024;
/// Minimum interval between two "lines dropped" warnings.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Cap for the request target.
const CAP_TARGET: usize = 2048;
/// Cap for User-Agent, Referer and Host.
const CAP_HEADER: usize = 512;
/// Cap for every other field.
const CAP_OTHER: usize = 256;
/// Appended to a field that was cut at its cap.
const ELLIPSIS: &str = "...";

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

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction; the fallbacks are never taken.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

fn civil(t: SystemTime) -> Civil {
    // Seconds (floored) and milliseconds since the epoch, also for times before it.
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_millis(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
            let ms = d.subsec_millis();
            if ms == 0 && d.subsec_nanos() == 0 {
                (-s, 0)
            } else {
                // -(s + f) = -(s + 1) + (1 - f), rounding the millis down.
                let nanos = 1_000_000_000 - d.subsec_nanos();
                (-s - 1, nanos / 1_000_000)
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400); // [0, 86399]
    let (year, month, day) = civil_from_days(days);
    let sod = u32::try_from(sod).unwrap_or(0);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
        millis,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `01/Dec/2026:16:04:05 +0000`
fn push_clf_time(out: &mut String, t: SystemTime) {
    let c = civil(t);
    let mon = MONTHS
        .get(c.month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, mon, c.year, c.hour, c.minute, c.second
    );
}

/// `2026-12-01T16:04:05.123Z`
fn push_rfc3339(out: &mut String, t: SystemTime) {
    let c = civil(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    );
}

// ---------------------------------------------------------------------------------------------
// Caps and escaping
// ---------------------------------------------------------------------------------------------

/// `b` cut to at most `cap` bytes including the ellipsis; `true` when it was cut. The cut backs
/// off to a UTF-8 character boundary so valid text stays valid.
fn capped(b: &[u8], cap: usize) -> (&[u8], bool) {
    if b.len() <= cap {
        return (b, false);
    }
    let mut cut = cap.saturating_sub(ELLIPSIS.len());
    let floor = cut.saturating_sub(3);
    while cut > floor && b.get(cut).is_some_and(|&c| c & 0xC0 == 0x80) {
        cut -= 1;
    }
    (b.get(..cut).unwrap_or(b), true)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `b` (capped) with every control character, `"`, `\`, non-ASCII byte (and, unless
/// `space_ok`, space) written as `\xHH`. Empty input is written as `-`.
fn push_escaped(out: &mut String, b: &[u8], cap: usize, space_ok: bool) {
    if b.is_empty() {
        out.push('-');
        return;
    }
    let (b, cut) = capped(b, cap);
    for &c in b {
        let plain =
            (matches!(c, 0x21..=0x7e) && c != b'"' && c != b'\\') || (c == b' ' && space_ok);
        if plain {
            out.push(char::from(c));
        } else {
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0x0f)]));
        }
    }
    if cut {
        out.push_str(ELLIPSIS);
    }
}

/// A quoted field: `"value"`, or `"-"` when absent or empty.
fn push_quoted(out: &mut String, b: Option<&[u8]>, cap: usize) {
    out.push('"');
    push_escaped(out, b.unwrap_or_default(), cap, true);
    out.push('"');
}

/// ` key=value` with an unquoted, whitespace-free value (`-` when absent or empty).
fn push_kv(out: &mut String, key: &str, v: Option<&[u8]>, cap: usize) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_escaped(out, v.unwrap_or_default(), cap, false);
}

/// ` key="value"`.
fn push_kv_quoted(out: &mut String, key: &str, v: Option<&[u8]>, cap: usize) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_quoted(out, v, cap);
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Appends one `combined` line (without the trailing newline) to `out`.
pub fn format_combined(e: &Entry<'_>, out: &mut String) {
    out.reserve(320 + e.target.len() + e.user_agent.map_or(0, <[u8]>::len));
    let client: IpAddr = e.client.ip().to_canonical();
    let _ = write!(out, "{client} - - [");
    push_clf_time(out, e.time);
    out.push_str("] \"");
    push_escaped(out, e.method.as_bytes(), CAP_OTHER, false);
    out.push(' ');
    push_escaped(out, e.target, CAP_TARGET, false);
    out.push(' ');
    push_escaped(out, e.version.as_bytes(), CAP_OTHER, false);
    let _ = write!(out, "\" {} ", e.status);
    if e.bytes_out == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", e.bytes_out);
    }
    out.push(' ');
    push_quoted(out, e.referer, CAP_HEADER);
    out.push(' ');
    push_quoted(out, e.user_agent, CAP_HEADER);
    push_kv(out, "listener", Some(e.listener.as_bytes()), CAP_OTHER);
    push_kv(out, "route", Some(e.route.as_bytes()), CAP_OTHER);
    let _ = write!(out, " local={}", canonical(e.local));
    push_kv_quoted(out, "host", e.host, CAP_HEADER);
    push_kv(out, "sni", e.sni.map(str::as_bytes), CAP_OTHER);
    push_kv(out, "tls", Some(e.tls_version.as_bytes()), CAP_OTHER);
    push_kv(out, "cipher", Some(e.cipher.as_bytes()), CAP_OTHER);
    push_kv(out, "ja4", Some(e.ja4.as_bytes()), CAP_OTHER);
    push_kv(out, "verify", Some(e.verify.as_bytes()), CAP_OTHER);
    push_kv(out, "mac", e.mac.map(str::as_bytes), CAP_OTHER);
    push_kv_quoted(out, "serial", e.serial.map(str::as_bytes), CAP_OTHER);
    push_kv_quoted(out, "product", e.product.map(str::as_bytes), CAP_OTHER);
    let micros = e.duration.as_micros();
    let _ = write!(
        out,
        " bytes_in={} ms={}.{:03}",
        e.bytes_in,
        micros / 1000,
        micros % 1000
    );
}

/// Capped, lossy-UTF-8 text for JSON.
fn json_text(b: &[u8], cap: usize) -> Cow<'_, str> {
    let (b, cut) = capped(b, cap);
    let s = String::from_utf8_lossy(b);
    if cut {
        let mut s = s.into_owned();
        s.push_str(ELLIPSIS);
        Cow::Owned(s)
    } else {
        s
    }
}

/// A capped `&str` field for JSON.
fn text(s: &str) -> Cow<'_, str> {
    json_text(s.as_bytes(), CAP_OTHER)
}

/// `None` for an empty string.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    client: String,
    client_port: u16,
    local: String,
    listener: Cow<'a, str>,
    route: Cow<'a, str>,
    method: Cow<'a, str>,
    target: Cow<'a, str>,
    version: Cow<'a, str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    user_agent: Option<Cow<'a, str>>,
    referer: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
    sni: Option<Cow<'a, str>>,
    tls_version: Cow<'a, str>,
    cipher: Option<Cow<'a, str>>,
    ja4: Option<Cow<'a, str>>,
    verify: Cow<'a, str>,
    mac: Option<Cow<'a, str>>,
    serial: Option<Cow<'a, str>>,
    product: Option<Cow<'a, str>>,
}

/// Appends one `json` line (without the trailing newline) to `out`.
pub fn format_json(e: &Entry<'_>, out: &mut String) {
    let mut time = String::with_capacity(24);
    push_rfc3339(&mut time, e.time);
    let line = JsonLine {
        time,
        client: e.client.ip().to_canonical().to_string(),
        client_port: e.client.port(),
        local: canonical(e.local).to_string(),
        listener: text(e.listener),
        route: text(e.route),
        method: text(e.method),
        target: json_text(e.target, CAP_TARGET),
        version: text(e.version),
        status: e.status,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        // Exact to the microsecond: the shortest round-trip form of micros / 1000.
        duration_ms: e.duration.as_micros() as f64 / 1000.0,
        user_agent: e.user_agent.map(|b| json_text(b, CAP_HEADER)),
        referer: e.referer.map(|b| json_text(b, CAP_HEADER)),
        host: e.host.map(|b| json_text(b, CAP_HEADER)),
        sni: e.sni.and_then(non_empty).map(text),
        tls_version: text(e.tls_version),
        cipher: non_empty(e.cipher).map(text),
        ja4: non_empty(e.ja4).map(text),
        verify: text(e.verify),
        mac: e.mac.map(text),
        serial: e.serial.map(text),
        product: e.product.map(text),
    };
    // Serialising strings and numbers into memory cannot fail.
    if let Ok(s) = serde_json::to_string(&line) {
        out.push_str(&s);
    }
}

// ---------------------------------------------------------------------------------------------
// The running log
// ---------------------------------------------------------------------------------------------

enum Msg {
    Line(String),
    /// Wake-up for a pending reopen (the request itself is the `reopen` flag, so it survives
    /// a full channel).
    Reopen,
    /// Flush, then acknowledge.
    Flush(SyncSender<()>),
}

/// State shared between the handles and the writer thread (which must not hold the sender, or
/// it would never see the channel close).
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    reopen: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    is_file: bool,
}

/// The running log: a dedicated writer thread fed by a bounded channel, so a slow disk or a
/// blocked stdout never stalls the proxy's async tasks. Cheap to clone (Arc inside).
///
/// The writer thread exits (after a final flush) when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
    format: Format,
}

enum Sink {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::Stderr(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::Stderr(w) => w.write_all(buf),
            Sink::File(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Stderr(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

struct Writer {
    out: BufWriter<Sink>,
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    /// A write error was reported and not yet cleared by a successful reopen.
    warned: bool,
    reported_dropped: u64,
    last_drop_report: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    self.flush();
                    self.report_dropped();
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if self.shared.reopen.load(Ordering::Relaxed)
                && self.shared.reopen.swap(false, Ordering::AcqRel)
            {
                self.reopen();
            }
            match msg {
                Msg::Line(line) => {
                    if let Err(e) = self.out.write_all(line.as_bytes()) {
                        self.write_error(&e);
                    }
                }
                Msg::Reopen => {}
                Msg::Flush(ack) => {
                    self.flush();
                    let _ = ack.try_send(());
                }
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.write_error(&e);
        }
    }

    fn write_error(&mut self, e: &io::Error) {
        if !self.warned {
            self.warned = true;
            let target = self
                .path
                .as_ref()
                .map_or_else(|| "standard stream".to_owned(), |p| p.display().to_string());
            tracing::warn!(
                "access log: writing to {target} failed: {e}; further errors are not reported"
            );
        }
    }

    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(f) => {
                // The old writer was just flushed; dropping it closes the old file.
                self.out = BufWriter::with_capacity(WRITE_BUFFER, Sink::File(f));
                self.warned = false;
                tracing::debug!(path = %path.display(), "access log reopened");
            }
            Err(e) => {
                tracing::warn!("cannot reopen {e}; still writing to the previous file");
            }
        }
    }

    fn report_dropped(&mut self) {
        let now = self.shared.dropped.load(Ordering::Relaxed);
        if now <= self.reported_dropped {
            return;
        }
        if self
            .last_drop_report
            .is_some_and(|t| t.elapsed() < DROP_REPORT_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            dropped_total = now,
            "access log writer fell behind: {} lines dropped",
            now - self.reported_dropped
        );
        self.reported_dropped = now;
        self.last_drop_report = Some(Instant::now());
    }
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
        let (sink, path) = match &cfg.target {
            Target::Off => {
                return Ok(AccessLog {
                    inner: None,
                    format: cfg.format,
                })
            }
            Target::Stdout => (Sink::Stdout(io::stdout()), None),
            Target::Stderr => (Sink::Stderr(io::stderr()), None),
            Target::File(p) => (Sink::File(open_file(p)?), Some(p.clone())),
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            out: BufWriter::with_capacity(WRITE_BUFFER, sink),
            path,
            shared: Arc::clone(&shared),
            warned: false,
            reported_dropped: 0,
            last_drop_report: None,
        };
        let is_file = writer.path.is_some();
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(AccessLog {
            inner: Some(Arc::new(Inner {
                tx,
                shared,
                is_file,
            })),
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
        match inner.tx.try_send(Msg::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Asks the writer to reopen the file (after logrotate moved it). No-op for stdout, stderr
    /// and off. Never blocks: the request is remembered even if the channel is full.
    pub fn reopen(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        if !inner.is_file {
            return;
        }
        inner.shared.reopen.store(true, Ordering::Release);
        // Only a wake-up; when the channel is full the writer sees the flag with the next line.
        let _ = inner.tx.try_send(Msg::Reopen);
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.shared.dropped.load(Ordering::Relaxed))
    }

    /// Waits (at most `timeout`) until everything sent so far is written and flushed. Blocks
    /// the calling thread: for shutdown and tests, not for async request paths (use
    /// `spawn_blocking` there).
    pub fn flush_blocking(&self, timeout: Duration) {
        let Some(inner) = &self.inner else {
            return;
        };
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match inner.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Reopen the log on every SIGUSR1 (logrotate's postrotate). Spawn on a tokio runtime.
///
/// The handler is installed whatever the target, so a stray SIGUSR1 never kills the process
/// (for stdout/stderr/off the reopen is a no-op). The task holds a clone of `log`, which keeps
/// the writer thread alive until the task is dropped.
pub async fn reopen_on_sigusr1(log: AccessLog) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("access log: cannot listen for SIGUSR1: {e}");
            return;
        }
    };
    while sig.recv().await.is_some() {
        tracing::debug!("SIGUSR1: reopening the access log");
        log.reopen();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use regex::Regex;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    fn entry() -> Entry<'static> {
        Entry {
            time: at(1_796_141_045, 123),
            client: SocketAddr::new(
                IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
                50_123,
            ),
            local: "198.51.100.1:443".parse().unwrap(),
            listener: "spa",
            route: "cisco",
            method: "GET",
            target: b"/spa/cfg.xml?mac=001122334455",
            version: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 1234,
            duration: Duration::from_micros(12_345),
            user_agent: Some(b"Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)"),
            referer: None,
            host: Some(b"prov.example"),
            sni: Some("prov.example"),
            tls_version: "tls1.0",
            cipher: "AES128-SHA",
            ja4: "t10d1205h1_aaaaaaaaaaaa_bbbbbbbbbbbb",
            verify: "SUCCESS",
            mac: Some("001122334455"),
            serial: Some("CBT1234"),
            product: None,
        }
    }

    fn combined(e: &Entry<'_>) -> String {
        let mut s = String::new();
        format_combined(e, &mut s);
        s
    }

    fn json(e: &Entry<'_>) -> serde_json::Value {
        let mut s = String::new();
        format_json(e, &mut s);
        assert!(!s.contains('\n'));
        serde_json::from_str(&s).unwrap()
    }

    /// fail2ban's apache-common prefix, plus the rest of the combined format.
    fn combined_re() -> Regex {
        Regex::new(concat!(
            r#"^(?P<host>\S+) -\S* \S+ \[(?P<time>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d+) "#,
            r#"(?P<size>\d+|-) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)" (?P<rest>.*)$"#
        ))
        .unwrap()
    }

    #[test]
    fn combined_line_parses() {
        let line = combined(&entry());
        assert_eq!(
            line,
            "192.0.2.7 - - [01/Dec/2026:16:04:05 +0000] \"GET /spa/cfg.xml?mac=001122334455 \
             HTTP/1.1\" 200 1234 \"-\" \"Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)\" \
             listener=spa route=cisco local=198.51.100.1:443 host=\"prov.example\" \
             sni=prov.example tls=tls1.0 cipher=AES128-SHA \
             ja4=t10d1205h1_aaaaaaaaaaaa_bbbbbbbbbbbb verify=SUCCESS mac=001122334455 \
             serial=\"CBT1234\" product=\"-\" bytes_in=0 ms=12.345"
        );
        let c = combined_re().captures(&line).unwrap();
        assert_eq!(&c["host"], "192.0.2.7");
        assert_eq!(&c["time"], "01/Dec/2026:16:04:05 +0000");
        assert_eq!(&c["req"], "GET /spa/cfg.xml?mac=001122334455 HTTP/1.1");
        assert_eq!(&c["status"], "200");
        assert_eq!(&c["size"], "1234");
        assert_eq!(&c["referer"], "-");
        assert_eq!(&c["ua"], "Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)");
        // The key=value tail is whitespace-separated tokens.
        let rest: Vec<&str> = c["rest"].split(' ').collect();
        assert_eq!(rest.len(), 14, "{rest:?}");
        assert!(rest.iter().all(|kv| kv.contains('=')));
    }

    #[test]
    fn combined_plain_no_response_ipv6() {
        let mut e = entry();
        e.client = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
        e.local = "[::ffff:10.0.0.1]:80".parse().unwrap();
        e.status = 0;
        e.bytes_out = 0;
        e.tls_version = "plain";
        e.cipher = "";
        e.ja4 = "";
        e.sni = None;
        e.mac = None;
        e.verify = "FAILED:unable to get local issuer certificate";
        e.duration = Duration::from_micros(7);
        let line = combined(&e);
        let c = combined_re().captures(&line).unwrap();
        assert_eq!(&c["host"], "::1");
        assert_eq!(&c["status"], "0");
        assert_eq!(&c["size"], "-");
        let rest = &c["rest"];
        assert!(rest.contains(" local=10.0.0.1:80 "), "{rest}");
        assert!(rest.contains(" sni=- tls=plain cipher=- ja4=- "), "{rest}");
        assert!(
            rest.contains(
                " verify=FAILED:unable\\x20to\\x20get\\x20local\\x20issuer\\x20certificate "
            ),
            "{rest}"
        );
        assert!(rest.contains(" mac=- "), "{rest}");
        assert!(rest.ends_with(" ms=0.007"), "{rest}");
    }

    #[test]
    fn json_has_every_key() {
        let v = json(&entry());
        let keys = [
            "time",
            "client",
            "client_port",
            "local",
            "listener",
            "route",
            "method",
            "target",
            "version",
            "status",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "user_agent",
            "referer",
            "host",
            "sni",
            "tls_version",
            "cipher",
            "ja4",
            "verify",
            "mac",
            "serial",
            "product",
        ];
        let obj = v.as_object().unwrap();
        for k in keys {
            assert!(obj.contains_key(k), "missing {k}");
        }
        assert_eq!(obj.len(), keys.len());
        assert_eq!(v["time"], "2026-12-01T16:04:05.123Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["client_port"], 50_123);
        assert_eq!(v["local"], "198.51.100.1:443");
        assert_eq!(v["target"], "/spa/cfg.xml?mac=001122334455");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_out"], 1234);
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["duration_ms"].to_string(), "12.345");
        assert!(v["referer"].is_null());
        assert!(v["product"].is_null());
        assert_eq!(v["serial"], "CBT1234");

        let mut e = entry();
        e.cipher = "";
        e.ja4 = "";
        e.sni = None;
        let v = json(&e);
        assert!(v["cipher"].is_null() && v["ja4"].is_null() && v["sni"].is_null());
    }

    fn hostile_ua() -> Vec<u8> {
        let mut ua = b"evil\" \\ \n\r\x1b[31m red \xff\xfe\xc3(".to_vec();
        ua.extend(std::iter::repeat_n(b'A', 10 * 1024));
        ua
    }

    #[test]
    fn hostile_user_agent_combined() {
        let ua = hostile_ua();
        let target = b"/x\"y z\r\n".to_vec();
        let mut e = entry();
        e.user_agent = Some(&ua);
        e.target = &target;
        e.serial = Some("a\"b\nc");
        e.sni = Some("a b\u{7f}");
        let line = combined(&e);
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
        assert!(line.is_ascii());
        let c = combined_re().captures(&line).unwrap();
        let got = &c["ua"];
        assert!(
            got.starts_with(r"evil\x22 \x5C \x0A\x0D\x1B[31m red \xFF\xFE\xC3(AAA"),
            "{got}"
        );
        assert!(got.ends_with("AAA..."));
        // Capped at 512 raw bytes including the ellipsis; 8 of them are escaped (4 chars each).
        let raw_escaped = 8;
        assert_eq!(got.len(), CAP_HEADER + raw_escaped * 3);
        assert_eq!(&c["req"], r"GET /x\x22y\x20z\x0D\x0A HTTP/1.1");
        let rest = &c["rest"];
        assert!(rest.contains(r#" serial="a\x22b\x0Ac" "#), "{rest}");
        assert!(rest.contains(r" sni=a\x20b\x7F "), "{rest}");
    }

    #[test]
    fn hostile_user_agent_json() {
        let ua = hostile_ua();
        let mut e = entry();
        e.user_agent = Some(&ua);
        let mut s = String::new();
        format_json(&e, &mut s);
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let got = v["user_agent"].as_str().unwrap();
        assert!(got.starts_with("evil\" \\ \n\r\x1b[31m red \u{fffd}\u{fffd}\u{fffd}(AA"));
        assert!(got.ends_with("AA..."));
        assert!(got.len() < CAP_HEADER + 10);
    }

    #[test]
    fn caps() {
        let long = "x".repeat(5000);
        let mut e = entry();
        e.target = long.as_bytes();
        e.method = &long;
        e.host = Some(long.as_bytes());
        let v = json(&e);
        assert_eq!(v["target"].as_str().unwrap().len(), CAP_TARGET);
        assert_eq!(v["method"].as_str().unwrap().len(), CAP_OTHER);
        assert_eq!(v["host"].as_str().unwrap().len(), CAP_HEADER);
        assert!(v["target"].as_str().unwrap().ends_with("x..."));
        // A cut never splits a UTF-8 character.
        let s = "é".repeat(300);
        let (b, cut) = capped(s.as_bytes(), CAP_OTHER);
        assert!(cut);
        assert!(std::str::from_utf8(b).is_ok());
        assert_eq!(capped(b"abc", 3), (&b"abc"[..], false));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let mut s = String::new();
        push_clf_time(&mut s, at(0, 0));
        assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
        s.clear();
        push_clf_time(&mut s, at(951_868_799, 999));
        assert_eq!(s, "29/Feb/2000:23:59:59 +0000");
        s.clear();
        push_clf_time(&mut s, at(1_796_141_045, 0));
        assert_eq!(s, "01/Dec/2026:16:04:05 +0000");
        s.clear();
        push_rfc3339(&mut s, at(1_709_164_800, 5));
        assert_eq!(s, "2024-02-29T00:00:00.005Z");
        s.clear();
        push_rfc3339(&mut s, at(4_107_542_400, 0));
        assert_eq!(s, "2100-03-01T00:00:00.000Z");
        s.clear();
        push_rfc3339(&mut s, UNIX_EPOCH - Duration::from_millis(1));
        assert_eq!(s, "1969-12-31T23:59:59.999Z");
        s.clear();
        push_rfc3339(&mut s, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(s, "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn target_deserialisation() {
        let t = |y: &str| serde_yaml::from_str::<Target>(y);
        assert_eq!(t("stdout").unwrap(), Target::Stdout);
        assert_eq!(t("stderr").unwrap(), Target::Stderr);
        assert_eq!(t("off").unwrap(), Target::Off);
        assert_eq!(
            t("/var/log/provgate/access.log").unwrap(),
            Target::File(PathBuf::from("/var/log/provgate/access.log"))
        );
        let err = t("''").unwrap_err().to_string();
        assert!(err.contains("must not be empty"), "{err}");

        let c: AccessLogConfig = serde_yaml::from_str("format: json\ntarget: stderr").unwrap();
        assert_eq!(
            c,
            AccessLogConfig {
                format: Format::Json,
                target: Target::Stderr
            }
        );
        let c: AccessLogConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c, AccessLogConfig::default());
        assert_eq!(c.target, Target::Stdout);
        assert_eq!(c.format, Format::Combined);
        assert!(serde_yaml::from_str::<AccessLogConfig>("colour: red").is_err());
        assert!(serde_yaml::from_str::<AccessLogConfig>("format: xml").is_err());
    }

    #[test]
    fn off_is_disabled() {
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Json,
            target: Target::Off,
        })
        .unwrap();
        assert!(!log.enabled());
        assert_eq!(log.format(), Format::Json);
        log.log(&entry());
        log.reopen();
        log.flush_blocking(Duration::from_secs(1));
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn bad_path_fails_start() {
        let dir = tempfile::tempdir().unwrap();
        let err = AccessLog::start(&AccessLogConfig {
            format: Format::Combined,
            target: Target::File(dir.path().join("missing/access.log")),
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing/access.log"), "{err}");
    }

    #[test]
    fn file_flush_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "existing\n").unwrap();
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Combined,
            target: Target::File(path.clone()),
        })
        .unwrap();
        assert!(log.enabled());
        let e = entry();
        log.log(&e);
        log.clone().log(&e);
        log.flush_blocking(Duration::from_secs(5));
        let first = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 3, "{first}");
        assert_eq!(lines[0], "existing");
        assert!(combined_re().is_match(lines[1]));

        // logrotate: rename, then SIGUSR1 -> reopen.
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        let mut e2 = entry();
        e2.route = "after";
        log.log(&e2);
        log.flush_blocking(Duration::from_secs(5));
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert_eq!(old.lines().count(), 3);
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains(" route=after "));
        assert!(new.ends_with('\n'));
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn json_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Json,
            target: Target::File(path.clone()),
        })
        .unwrap();
        for _ in 0..100 {
            log.log(&entry());
        }
        log.flush_blocking(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100);
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["status"], 200);
        }
        // Dropping the last handle ends the writer thread after a final flush.
        drop(log);
    }

    #[tokio::test]
    async fn sigusr1_task_runs() {
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Combined,
            target: Target::Off,
        })
        .unwrap();
        let task = tokio::spawn(reopen_on_sigusr1(log));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        task.abort();
    }
}
