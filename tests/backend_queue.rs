//! Backend protection: `backends.<name>.max_connections` with a FIFO wait queue. A slow
//! backend never sees more than its cap, every device is served; a wait past `queue_timeout`
//! is a 503 with Retry-After, counted as a device sent into its retry timer.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers each request after `delay` and records the most connections it
/// had open at once.
async fn slow_backend(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let seen_peak = peak.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let (open, peak) = (open.clone(), peak.clone());
            tokio::spawn(async move {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let mut buf = Vec::new();
                loop {
                    let mut b = [0u8; 4096];
                    let Ok(n) = tcp.read(&mut b).await else { break };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&b[..n]);
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        // Pacing: the backend is slow, not a synchronisation point.
                        tokio::time::sleep(delay).await;
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen_peak)
}

async fn start(backend: std::net::SocketAddr, backend_extra: &str) -> Harness {
    let yaml = format!(
        r#"
backends:
  prov: {{ address: "{backend}"{backend_extra} }}
listeners:
  - name: http
    bind: ["127.0.0.1:0"]
    tls: plain
    backend: prov
"#
    );
    Harness::start(Pki::new(), &yaml).await
}

async fn fetch(addr: std::net::SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /spa HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_close(&mut tcp, Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_slow_backend_never_sees_more_than_its_cap_and_every_device_is_served() {
    let (backend, peak) = slow_backend(Duration::from_millis(50)).await;
    let h = start(backend, ", max_connections: 4").await;
    let addr = h.addr("http");
    let clients: Vec<_> = (0..40).map(|_| tokio::spawn(fetch(addr))).collect();
    for c in clients {
        let text = c.await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= 4,
        "the backend saw {peak} connections at once (cap 4)"
    );
    assert!(peak >= 1);
}

#[tokio::test]
async fn a_wait_past_queue_timeout_is_503_with_retry_after_and_counted() {
    let (backend, peak) = slow_backend(Duration::from_secs(2)).await;
    let h = start(backend, ", max_connections: 1, queue_timeout: 200ms").await;
    let addr = h.addr("http");
    let first = tokio::spawn(fetch(addr));
    // Once the backend has the first request's connection, the only slot is taken (for 2 s).
    for _ in 0..5000 {
        if peak.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "the first request never reached the backend"
    );
    let second = fetch(addr).await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("retry-after: 30"),
        "{second}"
    );
    assert!(
        second.contains("had no free connection within its queue_timeout"),
        "{second}"
    );
    assert!(first.await.unwrap().starts_with("HTTP/1.1 200"));
    let metrics = h.running.telemetry().metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("provgate_device_retries_caused_total")
                && l.contains("cause=\"status_5xx\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// A backend that answers at once, counts the connections it accepted and reports each one
/// the proxy closes.
async fn counting_backend() -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut b = [0u8; 4096];
                    match tcp.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });
    (addr, accepted, closed)
}

/// `n` requests one after another on one keep-alive client connection.
async fn sequential(addr: std::net::SocketAddr, n: usize) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for _ in 0..n {
        let (status, _, body) = {
            tcp.write_all(b"GET /spa HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            read_response(&mut tcp).await
        };
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
}

#[tokio::test]
async fn idle_backend_connections_are_reused() {
    let (backend, accepted, _closed) = counting_backend().await;
    let h = start(backend, "").await;
    sequential(h.addr("http"), 5).await;
    let pooled = accepted.load(Ordering::SeqCst);
    assert!(pooled < 5, "{pooled} backend connections for 5 requests");
}

#[tokio::test]
async fn a_backends_idle_connection_is_closed_after_its_idle_timeout() {
    let (backend, accepted, mut closed) = counting_backend().await;
    let h = start(backend, ", idle_timeout: 200ms").await;
    sequential(h.addr("http"), 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The default (4 s) would not close it within this bound.
    let r = tokio::time::timeout(Duration::from_secs(2), closed.recv()).await;
    assert!(
        matches!(r, Ok(Some(()))),
        "the pooled connection was not closed within 2 s of its 200 ms idle timeout"
    );
}
