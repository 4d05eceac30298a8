//! `provgate check`, the operator's pre-flight, run as the real binary: vendor CA families,
//! the warnings that predict device failures, `--json`, `--strict` and the exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use provgate::pki::CertSpec;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn codes(report: &serde_json::Value) -> Vec<String> {
    let mut codes: Vec<String> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes
}

/// One Sipura-issued certificate, one expired one, one served with a 2048-bit DH group.
fn three_families() -> (Pki, std::path::PathBuf) {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco", "Cisco Small Business CA (test)");
    let ops = pki.ca("ops", "Example Ops CA");
    pki.issue(
        &sipura,
        "sipura",
        &CertSpec::legacy_server("prov.sipura.test"),
    );
    pki.issue(
        &ops,
        "expired",
        &CertSpec {
            not_before_days: -400,
            not_after_days: -2,
            ..CertSpec::legacy_server("old.example.test")
        },
    );
    pki.issue(&cisco, "cisco", &CertSpec::legacy_server("prov.cisco.test"));
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
  expired: { chain: expired.pem, key: expired.key }
  cisco: { chain: cisco.pem, key: cisco.key }
tls_profiles:
  big_dh: { base: legacy, dh_bits: 2048 }
listeners:
  - { name: sipura, bind: ["127.0.0.2:8443"], certificate: sipura, tls: legacy, backend: prov }
  - { name: old, bind: ["127.0.0.3:8443"], certificate: expired, tls: legacy, backend: prov }
  - { name: cisco, bind: ["127.0.0.4:8443"], certificate: cisco, tls: big_dh, backend: prov }
"#,
    );
    (pki, path)
}

#[test]
fn names_the_vendor_families_and_warns_about_expiry_and_large_dh() {
    let (_pki, path) = three_families();
    let path = path.to_str().unwrap();

    let (code, out, err) = run_bin(&["check", "--config", path]);
    assert_eq!(
        code, 0,
        "valid with warnings exits 0 without --strict\n{out}{err}"
    );
    assert!(
        out.contains("vendor CA  Sipura CA -> trusted by PAP2T, WRP400, SPA2000/2102"),
        "{out}"
    );
    assert!(
        out.contains("vendor CA  Cisco Small Business CA -> trusted by SPA112/122"),
        "{out}"
    );
    assert!(
        out.contains("vendor CA  unknown issuer (not a built-in vendor CA)"),
        "{out}"
    );
    assert!(out.contains("warnings: 2"), "{out}");
    assert!(
        out.contains("WARNING [expired] certificate 'expired' expired on"),
        "{out}"
    );
    assert!(
        out.contains(
            "WARNING [dh_above_1024] cisco (default): profile 'big_dh' uses a 2048-bit DH group"
        ),
        "{out}"
    );

    let (code, out, _) = run_bin(&["check", "--strict", "--config", path]);
    assert_eq!(code, 1, "--strict with warnings exits 1\n{out}");

    let (code, out, _) = run_bin(&["check", "--json", "--config", path]);
    assert_eq!(code, 0);
    let report = json(&out);
    assert_eq!(report["valid"], true);
    assert_eq!(codes(&report), ["dh_above_1024", "expired"]);
    let families: Vec<&str> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["vendor_ca"]["family"].as_str().unwrap_or("-"))
        .collect();
    // Certificates are reported in name order: cisco, expired, sipura.
    assert_eq!(families, ["Cisco Small Business CA", "-", "Sipura CA"]);
    let expired = &report["certificates"][1];
    assert!(expired["days_left"].as_i64().unwrap() < 0, "{expired}");
    assert_eq!(expired["cn"], "old.example.test");
    assert_eq!(expired["cn_is_fqdn"], true);
    assert_eq!(report["listeners"][2]["routes"][0]["dh_bits"], 2048);
}

#[test]
fn a_clean_config_passes_strict() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(
        &sipura,
        "sipura",
        &CertSpec::legacy_server("prov.sipura.test"),
    );
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
listeners:
  - { name: sipura, bind: ["127.0.0.2:8443"], certificate: sipura, tls: legacy, backend: prov }
