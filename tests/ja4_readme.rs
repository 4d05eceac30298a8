//! The README's `client_hello` example ("Telling devices apart without SNI") is a real one:
//! its JA4 is the one provgate computes for the documented SPA firmware 2.0.6 hello (nine
//! suites, TLS 1.0, no extensions), that value is the JA4 reference implementation's
//! (tests/data/ja4-reference.tsv, row `synthetic-spa-fw2-tls10`: PyPI ja4plus; FoxIO's
//! python/ja4.py `to_ja4` gives the same), and the example, loaded as a route, matches that
//! hello and nothing else.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use provgate::config::Config;
use provgate::fingerprint::ja4;
use provgate::hello::builder::TlsHello;
use provgate::hello::{parse, ClientHello, Parse};

const README: &str = include_str!("../README.md");
const REFERENCE: &str = include_str!("data/ja4-reference.tsv");

/// SPA firmware 2.0.x, in order (docs/legacy-devices.md): DHE-RSA-AES256-SHA, AES256-SHA,
/// DHE-RSA-AES128-SHA, AES128-SHA, RC4-SHA, RC4-MD5, EXP1024-RC4-SHA, EXP1024-RC4-MD5,
/// EXP-RC4-MD5.
const SPA_2_0_6: [u16; 9] = [
    0x0039, 0x0035, 0x0033, 0x002f, 0x0005, 0x0004, 0x0064, 0x0060, 0x0003,
];

fn hello(suites: &[u16]) -> ClientHello {
    let wire = TlsHello::new(0x0301, suites).wire();
    let Parse::Parsed(h) = parse(&wire) else {
        panic!("the built hello does not parse")
    };
    h
}

/// The YAML block of the README section "Telling devices apart without SNI".
fn readme_example() -> &'static str {
    let section = README
        .split("### Telling devices apart without SNI")
        .nth(1)
        .expect("README has the section \"Telling devices apart without SNI\"");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .expect("the section has a yaml block");
    block.split("```").next().unwrap()
}

fn readme_ja4() -> String {
    let line = readme_example()
        .lines()
        .find(|l| l.trim_start().starts_with("ja4:"))
        .expect("the example has a ja4 line");
    let quoted = line.split('"').nth(1).expect("a quoted JA4 string");
    quoted.to_string()
}

#[test]
fn the_readme_ja4_is_the_spa_2_0_6_hello_and_the_reference_value() {
    let want = readme_ja4();
    assert_eq!(ja4(&hello(&SPA_2_0_6)), want, "provgate's JA4 of the hello");
    let reference = REFERENCE
        .lines()
        .find_map(|l| l.strip_prefix("synthetic-spa-fw2-tls10\t"))
        .and_then(|rest| rest.split('\t').next())
        .expect("reference row synthetic-spa-fw2-tls10");
    assert_eq!(reference, want, "the reference implementation's JA4");
    assert_eq!(want, "t10i090000_d324354aa26c_000000000000");
}

#[test]
fn the_readme_example_as_a_route_matches_that_hello_only() {
    let yaml = format!(
        "backends: {{ b: {{ address: \"127.0.0.1:8080\" }} }}\n\
         certificates: {{ sipura: {{ chain: s.pem, key: s.key }} }}\n\
         listeners:\n  \
           - name: l\n    \
             bind: [\"127.0.0.1:0\"]\n    \
             certificate: sipura\n    \
             tls: legacy\n    \
             backend: b\n{}",
        readme_example()
    );
    let cfg = Config::from_yaml(Path::new("/readme/config.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("the README example does not load: {e}\n{yaml}"));
    let routes = &cfg.listeners[0].routes;
    assert_eq!(routes.len(), 1);
    let m = routes[0]
        .matches
        .client_hello
        .as_ref()
        .expect("a client_hello match");
    let spa = hello(&SPA_2_0_6);
    assert!(m.matches(&spa, &ja4(&spa)), "{m:?}");
    // One suite fewer: a different JA4, no match.
    let other = hello(&SPA_2_0_6[..8]);
    assert!(!m.matches(&other, &ja4(&other)));
}
