//! Unit tests of the hello parser.

use super::builder::{handshake_message, handshake_records, u24, vec16, Sslv2Hello, TlsHello};
use super::*;

// ---- sample hellos ----------------------------------------------------------------

const SPA_SUITES: [u16; 9] = [
    0x0039, 0x0035, 0x0033, 0x002f, 0x0005, 0x0004, 0x0064, 0x0060, 0x0003,
];

fn spa_tls10() -> Vec<u8> {
    TlsHello::new(0x0301, &SPA_SUITES).wire()
}

const SSLV2_SPECS: [u32; 7] = [
    0x00_0039, 0x00_002f, 0x01_0080, 0x00_0005, 0x07_00c0, 0x02_0080, 0x00_0004,
];

fn sslv2_compat() -> Vec<u8> {
    Sslv2Hello::new(0x0301, &SSLV2_SPECS)
        .challenge(&[0x5a; 16])
        .wire()
}

fn modern_builder() -> TlsHello {
    TlsHello::new(
        0x0303,
        &[0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9],
    )
    .ext(0x0a0a, [])
    .sni("Prov.Example.com.")
    .ext(23, [])
    .ext(0xff01, [0])
    .supported_groups(&[0x3a3a, 0x001d, 0x0017, 0x0018])
    .alpn(&["h2", "http/1.1"])
    .signature_algorithms(&[0x0403, 0x0804, 0x0401, 0x0503])
    .supported_versions(&[0x5a5a, 0x0304, 0x0303])
    .ext(51, vec16(&[0x3a, 0x3a, 0x00, 0x01, 0x00]))
    .ext(0x1a1a, [0])
}

fn modern_tls13() -> Vec<u8> {
    modern_builder().session_id(&[0x11; 32]).wire()
}

fn split_two_records() -> Vec<u8> {
    let b = modern_builder();
    b.records(0x0301, &[b.handshake().len() / 2])
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let modern = modern_builder();
    vec![
        ("spa_tls10", spa_tls10()),
        ("sslv2_compat", sslv2_compat()),
        ("modern_tls13", modern_tls13()),
        ("split_two_records", split_two_records()),
        // Handshake header itself split, and a 1-byte record.
        ("split_header", modern.records(0x0301, &[2, 3, 40])),
        ("ssl3", TlsHello::new(0x0300, &[0x000a]).record(0x0300)),
        (
            "pure_sslv2",
            Sslv2Hello::new(0x0002, &[0x01_0080])
                .challenge(&[1; 16])
                .wire(),
        ),
    ]
}

fn parsed(buf: &[u8]) -> ClientHello {
    match parse(buf) {
        Parse::Parsed(h) => h,
        other => panic!("expected Parsed, got {other:?}"),
    }
}

fn not_tls(buf: &[u8]) -> NotTls {
    match parse(buf) {
        Parse::NotTls(e) => e,
        other => panic!("expected NotTls, got {other:?}"),
    }
}

// ---- valid hellos -------------------------------------------------------------------

#[test]
fn empty_input_is_incomplete() {
    assert!(matches!(parse(&[]), Parse::Incomplete { .. }));
}

#[test]
fn tls10_without_extensions_spa_firmware() {
    let wire = spa_tls10();
    let h = parsed(&wire);
    assert_eq!(h.format, HelloFormat::Tls);
    assert_eq!(h.record_version, ProtocolVersion::TLS1_0);
    assert_eq!(h.client_version, ProtocolVersion::TLS1_0);
    assert_eq!(h.max_version(), ProtocolVersion::TLS1_0);
    assert_eq!(h.max_version().to_string(), "tls1.0");
    assert_eq!(h.cipher_suites, SPA_SUITES);
    assert!(h.offers_cipher(0x0064));
    assert!(!h.offers_cipher(0xc02f));
    assert!(h.sslv2_only_ciphers.is_empty());
    assert_eq!(h.compression_methods, vec![0]);
    assert!(h.extensions.is_empty());
    assert!(h.supported_versions.is_empty());
    assert_eq!(h.sni, None);
    assert!(h.alpn.is_empty());
    assert!(!h.has_grease);
    assert_eq!(h.wire_len, wire.len());
    let names: Vec<_> = h.cipher_suites.iter().map(|&c| cipher_name(c)).collect();
    assert_eq!(
        names,
        [
            "DHE-RSA-AES256-SHA",
            "AES256-SHA",
            "DHE-RSA-AES128-SHA",
            "AES128-SHA",
            "RC4-SHA",
            "RC4-MD5",
            "EXP1024-RC4-SHA",
            "EXP1024-RC4-MD5",
            "EXP-RC4-MD5"
        ]
        .map(Some)
    );
}

