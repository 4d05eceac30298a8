//! Prometheus metrics: one [`Metrics`] registered into a registry the caller passes in (tests
//! use a fresh one). Every label takes values from a bounded set: listener and route names come
//! from the config, versions/ciphers/engines from the TLS libraries, reasons from a fixed
//! taxonomy, device families and firmware from a bucketing function. Raw IPs, SNI names and
//! User-Agents never become labels.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::hello::{ClientHello, HelloFormat};

/// Everything observed across connections: metrics and the fingerprint view.
#[derive(Debug)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub fingerprints: crate::fingerprint::Fingerprints,
    /// Refused connections are counted always but logged at most once a second.
    pub refusal_log: RateLimit,
    /// Connections that end before HTTP are counted always; their log lines pass this.
    pub failure_log: FailureLogLimit,
    /// The last hour's handshake counts, the last failed handshakes, the last reload (the
    /// admin status page).
    pub recent: crate::recent::Recent,
}

/// At most one event per second passes; the rest are only counted by the caller's metric.
#[derive(Debug, Default)]
pub struct RateLimit {
    last_second: std::sync::atomic::AtomicU64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            last_second: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn allow(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_second.load(Ordering::Relaxed);
        now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Which client network a log line is about: IPv4 /24, IPv6 /64 (IPv4-mapped IPv6 counts as
/// IPv4). One host, or one attacker's whole subnet, is one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNet {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl ClientNet {
    pub fn of(ip: std::net::IpAddr) -> ClientNet {
        match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                ClientNet::V4([a, b, c])
            }
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                let mut net = [0u8; 8];
                net.copy_from_slice(&o[..8]);
                ClientNet::V6(net)
            }
        }
    }
}

/// What [`FailureLogLimit::check`] says about one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVerdict {
    /// Write the line. `suppressed`: lines for the same key dropped since its last written
    /// line; `suppressed_elsewhere`: lines dropped for keys the table has since forgotten.
    Write {
        suppressed: u64,
        suppressed_elsewhere: u64,
    },
    /// Drop the line (the caller counts it in `provgate_log_suppressed_total`).
    Suppress,
}

/// One fixed window of a budget.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: std::time::Instant,
    used: u32,
}

impl Window {
    fn new(start: std::time::Instant) -> Window {
        Window { start, used: 0 }
    }

    /// Whether a budget of `limit` per `len` has room at `now`, opening a new window when
    /// the old one has passed.
    fn has_room(&mut self, now: std::time::Instant, len: std::time::Duration, limit: u32) -> bool {
        if now.saturating_duration_since(self.start) >= len {
            self.start = now;
            self.used = 0;
        }
        self.used < limit
    }
}

#[derive(Debug)]
struct KeyState {
    window: Window,
    /// Dropped since the key's last written line.
    suppressed: u64,
}

#[derive(Debug)]
struct LimitState {
    keys: lru::LruCache<(&'static str, ClientNet), KeyState>,
    global: Window,
    /// Drop counts of keys evicted before they could report them.
    orphaned: u64,
}

/// Rate limit for failure log lines: at most `per_key` lines per (reason, client network) per
/// window, and at most `global` lines per window in all, so neither one client nor one that
/// rotates through many networks can turn failed handshakes into log volume. Keys live in a
/// bounded LRU table; a key's next written line reports how many of its lines were dropped.
#[derive(Debug)]
pub struct FailureLogLimit {
    state: std::sync::Mutex<LimitState>,
    window: std::time::Duration,
    per_key: u32,
    global: u32,
}

impl FailureLogLimit {
    /// Lines per key per window.
    pub const PER_KEY: u32 = 5;
    /// Lines per window over all keys.
    pub const GLOBAL: u32 = 200;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    /// Keys remembered (about 100 bytes each).
    pub const KEYS: usize = 4096;