"#,
    );
    let (code, out, err) = run_bin(&["check", "--strict", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warnings: 0"), "{out}");
}

#[test]
fn warns_about_what_old_firmware_and_rustls_reject() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco", "Provisioning Root Authority 2 (test)");
    // A 1024-bit key on an auto route: rustls cannot use it.
    pki.issue(&cisco, "cisco", &CertSpec::legacy_server("prov.cisco.test"));
    // A CN that is no host name, sent with its CA certificate as an extra chain element.
    pki.issue(&sipura, "bare", &CertSpec::legacy_server("provisioning"));
    let chain = std::fs::read_to_string(pki.path("bare.pem")).unwrap()
        + &std::fs::read_to_string(pki.path("sipura-ca.pem")).unwrap();
    pki.write("bare-chain.pem", &chain);
    // An EC key: no RSA key exchange possible.
    let (cert, key) = sipura
        .issue_ec(&CertSpec::server("ec.sipura.test"))
        .unwrap();
    provgate::pki::write_pair(pki.dir.path(), "ec", &cert, &key).unwrap();
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  cisco: { chain: cisco.pem, key: cisco.key }
  bare: { chain: bare-chain.pem, key: bare.key }
  ec: { chain: ec.pem, key: ec.key }
tls_profiles:
  dhe_only: { base: legacy, ciphers: "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA" }
listeners:
  - name: cisco
    bind: ["127.0.0.2:8443"]
    certificate: cisco
    tls: auto
    backend: prov
    routes:
      - name: by-name
        match: { sni: ["prov.cisco.test", "other.example.test"] }
  - { name: bare, bind: ["127.0.0.3:8443"], certificate: bare, tls: dhe_only, backend: prov }
  - { name: ec, bind: ["127.0.0.4:8443"], certificate: ec, tls: legacy, backend: prov }
"#,
    );
    let (code, out, err) = run_bin(&[
        "check",
        "--json",
        "--strict",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let report = json(&out);
    assert_eq!(
        codes(&report),
        [
            "cn_not_fqdn",
            "extra_chain_certificates",
            "no_rsa_key_exchange",
            "no_rsa_key_exchange",
            "rustls_cannot_use_key",
            "rustls_cannot_use_key",
            "sni_not_in_certificate",
        ],
        "{out}"
    );
    let sni: Vec<&serde_json::Value> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "sni_not_in_certificate")
        .collect();
    assert!(
        sni[0]["message"]
            .as_str()
            .unwrap()
            .contains("'other.example.test'"),
        "only the uncovered name is reported: {out}"
    );
    assert_eq!(
        report["certificates"][1]["vendor_ca"]["family"],
        "Cisco 2k Small Business CA (Provisioning Root Authority 2)"
    );
}

#[test]
fn an_invalid_config_exits_64_in_json_too() {
    let pki = Pki::new();
    let path = pki.write(
        "config.yaml",
        "backends: {}\ncertificates: {}\nlisteners:\n  - { name: x, bind: [] }\n",
    );
    let (code, out, _) = run_bin(&["check", "--json", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 64);
    let report = json(&out);
    assert_eq!(report["valid"], false);
    assert!(!report["error"].as_str().unwrap().is_empty(), "{out}");
}

#[test]
fn the_example_config_passes_check_with_its_certificates_in_place() {
    let pki = Pki::new();
    std::fs::create_dir(pki.path("certs")).unwrap();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco", "Provisioning Root Authority 2 (test)");
    for (ca, stem, spec) in [
        (
            &sipura,
            "certs/sipura",
            CertSpec::legacy_server("prov.example.com"),
        ),
        (
            &cisco,
            "certs/cisco2k",
            CertSpec::server("prov.example.com"),
        ),
    ] {
        pki.issue(ca, stem, &spec);
    }
    let example = include_str!("../config.example.yaml");
    let path = pki.write("config.yaml", example);
    let (code, out, err) = run_bin(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("listener sipura"), "{out}");
}
