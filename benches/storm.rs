//! Handshake-storm benchmark: provgate vs HAProxy vs nginx (distribution packages), side by side.
//!
//! Run it through `./bench/run.sh [--quick]` (installs the proxies, raises `ulimit -n`, builds
//! `target/release/provgate`, then `cargo bench --bench storm`). What each row measures and how
//! is described in `docs/benchmarks.md`.
//!
//! Layout: every proxy is a child process pinned to core 0 (`taskset -c 0`); this process (load
//! generator + plain-HTTP backend, one tokio thread) pins itself to core 1. Everything is on
//! loopback: each proxy gets its own two ephemeral ports (a "legacy" one and a "modern" one,
//! like provgate's two listeners) and forwards to the same backend. The same RSA-2048
//! certificate (made with `provgate::pki`) and the same 1024-bit DH group serve all three.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::ssl::{
    Ssl, SslContext, SslMethod, SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_openssl::SslStream;

const REQUEST: &[u8] =
    b"GET /spa000e08abcdef.cfg HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: provgate-bench\r\n\r\n";
/// What the backend answers to everything (a small SPA profile).
const BODY: &[u8] = b"<flat-profile>\n  <Station_Name>spa-000e08abcdef</Station_Name>\n  \
<Profile_Rule>https://$D/spa$MA.cfg</Profile_Rule>\n  <Resync_Periodic>3600</Resync_Periodic>\n\
</flat-profile>\n";
const LEGACY_CIPHERS: &str = "AES128-SHA:DHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256";
const TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/// Timeouts given to every proxy (handshake, request headers, idle keep-alive, client side).
const PROXY_TIMEOUT_S: u64 = 120;

// ------------------------------------------------------------------------------------------
// Options

struct Opts {
    quick: bool,
    duration: Duration,
    warmup: Duration,
    concurrency: usize,
    keepalive_conns: usize,
    idle: usize,
    storm: usize,
    only: Vec<Kind>,
}

/// `--dh-group rfc5114`: every proxy (and the ceiling) uses the RFC 5114 1024-bit group with a
/// 160-bit subgroup instead of RFC 2409 group 2.
static RFC5114: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The 1024-bit DH group of this run.
fn bench_group() -> Result<Dh<openssl::pkey::Params>> {
    if RFC5114.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(Dh::get_1024_160()?);
    }
    Ok(Dh::from_pqg(
        BigNum::get_rfc2409_prime_1024()?,
        None,
        BigNum::from_u32(2)?,
    )?)
}

const USAGE: &str = "usage: ./bench/run.sh [--quick] [--duration SECS] [--concurrency N] \
[--keepalive-conns N] [--idle N] [--storm N] [--only provgate,haproxy,nginx] \
[--dh-group rfc2409|rfc5114]";

fn parse_args() -> Result<Opts> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Opts {
        quick,
        duration: Duration::from_secs(if quick { 3 } else { 10 }),
        warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
        concurrency: 64,
        keepalive_conns: 32,
        idle: if quick { 2_000 } else { 10_000 },
        storm: if quick { 5_000 } else { 20_000 },
        only: vec![Kind::Provgate, Kind::Haproxy, Kind::Nginx],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}"))
        };
        let num = |v: String, name: &str| -> Result<usize> {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{name}: not a positive number: {v}"))
        };
        match a.as_str() {
            "--bench" | "--quick" => {}
            "--duration" => o.duration = Duration::from_secs(num(value(a)?, a)? as u64),
            "--concurrency" => o.concurrency = num(value(a)?, a)?,
            "--keepalive-conns" => o.keepalive_conns = num(value(a)?, a)?,
            "--idle" => o.idle = num(value(a)?, a)?,
            "--storm" => o.storm = num(value(a)?, a)?,
            "--dh-group" => match value(a)?.as_str() {
                "rfc2409" => RFC5114.store(false, std::sync::atomic::Ordering::Relaxed),
                "rfc5114" => RFC5114.store(true, std::sync::atomic::Ordering::Relaxed),
                other => bail!("--dh-group: rfc2409 or rfc5114, not '{other}'"),
            },
            "--only" => {
                o.only = value(a)?
                    .split(',')
                    .map(|s| match s.trim() {
                        "provgate" => Ok(Kind::Provgate),
                        "haproxy" => Ok(Kind::Haproxy),
                        "nginx" => Ok(Kind::Nginx),
                        other => Err(anyhow!("--only: unknown proxy '{other}'")),
                    })
                    .collect::<Result<_>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok(o)
}

// ------------------------------------------------------------------------------------------
// Child processes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Provgate,
    Haproxy,
    Nginx,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Provgate => "provgate",
            Kind::Haproxy => "HAProxy",
            Kind::Nginx => "nginx",
        }
    }
}

/// A running child; killed (TERM, then KILL, with its descendants) when dropped, so a panic or
/// an error anywhere leaves no proxy behind.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = child.id();
    let kids = descendants(pid);
    signal(pid, "-TERM");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    for k in kids {
        if Path::new(&format!("/proc/{k}")).exists() {
            signal(k, "-KILL");
        }
    }
}

