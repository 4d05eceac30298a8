//! Metrics, the handshake diagnosis log, `/fingerprints`, and routing by ClientHello traits.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use openssl::ssl::SslVersion;
use provgate::pki::CertSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

fn pki() -> Pki {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco2k", "Cisco 2k CA (test)");
    pki.issue(
        &sipura,
        "sipura",
        &CertSpec::legacy_server("prov.sipura.test"),
    );
    pki.issue(&cisco, "cisco2k", &CertSpec::server("prov.cisco2k.test"));
    pki.issue(&cisco, "fallback", &CertSpec::server("fallback.test"));
    pki
}

fn yaml(backend: SocketAddr, listeners: &str) -> String {
    format!(
        r#"
admin: {{ listen: "127.0.0.1:0" }}
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  cisco2k: {{ chain: cisco2k.pem, key: cisco2k.key }}
  fallback: {{ chain: fallback.pem, key: fallback.key }}
listeners:
{listeners}"#
    )
}

/// GET a path from the admin listener over plain HTTP/1.1.
async fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A TLS hello with an SNI name, sent raw and abandoned: counted, never a label.
fn hello_with_sni(name: &str) -> Vec<u8> {
    provgate::hello::builder::TlsHello::new(0x0301, &[0x002f])
        .sni(name)
        .wire()
}

#[tokio::test]
async fn a_scrape_shows_each_outcome_in_its_series_and_labels_stay_bounded() {
    let backend = backend().await;
    let listeners = "  - { name: legacy, bind: [\"127.0.0.1:0\"], certificate: sipura, tls: legacy, backend: prov }\n\
                     \x20 - { name: modern, bind: [\"127.0.0.1:0\"], certificate: cisco2k, tls: modern, backend: prov }\n\
                     \x20 - { name: names, bind: [\"127.0.0.1:0\"], certificate: sipura, tls: legacy, backend: prov }\n";
    let h = Harness::start(pki(), &yaml(backend, listeners)).await;
    let admin = h.running.admin_addr().unwrap();

    let mut s = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    let ca = h.pki.path("cisco2k-ca.pem");
    let mut m = modern(
        h.addr("modern"),
        &ca,
        "prov.cisco2k.test",
        true,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap();
    assert_eq!(get(&mut m, MAC_PATH, "").await.0, 200);
    let ssl3 = Legacy {
        min: SslVersion::SSL3,
        max: SslVersion::SSL3,
        ciphers: "AES128-SHA",
        ..Legacy::default()
    };
    assert!(ssl3.connect(h.addr("modern")).await.is_err());
    let mut g = TcpStream::connect(h.addr("legacy")).await.unwrap();
    g.write_all(b"\x01\x02garbage garbage").await.unwrap();
    let _ = g.read(&mut [0u8; 16]).await;

    // 10,000 distinct User-Agents over keep-alive, 10,000 distinct SNI names in raw hellos.
    let mut s = Legacy::default().connect(h.addr("legacy")).await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        if i == 1000 {
            eprintln!("1000 keep-alive requests took {:?}", started.elapsed());
        }
        let req = format!("GET {MAC_PATH} HTTP/1.1\r\nHost: p\r\nUser-Agent: Fake/SPA{i}-{i}.{i}.{i} ({i:012x})\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        read_one_response(&mut s).await;
    }
    drop(s);
    for i in 0..10_000 {
        let mut t = TcpStream::connect(h.addr("names")).await.unwrap();
        t.write_all(&hello_with_sni(&format!("host{i}.example.test")))
            .await
            .unwrap();
    }

    let metrics = wait_for_metric(
        admin,
        "provgate_client_hellos_total{format=\"tls\",listener=\"names\",max_version=\"tls1.0\"}",
        10_000.0,
    )
    .await;
    let ok = |s: &str| value(&metrics, s).unwrap_or_else(|| panic!("no series {s} in\n{metrics}"));
    assert_eq!(ok("provgate_handshakes_total{cipher=\"AES256-SHA\",engine=\"legacy\",listener=\"legacy\",outcome=\"success\",route=\"legacy\",version=\"tls1.0\"}"), 2.0);
    assert_eq!(ok("provgate_handshakes_total{cipher=\"TLS13_AES_256_GCM_SHA384\",engine=\"modern\",listener=\"modern\",outcome=\"success\",route=\"modern\",version=\"tls1.3\"}"), 1.0);
    assert_eq!(
        ok("provgate_handshake_failures_total{listener=\"modern\",reason=\"protocol_version\"}"),
        1.0
    );
    assert_eq!(
        ok("provgate_handshake_failures_total{listener=\"legacy\",reason=\"not_tls\"}"),
        1.0
    );
    assert_eq!(
        ok("provgate_client_hellos_total{format=\"tls\",listener=\"modern\",max_version=\"ssl3\"}"),
        1.0
    );
    assert!(
        ok("provgate_requests_total{listener=\"legacy\",route=\"legacy\",status_class=\"2xx\"}")
            >= 10_001.0
    );
    assert_eq!(ok("provgate_openssl_capability{feature=\"ssl3\"}"), 1.0);
    assert_eq!(ok("provgate_openssl_capability{feature=\"rc4\"}"), 1.0);

    let series = metrics.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series < 400,
        "{series} series after 10k agents and names:\n{metrics}"
    );
    assert!(
        !metrics.contains("example.test") && !metrics.contains("Fake/"),
        "raw values leaked into labels"
    );
    assert!(
        !metrics.contains("127.0.0.1"),
        "client addresses leaked into labels"
    );

    // The fingerprint view stays bounded too.
    let fps: serde_json::Value =
        serde_json::from_str(&admin_get(admin, "/fingerprints").await).unwrap();
    let list = fps.as_array().unwrap();
    assert!(list.len() <= provgate::fingerprint::MAX_FINGERPRINTS);
    for f in list {
        assert!(f["user_agents"].as_array().unwrap().len() <= provgate::fingerprint::MAX_AGENTS);
    }
}

