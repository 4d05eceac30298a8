//! The core data path end to end: real sockets on loopback, certificates generated here, an
//! OpenSSL client for legacy TLS and a rustls client for modern TLS, and the sample backend.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use openssl::ssl::SslVersion;
use provgate::pki::CertSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

/// Two vendor-like CAs with one server certificate each, plus a third for routes.
fn two_families() -> Pki {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco2k", "Cisco 2k CA (test)");
    pki.issue(
        &sipura,
        "sipura",
        &CertSpec::legacy_server("prov.sipura.test"),
    );
    pki.issue(&cisco, "cisco2k", &CertSpec::server("prov.cisco2k.test"));
    pki.issue(&cisco, "special", &CertSpec::server("special.test"));
    pki
}

fn header(yaml_backend: std::net::SocketAddr) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{yaml_backend}", connect_timeout: 1s, read_timeout: 2s }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  cisco2k: {{ chain: cisco2k.pem, key: cisco2k.key }}
  special: {{ chain: special.pem, key: special.key }}
"#
    )
}

#[tokio::test]
async fn listeners_routes_and_sni_pick_the_certificate() {
    let backend = backend().await;
    let pki = two_families();
    let yaml = format!(
        r#"{}
listeners:
  - name: a
    bind: ["127.0.0.2:0"]
    certificate: sipura
    tls: legacy
    backend: prov
    routes:
      - match: {{ sni: ["special.test", "*.wild.test"] }}
        certificate: special
  - name: b
    bind: ["127.0.0.3:0"]
    certificate: cisco2k
    tls: legacy
    backend: prov
  - name: c
    bind: ["127.0.0.2:0", "127.0.0.3:0"]
    certificate: sipura
    tls: legacy
    backend: prov
    routes:
      - name: by-destination
        match: {{ local: ["127.0.0.3/32"] }}
        certificate: cisco2k
"#,
        header(backend)
    );
    let h = Harness::start(pki, &yaml).await;
    let client = Legacy::default();

    let a = client.connect(h.addr("a")).await.unwrap();
    assert_eq!(
        peer_cn(&a),
        "prov.sipura.test",
        "no SNI -> listener default"
    );
    let b = client.connect(h.addr("b")).await.unwrap();
    assert_eq!(peer_cn(&b), "prov.cisco2k.test", "other address, other CA");

    let sni = Legacy {
        sni: Some("special.test"),
        ..client.clone()
    };
    assert_eq!(
        peer_cn(&sni.connect(h.addr("a")).await.unwrap()),
        "special.test"
    );
    let wild = Legacy {
        sni: Some("x.wild.test"),
        ..client.clone()
    };
    assert_eq!(
        peer_cn(&wild.connect(h.addr("a")).await.unwrap()),
        "special.test"
    );
    let other = Legacy {
        sni: Some("other.test"),
        ..client.clone()
    };
    assert_eq!(
        peer_cn(&other.connect(h.addr("a")).await.unwrap()),
        "prov.sipura.test",
        "unmatched SNI -> default"
    );

    let c = h.running.addrs("c");
    assert_eq!(c[0].ip().to_string(), "127.0.0.2");
    assert_eq!(
        peer_cn(&client.connect(c[0]).await.unwrap()),
        "prov.sipura.test"
    );
    assert_eq!(
        peer_cn(&client.connect(c[1]).await.unwrap()),
        "prov.cisco2k.test",
        "local CIDR route picks by destination address"
    );

    // The chosen certificate chains to its own CA: verify with the CA file.
    let verified = Legacy {
        ca: Some(&h.pki.path("cisco2k-ca.pem")),
        ..client.clone()
    };
    verified.connect(h.addr("b")).await.unwrap();
    let wrong_ca = Legacy {
        ca: Some(&h.pki.path("sipura-ca.pem")),
        ..client.clone()
    };
    assert!(wrong_ca.connect(h.addr("b")).await.is_err());
}

fn legacy_only(backend: std::net::SocketAddr, cert: &str, profiles: &str, tls: &str) -> String {
    format!(
        r#"{}
{profiles}
listeners:
  - name: legacy
    bind: ["127.0.0.1:0"]
    certificate: {cert}
    tls: {tls}
    backend: prov
"#,
        header(backend)
    )
}

