//! `provgate check`, the operator's pre-flight, run as the real binary: vendor CA families,
//! the warnings that predict device failures, `--json`, `--strict` and the exit codes. These
//! run `--offline` (the test names do not resolve); tests/check_dns.rs covers the lookups.
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
    private_keys(&pki);
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

    let (code, out, err) = run_bin(&["check", "--offline", "--config", path]);
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

    let (code, out, _) = run_bin(&["check", "--offline", "--strict", "--config", path]);
    assert_eq!(code, 1, "--strict with warnings exits 1\n{out}");

    let (code, out, _) = run_bin(&["check", "--offline", "--json", "--config", path]);
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
    private_keys(&pki);
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
    let (code, out, err) = run_bin(&[
        "check",
        "--offline",
        "--strict",
        "--config",
        path.to_str().unwrap(),
    ]);
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
    private_keys(&pki);
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
        "--offline",
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
    let (code, out, _) = run_bin(&[
        "check",
        "--offline",
        "--json",
        "--config",
        path.to_str().unwrap(),
    ]);
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
    let (code, out, err) = run_bin(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("listener sipura"), "{out}");
}

fn route<'a>(report: &'a serde_json::Value, listener: &str) -> &'a serde_json::Value {
    report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .map(|l| &l["routes"][0])
        .unwrap_or_else(|| panic!("no listener {listener}"))
}

fn suite_names(route: &serde_json::Value) -> Vec<&str> {
    route["openssl_suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

#[test]
fn names_an_unknown_cipher_and_shows_the_suites_openssl_really_serves() {
    let pki = sipura_pki();
    private_keys(&pki);
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
tls_profiles:
  old_names: { base: legacy, versions: [tls1.0], ciphers: "AES256-SHA:EDH-RSA-DES-CBC3-SHA:!aNULL:@SECLEVEL=0" }
listeners:
  - { name: builtin, bind: ["127.0.0.2:8443"], certificate: sipura, tls: legacy, backend: prov }
  - { name: old, bind: ["127.0.0.3:8443"], certificate: sipura, tls: old_names, backend: prov }
"#,
    );
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--offline", "--json", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(codes(&report), ["unknown_cipher"], "{out}");
    let message = report["warnings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("tls_profiles.old_names.ciphers")
            && message.contains("'EDH-RSA-DES-CBC3-SHA' is not an OpenSSL 3 cipher suite name")
            && message.contains("the OpenSSL 3 name is 'DHE-RSA-DES-CBC3-SHA'"),
        "{message}"
    );
    // What OpenSSL resolves, in server order: the unknown name simply is not there.
    let old = route(&report, "old");
    assert_eq!(suite_names(old), ["AES256-SHA"], "{old}");
    assert_eq!(
        old["openssl_ciphers"],
        "AES256-SHA:EDH-RSA-DES-CBC3-SHA:!aNULL:@SECLEVEL=0"
    );
    // The built-in string serves 0x0016 by its OpenSSL 3 name; the ECDSA suites drop out for
    // this RSA key.
    let builtin = route(&report, "builtin");
    assert_eq!(
        suite_names(builtin),
        [
            "AES256-SHA",
            "AES128-SHA",
            "DHE-RSA-AES256-SHA",
            "DHE-RSA-AES128-SHA",
            "DES-CBC3-SHA",
            "DHE-RSA-DES-CBC3-SHA",
            "AES256-GCM-SHA384",
            "AES128-GCM-SHA256",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ]
    );
    assert_eq!(builtin["openssl_suites"][5]["id"], "0x0016");
    assert_eq!(builtin["session_tickets"], true);

    let (code, out, _) = run_bin(&["check", "--offline", "--config", path]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "WARNING [unknown_cipher] tls_profiles.old_names.ciphers: 'EDH-RSA-DES-CBC3-SHA'"
        ),
        "{out}"
    );
    assert!(
        out.contains("OpenSSL suites (server order, this build, this key) AES256-SHA (0x0035)\n"),
        "{out}"
    );
    assert!(
        out.contains("DES-CBC3-SHA (0x000a), DHE-RSA-DES-CBC3-SHA (0x0016), "),
        "{out}"
    );
    let (code, _, _) = run_bin(&["check", "--offline", "--strict", "--config", path]);
    assert_eq!(code, 1);
}

#[test]
fn a_cipher_string_that_selects_nothing_is_a_config_error() {
    let pki = sipura_pki();
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
tls_profiles:
  nothing: { base: legacy, ciphers: "EDH-RSA-DES-CBC3-SHA" }
listeners:
  - { name: l, bind: ["127.0.0.2:8443"], certificate: sipura, tls: nothing, backend: prov }
"#,
    );
    let (code, out, err) = run_bin(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{out}{err}");
    assert!(
        err.contains("tls_profiles.nothing.ciphers: OpenSSL selects no cipher suite"),
        "{err}"
    );
}

