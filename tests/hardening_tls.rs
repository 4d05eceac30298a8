//! Hardening of the path before TLS: failure log lines are bounded, escaped and rate-limited
//! per client network (while every failure is still counted), and a first flight the sniffer
//! rejects is answered the way OpenSSL answers it: a fatal alert record when the bytes look
//! like TLS, nothing when they do not. Real sockets on loopback; every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use provgate::hello::builder::{record, Sslv2Hello, TlsHello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(backend: SocketAddr, listener: &str) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - name: {listener}
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
    handshake_timeout: 5s
"#
    )
}

// ---------------------------------------------------------------- wire builders

/// 5,000 cipher specs the legacy profile shares none of: RC4 and export suites, then the
/// unassigned 0x01xx.. range (OpenSSL names none of them).
fn huge_cipher_list() -> Vec<u32> {
    let grease = |c: &u32| c & 0x0f0f == 0x0a0a && (c >> 8) == (c & 0xff);
    let mut specs = vec![0x0004, 0x0005, 0x0003, 0x0006];
    specs.extend((0x0100..).filter(|c| !grease(c)).take(4996));
    specs
}

// ---------------------------------------------------------------- clients

/// What the server sent before it closed (or before 5 s passed: `closed == false`).
#[derive(Debug)]
struct Answer {
    bytes: Vec<u8>,
    closed: bool,
}

/// Connect, send `input`, optionally half-close, read until the server closes.
async fn answer(addr: SocketAddr, input: &[u8], half_close: bool) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may stop reading (and close) before all of a long input is written.
    let _ = tcp.write_all(input).await;
    if half_close {
        let _ = tcp.shutdown().await;
    }
    read_answer(&mut tcp).await
}

async fn read_answer(tcp: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Answer { bytes, closed }
}

/// The answer must be exactly one fatal alert record, then the close; returns
/// (record version, description).
fn alert(a: &Answer, case: &str) -> (u16, u8) {
    assert!(
        a.closed,
        "{case}: connection left open; got {:02x?}",
        a.bytes
    );
    assert_eq!(
        a.bytes.len(),
        7,
        "{case}: want one alert record, got {:02x?}",
        a.bytes
    );
    let b = &a.bytes;
    assert_eq!(b[0], 0x15, "{case}: content type");
    assert_eq!(&b[3..5], &[0, 2], "{case}: length");
    assert_eq!(b[5], 2, "{case}: level fatal");
    (u16::from_be_bytes([b[1], b[2]]), b[6])
}

/// A bare OpenSSL server (the vendored library the legacy engine links), configured like the
/// legacy engine, to compare answers with.
fn openssl_reference(pki: &Pki) -> SocketAddr {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslOptions, SslVersion};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_security_level(0);
    b.clear_options(SslOptions::NO_SSLV3);
    b.set_options(SslOptions::NO_COMPRESSION);
    b.set_min_proto_version(Some(SslVersion::SSL3)).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_cipher_list("AES256-SHA:AES128-SHA").unwrap();
    b.set_certificate_chain_file(pki.path("sipura.pem"))
        .unwrap();
    b.set_private_key_file(pki.path("sipura.key"), SslFiletype::PEM)
        .unwrap();
    let acceptor = std::sync::Arc::new(b.build());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                // A hello OpenSSL is still waiting for ends here, without an alert.
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = acceptor.accept(s);
            });
        }
    });
    addr
}

/// Poll (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------- log amplification