#[tokio::test]
async fn tls10_dhe_first_client_gets_aes256_sha_and_backend_sees_forwarding_headers() {
    let backend = backend().await;
    let h = Harness::start(
        two_families(),
        &legacy_only(backend, "sipura", "", "legacy"),
    )
    .await;
    let addr = h.addr("legacy");
    let spa = Legacy {
        // Firmware 2.0 order: DHE first.
        ciphers: "DHE-RSA-AES256-SHA:AES256-SHA:DHE-RSA-AES128-SHA:AES128-SHA",
        ca: Some(&h.pki.path("sipura-ca.pem")),
        ..Legacy::default()
    };
    let mut s = spa.connect(addr).await.unwrap();
    assert_eq!(s.ssl().version_str(), "TLSv1");
    assert_eq!(s.ssl().current_cipher().unwrap().name(), "AES256-SHA");
    let (status, body) = get(
        &mut s,
        MAC_PATH,
        "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: http\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<Station_Name>spa-000e08abcdef</Station_Name>"),
        "{body}"
    );
    assert!(body.contains("seen x-forwarded-for: 127.0.0.1 "), "{body}");
    assert!(body.contains("seen x-real-ip: 127.0.0.1 "), "{body}");
    assert!(body.contains("seen x-forwarded-proto: https "), "{body}");
    assert!(
        body.contains(&format!("seen x-forwarded-port: {} ", addr.port())),
        "{body}"
    );
    assert!(
        !body.contains("6.6.6.6"),
        "client's forwarding headers must be dropped: {body}"
    );
    assert!(!body.contains("x-forwarded-proto: http "), "{body}");
}

#[tokio::test]
async fn dhe_only_client_gets_a_group_of_at_most_1024_bits() {
    let backend = backend().await;
    // cisco2k has a 2048-bit RSA key: automatic DH sizing would pick 2048.
    let h = Harness::start(
        two_families(),
        &legacy_only(backend, "cisco2k", "", "legacy"),
    )
    .await;
    let client = Legacy {
        ciphers: "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA",
        ..Legacy::default()
    };
    let mut s = client.connect(h.addr("legacy")).await.unwrap();
    assert_eq!(
        s.ssl().current_cipher().unwrap().name(),
        "DHE-RSA-AES256-SHA"
    );
    let dh = s.ssl().peer_tmp_key().unwrap();
    assert_eq!(dh.id(), openssl::pkey::Id::DH);
    assert_eq!(dh.bits(), 1024, "DH group of {} bits", dh.bits());
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}

#[tokio::test]
async fn dh_bits_2048_is_served_only_where_a_profile_asks_for_it() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  big:\n    base: legacy\n    dh_bits: 2048\n";
    let h = Harness::start(
        two_families(),
        &legacy_only(backend, "sipura", profiles, "big"),
    )
    .await;
    let client = Legacy {
        ciphers: "DHE-RSA-AES256-SHA",
        ..Legacy::default()
    };
    let mut s = client.connect(h.addr("legacy")).await.unwrap();
    let dh = s.ssl().peer_tmp_key().unwrap();
    assert_eq!(dh.bits(), 2048);
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}

#[tokio::test]
async fn dh_group_rfc5114_serves_the_subgroup_prime_the_default_the_oakley_prime() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  fast:\n    base: legacy\n    dh_group: rfc5114\n";
    for (profile, want) in [
        (
            "fast",
            openssl::dh::Dh::get_1024_160()
                .unwrap()
                .prime_p()
                .to_owned()
                .unwrap(),
        ),
        (
            "legacy",
            openssl::bn::BigNum::get_rfc2409_prime_1024().unwrap(),
        ),
    ] {
        let h = Harness::start(
            two_families(),
            &legacy_only(backend, "sipura", profiles, profile),
        )
        .await;
        let client = Legacy {
            ciphers: "DHE-RSA-AES256-SHA",
            ..Legacy::default()
        };
        let mut s = client.connect(h.addr("legacy")).await.unwrap();
        let key = s.ssl().peer_tmp_key().unwrap();
        let dh = key.dh().unwrap();
        assert_eq!(dh.prime_p(), &*want, "profile {profile}");
        assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    }
}

