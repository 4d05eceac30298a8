//! `provgate demo`: the real data path on a throwaway setup, so a newcomer sees it work in one
//! command. Everything it writes lives in a temporary folder removed on exit.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use crate::pki::{self, Ca, CertSpec};
use crate::{sample_backend, server, snapshot::Snapshot};

/// The MAC the printed commands ask for.
pub const DEMO_MAC: &str = "000e08abcdef";

struct Family {
    stem: &'static str,
    ca_name: &'static str,
    host: &'static str,
    legacy_key: bool,
}

const FAMILIES: [Family; 3] = [
    Family {
        stem: "sipura",
        ca_name: "Sipura CA (provgate demo)",
        host: "prov.sipura.demo.test",
        legacy_key: true,
    },
    Family {
        stem: "cisco2k",
        ca_name: "Cisco 2k Small Business CA (provgate demo)",
        host: "prov.cisco2k.demo.test",
        legacy_key: false,
    },
    Family {
        stem: "ciscosb",
        ca_name: "Cisco Small Business CA (provgate demo)",
        host: "prov.ciscosb.demo.test",
        legacy_key: false,
    },
];

/// Generate one CA and server certificate per family in `dir`; returns the config YAML.
fn write_setup(dir: &Path, backend: SocketAddr) -> anyhow::Result<String> {
    for f in &FAMILIES {
        let ca = Ca::new(f.ca_name, "provgate demo")?;
        std::fs::write(dir.join(format!("{}-ca.pem", f.stem)), ca.cert_pem()?)?;
        let spec = if f.legacy_key {
            CertSpec::legacy_server(f.host)
        } else {
            CertSpec::server(f.host)
        };
        let (cert, key) = ca.issue(&spec)?;
        pki::write_pair(dir, f.stem, &cert, &key)?;
    }
    Ok(format!(
        r#"# Written by `provgate demo`.
admin:
  listen: "127.0.0.1:0"
backends:
  provisioning:
    address: "{backend}"
certificates:
  sipura:   {{ chain: sipura.pem,  key: sipura.key }}     # RSA 1024, SHA-1: legacy engine only
  cisco2k:  {{ chain: cisco2k.pem, key: cisco2k.key }}
  ciscosb:  {{ chain: ciscosb.pem, key: ciscosb.key }}
listeners:
  - name: sipura
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: provisioning
  - name: cisco2k
    bind: ["127.0.0.1:0"]
    certificate: cisco2k
    tls: modern
    backend: provisioning
  - name: mixed
    bind: ["127.0.0.1:0"]
    certificate: ciscosb
    tls: auto
    backend: provisioning
  - name: http
    bind: ["127.0.0.1:0"]
    tls: plain                       # firmware and encrypted profiles over plain HTTP
    backend: provisioning
"#
    ))
}

/// Run the demo until Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("provgate-demo-")
        .tempdir()?;
    let (backend, _backend_task) = sample_backend::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the sample backend")?;
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, write_setup(dir.path(), backend)?)?;
    let snapshot = Snapshot::load(&config_path)?;
    let running = server::start(snapshot).await?;
    println!("{}", instructions(dir.path(), &running, backend));
    server::wait_for_signal().await;
    running.shutdown(std::time::Duration::from_secs(5)).await;
    println!("provgate demo stopped; removed {}", dir.path().display());
    Ok(())
}

fn instructions(dir: &Path, running: &server::Running, backend: SocketAddr) -> String {
    let port = |name: &str| running.addrs(name).first().map_or(0, SocketAddr::port);
    let (legacy, modern, mixed) = (port("sipura"), port("cisco2k"), port("mixed"));
    let http = port("http");
    let d = dir.display();
    let path = format!("/spa{DEMO_MAC}.cfg");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "provgate demo is running. Files (CAs, certificates, config): {d}"
    );
    let _ = writeln!(
        s,
        "  listener sipura   127.0.0.1:{legacy}  legacy (OpenSSL)  Sipura demo CA, RSA 1024"
    );
    let _ = writeln!(
        s,
        "  listener cisco2k  127.0.0.1:{modern}  modern (rustls)   Cisco 2k demo CA"
    );
    let _ = writeln!(
        s,
        "  listener mixed    127.0.0.1:{mixed}  auto (both)       Cisco SB demo CA"
    );
    let _ = writeln!(
        s,
        "  listener http     127.0.0.1:{http}  plain HTTP        firmware, encrypted profiles"
    );
    let _ = writeln!(
        s,
        "  backend           {backend}  sample provisioning server"
    );
    if let Some(admin) = running.admin_addr() {
        let _ = writeln!(s, "  admin             {admin}  /healthz /readyz");
    }
    let _ = writeln!(s, "\nTry:");
    let _ = writeln!(
        s,
        "  # an old SPA: TLS 1.0, RSA key exchange, no SNI\n  \
         printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet -ign_eof -connect 127.0.0.1:{legacy} \
         -tls1 -cipher 'AES256-SHA:@SECLEVEL=0' -CAfile {d}/sipura-ca.pem"
    );
    let _ = writeln!(
        s,
        "  # a modern client: TLS 1.3 via rustls\n  \
         curl --cacert {d}/cisco2k-ca.pem --resolve prov.cisco2k.demo.test:{modern}:127.0.0.1 \
         https://prov.cisco2k.demo.test:{modern}{path}"
    );
    let _ = writeln!(
        s,
        "  # one port, both generations\n  \
         curl --cacert {d}/ciscosb-ca.pem --resolve prov.ciscosb.demo.test:{mixed}:127.0.0.1 \
         https://prov.ciscosb.demo.test:{mixed}{path}\n  \
         printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet -ign_eof -connect 127.0.0.1:{mixed} \
         -tls1 -cipher 'AES128-SHA:@SECLEVEL=0' -CAfile {d}/ciscosb-ca.pem"
    );
    let _ = writeln!(
        s,
        "  # firmware over plain HTTP (SPA devices do not upgrade over HTTPS)\n  \
         curl -sS http://127.0.0.1:{http}{path}"
    );
    let _ = writeln!(
        s,
        "\nThe access log (one line per request) is on stdout, diagnostics on stderr."
    );
    let _ = writeln!(s, "\nPress Ctrl-C to stop.");
    s
}
