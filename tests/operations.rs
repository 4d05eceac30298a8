//! Running for months: reload, drain, limits, PROXY protocol, allow/deny lists.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use provgate::pki::CertSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

fn config(backend: SocketAddr, listeners: &str) -> String {
    format!(
        r#"
admin: {{ listen: "127.0.0.1:0" }}
backends:
  prov: {{ address: "{backend}", read_timeout: 5s }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  other: {{ chain: other.pem, key: other.key }}
listeners:
{listeners}"#
    )
}

fn listener(name: &str, extra: &str) -> String {
    format!("  - name: {name}\n    bind: [\"127.0.0.1:0\"]\n    certificate: sipura\n    tls: legacy\n    backend: prov\n{extra}")
}

async fn metrics(h: &Harness) -> String {
    h.running.telemetry().metrics.render()
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The real binary, run as an operator would: killed when the test ends, whatever happens.
struct Proc {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Proc {
    fn start(config: &std::path::Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provgate"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
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

    /// The next log line containing every needle (30s at most: a hung process fails the test).
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needles:?}: {e}"),
            }
        }
    }

    /// The address logged in `addr=` by the next line containing every needle.
    fn addr(&self, needles: &[&str]) -> SocketAddr {
        let line = self.wait_for(needles);
        let field = line
            .split("addr=")
            .nth(1)
            .unwrap_or_else(|| panic!("no addr= in {line}"));
        field.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let mut a = TcpStream::connect(admin).await.unwrap();
    a.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    a.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test]
async fn certificate_rotation_by_sighup_under_load_loses_no_request() {
    let backend = backend().await;
    let pki = sipura_pki();
    let p = Proc::start(&pki.write("config.yaml", &config(backend, &listener("l", ""))));
    let admin = p.addr(&["admin listening"]);
    let addr = p.addr(&["listening", "listener=l"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, rotated_seen) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = {
        let (stop, ok, failed, rotated_seen) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            rotated_seen.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                n += 1;
                match Legacy::default().connect(addr).await {
                    Ok(mut s) => {
                        if peer_cn(&s) == "rotated.test" {
                            rotated_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        if get(&mut s, MAC_PATH, "").await.0 == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    // Let the load run, then replace the certificate on disk and send SIGHUP.
    while ok.load(Ordering::Relaxed) < 20 {
        tokio::task::yield_now().await;
    }
    let ca = provgate::pki::Ca::new("Sipura CA (rotated)", "provgate tests").unwrap();
    let (cert, key) = ca.issue(&CertSpec::legacy_server("rotated.test")).unwrap();
    provgate::pki::write_pair(pki.dir.path(), "sipura", &cert, &key).unwrap();
    p.signal("-HUP");
    p.wait_for(&["configuration reloaded"]);
    let after = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < after + 20 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during rotation"
    );
    assert!(
        rotated_seen.load(Ordering::Relaxed) >= 20,
        "new handshakes present the new certificate"
    );
    let s = Legacy::default().connect(addr).await.unwrap();
    assert_eq!(peer_cn(&s), "rotated.test");
    let m = admin_get(admin, "/metrics").await;
    assert!(
        m.contains("provgate_reload_total{outcome=\"success\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_broken_reload_keeps_the_old_configuration_serving() {
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, &listener("l", ""))).await;
    let path = h.pki.path("config.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("certificate: sipura", "certificate: missing"),
    )
    .unwrap();
    let err = h.running.reload().unwrap_err().to_string();
    assert!(err.contains("no certificate named 'missing'"), "{err}");
    logs()
        .wait_for(&["reload failed", "no certificate named 'missing'"])
        .await;
    let mut s = Legacy::default().connect(h.addr("l")).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    assert_eq!(
        value(
            &metrics(&h).await,
            "provgate_reload_total{outcome=\"failure\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn reload_adds_and_removes_listeners_and_lets_open_connections_finish() {
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, &listener("old", ""))).await;
    let old_addr = h.addr("old");
    // An open, idle keep-alive connection on the listener that will be removed.
    let mut open = Legacy::default().connect(old_addr).await.unwrap();

    let path = h.pki.path("config.yaml");
    std::fs::write(&path, config(backend, &listener("new", ""))).unwrap();
    h.running.reload().unwrap();

    let mut s = Legacy::default().connect(h.addr("new")).await.unwrap();
    assert_eq!(
        get(&mut s, MAC_PATH, "").await.0,
        200,
        "added listener accepts"
    );
    assert!(h.running.addrs("old").is_empty());
    assert!(
        TcpStream::connect(old_addr).await.is_err(),
        "removed listener stops accepting"
    );
    let (status, _) = get(&mut open, MAC_PATH, "").await;
    assert_eq!(
        status, 200,
        "the open connection on the removed listener finishes its request"
    );
}

#[tokio::test]
async fn connection_limit_with_on_limit_close_closes_the_extra_connection_and_serves_the_rest() {
    let backend = backend().await;
    let h = Harness::start(
        sipura_pki(),
        &(config(backend, &listener("l", "    max_connections: 2\n"))
            + "limits: { on_limit: close }\n"),
    )
    .await;
    let addr = h.addr("l");
    let mut a = Legacy::default().connect(addr).await.unwrap();
    let mut b = Legacy::default().connect(addr).await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "third connection closed at once: {r:?}"
    );
    assert_eq!(
        value(
            &metrics(&h).await,
            "provgate_refused_connections_total{listener=\"l\",reason=\"listener_limit\"}"
        ),
        1.0
    );
    assert_eq!(get(&mut a, MAC_PATH, "").await.0, 200);
    assert_eq!(get(&mut b, MAC_PATH, "").await.0, 200);
}

#[tokio::test]
async fn slowloris_is_cut_at_the_handshake_and_header_timeouts() {
    let backend = backend().await;
    let yaml = config(backend, &listener("l", "    handshake_timeout: 500ms\n"))
        + "limits: { header_timeout: 500ms }\n";
    let h = Harness::start(sipura_pki(), &yaml).await;
    let addr = h.addr("l");

    // One byte of a ClientHello every 100 ms.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let hello =
        b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x01aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in hello {
        if tcp.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut b)).await {
            assert!(matches!(r, Ok(0) | Err(_)));
            cut = true;
            break;
        }
    }
    assert!(cut, "slow hello never cut");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // TLS done quickly, then request headers one byte every 100 ms.
    let mut s = Legacy::default().connect(addr).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in b"GET /spa000e08abcdef.cfg HTTP/1.1\r\nHost: p\r\nX-Slow: yes yes yes yes\r\n\r\n" {
        if s.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            assert!(!matches!(r, Ok(1)), "server answered a slow request");
            cut = true;
            break;
        }
    }
    assert!(cut, "slow headers never cut");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

fn proxy_v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 443\r\n").into_bytes()
}

#[tokio::test]
async fn proxy_protocol_from_trusted_peers_sets_the_client_address() {
    let backend = backend().await;
    let trusted = "    proxy_protocol: any\n    trusted_proxies: [\"127.0.0.1/32\"]\n    routes:\n      - match: { source: [\"10.1.2.0/24\"] }\n        certificate: other\n";
    let untrusted = "    proxy_protocol: v1\n    trusted_proxies: [\"10.0.0.0/8\"]\n";
    let yaml = config(
        backend,
        &(listener("trusted", trusted) + &listener("untrusted", untrusted)),
    );
    let h = Harness::start(sipura_pki(), &yaml).await;

    // v1 from a trusted peer: routing and X-Forwarded-For see 10.1.2.3.
    let mut tcp = TcpStream::connect(h.addr("trusted")).await.unwrap();
    tcp.write_all(&proxy_v1("10.1.2.3", 40000)).await.unwrap();
    let mut s = Legacy::default().handshake(tcp).await.unwrap();
    assert_eq!(
        peer_cn(&s),
        "other.test",
        "source route used the PROXY address"
    );
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(status, 200);
    assert!(body.contains("seen x-forwarded-for: 10.1.2.3 "), "{body}");

    // v2 with another address: default route.
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "192.0.2.77:5555".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:443".parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    let mut tcp = TcpStream::connect(h.addr("trusted")).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    let mut s = Legacy::default().handshake(tcp).await.unwrap();
    assert_eq!(peer_cn(&s), "prov.sipura.test");
    let (_, body) = get(&mut s, MAC_PATH, "").await;
    assert!(body.contains("seen x-forwarded-for: 192.0.2.77 "), "{body}");

    // From an untrusted peer: closed, logged.
    let mut tcp = TcpStream::connect(h.addr("untrusted")).await.unwrap();
    let me = tcp.local_addr().unwrap().to_string();
    tcp.write_all(&proxy_v1("10.1.2.3", 40000)).await.unwrap();
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    logs()
        .wait_for(&[&format!("peer={me}"), "reason=\"untrusted_proxy\""])
        .await;

    // Required but missing: closed.
    let yaml_missing = listener(
        "needs",
        "    proxy_protocol: v1\n    trusted_proxies: [\"127.0.0.0/8\"]\n",
    );
    drop(h);
    let h = Harness::start(sipura_pki(), &config(backend, &yaml_missing)).await;
    assert!(Legacy::default().connect(h.addr("needs")).await.is_err());
}

#[tokio::test]
async fn allow_and_deny_lists_refuse_and_admit_the_right_sources() {
    let backend = backend().await;
    let l = listener("l", "    deny: [\"127.0.0.3/32\"]\n    routes:\n      - match: { local: [\"127.0.0.1/32\"] }\n        allow: [\"127.0.0.1/32\", \"127.0.0.3/32\"]\n");
    let only4 = listener("only4", "    allow: [\"127.0.0.4/32\"]\n");
    let h = Harness::start(sipura_pki(), &config(backend, &(l + &only4))).await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();

    let mut s = Legacy::default()
        .connect_from(ip("127.0.0.1"), h.addr("l"))
        .await
        .unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    assert!(
        Legacy::default()
            .connect_from(ip("127.0.0.3"), h.addr("l"))
            .await
            .is_err(),
        "deny wins"
    );
    assert!(
        Legacy::default()
            .connect_from(ip("127.0.0.2"), h.addr("l"))
            .await
            .is_err(),
        "route allow list"
    );
    assert!(Legacy::default()
        .connect_from(ip("127.0.0.1"), h.addr("only4"))
        .await
        .is_err());
    let mut s = Legacy::default()
        .connect_from(ip("127.0.0.4"), h.addr("only4"))
        .await
        .unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    let m = metrics(&h).await;
    assert_eq!(
        value(
            &m,
            "provgate_refused_connections_total{listener=\"l\",reason=\"denied\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "provgate_refused_connections_total{listener=\"only4\",reason=\"denied\"}"
        ),
        1.0
    );
}

/// A backend the test controls: it reports each request and answers when released.
async fn held_backend() -> (
    SocketAddr,
    tokio::sync::mpsc::Receiver<()>,
    Arc<tokio::sync::Notify>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (tx, r) = (tx.clone(), r.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(()).await;
                r.notified().await;
                let body = "slow but complete";
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, rx, release)
}

#[tokio::test]
async fn sigterm_drains_a_slow_response_then_exits_zero() {
    let (backend, mut requested, release) = held_backend().await;
    let pki = sipura_pki();
    let mut p = Proc::start(&pki.write("config.yaml", &config(backend, &listener("l", ""))));
    let admin = p.addr(&["admin listening"]);
    let listen = p.addr(&["listening", "listener=l"]);

    let mut s = Legacy::default().connect(listen).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    requested.recv().await.unwrap();

    p.signal("-TERM");
    p.wait_for(&["stopped accepting", "listener=l"]);
    // Draining: readiness fails and new connections are refused.
    let ready = admin_get(admin, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains("draining"),
        "{ready}"
    );
    let refused = TcpStream::connect(listen).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );

    release.notify_one();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("slow but complete"),
        "{text}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = p.child.wait();
        (status, p)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
