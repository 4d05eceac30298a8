//! `provgate init DIR`: the real binary writes a first configuration that `check` accepts and
//! `run` serves; a device-shaped OpenSSL client fetches a profile over TLS 1.0.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;

use common::{get, run_bin, Legacy};
use provgate::config::Config;
use tokio::io::AsyncBufReadExt as _;

/// Run the binary from `cwd` (so relative paths in the config cannot resolve against it).
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_config_that_check_accepts_and_run_serves() {
    let (backend, _task) = provgate::sample_backend::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = root.path().join("provgate");
    let d = dir.to_str().unwrap();
    let backend_arg = backend.to_string();
    let (code, stdout, stderr) =
        run_bin(&["init", d, "--backend", &backend_arg, "--port-base", "0"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("provgate check --config {d}/config.yaml")),
        "{stdout}"
    );
    for stem in ["sipura", "cisco2k", "ciscosb"] {
        for ext in ["pem", "key"] {
            assert!(dir.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
        let mode = std::fs::metadata(dir.join(format!("{stem}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{stem}.key");
    }
    let config = dir.join("config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# Written by `provgate init`"), "{text}");

    // check, from another folder: the relative paths resolve against the config's folder.
    let c = config.to_str().unwrap();
    let (code, stdout, stderr) = run_in(elsewhere.path(), &["check", "--config", c]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Never into a folder that holds anything.
    let (code, _, stderr) = run_bin(&["init", d]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // run, from another folder; each listener logs the port it got.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_provgate"))
        .args(["--log-format", "json", "run", "--config", c])
        .current_dir(elsewhere.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addrs: HashMap<String, SocketAddr> = HashMap::new();
    let wait = async {
        while addrs.len() < 4 {
            let Some(line) = lines.next_line().await.unwrap() else {
                panic!("provgate run ended before listening on every listener");
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &v["fields"];
            if fields["message"] == "listening" {
                let name = fields["listener"].as_str().unwrap().to_string();
                let addr = fields["addr"].as_str().unwrap().parse().unwrap();
                addrs.insert(name, addr);
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .expect("provgate run listening within 30 s");

    // An old SPA: TLS 1.0, RSA key exchange, no SNI, verifying the Sipura-family chain; and
    // the same device shape on the auto listener.
    let path = "/spa000e08abcdef.cfg";
    for (listener, ca) in [("sipura", "sipura-ca.pem"), ("mixed", "ciscosb-ca.pem")] {
        let ca = dir.join(ca);
        let client = Legacy {
            ciphers: "AES256-SHA",
            ca: Some(&ca),
            ..Legacy::default()
        };
        let mut tls = client.connect(addrs[listener]).await.unwrap();
        assert_eq!(
            tls.ssl().version_str(),
            "TLSv1",
            "{listener}: negotiated version"
        );
        let (status, body) = get(&mut tls, path, "").await;
        assert_eq!(status, 200, "{listener}: {body}");
        assert!(
            body.contains("<Station_Name>spa-000e08abcdef</Station_Name>"),
            "{body}"
        );
    }
    // A modern client on the rustls listener.
    let mut tls = common::modern(
        addrs["cisco2k"],
        &dir.join("cisco2k-ca.pem"),
        "prov.cisco2k.demo.test",
        true,
        &[&rustls::version::TLS13],
    )
    .await
    .unwrap();
    let (status, body) = get(&mut tls, path, "").await;
    assert_eq!(status, 200, "{body}");

    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[test]
fn default_ports_and_listen_address_are_the_documented_ones() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let (code, _, stderr) = run_bin(&["init", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let cfg = Config::load(&dir.join("config.yaml")).unwrap();
    let binds: Vec<(String, Vec<SocketAddr>)> = cfg
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.bind.clone()))
        .collect();
    let want = |port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
    assert_eq!(
        binds,
        [
            ("sipura".to_string(), want(10443)),
            ("cisco2k".to_string(), want(10444)),
            ("mixed".to_string(), want(10445)),
            ("http".to_string(), want(10446)),
        ]
    );
    assert_eq!(cfg.admin, Some(SocketAddr::from(([127, 0, 0, 1], 10447))));
    assert_eq!(
        cfg.backends["provisioning"].address.to_string(),
        "127.0.0.1:8080"
    );

    // --listen-ip and --port-base move them; an empty existing folder is fine.
    let dir = root.path().join("b");
    std::fs::create_dir(&dir).unwrap();
    let (code, _, stderr) = run_bin(&[
        "init",
        dir.to_str().unwrap(),
        "--listen-ip",
        "127.0.0.2",
        "--port-base",
        "20000",
        "--backend",
        "127.0.0.1:9000",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let cfg = Config::load(&dir.join("config.yaml")).unwrap();
    assert_eq!(
        cfg.listeners[3].bind,
        [SocketAddr::from(([127, 0, 0, 2], 20003))]
    );
    assert_eq!(cfg.admin, Some(SocketAddr::from(([127, 0, 0, 2], 20004))));

    // A port base that leaves no room for the last port, and a file in place of a folder.
    let (code, _, stderr) = run_bin(&[
        "init",
        root.path().join("c").to_str().unwrap(),
        "--port-base",
        "65533",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("65533"), "{stderr}");
    let file = root.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let (code, _, stderr) = run_bin(&["init", file.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("cannot be used"), "{stderr}");
}
