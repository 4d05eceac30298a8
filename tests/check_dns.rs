//! `provgate check` tests what the device tests: the CN looked up (A records) and compared with
//! the address the device connected to, against names that do and do not resolve on loopback
//! (`localhost` -> 127.0.0.1, `.invalid` never resolves); `--offline`; `public_addresses`; the
//! same warnings logged at start and reload; and which devices trust each certificate.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use provgate::pki::CertSpec;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// (code, listener, certificate) of every warning whose code is one of `wanted`, sorted.
fn found(report: &serde_json::Value, wanted: &[&str]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| wanted.contains(&w["code"].as_str().unwrap()))
        .map(|w| {
            let s = |k: &str| w[k].as_str().unwrap_or("-").to_string();
            (s("code"), s("listener"), s("certificate"))
        })
        .collect();
    out.sort();
    out
}

const DNS_CODES: &[&str] = &[
    "cn_does_not_resolve",
    "cn_resolves_elsewhere",
    "cn_wildcard",
    "name_only_in_san",
];

/// `local` (CN localhost) on 127.0.0.2 (elsewhere), on 127.0.0.1 (fine), and on 127.0.0.2
/// with `public_addresses: [127.0.0.1]` (fine); `nowhere` (a `.invalid` CN), `wild`
/// (`*.example.invalid`), `san_only` (CN not a host name, the host name only in the SAN), and a
/// modern-only route with a `.invalid` CN (devices never reach it: no warning).
fn names_setup() -> (Pki, std::path::PathBuf) {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&sipura, "local", &CertSpec::legacy_server("localhost"));
    pki.issue(
        &sipura,
        "nowhere",
        &CertSpec::legacy_server("prov.provgate-test.invalid"),
    );
    pki.issue(
        &sipura,
        "wild",
        &CertSpec::legacy_server("*.example.invalid"),
    );
    pki.issue(
        &sipura,
        "san_only",
        &CertSpec {
            subject: vec![("CN", "Provisioning Server")],
            dns_names: vec!["localhost"],
            ..CertSpec::legacy_server("localhost")
        },
    );
    pki.issue(
        &sipura,
        "modern_only",
        &CertSpec::server("modern.provgate-test.invalid"),
    );
    private_keys(&pki);
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  local: { chain: local.pem, key: local.key }
  nowhere: { chain: nowhere.pem, key: nowhere.key }
  wild: { chain: wild.pem, key: wild.key }
  san_only: { chain: san_only.pem, key: san_only.key }
  modern_only: { chain: modern_only.pem, key: modern_only.key }
listeners:
  - { name: elsewhere, bind: ["127.0.0.2:8443"], certificate: local, tls: legacy, backend: prov }
  - { name: here, bind: ["127.0.0.1:8443"], certificate: local, tls: legacy, backend: prov }
  - name: natted
    bind: ["127.0.0.2:8444"]
    public_addresses: ["127.0.0.1"]
    certificate: local
    tls: legacy
    backend: prov
  - { name: unresolved, bind: ["127.0.0.3:8443"], certificate: nowhere, tls: auto, backend: prov }
  - { name: wildcard, bind: ["127.0.0.4:8443"], certificate: wild, tls: legacy, backend: prov }
  - { name: san, bind: ["127.0.0.1:8445"], certificate: san_only, tls: legacy, backend: prov }
  - { name: modern, bind: ["127.0.0.5:8443"], certificate: modern_only, tls: modern, backend: prov }
"#,
    );
    (pki, path)
}