    pub fn new(
        window: std::time::Duration,
        per_key: u32,
        global: u32,
        keys: usize,
    ) -> FailureLogLimit {
        let keys = std::num::NonZeroUsize::new(keys.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        FailureLogLimit {
            state: std::sync::Mutex::new(LimitState {
                keys: lru::LruCache::new(keys),
                global: Window::new(std::time::Instant::now()),
                orphaned: 0,
            }),
            window,
            per_key,
            global,
        }
    }

    /// Whether a line for `reason` about client `ip` may be written now.
    pub fn check(&self, reason: &'static str, ip: std::net::IpAddr) -> LogVerdict {
        self.check_at(reason, ip, std::time::Instant::now())
    }

    /// [`FailureLogLimit::check`] at a given time (for tests).
    pub fn check_at(
        &self,
        reason: &'static str,
        ip: std::net::IpAddr,
        now: std::time::Instant,
    ) -> LogVerdict {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *guard;
        let key = (reason, ClientNet::of(ip));
        if !st.keys.contains(&key) {
            let fresh = KeyState {
                window: Window::new(now),
                suppressed: 0,
            };
            if let Some((_, old)) = st.keys.push(key, fresh) {
                st.orphaned += old.suppressed;
            }
        }
        let Some(k) = st.keys.get_mut(&key) else {
            return LogVerdict::Suppress; // just inserted; unreachable
        };
        let key_room = k.window.has_room(now, self.window, self.per_key);
        if !(key_room && st.global.has_room(now, self.window, self.global)) {
            k.suppressed += 1;
            return LogVerdict::Suppress;
        }
        k.window.used += 1;
        st.global.used += 1;
        LogVerdict::Write {
            suppressed: std::mem::take(&mut k.suppressed),
            suppressed_elsewhere: std::mem::take(&mut st.orphaned),
        }
    }
}

impl Default for FailureLogLimit {
    fn default() -> Self {
        FailureLogLimit::new(Self::WINDOW, Self::PER_KEY, Self::GLOBAL, Self::KEYS)
    }
}

impl Telemetry {
    pub fn new(registry: Registry) -> Telemetry {
        Telemetry {
            metrics: Metrics::new(registry),
            fingerprints: Default::default(),
            refusal_log: RateLimit::default(),
            failure_log: FailureLogLimit::default(),
            recent: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub connections_accepted: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub client_hellos: IntCounterVec,
    pub handshakes: IntCounterVec,
    pub handshake_failures: IntCounterVec,
    pub handshake_duration: HistogramVec,
    pub dhe_handshakes: IntCounterVec,
    pub requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub devices_seen: IntCounterVec,
    pub certificate_not_after: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub openssl_capability: IntGaugeVec,
    pub draining: IntGauge,
    pub refused_connections: IntCounterVec,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounterVec,
    /// Failure log lines dropped by [`FailureLogLimit`] (the failures are still counted).
    pub log_suppressed: IntCounterVec,
    pub reloads: IntCounterVec,
    /// 1 while a listener's accept loop waits at a connection limit (per socket, summed).
    pub accept_paused: IntGaugeVec,
    pub handshakes_in_progress: IntGaugeVec,
    /// The wait for a handshake slot (`limits.max_handshakes`).
    pub handshake_queue: HistogramVec,
    /// Requests waiting for one of a backend's `max_connections`.
    pub backend_queue_depth: IntGaugeVec,
    pub backend_queue: HistogramVec,
    /// What sends a device into its retry timer (an hour by default on SPA firmware).
    pub device_retries_caused: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

/// The labels of `provgate_handshakes_total`.
#[derive(Debug, Clone, Copy)]
pub struct Handshake<'a> {
    pub listener: &'a str,
    pub route: &'a str,
    pub engine: &'a str,
    pub version: &'a str,
    pub cipher: &'a str,
    pub outcome: &'a str,
}

/// Holds a connection's place in `provgate_connections_open` until dropped.
#[derive(Debug)]
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Define every metric in `registry`. Panics only on a programming error (a duplicate or
    /// malformed static definition), which the tests catch.
    pub fn new(registry: Registry) -> Metrics {
        let r = &registry;
        let draining = IntGauge::new("provgate_draining", "1 while shutting down and draining")
            .expect("static metric definition");
        r.register(Box::new(draining.clone()))
            .expect("metric registered once");
        let latency = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Metrics {
            connections_accepted: counter(
                r,
                "provgate_connections_accepted_total",
                "TCP connections accepted",
                &["listener"],
            ),
            connections_open: gauge(
                r,
                "provgate_connections_open",
                "Connections currently open",
                &["listener"],
            ),
            client_hellos: counter(
                r,
                "provgate_client_hellos_total",
                "ClientHellos parsed, by record format and highest version offered",
                &["listener", "format", "max_version"],
            ),
            handshakes: counter(
                r,
                "provgate_handshakes_total",
                "TLS handshakes by outcome; version and cipher are empty on failure",
                &[
                    "listener", "route", "engine", "version", "cipher", "outcome",
                ],
            ),
            handshake_failures: counter(
                r,
                "provgate_handshake_failures_total",
                "Connections that ended before HTTP, by reason",
                &["listener", "reason"],
            ),
            handshake_duration: histogram(
                r,
                "provgate_handshake_duration_seconds",
                "From accept to finished handshake",
                &["listener", "engine"],
                latency.clone(),
            ),
            dhe_handshakes: counter(
                r,
                "provgate_dhe_handshakes_total",
                "Handshakes that used finite-field DHE, by group size",
                &["listener", "bits"],
            ),
            requests: counter(
                r,
                "provgate_requests_total",
                "HTTP requests by status class",
                &["listener", "route", "status_class"],
            ),
            upstream_duration: histogram(
                r,
                "provgate_upstream_duration_seconds",
                "Backend response time (request sent to response complete)",
                &["backend"],
                latency,
            ),
            upstream_errors: counter(
                r,
                "provgate_upstream_errors_total",
                "Requests the backend could not serve",
                &["backend", "kind"],
            ),
            devices_seen: counter(
                r,
                "provgate_devices_seen_total",
                "Requests by device family and firmware (from the User-Agent)",
                &["family", "firmware"],
            ),
            certificate_not_after: gauge(
                r,
                "provgate_certificate_not_after_seconds",
                "Certificate expiry as Unix time",
                &["certificate"],
            ),
            build_info: gauge(
                r,
                "provgate_build_info",
                "Always 1; labels describe the build",
                &["version", "openssl"],
            ),
            openssl_capability: gauge(
                r,
                "provgate_openssl_capability",
                "1 when the linked OpenSSL can do this",
                &["feature"],
            ),
            refused_connections: counter(
                r,
                "provgate_refused_connections_total",
                "Connections refused before TLS",
                &["listener", "reason"],
            ),
            access_log_dropped: counter(
                r,
                "provgate_access_log_dropped_total",
                "Access-log lines dropped because the log writer fell behind (slow disk or stdout)",
                &[],
            ),
            log_suppressed: counter(
                r,
                "provgate_log_suppressed_total",
                "Failure log lines dropped by the per-client-network rate limit, by reason \
                 (provgate_handshake_failures_total still counts every failure)",
                &["reason"],
            ),
            reloads: counter(
                r,
                "provgate_reload_total",
                "Configuration reloads by outcome",
                &["outcome"],
            ),
            accept_paused: gauge(
                r,
                "provgate_accept_paused",
                "1 while the listener stops accepting at a connection limit (the kernel's \
                 listen queue holds new connections)",
                &["listener"],
            ),
            handshakes_in_progress: gauge(
                r,
                "provgate_handshakes_in_progress",
                "TLS handshakes holding a limits.max_handshakes slot",
                &[],
            ),
            handshake_queue: histogram(
                r,
                "provgate_handshake_queue_seconds",
                "Wait for a handshake slot (limits.max_handshakes), before the handshake timeout",
                &[],
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            backend_queue_depth: gauge(
                r,
                "provgate_backend_queue_depth",
                "Requests waiting for a free connection to the backend (backends.<name>.max_connections)",
                &["backend"],
            ),
            backend_queue: histogram(
                r,
                "provgate_backend_queue_seconds",
                "Wait for a free backend connection (503 after backends.<name>.queue_timeout)",
                &["backend"],
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            device_retries_caused: counter(
                r,
                "provgate_device_retries_caused_total",
                "Devices provgate sent into their retry timer (Resync_Error_Retry_Delay, 3600 s by \
                 default): a refused connection, a failed handshake or a 5xx answer",
                &["listener", "cause"],
            ),
            draining,
            registry,
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    // Typed helpers: every labelled metric is recorded through one of these, so no call site
    // orders a label array by hand.

    /// A connection accepted on `listener`; the gauge of open ones goes back down when the
    /// returned handle is dropped.
    pub fn connection_opened(&self, listener: &str) -> OpenConnection {
        self.connections_accepted
            .with_label_values(&[listener])
            .inc();
        let open = self.connections_open.with_label_values(&[listener]);
        open.inc();
        OpenConnection(open)
    }

    /// A finished handshake (`outcome`: `success` or `failure`; version and cipher are empty
    /// for failures).
    pub fn handshake(&self, h: Handshake<'_>) {
        self.handshakes
            .with_label_values(&[
                h.listener, h.route, h.engine, h.version, h.cipher, h.outcome,
            ])
            .inc();
    }

    pub fn handshake_seconds(&self, listener: &str, engine: &str, seconds: f64) {
        self.handshake_duration
            .with_label_values(&[listener, engine])
            .observe(seconds);
    }

    /// A connection that ended before HTTP, by its reason label.
    pub fn handshake_failure(&self, listener: &str, reason: &str) {
        self.handshake_failures
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// A connection refused before TLS (allow/deny, untrusted PROXY peer, a limit).
    pub fn refused(&self, listener: &str, reason: &str) {
        self.refused_connections
            .with_label_values(&[listener, reason])
            .inc();
    }

    pub fn dhe_handshake(&self, listener: &str, bits: u32) {
        self.dhe_handshakes
            .with_label_values(&[listener, &bits.to_string()])
            .inc();
    }

    pub fn log_line_suppressed(&self, reason: &str) {
        self.log_suppressed.with_label_values(&[reason]).inc();
    }

    /// A finished request, by status class (`status` 0: nothing was sent).
    pub fn request(&self, listener: &str, route: &str, status: u16) {
        self.requests
            .with_label_values(&[listener, route, status_class(status)])
            .inc();
    }

    /// [`Self::request`] through a connection's [`ConnMetrics`]: the label lookup (hashing
    /// and a lock) only when the status class differs from the previous request's.
    pub fn request_on(&self, c: &mut ConnMetrics, listener: &str, route: &str, status: u16) {
        let class = status_class(status);
        match &c.requests {
            Some((cached, counter)) if *cached == class => counter.inc(),
            _ => {
                let counter = self.requests.with_label_values(&[listener, route, class]);
                counter.inc();
                c.requests = Some((class, counter));
            }
        }
    }

    /// [`Self::upstream_seconds`] through a connection's [`ConnMetrics`].
    pub fn upstream_seconds_on(&self, c: &mut ConnMetrics, backend: &str, seconds: f64) {
        c.upstream
            .get_or_insert_with(|| self.upstream_duration.with_label_values(&[backend]))
            .observe(seconds);
    }

    /// [`Self::device_seen`] for `user_agent` through a connection's [`ConnMetrics`]. Returns
    /// whether the User-Agent is new on this connection (the caller records it once).
    pub fn device_seen_on(&self, c: &mut ConnMetrics, user_agent: &str) -> bool {
        if let Some((agent, counter)) = &c.device {
            if **agent == *user_agent {
                counter.inc();
                return false;
            }
        }
        let (family, firmware) = device_bucket(user_agent);
        let counter = self.devices_seen.with_label_values(&[family, &firmware]);
        counter.inc();
        c.device = Some((user_agent.into(), counter));
        true
    }

    /// `kind`: `timeout` or `unreachable`.
    pub fn upstream_error(&self, backend: &str, kind: &str) {
        self.upstream_errors
            .with_label_values(&[backend, kind])
            .inc();
    }

    pub fn upstream_seconds(&self, backend: &str, seconds: f64) {
        self.upstream_duration
            .with_label_values(&[backend])
            .observe(seconds);
    }

    pub fn device_seen(&self, family: &str, firmware: &str) {
        self.devices_seen
            .with_label_values(&[family, firmware])
            .inc();
    }

    pub fn certificate_expiry(&self, certificate: &str, not_after_unix: i64) {
        self.certificate_not_after
            .with_label_values(&[certificate])
            .set(not_after_unix);
    }

    pub fn set_build_info(&self, version: &str, openssl: &str) {
        self.build_info
            .with_label_values(&[version, openssl])
            .set(1);
    }

    pub fn set_capability(&self, feature: &str, available: bool) {
        self.openssl_capability
            .with_label_values(&[feature])
            .set(i64::from(available));
    }

    /// `outcome`: `success` or `failure`.
    pub fn reload(&self, outcome: &str) {
        self.reloads.with_label_values(&[outcome]).inc();
    }

    /// A device that will wait its retry timer because of provgate or its backend: `cause`
    /// is `refused`, `handshake_failure` or `status_5xx`.
    pub fn device_retry_caused(&self, listener: &str, cause: &str) {
        self.device_retries_caused
            .with_label_values(&[listener, cause])
            .inc();
    }

    pub fn access_log_line_dropped(&self) {
        self.access_log_dropped.with_label_values::<&str>(&[]).inc();
    }

    /// `provgate_accept_paused` of `listener` (the accept loop raises and lowers it).
    pub fn accept_paused(&self, listener: &str) -> IntGauge {
        self.accept_paused.with_label_values(&[listener])
    }

    pub fn hello(&self, listener: &str, h: &ClientHello) {
        let format = match h.format {
            HelloFormat::Tls => "tls",
            HelloFormat::Sslv2 => "sslv2",
        };
        self.client_hellos
            .with_label_values(&[listener, format, &bounded_version(h)])
            .inc();
    }
}

fn bounded_version(h: &ClientHello) -> String {
    let v = h.max_version();
    if (0x0300..=0x0304).contains(&v.0) || v.0 == 0x0002 {
        v.to_string()
    } else {
        "other".to_string()
    }
}

/// A connection's request metrics, resolved on its first request and reused while the labels
/// stay the same: a keep-alive connection's requests share listener, route and backend, and
/// almost always the status class and the User-Agent.
#[derive(Debug, Default)]
pub struct ConnMetrics {
    requests: Option<(&'static str, IntCounter)>,
    upstream: Option<Histogram>,
    device: Option<(Box<str>, IntCounter)>,
}

/// `2xx`, `4xx`, ... (`0` becomes `none`: no response was written).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// Device family and firmware bucket from a provisioning User-Agent such as
/// `Linksys/SPA-2102-2.0.5 (88012BA01234)`, `Cisco/SPA508G-7.4.8a (...)` or
/// `Cisco-CP-8841-3PCC/11.0 (...)`. Both values come from fixed, small sets.
pub fn device_bucket(user_agent: &str) -> (&'static str, String) {
    let ua = user_agent.to_ascii_uppercase();
    let family = if ua.contains("PAP2T") {
        "PAP2T"
    } else if ua.contains("PAP2") {
        "PAP2"
    } else if let Some(model) = model_after(&ua, "SPA") {
        match model {
            m if m.len() == 4 && m.starts_with('2') => "SPA2xxx",
            m if m.len() == 4 && m.starts_with('3') => "SPA3xxx",
            m if m.len() == 4 && m.starts_with('8') => "SPA8xxx",
            m if m.starts_with('9') => "SPA9xx",
            m if m.starts_with('5') => "SPA5xx",
            m if m.starts_with('3') => "SPA3xx",
            m if m.starts_with('2') => "SPA2xx",
            m if m.starts_with('1') => "SPA1xx",
            _ => "SPA-other",
        }
    } else if ua.contains("CP-78") {
        "CP-78xx"
    } else if ua.contains("CP-88") {
        "CP-88xx"
    } else if ua.contains("CP-68") {
        "CP-68xx"
    } else if ua.contains("ATA19") {
        "ATA19x"
    } else if ua.contains("WRP") {
        "WRP"
    } else if ua.contains("RTP") {
        "RTP"
    } else {
        "other"
    };
    (family, firmware_bucket(&ua))
}

fn model_after<'a>(ua: &'a str, prefix: &str) -> Option<&'a str> {
    let i = ua.find(prefix)?;
    let rest = ua[i + prefix.len()..].trim_start_matches('-');
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// `major.minor` of the first version number after the model, when both are small numbers.
fn firmware_bucket(ua: &str) -> String {
    let bytes = ua.as_bytes();
    for (i, w) in bytes.windows(3).enumerate() {
        let starts = i == 0 || matches!(bytes[i - 1], b'-' | b'/' | b' ');
        if starts && w[0].is_ascii_digit() {
            let tail = &ua[i..];
            let mut parts = tail.split(|c: char| !c.is_ascii_digit());
            let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
                continue;
            };
            if tail.as_bytes().get(major.len()) != Some(&b'.') {
                continue;
            }
            if let (Ok(a), Ok(b)) = (major.parse::<u32>(), minor.parse::<u32>()) {
                if a <= 20 && b <= 20 {
                    return format!("{a}.{b}");
                }
            }
        }
    }
    "other".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_buckets() {
        assert_eq!(
            device_bucket("Linksys/SPA-2102-2.0.5 (88012BA01234)"),
            ("SPA2xxx", "2.0".into())
        );
        assert_eq!(
            device_bucket("Cisco/SPA508G-7.4.8a (0002FDFF2103)(CBT141400UK)"),
            ("SPA5xx", "7.4".into())
        );
        assert_eq!(
            device_bucket("Cisco/SPA525G-7.4.7 (CBT141900G7)"),
            ("SPA5xx", "7.4".into())
        );
        assert_eq!(
            device_bucket("Cisco-CP-8841-3PCC/11.0 (00562b043615)"),
            ("CP-88xx", "11.0".into())
        );
        assert_eq!(
            device_bucket("Linksys/PAP2T-5.1.6(LS)"),
            ("PAP2T", "5.1".into())
        );
        assert_eq!(
            device_bucket("Sipura/SPA962-6.1.5(a)"),
            ("SPA9xx", "6.1".into())
        );
        assert_eq!(device_bucket("curl/8.0.1"), ("other", "8.0".into()));
        assert_eq!(
            device_bucket("Mozilla/5.0 (X11; Linux)"),
            ("other", "5.0".into())
        );
        assert_eq!(device_bucket("x/99999.1"), ("other", "other".into()));
        assert_eq!(device_bucket(""), ("other", "other".into()));
    }

    #[test]
    fn label_sets_stay_bounded_under_random_user_agents() {
        let mut families = std::collections::HashSet::new();
        let mut firmware = std::collections::HashSet::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for i in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ua = format!(
                "Vendor{}/SPA{}-{}.{}.{} ({x:x})",
                i,
                x % 1000,
                x % 97,
                (x >> 8) % 41,
                i
            );
            let (f, fw) = device_bucket(&ua);
            families.insert(f);
            firmware.insert(fw);
        }
        assert!(families.len() <= 16, "{families:?}");
        assert!(firmware.len() <= 21 * 21 + 1, "{}", firmware.len());
    }

    #[test]
    fn definitions_are_valid_and_render() {
        let m = Metrics::new(Registry::new());
        m.requests.with_label_values(&["l", "r", "2xx"]).inc();
        let text = m.render();
        assert!(
            text.contains(
                "provgate_requests_total{listener=\"l\",route=\"r\",status_class=\"2xx\"} 1"
            ),
            "{text}"
        );
    }
    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn written(v: LogVerdict) -> Option<(u64, u64)> {
        match v {
            LogVerdict::Write {
                suppressed,
                suppressed_elsewhere,
            } => Some((suppressed, suppressed_elsewhere)),
            LogVerdict::Suppress => None,
        }
    }

    #[test]
    fn failure_log_limit_per_reason_and_network_with_suppressed_counts() {
        let t0 = std::time::Instant::now();
        let s = std::time::Duration::from_secs;
        let l = FailureLogLimit::new(s(10), 3, 1000, 64);
        let at = |reason, addr: &str, secs| written(l.check_at(reason, ip(addr), t0 + s(secs)));
        // Three lines per window for one /24, then silence.
        assert_eq!(at("not_tls", "192.0.2.1", 0), Some((0, 0)));
        assert_eq!(at("not_tls", "192.0.2.2", 1), Some((0, 0)));
        assert_eq!(at("not_tls", "192.0.2.254", 2), Some((0, 0)));
        assert_eq!(at("not_tls", "192.0.2.1", 3), None);
        assert_eq!(at("not_tls", "192.0.2.9", 4), None);
        // Another reason, another network: their own budgets.
        assert_eq!(at("timeout", "192.0.2.1", 4), Some((0, 0)));
        assert_eq!(at("not_tls", "192.0.3.1", 4), Some((0, 0)));
        // The window reopens: the next line reports the two dropped ones, once.
        assert_eq!(at("not_tls", "192.0.2.1", 10), Some((2, 0)));
        assert_eq!(at("not_tls", "192.0.2.1", 11), Some((0, 0)));
    }

    #[test]
    fn failure_log_limit_groups_ipv6_by_64_and_mapped_ipv4_with_ipv4() {
        let t0 = std::time::Instant::now();
        let l = FailureLogLimit::new(std::time::Duration::from_secs(10), 1, 1000, 64);
        let at = |addr: &str| written(l.check_at("not_tls", ip(addr), t0));
        assert!(at("2001:db8:1:2::1").is_some());
        assert!(at("2001:db8:1:2:ffff::9").is_none(), "same /64");
        assert!(at("2001:db8:1:3::1").is_some(), "next /64");
        assert!(at("198.51.100.7").is_some());
        assert!(at("::ffff:198.51.100.8").is_none(), "mapped IPv4, same /24");
        assert_eq!(
            ClientNet::of(ip("::ffff:198.51.100.8")),
            ClientNet::V4([198, 51, 100])
        );
    }

    #[test]
    fn failure_log_limit_has_a_global_budget_and_a_bounded_table() {
        let l = FailureLogLimit::new(std::time::Duration::from_secs(10), 5, 10, 4);
        let t0 = std::time::Instant::now();
        // Many networks, one line each: the global budget stops them after 10.
        let passed = (0..100u8)
            .filter(|i| written(l.check_at("not_tls", ip(&format!("10.0.{i}.1")), t0)).is_some())
            .count();
        assert_eq!(passed, 10);
        // The table holds 4 keys; drop counts of evicted keys are not lost, the next written
        // line reports them.
        let later = t0 + std::time::Duration::from_secs(10);
        let v = written(l.check_at("timeout", ip("10.9.9.9"), later));
        assert_eq!(v.map(|(own, _)| own), Some(0));
        assert!(v.is_some_and(|(_, elsewhere)| elsewhere > 0), "{v:?}");
        let st = l
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(st.keys.len() <= 4);
    }

    #[test]
    fn log_suppressed_metric_is_registered() {
        let m = Metrics::new(Registry::new());
        m.log_suppressed.with_label_values(&["not_tls"]).inc();
        assert!(m
            .render()
            .contains("provgate_log_suppressed_total{reason=\"not_tls\"} 1"));
    }
}