#[tokio::test]
async fn dh_bits_zero_refuses_a_dhe_only_client() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  nodhe:\n    base: legacy\n    dh_bits: 0\n";
    let h = Harness::start(
        two_families(),
        &legacy_only(backend, "sipura", profiles, "nodhe"),
    )
    .await;
    let client = Legacy {
        ciphers: "DHE-RSA-AES256-SHA",
        ..Legacy::default()
    };
    assert!(client.connect(h.addr("legacy")).await.is_err());
    assert!(Legacy::default().connect(h.addr("legacy")).await.is_ok());
}

/// An SSLv2-format ("compat") ClientHello as a PAP2 sends it, offering TLS 1.0.
fn sslv2_hello() -> Vec<u8> {
    let specs = [
        0x00_0035, // AES256-SHA
        0x00_002f, // AES128-SHA
        0x01_0080, // SSL2_RC4_128_WITH_MD5
        0x00_0005, // RC4-SHA
    ];
    // Version 3.1, empty session id, a 16-byte challenge.
    provgate::hello::builder::Sslv2Hello::new(0x0301, &specs).wire()
}

#[tokio::test]
async fn sslv2_format_hello_is_answered_with_a_tls10_server_hello() {
    let backend = backend().await;
    let h = Harness::start(
        two_families(),
        &legacy_only(backend, "sipura", "", "legacy"),
    )
    .await;
    let mut tcp = TcpStream::connect(h.addr("legacy")).await.unwrap();
    tcp.write_all(&sslv2_hello()).await.unwrap();
    let mut head = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0], 0x16, "handshake record");
    assert_eq!(&head[1..3], &[0x03, 0x01], "record version TLS 1.0");
    assert_eq!(head[5], 0x02, "ServerHello");
    assert_eq!(&head[9..11], &[0x03, 0x01], "server_version TLS 1.0");
}

#[tokio::test]
async fn ssl3_only_where_a_profile_lists_it() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  pap2:\n    base: legacy\n    versions: [ssl3, tls1.0]\n";
    let yaml = format!(
        r#"{}
{profiles}
listeners:
  - name: with-ssl3
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: pap2
    backend: prov
  - name: default-legacy
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
"#,
        header(backend)
    );
    let h = Harness::start(two_families(), &yaml).await;
    let ssl3 = Legacy {
        min: SslVersion::SSL3,
        max: SslVersion::SSL3,
        ciphers: "AES128-SHA",
        ..Legacy::default()
    };
    let mut s = ssl3.connect(h.addr("with-ssl3")).await.unwrap();
    assert_eq!(s.ssl().version_str(), "SSLv3");
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    assert!(ssl3.connect(h.addr("default-legacy")).await.is_err());
}

fn modern_config(backend: std::net::SocketAddr, tls: &str) -> String {
    format!(
        r#"{}
listeners:
  - name: l
    bind: ["127.0.0.1:0"]
    certificate: cisco2k
    tls: {tls}
    backend: prov
"#,
        header(backend)
    )
}

#[tokio::test]
async fn modern_listener_serves_tls13_with_rustls_and_refuses_old_versions() {
    let backend = backend().await;
    let h = Harness::start(two_families(), &modern_config(backend, "modern")).await;
    let addr = h.addr("l");
    let ca = h.pki.path("cisco2k-ca.pem");
    let mut s = modern(
        addr,
        &ca,
        "prov.cisco2k.test",
        true,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("seen x-forwarded-proto: https"), "{body}");

    let tls10 = Legacy::default();
    assert!(tls10.connect(addr).await.is_err(), "TLS 1.0 refused");
    let ssl3 = Legacy {
        min: SslVersion::SSL3,
        max: SslVersion::SSL3,
        ciphers: "AES128-SHA",
        ..Legacy::default()
    };
    assert!(ssl3.connect(addr).await.is_err(), "SSLv3 refused");
}