#[test]
fn looks_the_cn_up_as_the_device_does() {
    let (_pki, path) = names_setup();
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--json", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    let w = |code: &str, listener: &str, cert: &str| {
        (code.to_string(), listener.to_string(), cert.to_string())
    };
    assert_eq!(
        found(&report, DNS_CODES),
        [
            w("cn_does_not_resolve", "-", "nowhere"),
            w("cn_resolves_elsewhere", "elsewhere", "local"),
            w("cn_wildcard", "-", "wild"),
            w("name_only_in_san", "-", "san_only"),
        ],
        "{out}"
    );
    assert_eq!(report["dns"]["skipped"], false);
    let names: Vec<&str> = report["dns"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    // The wildcard and the non-host CN are not looked up; the modern-only route's CN neither.
    assert_eq!(names, ["localhost", "prov.provgate-test.invalid"], "{out}");
    assert_eq!(report["dns"]["names"][0]["addresses"][0], "127.0.0.1");
    assert!(report["dns"]["names"][1]["error"].is_string(), "{out}");

    // The text names the certificate, the CN, what it resolved to, what the listener binds,
    // and the fix.
    let (code, out, err) = run_bin(&["check", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "WARNING [cn_resolves_elsewhere] elsewhere (default): certificate 'local' CN \
             \"localhost\" resolves to 127.0.0.1, but listener 'elsewhere' binds \
             127.0.0.2:8443 (no public_addresses); "
        ),
        "{out}"
    );
    assert!(out.contains("in the listener's public_addresses"), "{out}");
    assert!(
        out.contains(
            "WARNING [cn_does_not_resolve] certificate 'nowhere' CN \
             \"prov.provgate-test.invalid\" does not resolve to an IPv4 address"
        ),
        "{out}"
    );
    assert!(
        out.contains("listener 'unresolved' binds 127.0.0.3:8443"),
        "{out}"
    );
    assert!(
        out.contains("add an A record for prov.provgate-test.invalid"),
        "{out}"
    );
    assert!(
        out.contains(
            "WARNING [cn_wildcard] certificate 'wild' CN \"*.example.invalid\" is a wildcard"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "WARNING [name_only_in_san] certificate 'san_only' names localhost only in its \
             subjectAltName and its CN \"Provisioning Server\" is not a host name"
        ),
        "{out}"
    );
    assert!(out.contains("  localhost -> 127.0.0.1"), "{out}");

    let (code, _, _) = run_bin(&["check", "--strict", "--config", path]);
    assert_eq!(code, 1);
}

#[test]
fn offline_skips_the_lookups_and_says_so() {
    let (_pki, path) = names_setup();
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--offline", "--json", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(
        found(&report, DNS_CODES)
            .into_iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        ["cn_wildcard", "name_only_in_san"],
        "the name rules need no lookup\n{out}"
    );
    assert_eq!(report["dns"]["skipped"], true);
    assert_eq!(report["dns"]["names"].as_array().unwrap().len(), 0);

    let (_, out, _) = run_bin(&["check", "--offline", "--config", path]);
    assert!(
        out.contains(
            "DNS lookups skipped (--offline): cn_does_not_resolve and cn_resolves_elsewhere \
             not checked"
        ),
        "{out}"
    );
    assert!(!out.contains("[cn_resolves_elsewhere]"), "{out}");
    assert!(!out.contains("[cn_does_not_resolve]"), "{out}");
}

