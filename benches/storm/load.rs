//! The load generator (OpenSSL clients: full handshakes, GETs, closed loops, paced keep-alive
//! requests, idle connections, the storm) and the plain-HTTP backend every proxy forwards to.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
// Backend: keep-alive HTTP/1.1, one fixed small body (after `delay`), and the firmware image.

/// The firmware image's path (P8, P9) and size: 16 MiB of fixed bytes, with Content-Length.
const FIRMWARE_PATH: &str = "/firmware.bin";
pub const FIRMWARE_LEN: usize = 16 << 20;
const FIRMWARE_REQUEST: &[u8] =
    b"GET /firmware.bin HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: provgate-bench\r\n\r\n";

fn firmware() -> Bytes {
    static IMAGE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            Bytes::from(
                (0..FIRMWARE_LEN)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<_>>(),
            )
        })
        .clone()
}

/// How many of something a backend has now (open connections, requests being answered), and
/// the most there were at once since `reset_max`.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(self: &Arc<Self>) -> GaugeGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self.clone())
    }
    /// Start a new maximum from the count now.
    pub fn reset_max(&self) {
        self.max
            .store(self.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// One counted in a `Gauge`; counted down when dropped (a connection's task ends, an answer
/// is returned).
struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running backend: its address, its open connections and the requests it is answering.
pub struct Backend {
    pub addr: SocketAddr,
    pub conns: Arc<Gauge>,
    pub requests: Arc<Gauge>,
}

impl Backend {
    pub fn reset_max(&self) {
        self.conns.reset_max();
        self.requests.reset_max();
    }
}

/// The harness's backend; `delay` is slept before every answer except the firmware image.
pub async fn spawn_backend(delay: Duration) -> Result<Backend> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (conns, requests) = (Arc::new(Gauge::default()), Arc::new(Gauge::default()));
    let (count, busy) = (conns.clone(), requests.clone());
    firmware(); // built now, not inside the first measured download
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
            let open = count.enter();
            let busy = busy.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answering = busy.enter();
                    async move {
                        let r = answer(req, delay).await;
                        drop(answering);
                        r
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
                drop(open);
            });
        }
    });
    Ok(Backend {
        addr,
        conns,
        requests,
    })
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    delay: Duration,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    if req.uri().path() == FIRMWARE_PATH {
        let mut r = hyper::Response::new(Full::new(firmware()));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(r);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(BODY)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    Ok(r)
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

/// `SSL_OP_NO_ENCRYPT_THEN_MAC` (OpenSSL `SSL_OP_BIT(19)`; the openssl crate has no name for it).
const NO_ENCRYPT_THEN_MAC: SslOptions = SslOptions::from_bits_retain(1 << 19);

/// The TLS extension number of encrypt-then-MAC (RFC 7366).
const EXT_ENCRYPT_THEN_MAC: u16 = 22;

pub fn client_context(tls: Tls) -> Result<SslContext> {
    let mut b = SslContext::builder(SslMethod::tls_client())?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_security_level(0);
    // Full handshakes only: no tickets, no client session cache, and set_session is never called.
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_COMPRESSION);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    match tls {
        Tls::V10(cipher) => {
            // Like the devices (their firmware predates RFC 7366): no encrypt-then-MAC offer,
            // so every proxy runs its MAC-then-encrypt CBC record code.
            b.set_options(NO_ENCRYPT_THEN_MAC);
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

/// A response's status line and framing; `end` = where its body starts in the buffer.
struct Head {
    status: u16,
    len: usize,
    chunked: bool,
    end: usize,
}

/// Read a response's headers into `buf` (which may then hold the start of the body too).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<Head> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let end = loop {
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
    let head = std::str::from_utf8(&buf[..end]).context("response headers not UTF-8")?;
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
    Ok(Head {
        status,
        len,
        chunked,
        end,
    })
}

/// Read one HTTP/1.1 response (Content-Length or chunked); returns the status code.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<u16> {
    let h = read_head(s, buf).await?;
    let mut chunk = [0u8; 4096];
    loop {
        let done = if h.chunked {
            buf.len() >= h.end + 5 && buf.ends_with(b"0\r\n\r\n")
        } else {
            buf.len() >= h.end + h.len
        };
        if done {
            return Ok(h.status);
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

/// Connect, one GET over plain HTTP, read the response; the connection is then dropped.
pub async fn plain_one_shot(addr: SocketAddr, limit: Duration) -> Result<()> {
    tokio::time::timeout(limit, async {
        let mut s = tcp(addr).await.context("connect")?;
        let mut buf = Vec::with_capacity(1024);
        request(&mut s, &mut buf).await
    })
    .await
    .map_err(|_| anyhow!("timed out after {limit:?}"))?
}

/// Whether a client context's ClientHello offers encrypt-then-MAC: one handshake attempt
/// against a local listener that reads the hello and closes.
pub async fn offers_encrypt_then_mac(ctx: &SslContext) -> Result<bool> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let ssl = Ssl::new(ctx)?;
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await?;
        let mut s = SslStream::new(ssl, tcp)?;
        // Fails when the listener closes; only the hello it sent matters.
        let _ = Pin::new(&mut s).connect().await;
        Ok::<_, anyhow::Error>(())
    });
    let hello = tokio::time::timeout(Duration::from_secs(5), async {
        let (mut tcp, _) = listener.accept().await?;
        read_hello_record(&mut tcp).await
    })
    .await
    .map_err(|_| anyhow!("no ClientHello within 5 s"));
    client.abort();
    hello_extensions(&hello??).map(|exts| exts.contains(&EXT_ENCRYPT_THEN_MAC))
}

/// The first TLS record (the ClientHello), without its 5-byte header.
async fn read_hello_record(tcp: &mut TcpStream) -> Result<Vec<u8>> {
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header).await?;
    if header[0] != 22 {
        bail!("first record is not a handshake record");
    }
    let mut body = vec![0u8; u16::from_be_bytes([header[3], header[4]]) as usize];
    tcp.read_exact(&mut body).await?;
    Ok(body)
}