#[tokio::test]
async fn auto_listener_serves_tls13_via_rustls_and_tls10_via_openssl_on_one_port() {
    let backend = backend().await;
    let h = Harness::start(two_families(), &modern_config(backend, "auto")).await;
    let addr = h.addr("l");
    let ca = h.pki.path("cisco2k-ca.pem");
    let mut s = modern(
        addr,
        &ca,
        "prov.cisco2k.test",
        true,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    let log = logs()
        .wait_for(&[
            "handshake done",
            "engine=\"modern\"",
            "version=\"tls1.3\"",
            &format!("local={addr}"),
        ])
        .await;
    assert!(log.contains("listener=l"), "{log}");

    let mut old = Legacy {
        ca: Some(&ca),
        ..Legacy::default()
    }
    .connect(addr)
    .await
    .unwrap();
    assert_eq!(old.ssl().version_str(), "TLSv1");
    assert_eq!(get(&mut old, MAC_PATH, "").await.0, 200);
    logs()
        .wait_for(&[
            "handshake done",
            "engine=\"legacy\"",
            "version=\"tls1.0\"",
            &format!("local={addr}"),
        ])
        .await;
}

#[tokio::test]
async fn auto_with_a_1024_bit_key_serves_modern_clients_through_openssl() {
    let backend = backend().await;
    let yaml = format!(
        r#"{}
listeners:
  - name: l
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: auto
    backend: prov
"#,
        header(backend)
    );
    let h = Harness::start(two_families(), &yaml).await;
    // rustls cannot sign with RSA 1024, so a TLS 1.2 client is served by OpenSSL.
    let tls12 = Legacy {
        min: SslVersion::TLS1_2,
        max: SslVersion::TLS1_2,
        ciphers: "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA",
        ..Legacy::default()
    };
    let mut s = tls12.connect(h.addr("l")).await.unwrap();
    assert_eq!(s.ssl().version_str(), "TLSv1.2");
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}

#[tokio::test]
async fn backend_down_is_502_and_backend_stalled_is_504_within_the_timeouts() {
    let down = dead_addr();
    let stalled = stalled_backend().await;
    let pki = two_families();
    let yaml = format!(
        r#"
backends:
  down: {{ address: "{down}", connect_timeout: 500ms, read_timeout: 500ms }}
  stalled: {{ address: "{stalled}", connect_timeout: 500ms, read_timeout: 500ms }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - name: down
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: down
  - name: stalled
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: stalled
"#
    );
    let h = Harness::start(pki, &yaml).await;
    let client = Legacy::default();

    let started = Instant::now();
    let mut s = client.connect(h.addr("down")).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 502);
    assert!(started.elapsed() < Duration::from_secs(5));

    let started = Instant::now();
    let mut s = client.connect(h.addr("stalled")).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "504 before the read timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "504 took {took:?}");
    logs().wait_for(&["request failed", "status=504"]).await;
}

#[tokio::test]
async fn garbage_truncated_and_silent_clients_are_closed_and_logged() {
    let backend = backend().await;
    let yaml = format!(
        r#"{}
listeners:
  - name: g
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
    handshake_timeout: 400ms
"#,
        header(backend)
    );
    let h = Harness::start(two_families(), &yaml).await;
    let addr = h.addr("g");

    async fn closed_by_server(mut tcp: TcpStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // The server closes: read gives EOF or a reset, never hangs past the bound.
        let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        match r {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            other => panic!("expected close, got {other:?}"),
        }
        started.elapsed()
    }

    // Plain HTTP on a TLS port: closed at once.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(tcp).await;
    let line = logs().wait_for(&[&peer, "reason=\"not_tls\""]).await;
    assert!(line.contains("HTTP"), "{line}");

    // Random garbage.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    tcp.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02])
        .await
        .unwrap();
    closed_by_server(tcp).await;
    logs().wait_for(&[&peer, "reason=\"not_tls\""]).await;

    // A truncated hello: waits for the rest, then the handshake timeout closes it.
    let hello = sslv2_hello();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let waited = closed_by_server(tcp).await;
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
    logs().wait_for(&[&peer, "reason=\"timeout\""]).await;

    // A client that sends nothing.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    closed_by_server(tcp).await;
    logs().wait_for(&[&peer, "reason=\"timeout\""]).await;

    // A hello truncated by the client closing.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    tcp.write_all(&hello[..10]).await.unwrap();
    tcp.shutdown().await.unwrap();
    // Answered as OpenSSL answers an EOF inside the hello: decode_error, then the close.
    let mut alert = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut alert))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alert, [0x15, 0x03, 0x01, 0, 2, 2, 50]);
    closed_by_server(tcp).await;
    logs().wait_for(&[&peer, "reason=\"client_closed\""]).await;

    // Still serving.
    let mut s = Legacy::default().connect(addr).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}
