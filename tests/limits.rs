//! Every request limit, as a client meets it: 431 for too many or too large headers, 413 for a
//! body over the limit (declared or streamed), and the header deadline between keep-alive
//! requests. (The handshake and first-header timeouts are in tests/operations.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(5);

async fn start(limits: &str) -> (Harness, Received) {
    let (backend, seen) = strict_backend().await;
    let yaml = format!(
        r#"
backends:
  prov: {{ address: "{backend}" }}
listeners:
  - name: http
    bind: ["127.0.0.1:0"]
    tls: plain
    backend: prov
limits: {{ {limits} }}
"#
    );
    (Harness::start(Pki::new(), &yaml).await, seen)
}

async fn send(h: &Harness, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_until_close(&mut tcp, WITHIN).await.unwrap()
}

#[tokio::test]
async fn too_many_headers_is_431() {
    let (h, seen) = start("max_request_headers: 5").await;
    let ok = send(
        &h,
        b"GET /a HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let many: String = (0..6).map(|i| format!("X-{i}: v\r\n")).collect();
    let text = send(
        &h,
        format!("GET /b HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(text.contains("limits.max_request_headers"), "{text}");
    assert_eq!(
        seen.heads().len(),
        1,
        "the refused request reached the backend"
    );
}

#[tokio::test]
async fn headers_over_the_byte_limit_are_431() {
    let (h, seen) = start("max_request_header_bytes: 1024").await;
    let big = "v".repeat(1500);
    let text = send(
        &h,
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(seen.heads().is_empty());
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let (h, seen) = start("max_request_body_bytes: 100").await;
    let declared = send(
        &h,
        b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(
        declared.contains("limits.max_request_body_bytes"),
        "{declared}"
    );
    assert!(
        seen.heads().is_empty(),
        "a declared oversized body is refused before the backend"
    );
    let chunk = "x".repeat(60);
    let streamed = send(
        &h,
        format!(
            "POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n{chunk}\r\n3c\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    // The backend may already be answering when the limit trips; the client never gets a 200.
    assert!(!streamed.starts_with("HTTP/1.1 200"), "{streamed}");
    assert!(
        streamed.is_empty() || streamed.starts_with("HTTP/1.1 413"),
        "{streamed}"
    );
    let body = "y".repeat(100);
    let fits = send(
        &h,
        format!(
            "POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{body}"
        )
        .as_bytes(),
    )
    .await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    assert!(fits.contains("body-bytes: 100"), "{fits}");
}

/// Between keep-alive requests the next head must start within keepalive_timeout and be
/// complete within header_timeout after that: a client that trickles the second request is
/// cut off (no response) instead of holding the connection.
#[tokio::test]
async fn a_trickled_second_request_is_cut_at_the_header_deadline() {
    let (h, _seen) = start("header_timeout: 300ms, keepalive_timeout: 1s").await;
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut tcp).await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    tcp.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
    // Never finish the head: the server must close within keepalive + header timeouts.
    let text = read_until_close(&mut tcp, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!text.contains("HTTP/1.1 200"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held for {:?}",
        started.elapsed()
    );
}
