//! The load generator (OpenSSL clients: full handshakes, GETs, closed loops, paced keep-alive
//! requests, idle connections, the storm) and the plain-HTTP backend every proxy forwards to.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use openssl::ssl::{
    Ssl, SslContext, SslMethod, SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_openssl::SslStream;

use crate::proxies::Busy;

const REQUEST: &[u8] =
    b"GET /spa000e08abcdef.cfg HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: provgate-bench\r\n\r\n";
/// What the backend answers to everything (a small SPA profile).
const BODY: &[u8] = b"<flat-profile>\n  <Station_Name>spa-000e08abcdef</Station_Name>\n  \
<Profile_Rule>https://$D/spa$MA.cfg</Profile_Rule>\n  <Resync_Periodic>3600</Resync_Periodic>\n\
</flat-profile>\n";

// ------------------------------------------------------------------------------------------
// Backend: keep-alive HTTP/1.1, one fixed small body.

pub async fn spawn_backend() -> Result<SocketAddr> {
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
pub enum Tls {
    /// TLS 1.0 only, exactly this one cipher suite.
    V10(&'static str),
    /// TLS 1.3 only, TLS_AES_128_GCM_SHA256, X25519 (OpenSSL's first default group).
    V13,
}

pub fn client_context(tls: Tls) -> Result<SslContext> {
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
pub async fn one_shot(addr: SocketAddr, ctx: &SslContext, limit: Duration) -> Result<()> {
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
pub struct Rate {
    pub per_s: f64,
    pub busy: Busy,
    pub ok: u64,
    pub fail: u64,
    pub first_error: Option<String>,
}

/// `conc` tasks doing one_shot in a loop; only exchanges finished before the deadline count.
pub async fn closed_loop(
    addr: SocketAddr,
    ctx: &Arc<SslContext>,
    conc: usize,
    dur: Duration,
) -> Rate {
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

pub async fn expect_negotiated(
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
pub struct KeepAlive {
    pub per_s: f64,
    pub busy: Busy,
    pub fail: u64,
}

#[derive(Clone, Debug)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub sent: usize,
    pub fail: u64,
}

/// Requests over already-open connections until `dur` has passed: closed loop (`rate` None,
/// returns requests/s) or paced at `rate` requests/s in total (returns the latencies).
pub async fn keepalive_run<S>(
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

pub fn percentiles(mut lat: Vec<u32>, fail: u64) -> Result<Latency> {
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

pub async fn open_tls_conns(
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

pub async fn open_plain_conns(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(tcp(addr).await?);
    }
    Ok(v)
}

/// Open `n` TLS connections (handshake + one request each, `conc` at a time) and hold them.
pub async fn open_many(
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
pub struct Storm {
    pub n: usize,
    pub ok: usize,
    pub fail: usize,
    pub secs: f64,
    pub first_error: Option<String>,
}

/// `n` clients at once: connect + full handshake + one GET each. The time is until the last
/// success; each client gives up after 90 s.
pub async fn storm(addr: SocketAddr, ctx: &Arc<SslContext>, n: usize) -> Storm {
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