#[test]
fn a_wildcard_bind_is_checked_only_against_public_addresses() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&sipura, "local", &CertSpec::legacy_server("localhost"));
    private_keys(&pki);
    let yaml = |public: &str| {
        format!(
            r#"
backends:
  prov: {{ address: "127.0.0.1:9" }}
certificates:
  local: {{ chain: local.pem, key: local.key }}
listeners:
  - {{ name: any, bind: ["0.0.0.0:8443"], certificate: local, tls: legacy, backend: prov{public} }}
"#
        )
    };
    let any = pki.write("any.yaml", &yaml(""));
    let (_, out, _) = run_bin(&["check", "--json", "--config", any.to_str().unwrap()]);
    assert_eq!(found(&json(&out), DNS_CODES), [], "any address goes\n{out}");

    // A route's `local` match narrows a wildcard bind to the addresses it matches.
    let narrowed = pki.write(
        "narrowed.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  local: { chain: local.pem, key: local.key }
listeners:
  - name: any
    bind: ["0.0.0.0:8443"]
    certificate: local
    tls: legacy
    backend: prov
    routes:
      - { name: inner, match: { local: ["127.0.0.2/32"] } }
"#,
    );
    let (_, out, _) = run_bin(&["check", "--config", narrowed.to_str().unwrap()]);
    assert!(
        out.contains(
            "WARNING [cn_resolves_elsewhere] any any/inner: certificate 'local' CN \"localhost\" \
             resolves to 127.0.0.1, but listener 'any' binds 0.0.0.0:8443, route 'any/inner' \
             matches local 127.0.0.2/32 (no public_addresses);"
        ),
        "{out}"
    );
    assert_eq!(out.matches("[cn_resolves_elsewhere]").count(), 1, "{out}");

    let nat = pki.write("nat.yaml", &yaml(", public_addresses: [\"198.51.100.7\"]"));
    let (_, out, _) = run_bin(&["check", "--config", nat.to_str().unwrap()]);
    assert!(
        out.contains(
            "resolves to 127.0.0.1, but listener 'any' binds 0.0.0.0:8443, public_addresses \
             198.51.100.7;"
        ),
        "{out}"
    );
}

#[test]
fn public_addresses_must_be_ipv4_addresses() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&sipura, "local", &CertSpec::legacy_server("localhost"));
    private_keys(&pki);
    for (value, says) in [
        (
            "\"::1\"",
            "'::1' is an IPv6 address; devices look up A records only",
        ),
        (
            "\"10.0.0.1:8443\"",
            "'10.0.0.1:8443' is not an IPv4 address",
        ),
        (
            "\"prov.example.com\"",
            "'prov.example.com' is not an IPv4 address",
        ),
    ] {
        let path = pki.write(
            "bad.yaml",
            &format!(
                r#"
backends:
  prov: {{ address: "127.0.0.1:9" }}
certificates:
  local: {{ chain: local.pem, key: local.key }}
listeners:
  - {{ name: a, bind: ["127.0.0.2:8443"], certificate: local, tls: legacy, backend: prov, public_addresses: ["127.0.0.1", {value}] }}
"#
            ),
        );
        let (code, out, err) = run_bin(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 64, "{out}{err}");
        assert!(err.contains("listeners[0].public_addresses[1]"), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn run_logs_the_name_warnings_at_start() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&sipura, "local", &CertSpec::legacy_server("localhost"));
    private_keys(&pki);
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  local: { chain: local.pem, key: local.key }
access_log: { target: "off" }
listeners:
  - { name: elsewhere, bind: ["127.0.0.2:0"], certificate: local, tls: legacy, backend: prov }
"#,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_provgate"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let line = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("cn_resolves_elsewhere") => break line,
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no cn_resolves_elsewhere log line ({e}); stderr:\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("start"), "{line}");
    assert!(
        line.contains(
            "certificate 'local' CN \"localhost\" resolves to 127.0.0.1, but listener \
             'elsewhere' binds 127.0.0.2:0"
        ),
        "{line}"
    );
    assert!(
        seen.iter().any(|l| l.contains("listening")),
        "serving started before the lookups finished:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn reload_logs_the_name_warnings_of_the_new_configuration() {
    let logs = logs();
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(
        &sipura,
        "reloadlocal",
        &CertSpec::legacy_server("localhost"),
    );
    private_keys(&pki);
    let yaml = |bind: &str| {
        format!(
            r#"
backends:
  prov: {{ address: "127.0.0.1:9" }}
certificates:
  reloadlocal: {{ chain: reloadlocal.pem, key: reloadlocal.key }}
listeners:
  - {{ name: reloaded, bind: ["{bind}"], certificate: reloadlocal, tls: legacy, backend: prov }}
"#
        )
    };
    // At start the CN resolves to the bound address: the check runs and finds nothing.
    let h = Harness::start(pki, &yaml("127.0.0.1:0")).await;
    logs.wait_for(&["certificate names checked", "start", "warnings=0"])
        .await;
    h.pki.write(
        "config.yaml",
        &format!(
            "{}\naccess_log: {{ target: \"off\" }}\n",
            yaml("127.0.0.2:0")
        ),
    );
    h.running.reload().unwrap();
    let line = logs
        .wait_for(&["cn_resolves_elsewhere", "reloadlocal", "reload"])
        .await;
    assert!(line.contains("binds 127.0.0.2:0"), "{line}");
}

