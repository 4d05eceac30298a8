//! `provgate demo`: the real data path on a throwaway setup, so a newcomer sees it work in one
//! command. Everything it writes lives in a temporary folder removed on exit.
//!
//! `provgate init DIR`: the same throwaway CAs, certificates and listeners written into DIR
//! with a config.yaml that `check` and `run` accept, forwarding to a backend the operator
//! names, on fixed ports the operator can change: a first configuration to edit.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

/// Where a generated setup listens: every listener and the admin endpoint on `ip`, at
/// `port_base` and the next ports in [`LISTENERS`] order, then admin; `port_base` 0 means a
/// free port each.
#[derive(Debug, Clone, Copy)]
pub struct Binds {
    pub ip: IpAddr,
    pub port_base: u16,
}

/// The generated listeners, in port order (admin follows them).
pub const LISTENERS: [&str; 4] = ["sipura", "cisco2k", "mixed", "http"];

impl Binds {
    /// The highest `port_base` that leaves room for every listener and admin.
    pub const MAX_PORT_BASE: u16 = u16::MAX - LISTENERS.len() as u16;

    fn addr(&self, index: usize) -> SocketAddr {
        let port = match self.port_base {
            0 => 0,
            base => base.saturating_add(index as u16),
        };
        SocketAddr::new(self.ip, port)
    }

    /// The listeners' addresses, in [`LISTENERS`] order.
    pub fn listeners(&self) -> [SocketAddr; LISTENERS.len()] {
        std::array::from_fn(|i| self.addr(i))
    }

    pub fn admin(&self) -> SocketAddr {
        self.addr(LISTENERS.len())
    }
}

/// Generate one CA and server certificate per family in `dir`; returns the config YAML
/// (relative paths: the loader resolves them against the config file's folder), starting
/// with `header` (comment lines).
pub fn write_setup(
    dir: &Path,
    backend: SocketAddr,
    binds: Binds,
    header: &str,
) -> anyhow::Result<String> {
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
    let admin = binds.admin();
    let [sipura, cisco2k, mixed, http] = binds.listeners();
    Ok(format!(
        r#"{header}admin:
  listen: "{admin}"
backends:
  provisioning:
    address: "{backend}"
certificates:
  sipura:   {{ chain: sipura.pem,  key: sipura.key }}     # RSA 1024, SHA-1: legacy engine only
  cisco2k:  {{ chain: cisco2k.pem, key: cisco2k.key }}
  ciscosb:  {{ chain: ciscosb.pem, key: ciscosb.key }}
listeners:
  - name: sipura
    bind: ["{sipura}"]
    certificate: sipura
    tls: legacy
    backend: provisioning
  - name: cisco2k
    bind: ["{cisco2k}"]
    certificate: cisco2k
    tls: modern
    backend: provisioning
  - name: mixed
    bind: ["{mixed}"]
    certificate: ciscosb
    tls: auto
    backend: provisioning
  - name: http
    bind: ["{http}"]
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
    let binds = Binds {
        ip: IpAddr::from([127, 0, 0, 1]),
        port_base: 0,
    };
    let yaml = write_setup(
        dir.path(),
        backend,
        binds,
        "# Written by `provgate demo`.\n",
    )?;
    std::fs::write(&config_path, yaml)?;
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

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Folder to write into: created if missing, refused unless empty.
    dir: PathBuf,
    /// The provisioning backend (plain HTTP) every listener forwards to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    backend: SocketAddr,
    /// The address every listener and the admin endpoint bind.
    #[arg(long, default_value = "127.0.0.1")]
    listen_ip: IpAddr,
    /// First port: listeners sipura, cisco2k, mixed and http listen on it and the next three,
    /// admin on the one after; 0 = a free port each (tests).
    #[arg(long, default_value_t = 10443,
          value_parser = clap::value_parser!(u16).range(..=i64::from(Binds::MAX_PORT_BASE)))]
    port_base: u16,
}

const INIT_HEADER: &str = "\
# Written by `provgate init`: throwaway CAs and certificates named like the vendor families
# (no device trusts them), so `provgate check` and `provgate run` work at once. Next:
# - replace each certificate with the vendor-signed one (README \"Getting a certificate for
#   each family\": `provgate csr`), and remove the *-ca.pem files;
# - point backends.provisioning.address at your provisioning web app (plain HTTP);
# - ports: edit the binds (and admin.listen) below, or run `provgate init` again into an
#   empty folder with --listen-ip and --port-base. Paths are relative to this file's folder.
# `provgate check` warns cn_does_not_resolve for the throwaway names (*.demo.test resolves
# nowhere); a real certificate's CN needs an A record pointing at its listener's address.
# Every key below is explained in config.example.yaml and the README.
";

/// `provgate init DIR`: exit 0 written, 64 when DIR is not an empty folder, 1 otherwise.
pub fn init(args: &InitArgs) -> ExitCode {
    let dir = &args.dir;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                eprintln!(
                    "provgate init: {} is not empty: provgate init writes only into a new or \
                     empty folder, so it never replaces a key or a config",
                    dir.display()
                );
                return ExitCode::from(crate::cli::EXIT_CONFIG);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!(
                "provgate init: {} cannot be used: {e} (give a new or empty folder)",
                dir.display()
            );
            return ExitCode::from(crate::cli::EXIT_CONFIG);
        }
    }
    let binds = Binds {
        ip: args.listen_ip,
        port_base: args.port_base,
    };
    match write_init(dir, args.backend, binds) {
        Ok(config) => {
            print!("{}", init_instructions(dir, &config, args.backend, binds));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provgate init: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Write the setup and config.yaml into `dir`, and load it as `run` would.
fn write_init(dir: &Path, backend: SocketAddr, binds: Binds) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let yaml = write_setup(dir, backend, binds, INIT_HEADER)
        .with_context(|| format!("writing certificates into {}", dir.display()))?;
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
    Snapshot::load(&config).with_context(|| format!("{} does not load", config.display()))?;
    Ok(config)
}

fn init_instructions(dir: &Path, config: &Path, backend: SocketAddr, binds: Binds) -> String {
    let (d, c) = (dir.display(), config.display());
    let sipura = binds.listeners()[0];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Wrote {c} and throwaway CAs, certificates and keys (0600) into {d}."
    );
    for (name, addr) in LISTENERS.iter().zip(binds.listeners()) {
        let _ = writeln!(s, "  listener {name:<8} {addr}");
    }
    let _ = writeln!(s, "  admin             {}", binds.admin());
    if binds.port_base == 0 {
        let _ = writeln!(s, "  (port 0: run logs the port each listener got)");
    }
    let _ = writeln!(
        s,
        "  backend           {backend}  (backends.provisioning.address)"
    );
    let _ = writeln!(
        s,
        "\nNext:\n  provgate check --config {c}\n  provgate run --config {c}\n  \
         # an old SPA: TLS 1.0, RSA key exchange, no SNI (the backend must be up)\n  \
         printf 'GET /spa{DEMO_MAC}.cfg HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet \
         -ign_eof -connect {sipura} -tls1 -cipher 'AES256-SHA:@SECLEVEL=0' -CAfile {d}/sipura-ca.pem"
    );
    let _ = writeln!(
        s,
        "\nThe header of {c} says what to replace before devices use it."
    );
    s
}