#[test]
fn sslv2_compat_hello() {
    let wire = sslv2_compat();
    let h = parsed(&wire);
    assert_eq!(h.format, HelloFormat::Sslv2);
    assert_eq!(h.record_version, ProtocolVersion(0x0301));
    assert_eq!(h.client_version, ProtocolVersion(0x0301));
    assert_eq!(h.max_version(), ProtocolVersion(0x0301));
    assert_eq!(h.cipher_suites, vec![0x0039, 0x002f, 0x0005, 0x0004]);
    assert_eq!(h.sslv2_only_ciphers, vec![0x01_0080, 0x07_00c0, 0x02_0080]);
    assert_eq!(sslv2_cipher_name(0x07_00c0), Some("SSL2-DES-CBC3-MD5"));
    assert!(h.extensions.is_empty() && h.compression_methods.is_empty());
    assert_eq!(h.sni, None);
    assert_eq!(h.wire_len, wire.len());
    assert_eq!(h.wire_len, 2 + 9 + 21 + 16);
}

#[test]
fn pure_sslv2_hello_reports_version_2() {
    let wire = Sslv2Hello::new(0x0002, &[0x01_0080, 0x06_0040])
        .session_id(&[7; 16])
        .challenge(&[1; 32])
        .wire();
    let h = parsed(&wire);
    assert_eq!(h.client_version, ProtocolVersion::SSL2);
    assert_eq!(h.max_version().to_string(), "sslv2");
    assert!(h.cipher_suites.is_empty());
    assert_eq!(h.sslv2_only_ciphers, vec![0x01_0080, 0x06_0040]);
}

fn check_modern(h: &ClientHello) {
    assert_eq!(h.format, HelloFormat::Tls);
    assert_eq!(h.client_version, ProtocolVersion::TLS1_2);
    assert_eq!(h.max_version(), ProtocolVersion::TLS1_3);
    assert_eq!(h.max_version().to_string(), "tls1.3");
    assert_eq!(
        h.supported_versions,
        vec![ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2]
    );
    assert_eq!(
        h.cipher_suites,
        vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9]
    );
    assert_eq!(h.extensions, vec![0, 23, 0xff01, 10, 16, 13, 43, 51]);
    assert_eq!(h.sni.as_deref(), Some("prov.example.com"));
    assert_eq!(h.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
    assert_eq!(h.signature_algorithms, vec![0x0403, 0x0804, 0x0401, 0x0503]);
    assert_eq!(h.supported_groups, vec![0x001d, 0x0017, 0x0018]);
    assert!(h.has_grease);
}

#[test]
fn tls13_with_grease_sni_alpn() {
    let wire = modern_tls13();
    let h = parsed(&wire);
    check_modern(&h);
    assert_eq!(h.record_version, ProtocolVersion::TLS1_0);
    assert_eq!(h.wire_len, wire.len());
    assert_eq!(cipher_name(0x1303), Some("TLS_CHACHA20_POLY1305_SHA256"));
}

#[test]
fn hello_split_across_records() {
    for (name, wire) in samples() {
        if name.starts_with("split") {
            let h = parsed(&wire);
            check_modern(&h);
            assert_eq!(h.wire_len, wire.len(), "{name}");
        }
    }
    // A record version other than the first one is fine; the first one is reported.
    let msg = modern_builder().handshake();
    let mut wire = handshake_records(0x0303, &msg[..10], &[]);
    wire.extend(handshake_records(0x0301, &msg[10..], &[]));
    assert_eq!(parsed(&wire).record_version, ProtocolVersion::TLS1_2);
}

#[test]
fn every_strict_prefix_is_incomplete() {
    for (name, wire) in samples() {
        for n in 0..wire.len() {
            match parse(&wire[..n]) {
                Parse::Incomplete { needed } => {
                    if let Some(needed) = needed {
                        assert!(needed > n, "{name}: prefix {n} needed {needed}");
                        assert!(needed <= wire.len(), "{name}: prefix {n} needed {needed}");
                        assert!(needed <= MAX_HELLO_BYTES);
                    }
                }
                other => panic!("{name}: prefix of {n} bytes gave {other:?}"),
            }
        }
        assert_eq!(parsed(&wire).wire_len, wire.len(), "{name}");
    }
}