#[test]
fn shows_which_devices_trust_each_certificate() {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let linksys = pki.ca("linksys", "Linksys CA (test)");
    pki.issue(&sipura, "sipura", &CertSpec::legacy_server("localhost"));
    pki.issue(&linksys, "linksys", &CertSpec::legacy_server("localhost"));
    private_keys(&pki);
    let path = pki.write(
        "config.yaml",
        r#"
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  linksys: { chain: linksys.pem, key: linksys.key }
  sipura: { chain: sipura.pem, key: sipura.key }
listeners:
  - { name: linksys, bind: ["127.0.0.1:8443"], certificate: linksys, tls: legacy, backend: prov }
  - { name: sipura, bind: ["127.0.0.1:8444"], certificate: sipura, tls: legacy, backend: prov }
"#,
    );
    let path = path.to_str().unwrap();
    let (code, out, err) = run_bin(&["check", "--offline", "--json", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    let rows = |i: usize| -> Vec<String> {
        report["certificates"][i]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert!(d["source"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
                format!(
                    "{} {}",
                    d["device"].as_str().unwrap(),
                    d["firmware"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Certificates in name order: linksys, sipura.
    assert_eq!(
        report["certificates"][0]["vendor_ca"]["family"],
        "Linksys CA"
    );
    assert_eq!(
        rows(0),
        [
            "PAP2, WRTP, RTP any",
            "PAP2T 5.1.6(LS)",
            "SPA112 1.3.1(003)",
            "SPA232D 1.3.1(003_240)",
            "SPA-962 6.1.5(a)",
            "SPA508G 7.5.4",
            "SPA525G2 7.5.4",
        ],
        "SPA508G >= 7.6.2 rejects the Linksys CA\n{out}"
    );
    assert!(rows(1).contains(&"SPA508G >= 7.6.2".to_string()), "{out}");
    assert!(
        rows(1).contains(
            &"PAP2T, WRP400, SPA2000/2102, SPA3000/3102, SPA9xx (901..962), SPA3xx, SPA5xx any"
                .to_string()
        ),
        "{out}"
    );
    let source = report["certificates"][0]["devices"][1]["source"]
        .as_str()
        .unwrap();
    assert!(
        source.contains("SPA certificate authority (CA) list"),
        "{source}"
    );

    let (_, out, _) = run_bin(&["check", "--offline", "--config", path]);
    let linksys = &out[out.find("\n  linksys\n").unwrap()..out.find("\n  sipura\n").unwrap()];
    assert!(
        linksys.contains("    trusted by (device, firmware; source)"),
        "{linksys}"
    );
    assert!(
        linksys.contains("      PAP2, WRTP, RTP (any firmware); vendor CA list"),
        "{linksys}"
    );
    assert!(
        linksys.contains(
            "      SPA508G 7.5.4; operator field test (Cisco community, \"SPA certificate \
             authority (CA) list\", 2015-2022)"
        ),
        "{linksys}"
    );
    assert!(!linksys.contains("7.6.2"), "{linksys}");
    let sipura = &out[out.find("\n  sipura\n").unwrap()..];
    assert!(
        sipura.contains(
            "      SPA508G >= 7.6.2: rejects the Linksys CA: the Linksys root embedded in \
             SPA50x expired end of June 2015"
        ),
        "{sipura}"
    );
}
