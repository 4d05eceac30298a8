//! Reconnect storms: after a site's power cut every device handshakes at once, and one that
//! gets a reset, a 502 or a 503 waits `Resync_Error_Retry_Delay` (an hour by default). At the
//! connection limit provgate stops accepting and the kernel's listen queue holds the rest
//! (`limits.on_limit: wait`); handshakes run `limits.max_handshakes` at a time, first come
//! first served; the admin port answers throughout. `on_limit: close` refuses at once, counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";
/// Devices in the storm.
const STORM: usize = 1500;
/// The descriptor limit the binary runs under.
const NOFILE: u64 = 512;
/// What provgate allows under it: (512 - 64 reserved - 128 idle backend pool - 64 admin cap) / 2.
const EXPECTED_MAX: usize = 128;
/// Every device must be served within this.
const CLIENT_DEADLINE: Duration = Duration::from_secs(50);

/// The real binary under `prlimit --nofile=N:N`, killed when the test ends.
struct Proc {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Proc {
    fn start_limited(config: &std::path::Path, nofile: u64) -> Proc {
        let found = Command::new("prlimit")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "this test needs util-linux's `prlimit` on PATH (apt-get install util-linux) to \
             start provgate under a low descriptor limit"
        );
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg(env!("CARGO_BIN_EXE_provgate"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc { child, lines }
    }

    /// The log lines up to and including the first containing every needle (30 s at most).
    fn lines_until(&self, needles: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = needles.iter().all(|n| line.contains(n));
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!(
                    "no log line with {needles:?} ({e}); got:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// The line among `lines` containing every needle.
    fn find<'a>(lines: &'a [String], needles: &[&str]) -> &'a str {
        lines
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no log line with {needles:?} in:\n{}", lines.join("\n")))
    }

    /// The value of `field=` in `line`.
    fn field<'a>(line: &'a str, field: &str) -> &'a str {
        line.split(&format!(" {field}="))
            .nth(1)
            .unwrap_or_else(|| panic!("no {field}= in {line}"))
            .split_whitespace()
            .next()
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One admin request; (status, body). Bounded: an admin port that hangs fails the test.
async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut a = TcpStream::connect(admin).await.unwrap();
    a.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let text = read_until_close(&mut a, Duration::from_secs(5))
        .await
        .unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The sum of every series of `name` whose labels contain all of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn legacy_config(backend: SocketAddr, listener_extra: &str, limits: &str) -> String {
    format!(
        r#"
admin: {{ listen: "127.0.0.1:0" }}
backends:
  prov: {{ address: "{backend}", read_timeout: 30s }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - name: sipura
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
{listener_extra}limits: {{ {limits} }}
access_log: {{ target: "off" }}
"#
    )
}

/// One device: TLS 1.0 handshake, one GET; the status, or why there was none.
async fn device(addr: SocketAddr) -> Result<u16, String> {
    let fetch = async {
        let mut s = Legacy::default().connect(addr).await?;
        Ok::<u16, String>(get(&mut s, MAC_PATH, "").await.0)
    };
    tokio::time::timeout(CLIENT_DEADLINE, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CLIENT_DEADLINE:?}")))
}

/// 1,500 TLS 1.0 devices at once against provgate under a 512-descriptor limit: every one gets
/// its 200 (none is reset or refused: the listen queue holds them), never more connections are
/// open than the descriptors allow, and `/healthz` answers while the listener is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_devices_under_a_low_descriptor_limit_is_served_without_a_failure() {
    // This process holds every client socket and the backend's: make room for them.
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        files >= (2 * STORM as u64) + 256,
        "the test process needs {} descriptors, has {files}",
        2 * STORM + 256
    );
    let backend = backend().await;
    let pki = sipura_pki();
    // No max_connections: the descriptors decide.
    let config = pki.write("config.yaml", &legacy_config(backend, "", ""));
    let p = Proc::start_limited(&config, NOFILE);
    let log = p.lines_until(&["listening", "listener=sipura"]);
    let limits = Proc::find(&log, &["connection limits"]);
    assert_eq!(
        Proc::field(limits, "max_connections"),
        EXPECTED_MAX.to_string(),
        "{limits}"
    );
    let admin: SocketAddr = Proc::field(Proc::find(&log, &["admin listening"]), "addr")
        .parse()
        .unwrap();
    let addr: SocketAddr = Proc::field(Proc::find(&log, &["listening", "listener=sipura"]), "addr")
        .parse()
        .unwrap();

    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..STORM)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let r = device(addr).await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            })
        })
        .collect();

    // While the devices come in: the listener pauses at the limit (and never goes over it),
    // and the admin port answers.
    let (mut paused_seen, mut max_open, mut healthz_during) = (false, 0.0f64, None);
    let mut samples = 0;
    while done.load(Ordering::Relaxed) < STORM && samples < 5_000 {
        samples += 1;
        let (status, metrics) = admin_get(admin, "/metrics").await;
        assert_eq!(status, 200, "{metrics}");
        max_open = max_open.max(sum(&metrics, "provgate_connections_open", &[]));
        if sum(&metrics, "provgate_accept_paused", &["listener=\"sipura\""]) >= 1.0
            && healthz_during.is_none()
        {
            paused_seen = true;
            let asked = Instant::now();
            let (status, body) = admin_get(admin, "/healthz").await;
            assert_eq!(status, 200, "/healthz during the storm: {body}");
            healthz_during = Some((asked.elapsed(), done.load(Ordering::Relaxed)));
        }
        tokio::task::yield_now().await;
    }
    let mut failures = Vec::new();
    for c in clients {
        match c.await.unwrap() {
            Ok(200) => {}
            other => failures.push(other),
        }
    }
    let storm_time = started.elapsed();
    let metrics = admin_get(admin, "/metrics").await.1;
    eprintln!(
        "storm: {STORM} devices in {storm_time:?}, {} failures, max open {max_open}, \
         /healthz during the storm: {healthz_during:?} (answered in, devices done by then), \
         {samples} metric samples",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {STORM} devices failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(paused_seen, "the listener never paused at the limit");
    let (_, done_then) = healthz_during.unwrap();
    assert!(done_then < STORM, "/healthz was only asked after the storm");
    assert!(
        max_open <= EXPECTED_MAX as f64,
        "{max_open} connections open at once, over {EXPECTED_MAX}"
    );
    assert_eq!(
        sum(&metrics, "provgate_refused_connections_total", &[]),
        0.0
    );
    assert_eq!(sum(&metrics, "provgate_handshake_failures_total", &[]), 0.0);
    assert_eq!(
        sum(
            &metrics,
            "provgate_requests_total",
            &["status_class=\"2xx\""]
        ),
        STORM as f64
    );
    assert_eq!(
        sum(&metrics, "provgate_handshake_queue_seconds_count", &[]),
        STORM as f64
    );
    assert_eq!(sum(&metrics, "provgate_accept_paused", &[]), 0.0);
    assert_eq!(sum(&metrics, "provgate_handshakes_in_progress", &[]), 0.0);
    assert!(
        storm_time < Duration::from_secs(55),
        "the storm took {storm_time:?}"
    );
}