/// The extension numbers of a ClientHello handshake message (in one record).
fn hello_extensions(msg: &[u8]) -> Result<Vec<u16>> {
    let short = || anyhow!("ClientHello too short");
    let u16_at = |i: usize| -> Result<usize> {
        Ok(u16::from_be_bytes([
            *msg.get(i).ok_or_else(short)?,
            *msg.get(i + 1).ok_or_else(short)?,
        ]) as usize)
    };
    if msg.first() != Some(&1) {
        bail!("not a ClientHello");
    }
    // type (1), length (3), client_version (2), random (32), then session_id<0..32>.
    let mut i = 38;
    i += 1 + *msg.get(i).ok_or_else(short)? as usize;
    i += 2 + u16_at(i)?; // cipher_suites
    i += 1 + *msg.get(i).ok_or_else(short)? as usize; // compression_methods
    let end = (i + 2 + u16_at(i)?).min(msg.len());
    i += 2;
    let mut exts = Vec::new();
    while i + 4 <= end {
        exts.push(u16_at(i)? as u16);
        i += 4 + u16_at(i + 2)?;
    }
    Ok(exts)
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

// ------------------------------------------------------------------------------------------
// Firmware downloads (P8, P9)

#[derive(Clone, Debug)]
pub struct Download {
    /// Body bytes received before the deadline, per second, in MB (10^6 bytes).
    pub mb_s: f64,
    pub busy: Busy,
    /// Downloads completed before the deadline.
    pub done: u64,
    pub fail: u64,
    pub first_error: Option<String>,
}

/// `GET /firmware.bin` on an open connection; every body byte read is added to `got`.
async fn fetch_firmware<S>(s: &mut S, got: &AtomicU64) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(FIRMWARE_REQUEST).await?;
    let mut buf = Vec::with_capacity(4096);
    let h = read_head(s, &mut buf).await?;
    if h.status != 200 {
        bail!("HTTP status {}", h.status);
    }
    if h.chunked || h.len != FIRMWARE_LEN {
        bail!(
            "firmware response: expected Content-Length {FIRMWARE_LEN}, got {} (chunked: {})",
            h.len,
            h.chunked
        );
    }
    let mut have = buf.len() - h.end;
    got.fetch_add(have as u64, Ordering::Relaxed);
    let mut chunk = vec![0u8; 64 << 10];
    while have < h.len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed after {have} of {} body bytes", h.len);
        }
        have += n;
        got.fetch_add(n as u64, Ordering::Relaxed);
    }
    if have > h.len {
        bail!("{have} body bytes, more than Content-Length {}", h.len);
    }
    Ok(())
}

/// One download on a new connection: TLS when `ctx` is given, else plain HTTP.
async fn download_once(addr: SocketAddr, ctx: Option<&SslContext>, got: &AtomicU64) -> Result<()> {
    match ctx {
        Some(ctx) => fetch_firmware(&mut handshake(addr, ctx).await?, got).await,
        None => fetch_firmware(&mut tcp(addr).await.context("connect")?, got).await,
    }
}

/// `conc` clients downloading the firmware image back to back (a new connection each, as a
/// device does) for `dur`; bytes received before the deadline count, also of unfinished
/// downloads.
pub async fn download_loop(
    addr: SocketAddr,
    ctx: Option<Arc<SslContext>>,
    conc: usize,
    dur: Duration,
) -> Download {
    let deadline = tokio::time::Instant::now() + dur;
    let got = Arc::new(AtomicU64::new(0));
    let (done, fail, errs) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Errors::default()),
    );
    let mut set = JoinSet::new();
    for _ in 0..conc {
        let (ctx, got, done, fail, errs) = (
            ctx.clone(),
            got.clone(),
            done.clone(),
            fail.clone(),
            errs.clone(),
        );
        set.spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let one = tokio::time::timeout(
                    Duration::from_secs(30),
                    download_once(addr, ctx.as_deref(), &got),
                );
                match tokio::time::timeout_at(deadline, one).await {
                    Err(_) => break,
                    Ok(Ok(Ok(()))) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        fail.fetch_add(1, Ordering::Relaxed);
                        errs.note(&match r {
                            Ok(Err(e)) => e,
                            _ => anyhow!("download timed out after 30 s"),
                        });
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    Download {
        mb_s: got.load(Ordering::Relaxed) as f64 / 1e6 / dur.as_secs_f64(),
        busy: Busy::default(),
        done: done.load(Ordering::Relaxed),
        fail: fail.load(Ordering::Relaxed),
        first_error: errs.take(),
    }
}