#[tokio::test]
async fn failed_sslv2_hellos_with_huge_cipher_lists_log_a_bounded_amount() {
    const N: usize = 200;
    let listener = "hardening_burst";
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, listener)).await;
    let addr = h.addr(listener);
    let hello = Sslv2Hello::new(0x0301, &huge_cipher_list()).wire();
    assert!(hello.len() > 15_000);

    // 200 failed handshakes from one client network (127.0.0.0/24), 25 at a time.
    for _ in 0..N / 25 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let hello = hello.clone();
            set.spawn(async move { answer(addr, &hello, false).await });
        }
        while let Some(a) = set.join_next().await {
            let a = a.unwrap();
            assert!(a.closed, "handshake left open");
        }
    }

    let m = &h.running.telemetry().metrics;
    let reason = "no_shared_cipher";
    let failures = || {
        m.handshake_failures
            .with_label_values(&[listener, reason])
            .get()
    };
    let suppressed = || m.log_suppressed.with_label_values(&[reason]).get();
    let tag = format!("listener=\"{listener}\"");
    let lines = || {
        logs()
            .text()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Every failure is counted, and each one either wrote its line or was counted as
    // suppressed.
    until("200 failures, each logged or suppressed", || {
        failures() == N as u64 && suppressed() + lines().len() as u64 == N as u64
    })
    .await;

    let lines = lines();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    // What the old format wrote on every failure: the whole list.
    let provgate::hello::Parse::Parsed(parsed) = provgate::hello::parse(&hello) else {
        panic!("the burst hello does not parse");
    };
    let whole_list = provgate::diagnose::offered_cipher_names(&parsed)
        .join(",")
        .len();
    eprintln!(
        "before: every failure logged the whole {whole_list}-byte cipher list, {} bytes per failed hello",
        whole_list + lines[0].len() + 1 - provgate::diagnose::offered_ciphers(&parsed).len()
    );
    eprintln!(
        "{N} failed {}-byte SSLv2 hellos: {} log lines, {bytes} log bytes, {} bytes per failed hello; {} lines suppressed",
        hello.len(),
        lines.len(),
        bytes / N,
        suppressed()
    );
    assert!(suppressed() > 0);
    assert!(
        lines.len() <= provgate::metrics::FailureLogLimit::PER_KEY as usize,
        "{} lines",
        lines.len()
    );
    for l in &lines {
        assert!(l.len() < 1_500, "line of {} bytes: {l}", l.len());
        assert!(l.contains("reason=\"no_shared_cipher\""), "{l}");
        assert!(
            l.contains("offered_ciphers=\"5000 suites: RC4-MD5,RC4-SHA,EXP-RC4-MD5,... (+4997)\""),
            "{l}"
        );
    }
    // Before: 36 KB per failed hello (the whole list on every line).
    assert!(bytes / N < 100, "{} bytes per failed hello", bytes / N);
    let text = m.render();
    assert!(
        text.contains(&format!(
            "provgate_log_suppressed_total{{reason=\"no_shared_cipher\"}} {}",
            N - lines.len()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "provgate_handshake_failures_total{{listener=\"{listener}\",reason=\"no_shared_cipher\"}} {N}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn hostile_and_overlong_server_names_are_escaped_and_capped_in_the_log() {
    let listener = "hardening_sni";
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, listener)).await;
    let addr = h.addr(listener);
    let tag = format!("listener=\"{listener}\"");

    // RC4 only: the legacy profile shares no suite, so the handshake fails and is logged.
    let hostile = b"evil\x1b[2J\r\nWARN forged reason=\"ok\" \xff.test";
    let hello = TlsHello::new(0x0301, &[0x0004, 0x0005]).sni(hostile).wire();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap();
    tcp.write_all(&hello).await.unwrap();
    read_answer(&mut tcp).await;
    let line = logs()
        .wait_for(&[&tag, "handshake failed", &format!("peer={peer}")])
        .await;
    // The name is not a DNS name: it is reported as such and none of its bytes are echoed.
    assert!(line.contains("sni=<invalid>"), "{line}");
    assert!(!line.contains("evil"), "{line}");
    assert!(line.chars().all(|c| !c.is_control()), "{line:?}");
    assert!(
        !logs().text().lines().any(|l| l.starts_with("WARN forged")),
        "a forged log line"
    );

    // A plausible but very long name is capped, saying how much was cut.
    let long: String = (0..4).map(|_| format!("{}.", "a".repeat(60))).collect();
    let long = format!("{long}test"); // 248 bytes
    let hello = TlsHello::new(0x0301, &[0x0004]).sni(&long).wire();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let peer = tcp.local_addr().unwrap();
    tcp.write_all(&hello).await.unwrap();
    read_answer(&mut tcp).await;
    let line = logs()
        .wait_for(&[&tag, "handshake failed", &format!("peer={peer}")])
        .await;
    let sni = line
        .split(" sni=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(sni.starts_with("aaaa"), "{line}");
    assert!(sni.ends_with("...(+120 bytes)"), "{sni}");
    assert!(sni.len() < 160, "{sni}");
}

// ---------------------------------------------------------------- alerts

#[tokio::test]
async fn rejected_hellos_get_the_fatal_alert_openssl_sends_then_the_close() {
    let listener = "hardening_alerts";
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, listener)).await;
    let ours = h.addr(listener);
    let reference = openssl_reference(&h.pki);
    let good = TlsHello::new(0x0303, &[0x002f]).handshake();

    let mut bad_lengths = good.clone();
    bad_lengths[38] = 0xff; // session id length running past the message
    let mut over_long = record(0x16, 0x0301, &[]);
    over_long[3..5].copy_from_slice(&0xffffu16.to_be_bytes());
    over_long.extend_from_slice(&[1, 0, 0, 40, 3, 1]);
    let mut wrong_type = good.clone();
    wrong_type[0] = 2; // a ServerHello from a client
    let dup = TlsHello::new(0x0303, &[0x2f])
        .ext(0xff01, [0])
        .ext(0xff01, [0]);
    let mut sslv2_long_sid = Sslv2Hello::new(0x0301, &[0x2f]).wire();
    sslv2_long_sid[8] = 33;

    // (case, input, the alert description OpenSSL sends)
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        (
            "malformed: bad lengths",
            record(0x16, 0x0301, &bad_lengths),
            50,
        ),
        (
            "malformed: extensions overrun",
            TlsHello::new(0x0303, &[0x2f])
                .raw_extensions(&[0xff, 1, 0, 5, 0])
                .record(0x0303),
            50,
        ),
        (
            "malformed: handshake length too short",
            record(0x16, 0x0301, &[1, 0, 0, 5, 3, 3, 0, 0, 0]),
            50,
        ),
        ("over-long record (0xffff)", over_long, 22),
        (
            "record of 2^14 + 1 bytes",
            {
                let mut r = record(0x16, 0x0301, &[]);
                r[3..5].copy_from_slice(&16_385u16.to_be_bytes());
                r.extend(vec![0u8; 16_385]);
                r
            },
            22,
        ),
        ("not a ClientHello", record(0x16, 0x0301, &wrong_type), 10),
        (
            "non-TLS: application data first",
            record(0x17, 0x0301, b"GET / HTTP/1.1"),
            10,
        ),
        (
            "non-TLS: an alert first",
            record(0x15, 0x0303, &[2, 40]),
            10,
        ),
        ("duplicate extension", dup.wire(), 47),
        (
            "hello version below SSLv3",
            TlsHello::new(0x0200, &[0x2f]).wire(),
            70,
        ),
        ("SSLv2-format: session id over 32 bytes", sslv2_long_sid, 47),
    ];
    for (case, input, want) in &cases {
        let (version, description) = alert(&answer(ours, input, false).await, case);
        assert_eq!(description, *want, "{case}");
        let client_version = if input[0] & 0x80 != 0 {
            u16::from_be_bytes([input[3], input[4]])
        } else {
            u16::from_be_bytes([input[1], input[2]])
        };
        assert_eq!(
            version, client_version,
            "{case}: the client's record version"
        );
        let (_, theirs) = alert(&answer(reference, input, false).await, case);
        assert_eq!(description, theirs, "{case}: OpenSSL sends {theirs}");
    }

    // A hello truncated by the client closing: decode_error, as OpenSSL sends on a socket
    // (rust-openssl's BIO in the reference hides the EOF, so no comparison here).
    for (case, input) in [
        (
            "truncated TLS hello, then close",
            record(0x16, 0x0301, &good)[..30].to_vec(),
        ),
        ("truncated record header, then close", vec![0x16, 3, 1]),
        (
            "truncated SSLv2 hello, then close",
            Sslv2Hello::new(0x0300, &[0x2f]).wire()[..10].to_vec(),
        ),
    ] {
        let (version, description) = alert(&answer(ours, &input, true).await, case);
        assert_eq!(description, 50, "{case}");
        assert!(
            version == 0x0301 || version == 0x0300,
            "{case}: {version:04x}"
        );
    }

    // Over the sniffer's size cap: illegal_parameter, OpenSSL's "excessive message size".
    let mut too_large = vec![0x16, 3, 1, 0x40, 0, 1];
    too_large.extend_from_slice(&(provgate::hello::MAX_HELLO_MESSAGE as u32).to_be_bytes()[1..]);
    too_large.extend_from_slice(&[3, 3]);
    let (_, description) = alert(&answer(ours, &too_large, false).await, "too large");
    assert_eq!(description, 47);

    // Each was counted as a failure before HTTP.
    let m = &h.running.telemetry().metrics;
    until("the failures to be counted", || {
        ["not_tls", "client_closed"]
            .iter()
            .map(|r| m.handshake_failures.with_label_values(&[listener, r]).get())
            .sum::<u64>()
            == cases.len() as u64 + 4
    })
    .await;
}