#[test]
fn bytes_after_the_hello_are_not_consumed() {
    for (name, wire) in samples() {
        let mut more = wire.clone();
        more.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3]);
        assert_eq!(parsed(&more).wire_len, wire.len(), "{name}");
    }
}

#[test]
fn largest_allowed_hello_parses_and_needed_stays_capped() {
    // An extensions block at its 16-bit maximum, in 2^14-byte records (tlsfuzzer's
    // test-large-hello sends such hellos, with the first record only 2 bytes long).
    let big = TlsHello::new(0x0303, &[0x1301]).ext(21, vec![0; 65_535 - 4]);
    let msg = big.handshake();
    assert!(msg.len() <= MAX_HELLO_MESSAGE);
    let cuts: Vec<usize> = std::iter::once(2)
        .chain((1..).map(|i| 2 + i * 16_384))
        .take_while(|&c| c < msg.len())
        .collect();
    let wire = handshake_records(0x0303, &msg, &cuts);
    assert!(wire.len() <= MAX_HELLO_BYTES);
    assert_eq!(parsed(&wire).wire_len, wire.len());
    // Full 2^14-byte records; a record may not be longer.
    let full_cuts: Vec<usize> = (1..=msg.len() / 16_384).map(|i| i * 16_384).collect();
    let full = handshake_records(0x0303, &msg, &full_cuts);
    assert_eq!(parsed(&full).wire_len, full.len());
    assert_eq!(
        not_tls(&[0x16, 3, 1, 0x40, 0x01]),
        NotTls::RecordTooLong(16_385)
    );
    // The message cap itself: a header announcing exactly the cap waits for the rest,
    // one byte more is refused at once.
    let announce = |len: usize| {
        let mut w = vec![0x16, 3, 1, 0x40, 0x00, 1];
        w.extend(u24(len));
        w
    };
    assert!(matches!(
        parse(&announce(MAX_HELLO_MESSAGE - 4)),
        Parse::Incomplete { .. }
    ));
    assert_eq!(
        not_tls(&announce(MAX_HELLO_MESSAGE - 4 + 1)),
        NotTls::TooLarge
    );
    for n in [0, 3, 5, 6, 7, 100, 16_389, 16_390, wire.len() - 1] {
        match parse(&wire[..n]) {
            Parse::Incomplete {
                needed: Some(needed),
            } => assert!(needed > n && needed <= wire.len()),
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

#[test]
fn sni_normalisation() {
    let sni = |name: &str| parsed(&TlsHello::new(0x0303, &[0x1301]).sni(name).wire()).sni;
    assert_eq!(sni("A-b_c.EXAMPLE.org"), Some("a-b_c.example.org".into()));
    assert_eq!(sni("bad name.example"), None);
    assert_eq!(sni("a..b"), None);
    assert_eq!(sni("."), None);
    assert_eq!(sni("x\u{e9}.example"), None);
    // A non-host_name entry first is skipped.
    let mut list = vec![7u8];
    list.extend(vec16(b"ignored"));
    list.push(0);
    list.extend(vec16(b"Phone.Example"));
    let h = parsed(&TlsHello::new(0x0303, &[0x1301]).ext(0, vec16(&list)).wire());
    assert_eq!(h.sni.as_deref(), Some("phone.example"));
}

// ---- not TLS ------------------------------------------------------------------------

#[test]
fn plain_http_and_proxy_protocol() {
    let e = not_tls(b"GET / HTTP/1.1\r\nHost: prov.example.com\r\n\r\n");
    assert_eq!(e, NotTls::PlainHttp);
    assert!(e.to_string().contains("plain HTTP"));
    for req in [&b"POST /x"[..], b"HEAD /", b"PUT /a", b"PRI * HTTP/2.0"] {
        assert_eq!(not_tls(req), NotTls::PlainHttp);
    }
    assert_eq!(not_tls(b"PROXY TCP4 1.2.3.4"), NotTls::ProxyProtocol);
    let e = not_tls(b"G");
    assert_eq!(e, NotTls::NotHandshake { first_byte: b'G' });
    assert_eq!(
        e.to_string(),
        "first byte 0x47 is not a TLS handshake record (looks like plain HTTP)"
    );
    assert_eq!(
        not_tls(&[0x15, 3, 1, 0, 2, 2, 40]),
        NotTls::NotHandshake { first_byte: 0x15 }
    );
}

#[test]
fn record_header_errors() {
    assert_eq!(
        not_tls(&[0x16, 0x03, 0x01, 0x41, 0x01]),
        NotTls::RecordTooLong(0x4101)
    );
    assert_eq!(
        not_tls(&[0x16, 0x03, 0x01, 0xff, 0xff, 1]),
        NotTls::RecordTooLong(0xffff)
    );
    assert_eq!(
        not_tls(&[0x16, 0x02, 0x00]),
        NotTls::BadRecordVersion(0x0200)
    );
    assert_eq!(
        not_tls(&[0x16, 0x03, 0x05]),
        NotTls::BadRecordVersion(0x0305)
    );
    assert!(matches!(not_tls(&[0x16, 3, 1, 0, 0]), NotTls::Malformed(_)));
}

#[test]
fn non_handshake_record_in_between() {
    let msg = modern_builder().handshake();
    let mut wire = handshake_records(0x0301, &msg[..50], &[]);
    wire.extend_from_slice(&[0x15, 3, 1, 0, 2, 1, 0]);
    assert_eq!(
        not_tls(&wire),
        NotTls::UnexpectedRecord { content_type: 0x15 }
    );
    // Already rejected when only the stray record's first byte has arrived.
    assert_eq!(
        not_tls(&wire[..56]),
        NotTls::UnexpectedRecord { content_type: 0x15 }
    );
}

#[test]
fn wrong_handshake_type() {
    let body = TlsHello::new(0x0303, &[0x1301]).body();
    let wire = handshake_records(0x0303, &handshake_message(2, &body), &[]);
    assert_eq!(not_tls(&wire), NotTls::NotClientHello(2));
    // Detected as soon as the type byte is in.
    assert_eq!(not_tls(&wire[..6]), NotTls::NotClientHello(2));
}

#[test]
fn extension_length_overrun() {
    let mut body = TlsHello::new(0x0303, &[0x1301]).alpn(&["h2"]).body();
    // The extension's own length claims one byte more than is there.
    let n = body.len();
    body[n - 6] += 1;
    let wire = handshake_records(0x0303, &handshake_message(1, &body), &[]);
    assert!(matches!(not_tls(&wire), NotTls::Malformed(_)));

    // The extensions block length overruns the message.
    let mut body = TlsHello::new(0x0303, &[0x1301]).ext(23, vec![]).body();
    let n = body.len();
    body[n - 5] += 1;
    let wire = handshake_records(0x0303, &handshake_message(1, &body), &[]);
    assert_eq!(
        not_tls(&wire),
        NotTls::Malformed("extensions overrun the message")
    );
}

#[test]
fn odd_cipher_suite_length() {
    let mut body = TlsHello::new(0x0301, &[0x002f, 0x0035]).body();
    // cipher_suites length is at 2 + 32 + 1 (empty session id).
    body[36] = 3;
    body.insert(38 + 3, 0); // keep the message self-consistent otherwise
    let wire = handshake_records(0x0301, &handshake_message(1, &body), &[]);
    assert_eq!(
        not_tls(&wire),
        NotTls::Malformed("odd cipher suites length")
    );
}

#[test]
fn other_structural_errors() {
    // Trailing garbage after a hello without extensions.
    let mut body = TlsHello::new(0x0301, &[0x002f]).body();
    body.push(0);
    let wire = handshake_records(0x0301, &handshake_message(1, &body), &[]);
    assert!(matches!(not_tls(&wire), NotTls::Malformed(_)));
    // Duplicate extension.
    let wire = TlsHello::new(0x0303, &[0x1301])
        .ext(23, vec![])
        .ext(23, vec![])
        .wire();
    assert_eq!(not_tls(&wire), NotTls::Malformed("duplicate extension"));
    // Record longer than the handshake message it carries.
    let mut msg = TlsHello::new(0x0301, &[0x002f]).handshake();
    msg.extend_from_slice(&[0x14, 0, 0, 0]);
    assert!(matches!(
        not_tls(&handshake_records(0x0301, &msg, &[])),
        NotTls::Malformed(_)
    ));
    // Client version that is not SSL/TLS.
    let wire = TlsHello::new(0x0201, &[0x002f]).wire();
    assert_eq!(not_tls(&wire), NotTls::BadClientVersion(0x0201));
    // Handshake length beyond the cap.
    let mut wire = vec![0x16, 3, 1, 0x40, 0, 1];
    wire.extend(u24(100_000));
    assert_eq!(not_tls(&wire), NotTls::TooLarge);
    // Many tiny records would need more than the cap.
    let msg = TlsHello::new(0x0303, &[0x1301])
        .ext(21, vec![0; 12_000])
        .handshake();
    let cuts: Vec<usize> = (1..msg.len()).collect();
    assert_eq!(
        not_tls(&handshake_records(0x0303, &msg, &cuts)),
        NotTls::TooLarge
    );
}

#[test]
fn sslv2_errors() {
    let good = sslv2_compat();
    let mut bad = good.clone();
    bad[2] = 4; // SERVER-HELLO
    assert_eq!(not_tls(&bad[..3]), NotTls::Sslv2NotClientHello(4));
    let mut bad = good.clone();
    bad[3] = 0x01;
    assert_eq!(not_tls(&bad), NotTls::BadClientVersion(0x0101));
    let mut bad = good.clone();
    bad[6] += 1; // cipher spec length no longer a multiple of 3
    assert!(matches!(not_tls(&bad[..11]), NotTls::Malformed(_)));
    let mut bad = good.clone();
    bad[10] = 8; // challenge too short
    assert!(matches!(not_tls(&bad), NotTls::Malformed(_)));
    assert!(matches!(not_tls(&[0x80, 0x05]), NotTls::Malformed(_)));
}

#[test]
fn display_texts() {
    assert_eq!(ProtocolVersion::SSL3.to_string(), "ssl3");
    assert_eq!(ProtocolVersion::TLS1_1.to_string(), "tls1.1");
    assert_eq!(ProtocolVersion::TLS1_2.to_string(), "tls1.2");
    assert_eq!(ProtocolVersion(0x7f1c).to_string(), "0x7f1c");
    assert_eq!(
        NotTls::RecordTooLong(20000).to_string(),
        "TLS record length 20000 exceeds the protocol maximum"
    );
    assert!(NotTls::TooLarge.to_string().contains("66560-byte message"));
}

#[test]
fn cipher_names() {
    assert_eq!(
        cipher_name(0x00ff),
        Some("TLS_EMPTY_RENEGOTIATION_INFO_SCSV")
    );
    assert_eq!(cipher_name(0x5600), Some("TLS_FALLBACK_SCSV"));
    assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(cipher_name(0x000a), Some("DES-CBC3-SHA"));
    assert_eq!(cipher_name(0xc030), Some("ECDHE-RSA-AES256-GCM-SHA384"));
    assert_eq!(cipher_name(0x0002), Some("NULL-SHA"));
    assert_eq!(cipher_name(0x0a0a), None);
}

// ---- robustness ---------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_invariants(buf: &[u8]) {
    match parse(buf) {
        Parse::Incomplete { needed } => {
            if let Some(n) = needed {
                assert!(n > buf.len() && n <= MAX_HELLO_BYTES, "{buf:?}");
            }
        }
        Parse::Parsed(h) => assert!(h.wire_len <= buf.len()),
        Parse::NotTls(e) => assert!(!e.to_string().is_empty()),
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..20_000 {
        let len = rng.below(600);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make a share of inputs look like a handshake record or an SSLv2 header.
        match (i % 4, buf.len()) {
            (0, 5..) => buf[..3].copy_from_slice(&[0x16, 0x03, 0x01]),
            (1, 1..) => buf[0] |= 0x80,
            _ => {}
        }
        check_invariants(&buf);
    }
}

#[test]
fn mutated_hellos_never_panic() {
    let mut rng = XorShift(42);
    for (_, wire) in samples() {
        for _ in 0..3_000 {
            let mut buf = wire.clone();
            let at = rng.below(buf.len());
            buf[at] = rng.next() as u8;
            if rng.below(4) == 0 {
                buf.truncate(rng.below(buf.len() + 1));
            }
            check_invariants(&buf);
        }
    }
}