/// Parent pid from /proc/<pid>/stat (the field after the `(comm)`).
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, ppid(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (c, pp) in &all {
            if *pp == p && !out.contains(c) {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// How busy the proxy (with its descendants) and this process were over a measured window.
struct CpuMeter {
    proxy: Option<u64>,
    me: Option<u64>,
    t0: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Busy {
    /// Share of one core, 0..1.
    proxy: Option<f64>,
    loadgen: Option<f64>,
}

impl CpuMeter {
    fn start(p: &Proxy) -> CpuMeter {
        CpuMeter {
            proxy: p.cpu_ticks(),
            me: cpu_ticks("self"),
            t0: Instant::now(),
        }
    }
    fn stop(&self, p: &Proxy) -> Busy {
        let secs = self.t0.elapsed().as_secs_f64() * clk_tck();
        let share = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / secs);
        Busy {
            proxy: share(self.proxy, p.cpu_ticks()),
            loadgen: share(self.me, cpu_ticks("self")),
        }
    }
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// HAProxy reserves two descriptors per connection (client + server side) and refuses to start
/// when `2 * maxconn` does not fit the open-file limit, which cannot always be raised.
fn haproxy_maxconn() -> u64 {
    fd_limit().map_or(100_000, |l| (l.saturating_sub(100) / 2).min(100_000))
}

fn free_port() -> Result<u16> {
    let l = StdListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

struct Probes {
    legacy: Arc<SslContext>,
    modern: Arc<SslContext>,
}

struct Proxy {
    kind: Kind,
    legacy: SocketAddr,
    modern: SocketAddr,
    dir: PathBuf,
    cmd: Vec<String>,
    /// OPENSSL_CONF for the distribution-OpenSSL proxies (see `material`).
    openssl_conf: Option<PathBuf>,
    proc: Option<Proc>,
    starts: u32,
}

impl Proxy {
    fn pid(&self) -> Option<u32> {
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
    fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let mut total = vm_rss_kib(pid).ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))?;
        for k in descendants(pid) {
            total += vm_rss_kib(k).unwrap_or(0);
        }
        Ok(total)
    }

    /// (Re)start the proxy; ready = a real TLS request through each port succeeds.
    async fn start(&mut self, probe: &Probes) -> Result<()> {
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
        // Ready = a real TLS request through each port succeeds (bounded: 20 s).
        let deadline = Instant::now() + Duration::from_secs(20);
        for (addr, ctx) in [(self.legacy, &probe.legacy), (self.modern, &probe.modern)] {
            loop {
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
                match one_shot(addr, ctx, Duration::from_secs(2)).await {
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

    fn stop(&mut self) {
        self.proc = None;
    }
}

// ------------------------------------------------------------------------------------------
// Setup: certificate, DH group, configurations

struct Material {
    cert: PathBuf,
    key: PathBuf,
    combined: PathBuf,
    dh: PathBuf,
    openssl_conf: PathBuf,
    key_obj: PKey<Private>,
}

fn material(dir: &Path) -> Result<Material> {
    let ca = provgate::pki::Ca::new("provgate bench CA", "provgate bench")?;
    let (cert, key) = ca.issue(&provgate::pki::CertSpec::server("bench.test"))?;
    let (certf, keyf) = provgate::pki::write_pair(dir, "bench", &cert, &key)?;
    let combined = dir.join("bench-combined.pem");
    let mut pem = cert.to_pem()?;
    pem.extend(key.private_key_to_pem_pkcs8()?);
    std::fs::write(&combined, pem)?;
    let dh = bench_group()?;
    let dhf = dir.join("dh1024.pem");
    std::fs::write(&dhf, dh.params_to_pem()?)?;
    // Debian's OpenSSL defaults to security level 2, and HAProxy/nginx load the DH group before
    // they apply `@SECLEVEL=0` from the cipher string, so a 1024-bit group would be refused.
    // Start them with level 0 as the system default (what provgate's legacy engine sets).
    let openssl_conf = dir.join("openssl-bench.cnf");
    std::fs::write(
        &openssl_conf,
        "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
         system_default = system_default_sect\n[system_default_sect]\n\
         CipherString = DEFAULT:@SECLEVEL=0\nMinProtocol = TLSv1\n",
    )?;
    Ok(Material {
        openssl_conf,
        cert: certf,
        key: keyf,
        combined,
        dh: dhf,
        key_obj: key,
    })
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
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

fn setup_proxy(kind: Kind, root: &Path, m: &Material, backend: SocketAddr) -> Result<Proxy> {
    let dir = root.join(kind.title());
    std::fs::create_dir_all(&dir)?;
    let legacy = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let mut modern = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    while modern == legacy {
        modern = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    }
    let t = PROXY_TIMEOUT_S;
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
            std::fs::write(
                &conf,
                format!(
                    r#"backends:
  bench:
    address: "{backend}"
    connect_timeout: 3s
    read_timeout: 30s
certificates:
  bench:
    chain: {cert}
    key: {key}
tls_profiles:
  bench-legacy:
    base: legacy
    versions: [tls1.0, tls1.2]
    ciphers: "{LEGACY_CIPHERS}"
    dh_bits: 1024
    dh_group: {dh_group}
listeners:
  - name: legacy
    bind: ["{legacy}"]
    certificate: bench
    tls: bench-legacy
    backend: bench
    handshake_timeout: {t}s
    max_connections: 100000
  - name: modern
    bind: ["{modern}"]
    certificate: bench
    tls: modern
    backend: bench
    handshake_timeout: {t}s
    max_connections: 100000
limits:
  max_connections: 100000
  header_timeout: {t}s
  keepalive_timeout: {t}s
  shutdown_grace: 1s
"#,
                    cert = m.cert.display(),
                    key = m.key.display(),
                    dh_group = if RFC5114.load(std::sync::atomic::Ordering::Relaxed) {
                        "rfc5114"
                    } else {
                        "rfc2409"
                    },
                ),
            )?;
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
            let bind_opts = format!(
                "ssl crt {crt} ssl-min-ver TLSv1.0 ciphers {LEGACY_CIPHERS}:@SECLEVEL=0 \
                 ciphersuites {TLS13_SUITES} no-tls-tickets backlog 4096",
                crt = m.combined.display()
            );
            std::fs::write(
                &conf,
                format!(
                    "global
    nbthread 1
    maxconn {maxconn}
    tune.ssl.cachesize 0
    ssl-dh-param-file {dh}
defaults
    mode http
    option http-keep-alive
    option forwardfor
    maxconn 100000
    timeout connect 3s
    timeout client {t}s
    timeout server 30s
    timeout http-request {t}s
    timeout http-keep-alive {t}s
frontend fe
    bind {legacy} {bind_opts}
    bind {modern} {bind_opts}
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Real-IP %[src]
    default_backend be
backend be
    server s1 {backend}
",
                    dh = m.dh.display(),
                    maxconn = haproxy_maxconn(),
                ),
            )?;
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
            std::fs::write(
                &conf,
                format!(
                    "worker_processes 1;
worker_rlimit_nofile 200000;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 100000; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout {t}s;
    keepalive_requests 100000000;
    client_header_timeout {t}s;
    upstream be {{ server {backend}; keepalive 256; }}
    server {{
        listen {legacy} ssl backlog=4096;
        listen {modern} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1 TLSv1.2 TLSv1.3;
        ssl_ciphers {LEGACY_CIPHERS}:@SECLEVEL=0;
        ssl_prefer_server_ciphers on;
        ssl_dhparam {dh};
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Port $server_port;
        }}
    }}
}}
",
                    dir = dir.display(),
                    tmp = tmp.display(),
                    cert = m.cert.display(),
                    key = m.key.display(),
                    dh = m.dh.display(),
                ),
            )?;
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
        dir,
        cmd,
        openssl_conf: (kind != Kind::Provgate).then(|| m.openssl_conf.clone()),
        proc: None,
        starts: 0,
    })
}

// ------------------------------------------------------------------------------------------
// Backend: keep-alive HTTP/1.1, one fixed small body.

async fn spawn_backend() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(BODY)));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/xml"),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