/// `on_limit: close` with a tiny limit: the extra devices are refused at once (not queued),
/// each refusal counted in /metrics, and the others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_limit_close_refuses_at_once_and_counts_it() {
    const DEVICES: usize = 60;
    let backend = backend().await;
    let h = Harness::start(
        sipura_pki(),
        &legacy_config(backend, "", "max_connections: 2, on_limit: close"),
    )
    .await;
    let addr = h.addr("sipura");
    let admin = h.running.admin_addr().unwrap();
    let clients: Vec<_> = (0..DEVICES)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                (device(addr).await, started.elapsed())
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for c in clients {
        match c.await.unwrap() {
            (Ok(200), _) => served += 1,
            (Ok(status), _) => panic!("status {status}"),
            (Err(e), took) => {
                assert!(took < Duration::from_secs(5), "refused after {took:?}: {e}");
                refused += 1;
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(
        sum(
            &metrics,
            "provgate_refused_connections_total",
            &["listener=\"sipura\"", "reason=\"total_limit\""]
        ),
        refused as f64,
        "{metrics}"
    );
    assert_eq!(sum(&metrics, "provgate_accept_paused", &[]), 0.0);
}

/// At a listener's limit (`on_limit: wait`) the next device waits in the listen queue, its
/// handshake unanswered, while `provgate_accept_paused` is 1; when a connection ends it is
/// served. Nothing is refused.
#[tokio::test]
async fn at_the_limit_the_listener_waits_and_resumes_when_a_connection_ends() {
    let backend = backend().await;
    let h = Harness::start(
        sipura_pki(),
        &legacy_config(backend, "    max_connections: 2\n", ""),
    )
    .await;
    let addr = h.addr("sipura");
    let metrics = || h.running.telemetry().metrics.render();
    let mut a = Legacy::default().connect(addr).await.unwrap();
    let mut b = Legacy::default().connect(addr).await.unwrap();
    let c = tokio::spawn(device(addr));
    // The loop pauses (bounded wait for it to get there).
    let deadline = Instant::now() + Duration::from_secs(5);
    while sum(
        &metrics(),
        "provgate_accept_paused",
        &["listener=\"sipura\""],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "never paused: {}", metrics());
        tokio::task::yield_now().await;
    }
    assert!(
        !c.is_finished(),
        "the third device was served over the limit"
    );
    assert_eq!(get(&mut a, MAC_PATH, "").await.0, 200);
    drop(a);
    let third = tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("the waiting device is served once a connection ends")
        .unwrap();
    assert_eq!(third, Ok(200));
    assert_eq!(get(&mut b, MAC_PATH, "").await.0, 200);
    let m = metrics();
    assert_eq!(sum(&m, "provgate_refused_connections_total", &[]), 0.0);
    assert_eq!(sum(&m, "provgate_accept_paused", &[]), 0.0);
}

/// `limits.max_handshakes: 1`: a client that holds the only slot (sends nothing) makes the
/// next device wait, and the wait is not counted against that device's handshake timeout;
/// when the holder is cut at its listener's timeout the device is served.
#[tokio::test]
async fn handshakes_wait_for_a_slot_first_come_first_served() {
    let backend = backend().await;
    let yaml = legacy_config(
        backend,
        "  - name: slow\n    bind: [\"127.0.0.1:0\"]\n    certificate: sipura\n    tls: legacy\n    \
         backend: prov\n    handshake_timeout: 300ms\n",
        "max_handshakes: 1",
    );
    let h = Harness::start(sipura_pki(), &yaml).await;
    let metrics = || h.running.telemetry().metrics.render();
    let mut holder = TcpStream::connect(h.addr("slow")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sum(&metrics(), "provgate_handshakes_in_progress", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "the holder never got a slot");
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let served = device(h.addr("sipura")).await;
    assert_eq!(served, Ok(200));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "served in {:?} while the only slot was held",
        started.elapsed()
    );
    // The holder was cut at its own handshake timeout.
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), holder.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    let m = metrics();
    assert_eq!(sum(&m, "provgate_handshake_queue_seconds_count", &[]), 2.0);
    assert_eq!(
        sum(
            &m,
            "provgate_handshake_failures_total",
            &["reason=\"timeout\""]
        ),
        1.0
    );
    assert_eq!(sum(&m, "provgate_handshakes_in_progress", &[]), 0.0);
}

/// `provgate check` under a 512-descriptor limit: a `limits.max_connections` the descriptors
/// cannot carry and a `listen_backlog` above `net.core.somaxconn` are both warned about.
#[test]
fn check_warns_about_limits_the_host_cannot_carry() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pki = sipura_pki();
    let yaml = legacy_config(
        "127.0.0.1:9".parse().unwrap(),
        &format!("    listen_backlog: {}\n", somaxconn + 1),
        "max_connections: 10000",
    );
    let path = pki.write("config.yaml", &yaml);
    let out = Command::new("prlimit")
        .args(["--nofile=512:512", env!("CARGO_BIN_EXE_provgate")])
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .expect("util-linux's `prlimit` on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "[max_connections_above_descriptors] limits.max_connections 10000 is above what \
             the open-file limit here allows ({EXPECTED_MAX}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[listen_backlog_above_somaxconn] listener 'sipura': listen_backlog {} is above \
             net.core.somaxconn ({somaxconn})",
            somaxconn + 1
        )),
        "{text}"
    );
}
