//! The three proxies as child processes: their certificate and DH material, their
//! configuration (see `configs`), starting one pinned to core 0, its CPU time and memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use openssl::pkey::{PKey, Private};
use openssl::ssl::SslContext;

use crate::configs;
use crate::load::{one_shot, plain_one_shot};
use crate::opts::DhGroup;
use crate::sys::{
    clk_tck, cpu_ticks, descendants, fd_limit, free_port, tail, vm_rss_kib, which, Proc,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Provgate,
    Haproxy,
    Nginx,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Provgate => "provgate",
            Kind::Haproxy => "HAProxy",
            Kind::Nginx => "nginx",
        }
    }
}

/// How busy the proxy (with its descendants) and this process were over a measured window.
pub struct CpuMeter {
    proxy: Option<u64>,
    me: Option<u64>,
    t0: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Busy {
    /// Share of one core, 0..1.
    pub proxy: Option<f64>,
    pub loadgen: Option<f64>,
}

impl CpuMeter {
    pub fn start(p: &Proxy) -> CpuMeter {
        CpuMeter {
            proxy: p.cpu_ticks(),
            me: cpu_ticks("self"),
            t0: Instant::now(),
        }
    }
    pub fn stop(&self, p: &Proxy) -> Busy {
        let secs = self.t0.elapsed().as_secs_f64() * clk_tck();
        let share = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / secs);
        Busy {
            proxy: share(self.proxy, p.cpu_ticks()),
            loadgen: share(self.me, cpu_ticks("self")),
        }
    }
}

/// HAProxy reserves two descriptors per connection (client + server side) and refuses to start
/// when `2 * maxconn` does not fit the open-file limit, which cannot always be raised.
pub fn haproxy_maxconn() -> u64 {
    fd_limit().map_or(100_000, |l| (l.saturating_sub(100) / 2).min(100_000))
}

/// The client contexts `start` checks each port with (a full handshake and one GET).
pub struct Probes {
    pub legacy: Arc<SslContext>,
    pub modern: Arc<SslContext>,
}

/// One proxy: its four ports, its command line and, while it runs, its process.
pub struct Proxy {
    pub kind: Kind,
    pub legacy: SocketAddr,
    pub modern: SocketAddr,
    /// TLS like `legacy`, to the 50 ms backend capped at 64 connections (P7).
    pub slow: SocketAddr,
    /// Plain HTTP to the main backend (P9, P10).
    pub plain: SocketAddr,
    dir: PathBuf,
    cmd: Vec<String>,
    /// OPENSSL_CONF for the distribution-OpenSSL proxies (see `material`).
    openssl_conf: Option<PathBuf>,
    proc: Option<Proc>,
    starts: u32,
}

