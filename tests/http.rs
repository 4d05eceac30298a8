//! HTTP as devices and strict backends need it, through both TLS engines and plain listeners:
//! HTTP/1.0 framing, Host for requests without one, pipelining, 100-continue, TE+CL, targets
//! passed byte for byte, provgate's own error responses, firmware-sized bodies streamed with
//! bounded memory, and the standard `openssl s_client` / `s_time` clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use provgate::pki::CertSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLOSE_WITHIN: Duration = Duration::from_secs(5);

fn config(backend: SocketAddr, backend_extra: &str, extra: &str) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{backend}"{backend_extra} }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  modern: {{ chain: modern.pem, key: modern.key }}
listeners:
  - name: legacy
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
  - name: modern
    bind: ["127.0.0.1:0"]
    certificate: modern
    tls: modern
    backend: prov
  - name: http
    bind: ["127.0.0.1:0"]
    tls: plain
    backend: prov
{extra}"#
    )
}

/// A Sipura-family CA with a legacy (RSA 1024) and a modern (RSA 2048) server certificate.
fn pki() -> Pki {
    let pki = Pki::new();
    let ca = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&ca, "sipura", &CertSpec::legacy_server("prov.sipura.test"));
    pki.issue(&ca, "modern", &CertSpec::server("prov.modern.test"));
    pki
}

async fn start(backend_extra: &str) -> (Harness, Received) {
    let (backend, seen) = strict_backend().await;
    let h = Harness::start(pki(), &config(backend, backend_extra, "")).await;
    (h, seen)
}

