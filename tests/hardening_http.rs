//! Resource abuse and framing attacks on the HTTP side: request heads that never end, and
//! malformed chunked bodies.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - name: legacy
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
  - name: http
    bind: ["127.0.0.1:0"]
    tls: plain
    backend: prov
"#
    )
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

/// Send `total` bytes of an unfinished header, then read what comes back (bounded).
async fn endless_head<S>(mut s: S, total: usize) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    let mut sent = 0;
    while sent < total {
        if s.write_all(filler.as_bytes()).await.is_err() {
            break;
        }
        sent += filler.len();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// pingora alone buffers up to 1 MiB of an unfinished head per connection; provgate stops
/// each head at limits.max_request_header_bytes (16 KiB by default) while it arrives.
#[tokio::test]
async fn unfinished_huge_heads_are_refused_early_and_memory_stays_flat() {
    let (backend, seen) = strict_backend().await;
    let h = Harness::start(sipura_pki(), &config(backend)).await;
    let before = rss();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = h.addr(if i % 10 == 0 { "legacy" } else { "http" });
        tasks.push(tokio::spawn(async move {
            if i % 10 == 0 {
                let tls = Legacy::default().connect(addr).await.unwrap();
                endless_head(tls, 600 * 1024).await
            } else {
                endless_head(TcpStream::connect(addr).await.unwrap(), 600 * 1024).await
            }
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let answer = t.await.unwrap();
        if answer.starts_with("HTTP/1.1 431") {
            refused += 1;
        }
    }
    let grown = rss().saturating_sub(before);
    // A reset can beat the response to a client still writing; most see the 431.
    assert!(refused >= 100, "only {refused} of 200 saw the 431");
    assert!(
        grown < 24 << 20,
        "RSS grew by {} MiB for 200 unfinished 600 KiB heads",
        grown >> 20
    );
    assert!(
        seen.heads().is_empty(),
        "an unfinished head reached the backend"
    );
}

/// A chunk-size line with an extension and a bare LF must not desynchronise the body.
#[tokio::test]
async fn malformed_chunked_bodies_are_refused_and_closed() {
    let (backend, seen) = strict_backend().await;
    let h = Harness::start(sipura_pki(), &config(backend)).await;
    for body in [
        &b"3;a=b\nabc\r\n0\r\n\r\n"[..],
        b"3\nabc\n0\n\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
        let mut req =
            b"POST /report HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        req.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
        tcp.write_all(&req).await.unwrap();
        let text = read_until_close(&mut tcp, Duration::from_secs(5)).await;
        let text = text.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
        assert!(
            !text.contains("GET /after"),
            "desynchronised: {}",
            String::from_utf8_lossy(body)
        );
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{}: {text}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(seen.heads().iter().all(|h| !h.contains("/after")));
}