// ------------------------------------------------------------------------------------------
// Load generator

#[derive(Clone, Copy)]
enum Tls {
    /// TLS 1.0 only, exactly this one cipher suite.
    V10(&'static str),
    /// TLS 1.3 only, TLS_AES_128_GCM_SHA256, X25519 (OpenSSL's first default group).
    V13,
}

fn client_context(tls: Tls) -> Result<SslContext> {
    let mut b = SslContext::builder(SslMethod::tls_client())?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_security_level(0);
    // Full handshakes only: no tickets, no client session cache, and set_session is never called.
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_COMPRESSION);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    match tls {
        Tls::V10(cipher) => {
            b.set_min_proto_version(Some(SslVersion::TLS1))?;
            b.set_max_proto_version(Some(SslVersion::TLS1))?;
            b.set_cipher_list(&format!("{cipher}:@SECLEVEL=0"))?;
        }
        Tls::V13 => {
            b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
            b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
            b.set_ciphersuites("TLS_AES_128_GCM_SHA256")?;
        }
    }
    Ok(b.build())
}

static SOURCE: AtomicU32 = AtomicU32::new(0);

/// Connect from a rotating 127.10.x.y source address: 62,500 sources, each with its own
/// ephemeral-port range, so hundreds of thousands of short connections (and their TIME_WAIT)
/// never exhaust the ~28,000 ports of a single source.
async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let n = SOURCE.fetch_add(1, Ordering::Relaxed) % 62_500;
    let src = SocketAddr::from((
        Ipv4Addr::new(127, 10, (n / 250) as u8, (n % 250) as u8 + 1),
        0,
    ));
    let s = TcpSocket::new_v4()?;
    s.bind(src)?;
    let t = s.connect(addr).await?;
    t.set_nodelay(true)?;
    Ok(t)
}

async fn handshake(addr: SocketAddr, ctx: &SslContext) -> Result<SslStream<TcpStream>> {
    let tcp = tcp(addr).await.context("connect")?;
    let mut s = SslStream::new(Ssl::new(ctx)?, tcp)?;
    Pin::new(&mut s)
        .connect()
        .await
        .map_err(|e| anyhow!("TLS handshake: {e}"))?;
    Ok(s)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read one HTTP/1.1 response (Content-Length or chunked); returns the status code.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 65_536 {
            bail!("response headers larger than 64 KiB");
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response headers");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response headers not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {:?}", head.lines().next()))?;
    let (mut len, mut chunked) = (0usize, false);
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().context("bad Content-Length")?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                chunked = true;
            }
        }
    }
    loop {
        let done = if chunked {
            buf.len() >= head_end + 5 && buf.ends_with(b"0\r\n\r\n")
        } else {
            buf.len() >= head_end + len
        };
        if done {
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in the response body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<()> {
    s.write_all(REQUEST).await?;
    match read_response(s, buf).await? {
        200 => Ok(()),
        st => bail!("HTTP status {st}"),
    }
}

/// Connect, full handshake, one GET, read the response; the connection is then dropped.
async fn one_shot(addr: SocketAddr, ctx: &SslContext, limit: Duration) -> Result<()> {
    tokio::time::timeout(limit, async {
        let mut s = handshake(addr, ctx).await?;
        let mut buf = Vec::with_capacity(1024);
        request(&mut s, &mut buf).await
    })
    .await
    .map_err(|_| anyhow!("timed out after {limit:?}"))?
}

/// Same, but keeps the connection open (idle, after its request) and returns it.
async fn open_idle(addr: SocketAddr, ctx: &SslContext) -> Result<SslStream<TcpStream>> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut s = handshake(addr, ctx).await?;
        let mut buf = Vec::with_capacity(1024);
        request(&mut s, &mut buf).await?;
        Ok(s)
    })
    .await
    .map_err(|_| anyhow!("timed out after 60 s"))?
}

#[derive(Default)]
struct Errors {
    first: Mutex<Option<String>>,
}