#[tokio::test]
async fn http10_request_is_answered_then_closed_and_reaches_a_strict_backend_with_host() {
    let (h, seen) = start("").await;
    // Legacy TLS, no SNI: Host is the CN of the certificate the route presented.
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    tls.write_all(b"GET /profile HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\r\nConnection: close\r\n") || text.contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    let head = seen.last();
    assert!(head.starts_with("GET /profile HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nhost: prov.sipura.test\r\n"),
        "{head}"
    );

    // Plain HTTP: no certificate, no SNI: the backend's address.
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(b"GET /plain HTTP/1.0\r\nUser-Agent: t\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_close(&mut tcp, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head = seen.last().to_ascii_lowercase();
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");
    assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
}

#[tokio::test]
async fn backend_host_setting_wins_and_a_client_host_passes_unchanged() {
    let (h, seen) = start(", host: prov.example.net").await;
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    tls.write_all(b"GET /a HTTP/1.0\r\n\r\n").await.unwrap();
    read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
    assert!(seen
        .last()
        .to_ascii_lowercase()
        .contains("\r\nhost: prov.example.net\r\n"));

    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    tls.write_all(b"GET /b HTTP/1.0\r\nHost: Tenant.Example:8443\r\n\r\n")
        .await
        .unwrap();
    read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
    assert!(
        seen.last().contains("\r\nHost: Tenant.Example:8443\r\n")
            || seen.last().contains("\r\nhost: Tenant.Example:8443\r\n"),
        "{}",
        seen.last()
    );
}

#[tokio::test]
async fn sni_is_the_host_when_the_client_sends_one() {
    let (h, seen) = start("").await;
    let pki_ca = h.pki.path("sipura-ca.pem");
    let mut tls = modern(
        h.addr("modern"),
        &pki_ca,
        "prov.modern.test",
        true,
        &[&rustls::version::TLS12],
    )
    .await
    .unwrap();
    tls.write_all(b"GET /sni HTTP/1.0\r\n\r\n").await.unwrap();
    let text = read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(seen
        .last()
        .to_ascii_lowercase()
        .contains("\r\nhost: prov.modern.test\r\n"));
}

#[tokio::test]
async fn http10_client_never_receives_chunked_encoding() {
    let (h, _seen) = start("").await;
    for path in ["/chunked", "/close"] {
        let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
        tls.write_all(format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let text = read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{head}"
        );
        let want = if path == "/chunked" {
            "hello chunked world"
        } else {
            "until the end"
        };
        assert_eq!(body, want, "{path}");
    }
    // An HTTP/1.1 client still gets chunked (it can decode it) and keeps its connection.
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(CLOSE_WITHIN, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got)
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
}

#[tokio::test]
async fn http10_keep_alive_is_honoured_when_the_length_is_known() {
    let (h, _seen) = start("").await;
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    for i in 0..3 {
        tls.write_all(format!("GET /ka{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, head, body) = read_response(&mut tls).await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: keep-alive"),
            "{head}"
        );
        assert!(body.starts_with(&format!("GET /ka{i} HTTP/1.1")), "{body}");
    }
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let (h, seen) = start("").await;
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    tls.write_all(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_until_close(&mut tls, CLOSE_WITHIN).await.unwrap();
    let order: Vec<usize> = ["GET /one", "GET /two", "GET /three"]
        .iter()
        .map(|p| {
            text.find(p)
                .unwrap_or_else(|| panic!("{p} not answered: {text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    assert_eq!(seen.heads().len(), 3);
}

#[tokio::test]
async fn expect_100_continue_gets_continue_then_the_response() {
    let (h, _seen) = start("").await;
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(
        b"POST /report HTTP/1.1\r\nHost: a\r\nContent-Type: text/xml\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, head, _) = read_response(&mut tcp).await;
    assert_eq!(status, 100, "{head}");
    tcp.write_all(b"<report/>\r\n").await.unwrap();
    let (status, head, body) = read_response(&mut tcp).await;
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("body-bytes: 11"), "{body}");
    assert!(
        body.contains("Content-Type: text/xml") || body.contains("content-type: text/xml"),
        "{body}"
    );
}

#[tokio::test]
async fn transfer_encoding_with_content_length_never_keeps_the_connection() {
    let (h, _seen) = start("").await;
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(
        b"POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_until_close(&mut tcp, CLOSE_WITHIN).await.unwrap();
    assert!(
        !text.contains("GET /smuggled"),
        "the smuggled request was served: {text}"
    );
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        status == 400 || text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

#[tokio::test]
async fn request_target_and_authorization_pass_byte_for_byte() {
    let (h, seen) = start("").await;
    let target = "/app/provision/index.php?mac=000e08aaaaaa&file=spa%2Ecfg&x=a+b%20c;d";
    let auth = r#"Digest username="u", realm="r", nonce="n", uri="/app/provision/index.php?mac=000e08aaaaaa&file=spa%2Ecfg&x=a+b%20c;d", response="00112233445566778899aabbccddeeff""#;
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(
        format!(
            "GET {target} HTTP/1.1\r\nHost: pbx.example\r\nAuthorization: {auth}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until_close(&mut tcp, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("content-encoding"),
        "compressed: {text}"
    );
    let head = seen.last();
    assert!(
        head.starts_with(&format!("GET {target} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Authorization: {auth}\r\n"))
            || head.contains(&format!("authorization: {auth}\r\n")),
        "{head}"
    );
}

#[tokio::test]
async fn provgates_own_errors_are_plain_text_without_another_products_name() {
    let h = Harness::start(pki(), &config(dead_addr(), "", "")).await;
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    let (status, text) = get(&mut tls, "/x", "").await;
    assert_eq!(status, 502, "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(!head.to_ascii_lowercase().contains("pingora"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert!(
        body.starts_with("502 Bad Gateway: the provisioning backend 'prov' could not be reached"),
        "{body}"
    );

    // A malformed request, answered by pingora's parser.
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_close(&mut tcp, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("pingora"), "{text}");
}

/// Resident set size of this process (the in-process proxy plus the test), in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn a_64_mib_firmware_image_streams_to_a_slow_reader_with_bounded_memory() {
    let (h, _seen) = start("").await;
    const SIZE: usize = 64 << 20;
    for listener in ["http", "legacy"] {
        let before = rss();
        let request = format!("GET /big/{SIZE} HTTP/1.0\r\n\r\n");
        let mut stream: Box<dyn Stream> = if listener == "http" {
            Box::new(TcpStream::connect(h.addr(listener)).await.unwrap())
        } else {
            Box::new(Legacy::default().connect(h.addr(listener)).await.unwrap())
        };
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut total = 0usize;
        let mut peak = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        let mut next_pause = 1 << 20;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            total += n;
            // A slow reader: stop reading for a while every 8 MiB; a proxy that buffers
            // would pull the rest of the image from the backend meanwhile.
            if total >= next_pause {
                tokio::time::sleep(Duration::from_millis(200)).await;
                peak = peak.max(rss().saturating_sub(before));
                next_pause += 8 << 20;
            }
        }
        let head_len = 200; // a response head is far smaller than this
        assert!(
            total > SIZE && total < SIZE + head_len * 10,
            "{listener}: read {total}"
        );
        assert!(
            peak < 24 << 20,
            "{listener}: RSS grew by {} MiB while streaming 64 MiB",
            peak >> 20
        );
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The standard clients an operator tries first: `openssl s_client` as an HTTP/1.0 client
/// returns as soon as the response is in, and `openssl s_time -new -www /` makes many
/// handshakes (it waits for each connection to close).
#[tokio::test]
async fn openssl_s_client_and_s_time_as_http10_clients_do_not_hang() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        panic!(
            "the openssl command is needed (Debian package openssl; scripts/test.sh installs it)"
        );
    }
    let (h, seen) = start("").await;
    let addr = h.addr("legacy").to_string();
    let s_client = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            let mut child = std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr,
                    "-tls1",
                    "-cipher",
                    "AES256-SHA:@SECLEVEL=0",
                    "-quiet",
                    "-no_ign_eof",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"GET /spa HTTP/1.0\r\n\r\n").unwrap();
            let started = std::time::Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    drop(stdin);
                    let mut out = String::new();
                    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out)
                        .unwrap();
                    return Ok((status, out));
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    return Err("openssl s_client still waiting 10 s after its request");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let (status, out) = s_client.await.unwrap().unwrap();
    assert!(status.success(), "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(seen.last().starts_with("GET /spa HTTP/1.1\r\n"));

    let s_time = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_time",
                "-connect",
                &addr,
                "-new",
                "-www",
                "/",
                "-time",
                "2",
                "-cipher",
                "AES256-SHA:@SECLEVEL=0",
            ])
            .output()
            .unwrap()
    });
    let out = s_time.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "123 connections in 0.45s; 273.33 connections/user sec, bytes read 45678"
    let connections: u64 = text
        .lines()
        .find(|l| l.contains("connections in") && !l.contains("real"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no s_time result in: {text}"));
    assert!(
        connections >= 10,
        "s_time completed only {connections} connections in 2 s: {text}"
    );
}

/// The forwarding family is provgate's to set: client copies of every X-Forwarded-* and
/// X-Original-* name, and the other client-address headers, never reach the backend.
#[tokio::test]
async fn client_sent_forwarding_headers_of_the_whole_family_are_dropped() {
    let (h, seen) = start("").await;
    let spoofed = [
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-Server: evil",
        "X-Forwarded-Scheme: https",
        "X-Forwarded-Ssl: on",
        "X-Forwarded-Prefix: /admin",
        "X-Forwarded-Uri: /admin",
        "X-Forwarded-Host: evil.example",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Client-IP: 6.6.6.6",
        "True-Client-IP: 6.6.6.6",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
    ];
    let extra: String = spoofed.iter().map(|h| format!("{h}\r\n")).collect();
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(
        format!("GET /f HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until_close(&mut tcp, CLOSE_WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head = seen.last();
    for h in spoofed {
        let value = h.split_once(": ").unwrap().1;
        assert!(!head.contains(value), "'{h}' reached the backend:\n{head}");
    }
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(lower.contains("\r\nx-real-ip: 127.0.0.1\r\n"), "{head}");
}