impl Proxy {
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let pid = self.pid()?;
        let mut total = cpu_ticks(&pid.to_string())?;
        for k in descendants(pid) {
            total += cpu_ticks(&k.to_string()).unwrap_or(0);
        }
        Some(total)
    }

    /// Resident memory of the proxy: the process plus its descendants (nginx: master + worker).
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let mut total = vm_rss_kib(pid).ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))?;
        for k in descendants(pid) {
            total += vm_rss_kib(k).unwrap_or(0);
        }
        Ok(total)
    }

    /// (Re)start the proxy; ready = a real TLS request through each port succeeds.
    pub async fn start(&mut self, probe: &Probes) -> Result<()> {
        self.stop();
        self.starts += 1;
        let log = self
            .dir
            .join(format!("{}-{}.log", self.kind.title(), self.starts));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new("taskset");
        if let Some(c) = &self.openssl_conf {
            cmd.env("OPENSSL_CONF", c);
        }
        let child = cmd
            .args(["-c", "0"])
            .args(&self.cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}: taskset -c 0 {}",
                    self.kind.title(),
                    self.cmd.join(" ")
                )
            })?;
        self.proc = Some(Proc { child, log });
        // Ready = a real request through each port succeeds (bounded: 20 s).
        let deadline = Instant::now() + Duration::from_secs(20);
        let ports = [
            (self.legacy, Some(&probe.legacy)),
            (self.modern, Some(&probe.modern)),
            (self.slow, Some(&probe.legacy)),
            (self.plain, None),
        ];
        for (addr, ctx) in ports {
            loop {
                self.exited_during_start()?;
                let r = match ctx {
                    Some(ctx) => one_shot(addr, ctx, Duration::from_secs(2)).await,
                    None => plain_one_shot(addr, Duration::from_secs(2)).await,
                };
                match r {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => {
                        let log = self
                            .proc
                            .as_ref()
                            .map(|p| p.log.clone())
                            .unwrap_or_default();
                        bail!(
                            "{} not ready on {addr} after 20 s: {e:#}; log {}:\n{}",
                            self.kind.title(),
                            log.display(),
                            tail(&log, 20)
                        );
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// An error (with the log's tail) if the process has already exited.
    fn exited_during_start(&mut self) -> Result<()> {
        if let Some(p) = self.proc.as_mut() {
            if let Ok(Some(st)) = p.child.try_wait() {
                bail!(
                    "{} exited during start-up ({st}); log {}:\n{}",
                    self.kind.title(),
                    p.log.display(),
                    tail(&p.log, 20)
                );
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        self.proc = None;
    }
}

/// The certificate, key and DH group all three serve, as files in the work directory.
pub struct Material {
    cert: PathBuf,
    key: PathBuf,
    combined: PathBuf,
    dh: PathBuf,
    openssl_conf: PathBuf,
    pub key_obj: PKey<Private>,
    dh_group: DhGroup,
}

pub fn material(dir: &Path, dh_group: DhGroup) -> Result<Material> {
    let ca = provgate::pki::Ca::new("provgate bench CA", "provgate bench")?;
    let (cert, key) = ca.issue(&provgate::pki::CertSpec::server("bench.test"))?;
    let (certf, keyf) = provgate::pki::write_pair(dir, "bench", &cert, &key)?;
    let combined = dir.join("bench-combined.pem");
    let mut pem = cert.to_pem()?;
    pem.extend(key.private_key_to_pem_pkcs8()?);
    std::fs::write(&combined, pem)?;
    let dh = dh_group.params()?;
    let dhf = dir.join("dh1024.pem");
    std::fs::write(&dhf, dh.params_to_pem()?)?;
    // Debian's OpenSSL defaults to security level 2, and HAProxy/nginx load the DH group before
    // they apply `@SECLEVEL=0` from the cipher string, so a 1024-bit group would be refused.
    // Start them with level 0 as the system default (what provgate's legacy engine sets).
    let openssl_conf = dir.join("openssl-bench.cnf");
    std::fs::write(&openssl_conf, configs::openssl_cnf()?)?;
    Ok(Material {
        openssl_conf,
        cert: certf,
        key: keyf,
        combined,
        dh: dhf,
        key_obj: key,
        dh_group,
    })
}

fn provgate_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROVGATE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release").join("provgate")
}

/// `N` distinct free loopback ports.
fn free_addrs<const N: usize>() -> Result<[SocketAddr; N]> {
    let mut v: Vec<SocketAddr> = Vec::with_capacity(N);
    while v.len() < N {
        let a = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v.try_into()
        .map_err(|_| anyhow!("could not pick {N} free ports"))
}

/// The harness's two backends: the main one and the 50 ms one (P7).
#[derive(Clone, Copy)]
pub struct Backends {
    pub main: SocketAddr,
    pub slow: SocketAddr,
}

/// Write `kind`'s configuration into its own folder under `root`, on four fresh ports; the
/// proxy is not started. A missing HAProxy or nginx is an error that says "not installed".
pub fn setup_proxy(kind: Kind, root: &Path, m: &Material, backends: Backends) -> Result<Proxy> {
    let dir = root.join(kind.title());
    std::fs::create_dir_all(&dir)?;
    let [legacy, modern, slow, plain] = free_addrs::<4>()?;
    let setup = configs::Setup {
        legacy,
        modern,
        slow,
        plain,
        backend: backends.main,
        slow_backend: backends.slow,
        cert: &m.cert,
        key: &m.key,
        cert_and_key: &m.combined,
        dh_params: &m.dh,
        dh_group: m.dh_group.name(),
    };
    let cmd: Vec<String> = match kind {
        Kind::Provgate => {
            let bin = provgate_bin();
            if !bin.is_file() {
                bail!(
                    "{} not found: run ./bench/run.sh (it runs `cargo build --release` first) \
                     or set PROVGATE_BIN",
                    bin.display()
                );
            }
            let conf = dir.join("provgate.yaml");
            std::fs::write(&conf, configs::provgate(&setup)?)?;
            vec![
                bin.display().to_string(),
                "--log-level".into(),
                "warn".into(),
                "run".into(),
                "--config".into(),
                conf.display().to_string(),
            ]
        }
        Kind::Haproxy => {
            let bin = which("haproxy").ok_or_else(|| anyhow!("haproxy is not installed"))?;
            let conf = dir.join("haproxy.cfg");
            std::fs::write(&conf, configs::haproxy(&setup, haproxy_maxconn())?)?;
            vec![
                bin.display().to_string(),
                "-db".into(),
                "-f".into(),
                conf.display().to_string(),
            ]
        }
        Kind::Nginx => {
            let bin = which("nginx").ok_or_else(|| anyhow!("nginx is not installed"))?;
            let conf = dir.join("nginx.conf");
            let tmp = dir.join("tmp");
            std::fs::create_dir_all(&tmp)?;
            std::fs::write(&conf, configs::nginx(&setup, &dir, &tmp)?)?;
            vec![
                bin.display().to_string(),
                "-p".into(),
                dir.display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                dir.join("nginx-error.log").display().to_string(),
            ]
        }
    };
    Ok(Proxy {
        kind,
        legacy,
        modern,
        slow,
        plain,
        dir,
        cmd,
        openssl_conf: (kind != Kind::Provgate).then(|| m.openssl_conf.clone()),
        proc: None,
        starts: 0,
    })
}
