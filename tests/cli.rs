//! The binary as an operator runs it: `check`, bad configs (exit 64, nothing bound) and `demo`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_provgate");

/// A valid config on `port`, with `tweak` applied to its text.
fn config(port: u16, tweak: impl Fn(String) -> String) -> String {
    tweak(format!(
        r#"
backends:
  prov: {{ address: "127.0.0.1:9", connect_timeout: 1s }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
listeners:
  - name: sipura
    bind: ["127.0.0.1:{port}"]
    certificate: sipura
    tls: legacy
    backend: prov
"#
    ))
}

#[test]
fn check_prints_listeners_certificates_and_engines() {
    let pki = sipura_pki();
    let path = pki.write("ok.yaml", &config(8443, |s| s));
    let (code, out, err) = run_bin(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("listener sipura  bind 127.0.0.1:8443"),
        "{out}"
    );
    assert!(out.contains("CN=prov.sipura.test"), "{out}");
    assert!(
        out.contains("issuer     O=provgate tests, CN=Sipura CA (test)"),
        "{out}"
    );
    assert!(
        out.contains("key        RSA 1024; signed sha1WithRSAEncryption"),
        "{out}"
    );
    assert!(
        out.contains("tls legacy: legacy (OpenSSL); versions tls1.0, tls1.1, tls1.2"),
        "{out}"
    );
    assert!(out.contains("AES256-SHA:AES128-SHA"), "{out}");
}

#[test]
fn bad_configs_exit_64_naming_the_problem_and_bind_nothing() {
    let pki = sipura_pki();
    // A port we hold: if provgate bound anything it would fail differently (or hang serving).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    drop(held);
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown key",
            config(port, |s| {
                s.replace("    tls: legacy", "    tls: legacy\n    tls_profle: x")
            }),
            &["listeners[0]", "unknown field `tls_profle`"],
        ),
        (
            "missing file",
            config(port, |s| {
                s.replace("chain: sipura.pem", "chain: missing.pem")
            }),
            &["certificates.sipura", "missing.pem", "cannot read"],
        ),
        (
            "wrong key for certificate",
            config(port, |s| s.replace("key: sipura.key", "key: other.key")),
            &["certificates.sipura", "other.key", "does not belong"],
        ),
        (
            "missing certificate name",
            config(port, |s| {
                s.replace("certificate: sipura", "certificate: nope")
            }),
            &["listeners[0].certificate", "no certificate named 'nope'"],
        ),
        (
            "tls1.3 in a legacy profile",
            config(port, |s| {
                s.replace("    tls: legacy", "    tls: p")
                    + "tls_profiles:\n  p:\n    base: legacy\n    versions: [tls1.0, tls1.3]\n"
            }),
            &["tls_profiles.p.versions", "tls1.3"],
        ),
        (
            "duplicate bind",
            config(port, |s| {
                s.replace(
                    &format!("[\"127.0.0.1:{port}\"]"),
                    &format!("[\"127.0.0.1:{port}\", \"127.0.0.1:{port}\"]"),
                )
            }),
            &["listeners[0].bind[1]", "duplicate bind address"],
        ),
        (
            "bad duration",
            config(port, |s| {
                s.replace("connect_timeout: 1s", "connect_timeout: soon")
            }),
            &["backends.prov.connect_timeout"],
        ),
    ];
    for (what, yaml, needles) in cases {
        let path = pki.write("bad.yaml", &yaml);
        for cmd in ["check", "run"] {
            let (code, out, err) = run_bin(&[cmd, "--config", path.to_str().unwrap()]);
            assert_eq!(code, 64, "{what} ({cmd}): {out}{err}");
            assert!(err.contains("bad.yaml"), "{what}: names the file: {err}");
            for n in needles {
                assert!(err.contains(n), "{what}: expected {n:?} in: {err}");
            }
            assert!(!err.contains("listening"), "{what}: bound something: {err}");
        }
    }
    // Nothing is left bound on the port.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn a_key_never_appears_in_errors() {
    let pki = sipura_pki();
    // Point the chain at the key file: the error must not echo the key.
    let yaml = config(8443, |s| {
        s.replace("chain: sipura.pem", "chain: sipura.key")
    });
    let path = pki.write("bad.yaml", &yaml);
    let (code, _, err) = run_bin(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 64);
    let key = std::fs::read_to_string(pki.path("sipura.key")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    assert!(!err.contains(body_line), "key material in: {err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

#[tokio::test]
async fn demo_serves_its_printed_listeners_and_stops_on_ctrl_c() {
    let mut child = std::process::Command::new(BIN)
        .arg("demo")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    let port_of = |name: &str| -> u16 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("listener {name} ")))
            .unwrap_or_else(|| panic!("no listener {name} in {text}"));
        line.split_whitespace()
            .nth(2)
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let dir = text
        .lines()
        .next()
        .unwrap()
        .rsplit(": ")
        .next()
        .unwrap()
        .to_string();
    assert!(text.contains("openssl s_client"), "{text}");
    assert!(text.contains("curl --cacert"), "{text}");

    let legacy: std::net::SocketAddr = ([127, 0, 0, 1], port_of("sipura")).into();
    let ca = std::path::PathBuf::from(&dir).join("sipura-ca.pem");
    let mut s = Legacy {
        ca: Some(&ca),
        ..Legacy::default()
    }
    .connect(legacy)
    .await
    .unwrap();
    let (status, body) = get(&mut s, "/spa000e08abcdef.cfg", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<flat-profile>"), "{body}");

    let modern_addr: std::net::SocketAddr = ([127, 0, 0, 1], port_of("cisco2k")).into();
    let ca = std::path::PathBuf::from(&dir).join("cisco2k-ca.pem");
    let mut m = modern(
        modern_addr,
        &ca,
        "prov.cisco2k.demo.test",
        true,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap();
    assert_eq!(get(&mut m, "/spa000e08abcdef.cfg", "").await.0, 200);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "demo exit: {status:?}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "demo left {dir} behind"
    );
}

#[tokio::test]
async fn probe_exits_zero_only_on_200() {
    let pki = sipura_pki();
    let yaml = config(0, |s| format!("admin: {{ listen: \"127.0.0.1:0\" }}\n{s}"));
    let h = Harness::start(pki, &yaml).await;
    let admin = h.running.admin_addr().unwrap();
    let dead = dead_addr();
    for (url, want) in [
        (format!("http://{admin}/healthz"), 0),
        (format!("http://{admin}/no-such-page"), 1),
        (format!("http://{dead}/healthz"), 1),
        ("https://example.com/".to_string(), 1),
    ] {
        let out = tokio::process::Command::new(BIN)
            .args(["probe", &url])
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(want),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `--log-level trace` (what an operator turns on to debug a device) must not print what
/// pingora traces: response bodies (profiles hold SIP passwords) and request heads.
#[tokio::test]
async fn trace_logging_prints_no_profile_bodies() {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["demo", "--log-level", "trace"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut http_port, mut tls_port) = (None, None);
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let port = || {
            line.split_whitespace()
                .nth(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
        };
        if line.trim_start().starts_with("listener http ") {
            http_port = port();
        }
        if line.trim_start().starts_with("listener sipura ") {
            tls_port = port();
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], http_port.unwrap()).into();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, body) = get(
        &mut tcp,
        "/spa000e08abcdef.cfg",
        "Authorization: Basic c2VjcmV0OnNlY3JldA==\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<flat-profile>"), "{body}");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tls_port.unwrap()).into();
    let mut tls = Legacy::default().connect(addr).await.unwrap();
    assert_eq!(get(&mut tls, "/spa000e08abcdef.cfg", "").await.0, 200);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(stderr_file.path()).unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging is on: {log}"
    );
    for secret in ["<flat-profile>", "Station_Name", "c2VjcmV0OnNlY3JldA=="] {
        assert!(!log.contains(secret), "'{secret}' in the trace log:\n{log}");
    }
}