impl Errors {
    fn note(&self, e: &anyhow::Error) {
        if let Ok(mut f) = self.first.lock() {
            f.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    fn take(&self) -> Option<String> {
        self.first.lock().ok().and_then(|mut f| f.take())
    }
}

#[derive(Clone, Debug)]
struct Rate {
    per_s: f64,
    busy: Busy,
    ok: u64,
    fail: u64,
    first_error: Option<String>,
}

/// `conc` tasks doing one_shot in a loop; only exchanges finished before the deadline count.
async fn closed_loop(addr: SocketAddr, ctx: &Arc<SslContext>, conc: usize, dur: Duration) -> Rate {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + dur);
    let (ok, fail, errs) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Errors::default()),
    );
    let mut set = JoinSet::new();
    for _ in 0..conc {
        let (ctx, ok, fail, errs) = (ctx.clone(), ok.clone(), fail.clone(), errs.clone());
        set.spawn(async move {
            while tokio::time::Instant::now() < deadline {
                match tokio::time::timeout_at(
                    deadline,
                    one_shot(addr, &ctx, Duration::from_secs(10)),
                )
                .await
                {
                    Err(_) => break,
                    Ok(Ok(())) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        fail.fetch_add(1, Ordering::Relaxed);
                        errs.note(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let ok = ok.load(Ordering::Relaxed);
    Rate {
        busy: Busy::default(),
        per_s: ok as f64 / dur.as_secs_f64(),
        ok,
        fail: fail.load(Ordering::Relaxed),
        first_error: errs.take(),
    }
}

/// Check what one connection negotiates (version, cipher) before a row is measured.
async fn negotiated(addr: SocketAddr, ctx: &SslContext) -> Result<(String, String)> {
    let mut s = handshake(addr, ctx).await?;
    let mut buf = Vec::new();
    request(&mut s, &mut buf).await?;
    let cipher = s
        .ssl()
        .current_cipher()
        .map(|c| c.name().to_string())
        .unwrap_or_default();
    Ok((s.ssl().version_str().to_string(), cipher))
}

async fn expect_negotiated(
    addr: SocketAddr,
    ctx: &SslContext,
    version: &str,
    cipher: &str,
) -> Result<()> {
    let (v, c) = negotiated(addr, ctx).await?;
    if v != version || c != cipher {
        bail!("negotiated {v} {c}, expected {version} {cipher}");
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct KeepAlive {
    per_s: f64,
    busy: Busy,
    fail: u64,
}

#[derive(Clone, Debug)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    sent: usize,
    fail: u64,
}

/// Requests over already-open connections until `dur` has passed: closed loop (`rate` None,
/// returns requests/s) or paced at `rate` requests/s in total (returns the latencies).
async fn keepalive_run<S>(
    streams: Vec<S>,
    dur: Duration,
    rate: Option<f64>,
) -> (KeepAlive, Vec<u32>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let n = streams.len();
    let start = tokio::time::Instant::now();
    let deadline = start + dur;
    let fail = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        let fail = fail.clone();
        set.spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut lat = Vec::new();
            let mut ok = 0u64;
            let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
            let mut next = start + interval.map_or(Duration::ZERO, |iv| iv * i as u32 / n as u32);
            loop {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next).await;
                    next += iv;
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), request(&mut s, &mut buf)).await
                {
                    Ok(Ok(())) => {
                        ok += 1;
                        if interval.is_some() {
                            lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                    }
                    _ => {
                        fail.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            (ok, lat)
        });
    }
    let (mut ok, mut lat) = (0u64, Vec::new());
    while let Some(r) = set.join_next().await {
        if let Ok((o, l)) = r {
            ok += o;
            lat.extend(l);
        }
    }
    let ka = KeepAlive {
        busy: Busy::default(),
        per_s: ok as f64 / dur.as_secs_f64(),
        fail: fail.load(Ordering::Relaxed),
    };
    (ka, lat)
}

fn percentiles(mut lat: Vec<u32>, fail: u64) -> Result<Latency> {
    if lat.is_empty() {
        bail!("no latency samples");
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64;
    Ok(Latency {
        p50_us: at(0.50),
        p99_us: at(0.99),
        sent: lat.len(),
        fail,
    })
}

async fn open_tls_conns(
    addr: SocketAddr,
    ctx: &SslContext,
    n: usize,
) -> Result<Vec<SslStream<TcpStream>>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(open_idle(addr, ctx).await?);
    }
    Ok(v)
}

async fn open_plain_conns(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(tcp(addr).await?);
    }
    Ok(v)
}

#[derive(Clone, Debug)]
struct Memory {
    kib_per_conn: f64,
    before_kib: u64,
    after_kib: u64,
    open: usize,
    fail: usize,
}

/// Open `n` TLS connections (handshake + one request each, `conc` at a time) and hold them.
async fn open_many(
    addr: SocketAddr,
    ctx: &Arc<SslContext>,
    n: usize,
    conc: usize,
) -> (Vec<SslStream<TcpStream>>, usize, Option<String>) {
    let left = Arc::new(AtomicU64::new(n as u64));
    let errs = Arc::new(Errors::default());
    let mut set = JoinSet::new();
    for _ in 0..conc.min(n) {
        let (ctx, left, errs) = (ctx.clone(), left.clone(), errs.clone());
        set.spawn(async move {
            let (mut open, mut fail) = (Vec::new(), 0usize);
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                .is_ok()
            {
                match open_idle(addr, &ctx).await {
                    Ok(s) => open.push(s),
                    Err(e) => {
                        fail += 1;
                        errs.note(&e);
                    }
                }
            }
            (open, fail)
        });
    }
    let (mut all, mut fail) = (Vec::with_capacity(n), 0);
    while let Some(r) = set.join_next().await {
        match r {
            Ok((o, f)) => {
                all.extend(o);
                fail += f;
            }
            Err(_) => fail += 1,
        }
    }
    (all, fail, errs.take())
}

#[derive(Clone, Debug)]
struct Storm {
    n: usize,
    ok: usize,
    fail: usize,
    secs: f64,
    first_error: Option<String>,
}

/// `n` clients at once: connect + full handshake + one GET each. The time is until the last
/// success; each client gives up after 90 s.
async fn storm(addr: SocketAddr, ctx: &Arc<SslContext>, n: usize) -> Storm {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        let ctx = ctx.clone();
        set.spawn(async move {
            let r = one_shot(addr, &ctx, Duration::from_secs(90)).await;
            (r, start.elapsed())
        });
    }
    let (mut ok, mut fail, mut last, mut first_error) = (0, 0, Duration::ZERO, None);
    while let Some(r) = set.join_next().await {
        match r {
            Ok((Ok(()), t)) => {
                ok += 1;
                last = last.max(t);
            }
            Ok((Err(e), _)) => {
                fail += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                fail += 1;
                first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    Storm {
        n,
        ok,
        fail,
        secs: last.as_secs_f64(),
        first_error,
    }
}

// ------------------------------------------------------------------------------------------
// Ceiling: what one core can do with the vendored OpenSSL (like `openssl speed`).

struct Ceiling {
    rsa_sign_s: f64,
    dh_s: f64,
}

fn ceiling(key: &PKey<Private>, dur: Duration) -> Result<Ceiling> {
    let data = [7u8; 48];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < dur {
        let mut s = Signer::new(MessageDigest::sha256(), key)?;
        s.update(&data)?;
        std::hint::black_box(s.sign_to_vec()?);
        n += 1;
    }
    let rsa_sign_s = n as f64 / t.elapsed().as_secs_f64();
    let group = bench_group;
    let peer = group()?.generate_key()?;
    let peer_pub = peer.public_key().to_owned()?;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < dur {
        // What a server does per DHE handshake: a fresh ephemeral key, then the shared secret.
        let mine = group()?.generate_key()?;
        std::hint::black_box(mine.compute_key(&peer_pub)?);
        n += 1;
    }
    Ok(Ceiling {
        rsa_sign_s,
        dh_s: n as f64 / t.elapsed().as_secs_f64(),
    })
}

// ------------------------------------------------------------------------------------------
// Results

type Cell<T> = Option<std::result::Result<T, String>>;

#[derive(Default)]
struct Col {
    p1: Cell<Rate>,
    p2: Cell<Rate>,
    p3: Cell<Rate>,
    p4: Cell<KeepAlive>,
    p4lat: Cell<Latency>,
    p5: Cell<Memory>,
    p6: Cell<Storm>,
}

fn ok<T: Clone>(c: &Cell<T>) -> Option<T> {
    c.as_ref().and_then(|r| r.as_ref().ok()).cloned()
}

fn show<T>(c: &Cell<T>, installed: bool, f: impl Fn(&T) -> String) -> String {
    match c {
        _ if !installed => "not installed".into(),
        None => "—".into(),
        Some(Ok(v)) => f(v),
        Some(Err(e)) => format!(
            "error: {}",
            e.replace('|', "/").chars().take(90).collect::<String>()
        ),
    }
}

fn fails(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} failed)")
    }
}

/// ` · 97% CPU` (the proxy's share of its core over the measured window).
fn busy(b: &Busy) -> String {
    b.proxy
        .map_or(String::new(), |p| format!(" · {:.0}% CPU", p * 100.0))
}

/// Throughput per second of proxy CPU time (robust when something else shares the core).
fn per_core(rate: f64, b: &Busy) -> Option<f64> {
    b.proxy.filter(|p| *p > 0.05).map(|p| rate / p)
}

/// `1.05× (0.98× per CPU-s)`
fn ratio2(a: Option<(f64, Busy)>, b: Option<(f64, Busy)>) -> String {
    let raw = ratio(a.map(|x| x.0), b.map(|x| x.0));
    let eff = ratio(
        a.and_then(|(r, b)| per_core(r, &b)),
        b.and_then(|(r, b)| per_core(r, &b)),
    );
    if eff == "—" {
        raw
    } else {
        format!("{raw} ({eff} per CPU-s)")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "n/a",
    }
}

struct Env {
    machine: Vec<String>,
    notes: Vec<String>,
}

fn render(
    opts: &Opts,
    env: &Env,
    cols: &[(Kind, bool, Col)],
    ceil: &Ceiling,
    p4_rate: Option<f64>,
    direct: &Option<(f64, Latency)>,
) -> String {
    let get = |k: Kind| cols.iter().find(|c| c.0 == k);
    let installed = |k: Kind| get(k).is_some_and(|c| c.1);
    let empty = Col::default();
    let col = |k: Kind| get(k).map_or(&empty, |c| &c.2);
    let (pg, ha, ng) = (col(Kind::Provgate), col(Kind::Haproxy), col(Kind::Nginx));
    let inst = [
        installed(Kind::Provgate),
        installed(Kind::Haproxy),
        installed(Kind::Nginx),
    ];
    let p2_ceiling = 1.0 / (1.0 / ceil.rsa_sign_s + 1.0 / ceil.dh_s);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| row | measure | provgate | HAProxy | nginx | provgate/HAProxy | provgate/nginx | ceiling (1 core) | goal | goal met? |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---|---|---|");
    let rate = |c: &Cell<Rate>, i: usize| {
        show(c, inst[i], |r| {
            format!("{:.0}/s{}{}", r.per_s, busy(&r.busy), fails(r.fail))
        })
    };
    let per = |c: &Cell<Rate>| ok(c).map(|r| r.per_s);
    let pb = |c: &Cell<Rate>| ok(c).map(|r| (r.per_s, r.busy));
    let kb = |c: &Cell<KeepAlive>| ok(c).map(|r| (r.per_s, r.busy));

    // P1
    let p1 = per(&pg.p1);
    let share1 = p1.map(|p| p / ceil.rsa_sign_s);
    let _ = writeln!(
        t,
        "| P1 | TLS 1.0 AES128-SHA (RSA kx) full handshake + 1 GET, per s ({} clients) | {} | {} | {} | {} | {} | RSA-2048 sign {:.0}/s; P1 = {} | ≥ 1.1× HAProxy and ≥ 70% of ceiling | {} |",
        opts.concurrency,
        rate(&pg.p1, 0), rate(&ha.p1, 1), rate(&ng.p1, 2),
        ratio2(pb(&pg.p1), pb(&ha.p1)), ratio2(pb(&pg.p1), pb(&ng.p1)),
        ceil.rsa_sign_s,
        share1.map_or("—".into(), |s| format!("{:.0}%", s * 100.0)),
        yes_no(p1.zip(per(&ha.p1)).zip(share1).map(|((a, b), s)| a >= 1.1 * b && s >= 0.7)),
    );
    // P2
    let p2 = per(&pg.p2);
    let _ = writeln!(
        t,
        "| P2 | TLS 1.0 DHE-RSA-AES128-SHA (DH 1024) full handshake + 1 GET, per s | {} | {} | {} | {} | {} | RSA sign + DH-1024 ({:.0}/s) = {:.0}/s; P2 = {} | ≥ 1.0× HAProxy | {} |",
        rate(&pg.p2, 0), rate(&ha.p2, 1), rate(&ng.p2, 2),
        ratio2(pb(&pg.p2), pb(&ha.p2)), ratio2(pb(&pg.p2), pb(&ng.p2)),
        ceil.dh_s, p2_ceiling,
        p2.map_or("—".into(), |p| format!("{:.0}%", p / p2_ceiling * 100.0)),
        yes_no(p2.zip(per(&ha.p2)).map(|(a, b)| a >= b)),
    );
    // P3
    let p3 = per(&pg.p3);
    let _ = writeln!(
        t,
        "| P3 | TLS 1.3 (AES128-GCM, X25519, RSA-PSS) full handshake + 1 GET, per s (provgate: modern listener) | {} | {} | {} | {} | {} | RSA-2048 sign {:.0}/s (OpenSSL; rustls signs with ring) | ≥ 1.2× HAProxy | {} |",
        rate(&pg.p3, 0), rate(&ha.p3, 1), rate(&ng.p3, 2),
        ratio2(pb(&pg.p3), pb(&ha.p3)), ratio2(pb(&pg.p3), pb(&ng.p3)),
        ceil.rsa_sign_s,
        yes_no(p3.zip(per(&ha.p3)).map(|(a, b)| a >= 1.2 * b)),
    );
    // P4
    let ka = |c: &Cell<KeepAlive>, i: usize| {
        show(c, inst[i], |r| {
            format!("{:.0}/s{}{}", r.per_s, busy(&r.busy), fails(r.fail))
        })
    };
    let kper = |c: &Cell<KeepAlive>| ok(c).map(|r| r.per_s);
    let p4 = kper(&pg.p4);
    let direct_p = direct.as_ref().map(|d| d.1.p99_us);
    let direct_5 = direct.as_ref().map(|d| d.1.p50_us);
    let added = |c: &Cell<Latency>| {
        ok(c)
            .zip(direct_p)
            .zip(direct_5)
            .map(|((l, d99), d50)| (l.p50_us - d50, l.p99_us - d99))
    };
    let lat = |c: &Cell<Latency>, i: usize| {
        show(c, inst[i], |l| match direct.as_ref() {
            Some((_, d)) => format!(
                "+{:.3} / +{:.3} ms{}",
                (l.p50_us - d.p50_us) / 1000.0,
                (l.p99_us - d.p99_us) / 1000.0,
                fails(l.fail)
            ),
            None => format!(
                "{:.3} / {:.3} ms (abs)",
                l.p50_us / 1000.0,
                l.p99_us / 1000.0
            ),
        })
    };
    let _ = writeln!(
        t,
        "| P4 | keep-alive GETs over {} open TLS 1.0 AES128-SHA connections, per s | {} | {} | {} | {} | {} | load generator + backend, plain HTTP direct: {} | ≥ 1.0× HAProxy | {} |",
        opts.keepalive_conns,
        ka(&pg.p4, 0), ka(&ha.p4, 1), ka(&ng.p4, 2),
        ratio2(kb(&pg.p4), kb(&ha.p4)), ratio2(kb(&pg.p4), kb(&ng.p4)),
        direct.as_ref().map_or("—".into(), |d| format!("{:.0}/s", d.0)),
        yes_no(p4.zip(kper(&ha.p4)).map(|(a, b)| a >= b)),
    );
    let a_pg = added(&pg.p4lat);
    let _ = writeln!(
        t,
        "| P4 lat | added latency p50 / p99 vs direct to the backend, paced at {} req/s | {} | {} | {} | {} | {} | direct: {} | added p99 ≤ 1 ms | {} |",
        p4_rate.map_or("—".into(), |r| format!("{r:.0}")),
        lat(&pg.p4lat, 0), lat(&ha.p4lat, 1), lat(&ng.p4lat, 2),
        ratio(a_pg.map(|a| a.1), added(&ha.p4lat).map(|a| a.1)),
        ratio(a_pg.map(|a| a.1), added(&ng.p4lat).map(|a| a.1)),
        direct.as_ref().map_or("—".into(), |d| format!("p50 {:.3} / p99 {:.3} ms", d.1.p50_us / 1000.0, d.1.p99_us / 1000.0)),
        yes_no(a_pg.map(|a| a.1 <= 1000.0)),
    );
    // P5
    let mem = |c: &Cell<Memory>, i: usize| {
        show(c, inst[i], |m| {
            let f = if m.fail > 0 {
                format!(", {} open, {} failed", m.open, m.fail)
            } else {
                String::new()
            };
            format!(
                "{:.1} KiB ({} → {} MiB{f})",
                m.kib_per_conn,
                m.before_kib / 1024,
                m.after_kib / 1024
            )
        })
    };
    let mper = |c: &Cell<Memory>| ok(c).map(|m| m.kib_per_conn);
    let p5 = mper(&pg.p5);
    let _ = writeln!(
        t,
        "| P5 | resident memory per idle TLS connection (after 1 GET), {} connections | {} | {} | {} | {} | {} | — | ≤ 1.0× HAProxy | {} |",
        opts.idle,
        mem(&pg.p5, 0), mem(&ha.p5, 1), mem(&ng.p5, 2),
        ratio(p5, mper(&ha.p5)), ratio(p5, mper(&ng.p5)),
        yes_no(p5.zip(mper(&ha.p5)).map(|(a, b)| a <= b)),
    );
    // P6
    let st = |c: &Cell<Storm>, i: usize, p1: Option<f64>| {
        show(c, inst[i], |s| {
            let e = p1.map_or(String::new(), |r| format!("; N/P1 {:.1} s", s.n as f64 / r));
            format!("{:.1} s, {} failed{e}", s.secs, s.fail)
        })
    };
    let ssecs = |c: &Cell<Storm>| ok(c).filter(|s| s.ok > 0).map(|s| s.secs);
    let p6 = ok(&pg.p6);
    let _ = writeln!(
        t,
        "| P6 | reconnect storm: {} clients at once, TLS 1.0 AES128-SHA + 1 GET; time until all served | {} | {} | {} | {} | {} | — | 0 failures, time ≤ 1.2 × N/P1 | {} |",
        opts.storm,
        st(&pg.p6, 0, p1), st(&ha.p6, 1, per(&ha.p1)), st(&ng.p6, 2, per(&ng.p1)),
        ratio(ssecs(&pg.p6), ssecs(&ha.p6)), ratio(ssecs(&pg.p6), ssecs(&ng.p6)),
        yes_no(p6.zip(p1).map(|(s, r)| s.fail == 0 && s.secs <= 1.2 * s.n as f64 / r)),
    );

    let mut out = String::new();
    let _ = writeln!(out, "## provgate vs HAProxy vs nginx: handshake storm\n");
    for m in &env.machine {
        let _ = writeln!(out, "- {m}");
    }
    let _ = writeln!(out, "\n{t}");
    let _ = writeln!(out, "Ratios: throughput rows provgate ÷ other (higher is better), in brackets the same per second of the proxy's own CPU time (its core can be shared with other work on this machine); P4 lat (added p99), P5, P6 (time): provgate ÷ other (lower is better). `· N% CPU` = share of its core the proxy used during the measured window.\n");
    for n in &env.notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

// ------------------------------------------------------------------------------------------
// Main

fn first_line(cmd: &str, args: &[&str], grep: &str) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| l.contains(grep))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn machine_info(nproc: usize) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = vec![
        format!("CPU: {cpu}; nproc {nproc}; kernel {}", kernel.trim()),
        format!(
            "load average at start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!(
            "provgate {} (target/release), legacy engine {}; rustls 0.23 (ring) modern engine",
            env!("CARGO_PKG_VERSION"),
            openssl::version::version()
        ),
    ];
    if let Some(h) = which("haproxy") {
        let h = h.display().to_string();
        v.push(format!(
            "{}; {}",
            first_line(&h, &["-v"], "version"),
            first_line(&h, &["-vv"], "Running on OpenSSL")
        ));
    }
    if let Some(n) = which("nginx") {
        let n = n.display().to_string();
        v.push(format!(
            "{}; {}",
            first_line(&n, &["-v"], "version"),
            first_line(&n, &["-V"], "OpenSSL")
        ));
    }
    v
}

