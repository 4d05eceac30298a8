//! Property tests over arbitrary and mutated bytes for everything that parses input a client
//! or an operator controls: the ClientHello parser, the PROXY header reader, the config loader,
//! the request-target MAC check and the access-log formatter. Each must answer in bounded time
//! without panicking. Seeds are the committed corpus in `tests/data/corpus/` (the documented
//! SPA 2.0.6 hello and an SSLv2-format hello).
//!
//! The machines have only stable Rust, so cargo-fuzz cannot run in CI; these run in the normal
//! suite (256 cases per property; `PROPTEST_CASES=100000 cargo test --test properties` for a
//! longer run).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use provgate::hello::{self, Parse};

fn corpus(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/corpus")
            .join(name),
    )
    .unwrap();
    (0..text.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect()
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        corpus("spa-2.0.6-tls10.hex"),
        corpus("sslv2-format-tls10.hex"),
    ]
}

#[test]
fn the_corpus_hellos_parse() {
    for seed in seeds() {
        match hello::parse(&seed) {
            Parse::Parsed(h) => assert!(!h.cipher_suites.is_empty()),
            other => panic!("corpus hello did not parse: {other:?}"),
        }
        // Every proper prefix asks for more; none is rejected.
        for cut in 0..seed.len() {
            assert!(
                matches!(hello::parse(&seed[..cut]), Parse::Incomplete { .. }),
                "prefix of {cut} bytes"
            );
        }
    }
}

/// A corpus hello with some bytes replaced, some inserted, and the end cut or extended.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..2usize,
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<usize>(),
    )
        .prop_map(|(which, edits, tail, cut)| {
            let mut b = seeds()[which].clone();
            for (at, byte) in edits {
                let i = at % b.len();
                b[i] = byte;
            }
            b.extend_from_slice(&tail);
            b.truncate(cut % (b.len() + 1));
            b
        })
}

proptest! {
    #[test]
    fn hello_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_parse(&bytes);
    }

    #[test]
    fn hello_parser_never_panics_on_mutated_hellos(bytes in mutated()) {
        check_parse(&bytes);
    }

    #[test]
    fn proxy_header_reader_ends_on_arbitrary_bytes(
        head in prop::sample::select(vec![&b"PROXY TCP4 "[..], b"PROXY TCP6 ", b"PROXY UNKNOWN", b"\r\n\r\n\0\r\nQUIT\n", b""]),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut input = head.to_vec();
        input.extend_from_slice(&bytes);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for want in [provgate::config::ProxyProtocol::V1, provgate::config::ProxyProtocol::V2, provgate::config::ProxyProtocol::Any] {
            let mut io: &[u8] = &input;
            // A slice reader ends at its last byte: the reader must return, never wait.
            let _ = rt.block_on(provgate::proxy_protocol::read_header(&mut io, want));
        }
    }

    #[test]
    fn config_loader_never_panics(text in "\\PC{0,400}") {
        let _ = provgate::config::Config::from_yaml(Path::new("/c/config.yaml"), &text);
    }

    #[test]
    fn config_loader_never_panics_on_mutated_configs(at in any::<usize>(), insert in "[\\[\\]{}:,\\-\"' \n\t0-9a-z*.]{0,12}") {
        let base = "listeners:\n  - name: l\n    bind: [\"127.0.0.1:0\"]\n    tls: plain\n    backend: b\n    routes:\n      - match: { source: [10.0.0.0/8] }\nbackends:\n  b: { address: \"127.0.0.1:9\", host: h }\naccess_log: { format: json }\nidentity: { preset: nginx }\n";
        let i = at % base.len();
        let text = format!("{}{insert}{}", &base[..i], &base[i..]);
        let _ = provgate::config::Config::from_yaml(Path::new("/c/config.yaml"), &text);
    }

    #[test]
    fn mac_check_never_panics(target in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = provgate::proxy::mac_match::target_macs(&target, None);
        let _ = provgate::proxy::mac_match::text_macs(&target);
    }

    #[test]
    fn access_log_lines_are_one_line_whatever_the_input(
        target in prop::collection::vec(any::<u8>(), 0..300),
        ua in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let e = provgate::access_log::Entry {
            time: std::time::SystemTime::UNIX_EPOCH,
            client: "192.0.2.1:5".parse().unwrap(),
            local: "192.0.2.2:443".parse().unwrap(),
            listener: "l",
            route: "r",
            method: "GET",
            target: &target,
            version: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 1,
            duration: std::time::Duration::from_millis(1),
            user_agent: Some(&ua),
            referer: None,
            host: Some(&ua),
            sni: None,
            tls_version: "tls1.0",
            cipher: "AES256-SHA",
            ja4: "",
            verify: "NONE",
            mac: None,
            serial: None,
            product: None,
        };
        let mut line = String::new();
        provgate::access_log::format_combined(&e, &mut line);
        prop_assert!(!line.contains('\n') && !line.contains('\r') && line.is_ascii());
        let mut json = String::new();
        provgate::access_log::format_json(&e, &mut json);
        prop_assert!(!json.contains('\n'));
        prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    }
}

fn check_parse(bytes: &[u8]) {
    match hello::parse(bytes) {
        Parse::Incomplete { needed: Some(n) } => {
            assert!(
                n > bytes.len() && n <= hello::MAX_HELLO_BYTES,
                "needed {n} for {} bytes",
                bytes.len()
            );
        }
        Parse::Incomplete { needed: None } | Parse::Parsed(_) | Parse::NotTls(_) => {}
    }
}