#[tokio::test]
async fn bytes_that_are_not_tls_get_no_alert_like_openssl() {
    let listener = "hardening_plain";
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, listener)).await;
    let ours = h.addr(listener);
    let reference = openssl_reference(&h.pki);
    // OpenSSL: "Doesn't look like TLS - don't send an alert" (record version not 3.x).
    for (case, input) in [
        ("plain HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("random bytes", vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2]),
        (
            "record version 2.0",
            TlsHello::new(0x0303, &[0x2f]).record(0x0200),
        ),
    ] {
        let a = answer(ours, &input, false).await;
        assert!(a.closed && a.bytes.is_empty(), "{case}: {a:?}");
        let b = answer(reference, &input, false).await;
        assert!(b.closed && b.bytes.is_empty(), "{case}: OpenSSL sent {b:?}");
    }
}

#[tokio::test]
async fn hellos_as_large_as_tlsfuzzer_sends_and_tiny_fragments_are_served() {
    let listener = "hardening_large";
    let backend = backend().await;
    let h = Harness::start(sipura_pki(), &config(backend, listener)).await;
    let addr = h.addr(listener);
    let server_hello = |a: &Answer, case: &str| {
        let b = &a.bytes;
        assert!(
            b.len() >= 6 && b[0] == 0x16 && b[1] == 3 && b[5] == 2,
            "{case}: want a ServerHello, got {:02x?}",
            &b[..b.len().min(16)]
        );
    };

    // test-large-hello's largest: a padding extension filling the extensions block
    // (65,583-byte message), first record 2 bytes, then 2^14-byte records.
    let hello = TlsHello::new(0x0301, &[0x002f, 0x00ff]).ext(21, vec![0u8; 0xffff - 5]);
    let msg_len = hello.handshake().len();
    assert!(msg_len > 65_536 && msg_len <= provgate::hello::MAX_HELLO_MESSAGE);
    let wire = hello.fragmented(0x0301, 2, 16_384);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&wire).await.unwrap();
    let mut head = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    server_hello(
        &Answer {
            bytes: head.to_vec(),
            closed: false,
        },
        "65 KB hello",
    );

    // An ordinary hello with every byte in its own record.
    let wire = TlsHello::new(0x0301, &[0x002f]).fragmented(0x0301, 1, 1);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&wire).await.unwrap();
    let mut head = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    server_hello(
        &Answer {
            bytes: head.to_vec(),
            closed: false,
        },
        "1-byte records",
    );
}