#[test]
fn warns_about_a_private_key_readable_by_others_and_not_about_0600() {
    let pki = sipura_pki();
    set_mode(&pki.path("sipura.key"), 0o644);
    set_mode(&pki.path("other.key"), 0o600);
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
  other: { chain: other.pem, key: other.key }
listeners:
  - { name: a, bind: ["127.0.0.2:8443"], certificate: sipura, tls: legacy, backend: prov }
  - { name: b, bind: ["127.0.0.3:8443"], certificate: other, tls: legacy, backend: prov }
"#,
    );
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--offline", "--json", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(codes(&report), ["key_readable_by_others"], "{out}");
    let w = &report["warnings"][0];
    assert_eq!(w["certificate"], "sipura");
    let message = w["message"].as_str().unwrap();
    let key_file = pki.path("sipura.key").display().to_string();
    assert!(
        message.contains(&key_file) && message.contains("mode 0644"),
        "{message}"
    );
    let certs = report["certificates"].as_array().unwrap();
    let mode = |name: &str| {
        certs.iter().find(|c| c["name"] == name).unwrap()["key_mode"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        (mode("sipura"), mode("other")),
        ("0644".into(), "0600".into())
    );
    // The start-up warning (the same load as `run`) names the file and mode on stderr.
    assert!(
        err.contains("readable by group or others") && err.contains(&key_file),
        "{err}"
    );
    assert!(
        !err.contains(&pki.path("other.key").display().to_string()),
        "{err}"
    );
    // Never key material.
    let key = std::fs::read_to_string(pki.path("sipura.key")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    for text in [&out, &err] {
        assert!(!text.contains(body_line) && !text.contains("PRIVATE KEY"));
    }

    set_mode(&pki.path("sipura.key"), 0o600);
    let (code, out, err) = run_bin(&["check", "--offline", "--strict", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warnings: 0"), "{out}");
    assert!(out.contains("(mode 0600)"), "{out}");
}

#[test]
fn reports_the_dh_group_and_session_tickets_of_each_profile() {
    let pki = sipura_pki();
    private_keys(&pki);
    std::fs::create_dir(pki.path("dh")).unwrap();
    // A 1024-bit group of our own: the RFC 5114 prime without its subgroup order.
    let rfc5114 = openssl::dh::Dh::get_1024_160().unwrap();
    let own = openssl::dh::Dh::from_pqg(
        rfc5114.prime_p().to_owned().unwrap(),
        None,
        rfc5114.generator().to_owned().unwrap(),
    )
    .unwrap();
    std::fs::write(pki.path("dh/own.pem"), own.params_to_pem().unwrap()).unwrap();
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  sipura: { chain: sipura.pem, key: sipura.key }
tls_profiles:
  own_dh: { base: legacy, dh_params: dh/own.pem, session_tickets: off }
  fast: { base: legacy, dh_group: rfc5114 }
  nodhe: { base: own_dh, dh_bits: 0 }
listeners:
  - { name: default, bind: ["127.0.0.2:8443"], certificate: sipura, tls: legacy, backend: prov }
  - { name: own, bind: ["127.0.0.3:8443"], certificate: sipura, tls: own_dh, backend: prov }
  - { name: fast, bind: ["127.0.0.4:8443"], certificate: sipura, tls: fast, backend: prov }
  - { name: nodhe, bind: ["127.0.0.5:8443"], certificate: sipura, tls: nodhe, backend: prov }
"#,
    );
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--offline", "--json", "--strict", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    let dh = |l: &str| route(&report, l)["dh"].as_str().unwrap().to_string();
    assert_eq!(
        dh("default"),
        "DHE with the fixed 1024-bit RFC 2409 Oakley group 2"
    );
    let own_file = pki.path("dh/own.pem").display().to_string();
    assert_eq!(
        dh("own"),
        format!("DHE with the operator's 1024-bit group from {own_file} (dh_params)")
    );
    assert_eq!(route(&report, "own")["dh_params"], own_file.as_str());
    assert!(route(&report, "own")["dh_group"].is_null());
    assert!(dh("fast").contains("RFC 5114"), "{}", dh("fast"));
    assert_eq!(dh("nodhe"), "no DHE (dh_bits: 0)");
    let nodhe = suite_names(route(&report, "nodhe"));
    assert!(!nodhe.iter().any(|s| s.starts_with("DHE-")), "{nodhe:?}");
    assert!(suite_names(route(&report, "own")).contains(&"DHE-RSA-DES-CBC3-SHA"));
    let tickets = |l: &str| route(&report, l)["session_tickets"].as_bool().unwrap();
    assert_eq!(
        (tickets("default"), tickets("own"), tickets("nodhe")),
        (true, false, false)
    );

    let (_, out, _) = run_bin(&["check", "--offline", "--config", path]);
    assert!(
        out.contains(&format!(
            "    DH DHE with the operator's 1024-bit group from {own_file} (dh_params)\n    session tickets off\n"
        )),
        "{out}"
    );

    // A broken file is a configuration error naming the key.
    std::fs::write(pki.path("dh/own.pem"), "not a PEM file\n").unwrap();
    let (code, _, err) = run_bin(&["check", "--offline", "--config", path]);
    assert_eq!(code, 64);
    assert!(
        err.contains("tls_profiles.own_dh.dh_params") && err.contains("no PEM 'DH PARAMETERS'"),
        "{err}"
    );
}