async fn read_one_response(s: &mut LegacyStream) {
    // Sample backend answers with Content-Length; read headers, then the body.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
}

async fn wait_for_metric(admin: SocketAddr, series: &str, at_least: f64) -> String {
    for _ in 0..400 {
        let text = admin_get(admin, "/metrics").await;
        if value(&text, series).is_some_and(|v| v >= at_least) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{series} never reached {at_least}");
}

#[tokio::test]
async fn rc4_only_client_gets_a_diagnosis_naming_reason_and_suites() {
    let backend = backend().await;
    let listeners = "  - { name: l, bind: [\"127.0.0.1:0\"], certificate: sipura, tls: legacy, backend: prov }\n";
    let h = Harness::start(pki(), &yaml(backend, listeners)).await;
    let addr = h.addr("l");
    let rc4 = Legacy {
        ciphers: "RC4-SHA:RC4-MD5",
        ..Legacy::default()
    };
    assert!(rc4.connect(addr).await.is_err());
    let line = logs()
        .wait_for(&[
            &format!("local={addr}"),
            "handshake failed",
            "reason=\"no_shared_cipher\"",
        ])
        .await;
    assert!(line.contains("offered_ciphers=RC4-SHA,RC4-MD5"), "{line}");
    assert!(
        line.contains(
            "client offers only RC4 suites; profile 'legacy' allows 'AES256-SHA:AES128-SHA"
        ),
        "{line}"
    );
    assert!(line.contains("offered_versions=up to tls1.0"), "{line}");
    assert!(line.contains("ja4=t10i"), "{line}");
    assert!(line.contains("engine=\"legacy\""), "{line}");
}

#[tokio::test]
async fn certificate_expiry_gauge_equals_not_after() {
    let backend = backend().await;
    let listeners = "  - { name: l, bind: [\"127.0.0.1:0\"], certificate: sipura, tls: legacy, backend: prov }\n";
    let h = Harness::start(pki(), &yaml(backend, listeners)).await;
    let pem = std::fs::read(h.pki.path("sipura.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let d = epoch.diff(cert.not_after()).unwrap();
    let want = i64::from(d.days) * 86_400 + i64::from(d.secs);
    let metrics = admin_get(h.running.admin_addr().unwrap(), "/metrics").await;
    let got = value(
        &metrics,
        "provgate_certificate_not_after_seconds{certificate=\"sipura\"}",
    )
    .unwrap();
    assert_eq!(got as i64, want);
}

#[tokio::test]
async fn fingerprints_show_the_ja4_and_user_agent_of_a_client() {
    let backend = backend().await;
    let listeners = "  - { name: l, bind: [\"127.0.0.1:0\"], certificate: sipura, tls: legacy, backend: prov }\n";
    let h = Harness::start(pki(), &yaml(backend, listeners)).await;
    let client = Legacy {
        ciphers: "DHE-RSA-AES256-SHA:AES256-SHA:AES128-SHA:DES-CBC3-SHA",
        ..Legacy::default()
    };
    let mut s = client.connect(h.addr("l")).await.unwrap();
    let peer = s.get_ref().local_addr().unwrap().to_string();
    let ua = "Linksys/SPA-2102-5.2.10 (88012BA01234)";
    let req = format!(
        "GET {MAC_PATH} HTTP/1.1\r\nHost: p\r\nUser-Agent: {ua}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let line = logs()
        .wait_for(&["handshake done", &format!("peer={peer}")])
        .await;
    let ja4 = line
        .split("ja4=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(ja4.starts_with("t10i"), "{ja4}");
    let fps: serde_json::Value =
        serde_json::from_str(&admin_get(h.running.admin_addr().unwrap(), "/fingerprints").await)
            .unwrap();
    let entry = fps
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["ja4"] == ja4.as_str())
        .unwrap_or_else(|| panic!("{ja4} not in {fps}"));
    assert_eq!(entry["format"], "tls");
    assert_eq!(entry["max_version"], "tls1.0");
    assert!(
        entry["user_agents"]
            .as_array()
            .unwrap()
            .iter()
            // Stored masked by default (admin.show_device_ids): model and firmware, no MAC.
            .any(|u| u == "Linksys/SPA-2102-5.2.10 (masked)"),
        "{entry}"
    );
    assert!(!entry.to_string().contains("88012BA01234"), "{entry}");
    let metrics = admin_get(h.running.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(
        value(
            &metrics,
            "provgate_devices_seen_total{family=\"SPA2xxx\",firmware=\"5.2\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn client_hello_routes_pick_certificates_on_one_port_without_sni() {
    let backend = backend().await;
    let listeners = r#"  - name: shared
    bind: ["127.0.0.1:0"]
    certificate: fallback
    tls: auto
    backend: prov
    routes:
      - name: pap2t-like
        match: { client_hello: { max_version: tls1.0 } }
        certificate: sipura
        tls: legacy
      - name: spa5xx-7.6-like
        match: { client_hello: { format: tls, offers_cipher: ["ECDHE-RSA-AES128-GCM-SHA256"] } }
        certificate: cisco2k
"#;
    let h = Harness::start(pki(), &yaml(backend, listeners)).await;
    let addr = h.addr("shared");
    let old = Legacy::default();
    assert_eq!(
        peer_cn(&old.connect(addr).await.unwrap()),
        "prov.sipura.test"
    );
    let newer = Legacy {
        min: SslVersion::TLS1_2,
        max: SslVersion::TLS1_2,
        ciphers: "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA",
        ..Legacy::default()
    };
    assert_eq!(
        peer_cn(&newer.connect(addr).await.unwrap()),
        "prov.cisco2k.test"
    );
    let neither = Legacy {
        min: SslVersion::TLS1_2,
        max: SslVersion::TLS1_2,
        ciphers: "AES128-SHA",
        ..Legacy::default()
    };
    assert_eq!(
        peer_cn(&neither.connect(addr).await.unwrap()),
        "fallback.test",
        "no hello rule -> listener default"
    );
}