fn pin_self(cpu: usize) -> Result<()> {
    let st = Command::new("taskset")
        .args(["-cp", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux) to pin the load generator")?;
    if !st.success() {
        bail!("taskset -cp {cpu} {} failed", std::process::id());
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("storm: {e:#}");
            return ExitCode::from(2);
        }
    };
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Pin before the runtime exists, so every thread of this process stays on core 1.
    if nproc >= 2 {
        if let Err(e) = pin_self(1) {
            eprintln!("storm: {e:#}");
            return ExitCode::FAILURE;
        }
    } else {
        eprintln!("storm: only one CPU: proxies and load generator share it; numbers are not comparable with the goals");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storm: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(opts, nproc) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: impl AsRef<str>) {
    eprintln!(
        "[storm {:>7.1}s] {}",
        started().elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn run(mut opts: Opts, nproc: usize) -> Result<()> {
    started();
    let mut early_notes = Vec::new();
    if let Some(l) = fd_limit() {
        // Every client holds one descriptor here and one in the proxy; stay under the limit.
        let cap = l.saturating_sub(2000) as usize;
        if cap < 100 {
            bail!("open-file limit {l} is too low: run through ./bench/run.sh (it raises ulimit -n) or `ulimit -n 200000`");
        }
        // P5 keeps every connection open at once: with HAProxy in the run, stay under the
        // maxconn it can be given (the same count for all three columns).
        let idle_cap = if opts.only.contains(&Kind::Haproxy) {
            cap.min(haproxy_maxconn().saturating_sub(50) as usize)
        } else {
            cap
        };
        for (what, n, cap) in [
            ("P6 storm clients", &mut opts.storm, cap),
            ("P5 idle connections", &mut opts.idle, idle_cap),
        ] {
            if *n > cap {
                let msg = format!(
                    "{what} capped at {cap} (requested {n}): the open-file limit is {l} and cannot be raised here (ulimit -Hn); HAProxy maxconn {}",
                    haproxy_maxconn(),
                    n = *n
                );
                progress(&msg);
                early_notes.push(msg);
                *n = cap;
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("provgate-storm-")
        .tempdir()?;
    progress(format!("work dir {}", dir.path().display()));
    let m = material(dir.path()).context("generating the certificate and DH parameters")?;
    let machine = machine_info(nproc);
    for l in &machine {
        progress(l);
    }

    progress("ceiling: RSA-2048 sign and DH-1024 on one core (in-process)");
    let ceil = ceiling(
        &m.key_obj,
        if opts.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        },
    )?;
    progress(format!(
        "ceiling: RSA-2048 sign {:.0}/s, DH-1024 keygen+derive {:.0}/s",
        ceil.rsa_sign_s, ceil.dh_s
    ));

    let backend = spawn_backend().await?;
    progress(format!("backend on {backend}"));

    let rsa_ctx = Arc::new(client_context(Tls::V10("AES128-SHA"))?);
    let dhe_ctx = Arc::new(client_context(Tls::V10("DHE-RSA-AES128-SHA"))?);
    let tls13_ctx = Arc::new(client_context(Tls::V13)?);

    let probes = Probes {
        legacy: rsa_ctx.clone(),
        modern: tls13_ctx.clone(),
    };

    // Set up and start every proxy; a missing one is a skipped column.
    let mut proxies: Vec<Proxy> = Vec::new();
    let mut cols: Vec<(Kind, bool, Col)> = Vec::new();
    for &k in &opts.only {
        match setup_proxy(k, dir.path(), &m, backend) {
            Ok(mut p) => {
                p.start(&probes)
                    .await
                    .with_context(|| format!("starting {}", k.title()))?;
                progress(format!(
                    "{} ready on {} (legacy) and {} (modern), pid {:?}",
                    k.title(),
                    p.legacy,
                    p.modern,
                    p.pid()
                ));
                proxies.push(p);
                cols.push((k, true, Col::default()));
            }
            Err(e) if k != Kind::Provgate && e.to_string().contains("not installed") => {
                progress(format!("{}: {e}; column skipped", k.title()));
                cols.push((k, false, Col::default()));
            }
            Err(e) => return Err(e),
        }
    }
    let col = |cols: &[(Kind, bool, Col)], k: Kind| -> usize {
        cols.iter().position(|c| c.0 == k).unwrap_or(0)
    };

    // P1-P3: closed-loop full handshakes (warm-up first, not counted).
    let rows: [(&str, &Arc<SslContext>, bool, &str, &str); 3] = [
        ("P1", &rsa_ctx, false, "TLSv1", "AES128-SHA"),
        ("P2", &dhe_ctx, false, "TLSv1", "DHE-RSA-AES128-SHA"),
        ("P3", &tls13_ctx, true, "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ];
    for (row, ctx, modern, version, cipher) in rows {
        for p in &proxies {
            let addr = if modern { p.modern } else { p.legacy };
            let r = match expect_negotiated(addr, ctx, version, cipher).await {
                Err(e) => Err(format!("{e:#}")),
                Ok(()) => {
                    closed_loop(addr, ctx, opts.concurrency, opts.warmup).await;
                    let cpu = CpuMeter::start(p);
                    let mut r = closed_loop(addr, ctx, opts.concurrency, opts.duration).await;
                    r.busy = cpu.stop(p);
                    if r.ok == 0 {
                        Err(r.first_error.clone().unwrap_or_else(|| "no success".into()))
                    } else {
                        Ok(r)
                    }
                }
            };
            progress(format!("{row} {}: {:?}", p.kind.title(), r));
            let i = col(&cols, p.kind);
            let c = &mut cols[i].2;
            match row {
                "P1" => c.p1 = Some(r),
                "P2" => c.p2 = Some(r),
                _ => c.p3 = Some(r),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // P4: keep-alive throughput, then latency paced at half the lowest peak.
    let direct_peak = {
        let conns = open_plain_conns(backend, opts.keepalive_conns).await?;
        keepalive_run(conns, opts.duration.min(Duration::from_secs(5)), None)
            .await
            .0
            .per_s
    };
    progress(format!(
        "P4 direct to backend (plain HTTP): {direct_peak:.0}/s"
    ));
    let mut peaks = Vec::new();
    for p in &proxies {
        let r = match open_tls_conns(p.legacy, &rsa_ctx, opts.keepalive_conns).await {
            Ok(conns) => {
                let cpu = CpuMeter::start(p);
                let (mut ka, _) = keepalive_run(conns, opts.duration, None).await;
                ka.busy = cpu.stop(p);
                peaks.push(ka.per_s);
                Ok(ka)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        progress(format!("P4 {}: {:?}", p.kind.title(), r));
        let i = col(&cols, p.kind);
        cols[i].2.p4 = Some(r);
    }
    let p4_rate = peaks
        .iter()
        .cloned()
        .reduce(f64::min)
        .map(|r| (r / 2.0).max(100.0));
    let mut direct = None;
    if let Some(rate) = p4_rate {
        let conns = open_plain_conns(backend, opts.keepalive_conns).await?;
        let (ka, lat) = keepalive_run(conns, opts.duration, Some(rate)).await;
        let l = percentiles(lat, ka.fail)?;
        progress(format!("P4 latency direct at {rate:.0}/s: {l:?}"));
        direct = Some((direct_peak, l));
        for p in &proxies {
            let r = match open_tls_conns(p.legacy, &rsa_ctx, opts.keepalive_conns).await {
                Ok(conns) => {
                    let (ka, lat) = keepalive_run(conns, opts.duration, Some(rate)).await;
                    percentiles(lat, ka.fail).map_err(|e| format!("{e:#}"))
                }
                Err(e) => Err(format!("{e:#}")),
            };
            progress(format!(
                "P4 latency {} at {rate:.0}/s: {:?}",
                p.kind.title(),
                r
            ));
            let i = col(&cols, p.kind);
            cols[i].2.p4lat = Some(r);
        }
    }

    // P5: memory per idle connection, on a freshly started proxy.
    for p in proxies.iter_mut() {
        let r: std::result::Result<Memory, String> = async {
            p.start(&probes).await?;
            // Warm-up: touch the handshake/proxy paths and the backend pool once.
            closed_loop(
                p.legacy,
                &rsa_ctx,
                opts.concurrency,
                Duration::from_millis(300),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let before = p.rss_kib()?;
            let (conns, fail, err) =
                open_many(p.legacy, &rsa_ctx, opts.idle, opts.concurrency).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = p.rss_kib()?;
            let open = conns.len();
            drop(conns);
            if open == 0 {
                bail!("no connection opened: {}", err.unwrap_or_default());
            }
            Ok(Memory {
                kib_per_conn: after.saturating_sub(before) as f64 / open as f64,
                before_kib: before,
                after_kib: after,
                open,
                fail,
            })
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        progress(format!("P5 {}: {:?}", p.kind.title(), r));
        let i = col(&cols, p.kind);
        cols[i].2.p5 = Some(r);
    }

    // P6: the reconnect storm, on a freshly started proxy.
    for p in proxies.iter_mut() {
        let r: std::result::Result<Storm, String> = async {
            p.start(&probes).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = storm(p.legacy, &rsa_ctx, opts.storm).await;
            if s.ok == 0 {
                bail!("no client served: {}", s.first_error.unwrap_or_default());
            }
            Ok(s)
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        progress(format!("P6 {}: {:?}", p.kind.title(), r));
        let i = col(&cols, p.kind);
        cols[i].2.p6 = Some(r);
        p.stop();
    }
    drop(proxies);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut notes = early_notes;
    notes.extend([
        format!(
            "{} mode: {} s per throughput row after a {} ms warm-up, {} concurrent clients (P1-P3), {} keep-alive connections (P4), {} idle connections (P5), {} storm clients (P6)",
            if opts.quick { "--quick" } else { "full" },
            opts.duration.as_secs(),
            opts.warmup.as_millis(),
            opts.concurrency,
            opts.keepalive_conns,
            opts.idle,
            opts.storm
        ),
        "proxies pinned to core 0 (`taskset -c 0`, one worker each), load generator + backend on core 1 (one tokio thread); all on 127.0.0.1".into(),
        format!("load average at end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
    ]);
    for (k, _, c) in &cols {
        for (row, r) in [("P1", &c.p1), ("P2", &c.p2), ("P3", &c.p3)] {
            if let Some(Ok(r)) = r {
                if let Some(e) = &r.first_error {
                    notes.push(format!("{row} {}: first failure: {e}", k.title()));
                }
            }
        }
        let mut gen = Vec::new();
        for (row, b) in [
            ("P1", ok(&c.p1).map(|r| r.busy)),
            ("P2", ok(&c.p2).map(|r| r.busy)),
            ("P3", ok(&c.p3).map(|r| r.busy)),
            ("P4", ok(&c.p4).map(|r| r.busy)),
        ] {
            if let Some(g) = b.and_then(|b| b.loadgen) {
                gen.push(format!("{row} {:.0}%", g * 100.0));
            }
        }
        if !gen.is_empty() {
            notes.push(format!(
                "load generator + backend core busy while measuring {}: {}",
                k.title(),
                gen.join(", ")
            ));
        }
        if let Some(Ok(l)) = &c.p4lat {
            notes.push(format!(
                "P4 lat {}: {} samples, {} failed",
                k.title(),
                l.sent,
                l.fail
            ));
        }
        if let Some(Ok(s)) = &c.p6 {
            if let Some(e) = &s.first_error {
                notes.push(format!("P6 {}: first failure: {e}", k.title()));
            }
        }
    }
    let env = Env { machine, notes };
    let out = render(&opts, &env, &cols, &ceil, p4_rate, &direct);
    println!("\n{out}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-results.md");
    std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    progress(format!("written to {}", path.display()));
    Ok(())
}
