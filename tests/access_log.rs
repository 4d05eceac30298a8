//! The access log as fail2ban and log analysers read it (combined and JSON, hostile input
//! escaped), and plain-HTTP listeners behind a PROXY-protocol load balancer with allow/deny.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(5);

fn config(backend: std::net::SocketAddr, format: &str, log: &std::path::Path) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
access_log: {{ format: {format}, target: "{}" }}
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
  - name: lb
    bind: ["127.0.0.1:0"]
    tls: plain
    backend: prov
    proxy_protocol: v1
    trusted_proxies: ["127.0.0.1/32"]
    allow: ["192.0.2.0/24"]
    deny: ["192.0.2.66/32"]
"#,
        log.display()
    )
}

/// Quotes, a backslash, a forged log line and non-ASCII: everything a header value may carry
/// (control characters are refused by the HTTP parser before any log line is written).
const HOSTILE_UA: &str =
    "Evil\" 200 \"-\" \\x0a 1.2.3.4 - - [01/Jan/2000:00:00:00 +0000] \"GET / \u{e9}";

async fn traffic(h: &Harness) {
    let mut tls = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    let (status, _) = get(&mut tls, "/spa000e08abcdef.cfg?a=1&b=%22x%22", "").await;
    assert_eq!(status, 200);
    let mut tcp = TcpStream::connect(h.addr("http")).await.unwrap();
    tcp.write_all(
        format!("GET /firmware/spa525g.bin HTTP/1.0\r\nUser-Agent: {HOSTILE_UA}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    read_until_close(&mut tcp, WITHIN).await.unwrap();
}

#[tokio::test]
async fn combined_lines_parse_as_apache_combined_with_hostile_input_escaped() {
    let backend = backend().await;
    let pki = sipura_pki();
    let log = pki.path("access.log");
    let h = Harness::start(pki, &config(backend, "combined", &log)).await;
    traffic(&h).await;
    h.running.access_log().flush_blocking(WITHIN);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // fail2ban's apache-common prefix, then the combined fields.
    let combined = regex::Regex::new(
        r#"^(\S+) - \S+ \[[^\]]+\] "(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)" (.*)$"#,
    )
    .unwrap();
    let tls = combined
        .captures(lines[0])
        .unwrap_or_else(|| panic!("not combined: {}", lines[0]));
    assert_eq!(&tls[1], "127.0.0.1");
    assert_eq!(&tls[2], "GET");
    assert_eq!(&tls[3], "/spa000e08abcdef.cfg?a=1&b=%22x%22");
    assert_eq!(&tls[5], "200");
    assert_eq!(&tls[8], "Cisco/SPA508G-7.4.8a (000E08ABCDEF)");
    for field in [
        "listener=legacy",
        "tls=tls1.0",
        "cipher=AES256-SHA",
        "verify=NONE",
        "ja4=t10",
    ] {
        assert!(tls[9].contains(field), "{field} missing: {}", lines[0]);
    }
    let plain = combined
        .captures(lines[1])
        .unwrap_or_else(|| panic!("not combined: {}", lines[1]));
    assert_eq!(&plain[4], "HTTP/1.0");
    assert_eq!(&plain[5], "404");
    assert!(plain[9].contains("tls=plain"), "{}", lines[1]);
    // The hostile User-Agent stays inside its quotes, with no raw quote, escape or newline.
    let ua = &plain[8];
    assert!(ua.starts_with("Evil\\x22"), "{ua}");
    assert!(!ua.contains('"') && ua.is_ascii(), "{ua}");
    assert!(
        ua.contains("\\x5Cx0a") && ua.ends_with("\\xC3\\xA9"),
        "{ua}"
    );
}

#[tokio::test]
async fn json_lines_carry_every_field() {
    let backend = backend().await;
    let pki = sipura_pki();
    let log = pki.path("access.json");
    let h = Harness::start(pki, &config(backend, "json", &log)).await;
    traffic(&h).await;
    h.running.access_log().flush_blocking(WITHIN);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let tls = &lines[0];
    assert_eq!(tls["target"], "/spa000e08abcdef.cfg?a=1&b=%22x%22");
    assert_eq!(tls["status"], 200);
    assert_eq!(tls["tls_version"], "tls1.0");
    assert_eq!(tls["listener"], "legacy");
    assert_eq!(tls["verify"], "NONE");
    assert!(tls["bytes_out"].as_u64().unwrap() > 0);
    for key in [
        "time",
        "client",
        "local",
        "route",
        "method",
        "version",
        "duration_ms",
        "user_agent",
        "ja4",
        "cipher",
        "mac",
        "serial",
        "product",
    ] {
        assert!(tls.get(key).is_some(), "{key} missing: {tls}");
    }
    assert_eq!(lines[1]["user_agent"].as_str().unwrap(), HOSTILE_UA);
}

#[tokio::test]
async fn plain_listener_takes_the_client_from_proxy_v1_and_applies_allow_deny() {
    let (backend, seen) = strict_backend().await;
    let pki = sipura_pki();
    let log = pki.path("access.log");
    let h = Harness::start(pki, &config(backend, "combined", &log)).await;
    let lb = h.addr("lb");

    let mut tcp = TcpStream::connect(lb).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 5555 80\r\nGET /fw.bin HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_close(&mut tcp, WITHIN).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head = seen.last().to_ascii_lowercase();
    assert!(
        head.contains("\r\nx-forwarded-for: 192.0.2.10\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");

    // Denied and not-allowed clients get nothing; nor does a peer that skips the header.
    for request in [
        &b"PROXY TCP4 192.0.2.66 127.0.0.1 5555 80\r\nGET / HTTP/1.0\r\n\r\n"[..],
        b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 80\r\nGET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(lb).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let text = read_until_close(&mut tcp, WITHIN).await.unwrap();
        assert_eq!(text, "", "{}", String::from_utf8_lossy(request));
    }
    assert_eq!(seen.heads().len(), 1);
    h.running.access_log().flush_blocking(WITHIN);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("192.0.2.10 - - ["), "{text}");
    assert!(text.contains(" listener=lb "), "{text}");
}
