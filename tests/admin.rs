//! The admin port defends itself: header and idle timeouts, its own connection cap, an
//! address allow list, and masked device ids in `/fingerprints`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SPA_UA: &str = "Cisco/SPA508G-7.5.5 (000E08ABCDEF)(CCQ162810LA)";

/// A config with one legacy device listener `l` and the given `admin:` flow mapping body.
async fn start(admin: &str) -> Harness {
    let backend = backend().await;
    let yaml = format!(
        r#"
admin: {{ listen: "127.0.0.1:0", {admin} }}
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - {{ name: l, bind: ["127.0.0.1:0"], certificate: sipura, tls: legacy, backend: prov }}
"#
    );
    Harness::start(sipura_pki(), &yaml).await
}

fn admin(h: &Harness) -> SocketAddr {
    h.running.admin_addr().unwrap()
}

/// Read until the server ends the connection (EOF or reset); (what was read, how long it took).
/// Fails the test if the connection is still open after `within`.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t + within).into(), s.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; read: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, t.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One keep-alive GET on an open connection; (status, body).
async fn get_keep_alive(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(s).await;
    (status, body)
}

/// GET with `Connection: close`, bounded; None when the server closes without an answer.
async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let (got, _) = until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Poll (bounded) until `path` answers 200; returns the body.
async fn get_eventually(addr: SocketAddr, path: &str) -> String {
    for _ in 0..200 {
        if let Some((200, body)) = try_get(addr, path).await {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} did not answer 200");
}

/// One request with the SPA User-Agent over the legacy device listener; the status.
async fn device_request(h: &Harness) -> u16 {
    let mut s = Legacy::default().connect(h.addr("l")).await.unwrap();
    let req = format!(
        "GET /spa000e08abcdef.cfg HTTP/1.1\r\nHost: p\r\nUser-Agent: {SPA_UA}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let text = read_until_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `/fingerprints` once it lists a User-Agent of the SPA508G (recorded after the response).
async fn fingerprints_with_spa(addr: SocketAddr) -> String {
    for _ in 0..200 {
        let body = get_eventually(addr, "/fingerprints").await;
        if body.contains("Cisco/SPA508G-7.5.5") {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the SPA508G's User-Agent never showed in /fingerprints");
}

#[tokio::test]
async fn half_sent_request_is_closed_within_header_timeout() {
    let h = start("header_timeout: 1s, idle_timeout: 30s").await;
    let t0 = Instant::now();
    let mut half = TcpStream::connect(admin(&h)).await.unwrap();
    half.write_all(b"GET /heal").await.unwrap();
    // A connection that sends nothing at all owes its request within the same time.
    let mut silent = TcpStream::connect(admin(&h)).await.unwrap();

    let (got, took) = until_closed(&mut half, Duration::from_secs(5)).await;
    eprintln!("half-sent request line closed after {took:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    let (got, _) = until_closed(&mut silent, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    eprintln!("silent connection closed {took:?} after connecting");
    assert!(got.is_empty());
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Bytes trickled in do not extend the header deadline.
    let mut drip = TcpStream::connect(admin(&h)).await.unwrap();
    let t = Instant::now();
    for b in b"GET /healthz HTTP/1.1\r\nHost: a\r\n" {
        if drip.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _) = until_closed(&mut drip, Duration::from_secs(5)).await;
    eprintln!("dripped request closed after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A complete request still answers.
    assert_eq!(get_eventually(admin(&h), "/healthz").await, "ok\n");
}

/// The review's case: 300 half-sent admin connections (all were still open after 16 s).
#[tokio::test]
async fn many_half_sent_connections_are_all_closed() {
    let h = start("header_timeout: 1s").await;
    let addr = admin(&h);
    let t0 = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET /metr").await;
        conns.push(s);
    }
    let opened = t0.elapsed();
    // Each connection is watched by its own task, so every close is timed as it happens.
    let mut watchers = tokio::task::JoinSet::new();
    for mut s in conns {
        watchers.spawn(async move {
            until_closed(&mut s, Duration::from_secs(5)).await;
            t0.elapsed()
        });
    }
    let closed_at = watchers.join_all().await;
    eprintln!("300 connections opened in {opened:?}");
    let immediately = closed_at
        .iter()
        .filter(|t| **t < Duration::from_millis(900))
        .count();
    let last = closed_at.iter().max().unwrap();
    eprintln!(
        "300 half-sent connections: {immediately} closed at once (over the cap of 64), all closed \
         after {last:?}"
    );
    assert!(immediately >= 300 - 64, "{immediately}");
    assert!(*last < Duration::from_secs(4), "{last:?}");
    // Afterwards the admin port answers.
    assert_eq!(get_eventually(addr, "/healthz").await, "ok\n");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let h = start("header_timeout: 1s, idle_timeout: 3s").await;
    let mut s = TcpStream::connect(admin(&h)).await.unwrap();
    assert_eq!(
        get_keep_alive(&mut s, "/healthz").await,
        (200, "ok\n".into())
    );
    // Keep-alive works: a second request on the same connection.
    assert_eq!(
        get_keep_alive(&mut s, "/readyz").await,
        (200, "ready\n".into())
    );
    let (got, took) = until_closed(&mut s, Duration::from_secs(8)).await;
    eprintln!("idle keep-alive connection closed {took:?} after its last response");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // The idle timeout applies between requests, not the (shorter) header timeout.
    assert!(
        took >= Duration::from_millis(2500),
        "closed too early: {took:?}"
    );
}

#[tokio::test]
async fn connection_cap_closes_extra_connections_and_devices_still_work() {
    let h = start("max_connections: 4, header_timeout: 60s, idle_timeout: 60s").await;
    let addr = admin(&h);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Answered, so the server holds a slot for it; then it stays open and idle.
        assert_eq!(get_keep_alive(&mut s, "/healthz").await.0, 200);
        held.push(s);
    }

    let mut fifth = TcpStream::connect(addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let (got, took) = until_closed(&mut fifth, Duration::from_secs(2)).await;
    eprintln!("5th admin connection closed after {took:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(try_get(addr, "/healthz").await, None);

    // The device listener is not affected by the admin port being at its cap.
    assert_eq!(device_request(&h).await, 200);

    // One slot frees up: /healthz answers again.
    drop(held.pop());
    assert_eq!(get_eventually(addr, "/healthz").await, "ok\n");
    // The other three are still open and served.
    for s in &mut held {
        assert_eq!(get_keep_alive(s, "/readyz").await.0, 200);
    }
    drop(held);
    let metrics = get_eventually(addr, "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "provgate_refused_connections_total{listener=\"(admin)\",reason=\"listener_limit\"}",
            )
        })
        .unwrap_or_else(|| panic!("no admin refusal counted:\n{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{line}");
}

#[tokio::test]
async fn allow_list_closes_other_addresses_without_an_answer() {
    let h = start(r#"allow: ["10.0.0.0/8"]"#).await;
    let mut s = TcpStream::connect(admin(&h)).await.unwrap();
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    let (got, took) = until_closed(&mut s, Duration::from_secs(2)).await;
    eprintln!("loopback client outside admin.allow closed after {took:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(try_get(admin(&h), "/healthz").await, None);
    // Device listeners do not use admin.allow.
    assert_eq!(device_request(&h).await, 200);

    let h = start(r#"allow: ["10.0.0.0/8", "127.0.0.0/8"]"#).await;
    assert_eq!(
        try_get(admin(&h), "/healthz").await,
        Some((200, "ok\n".into()))
    );
}

#[tokio::test]
async fn fingerprints_mask_device_ids_by_default() {
    let h = start("idle_timeout: 30s").await;
    assert_eq!(device_request(&h).await, 200);
    let body = fingerprints_with_spa(admin(&h)).await;
    let fps: serde_json::Value = serde_json::from_str(&body).unwrap();
    let agents: Vec<&str> = fps
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["user_agents"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        agents.contains(&"Cisco/SPA508G-7.5.5 (masked)(masked)"),
        "{agents:?}"
    );
    for id in ["000E08ABCDEF", "000e08abcdef", "CCQ162810LA"] {
        assert!(!body.contains(id), "{id} in {body}");
    }
}

#[tokio::test]
async fn fingerprints_show_device_ids_when_enabled() {
    let h = start("show_device_ids: true").await;
    assert_eq!(device_request(&h).await, 200);
    let body = fingerprints_with_spa(admin(&h)).await;
    let fps: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        fps.as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["user_agents"].as_array().unwrap())
            .any(|a| a == SPA_UA),
        "{body}"
    );
}
