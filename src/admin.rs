//! The admin listener: `/` (the status page, HTML, see [`crate::status_page`]), `/healthz`
//! (the process is up), `/readyz` (it accepts traffic; 503 as soon as draining starts),
//! `/metrics` (Prometheus text) and `/fingerprints` (JSON of recently seen ClientHello
//! fingerprints with the User-Agents seen over them; MACs and serials masked unless
//! `admin.show_device_ids`, see [`crate::fingerprint::mask_device_ids`]).
//!
//! The port is plain HTTP without authentication, so it defends itself (see [`config::AdminOptions`]):
//! - `admin.allow`: connections from other addresses are closed before a byte is read;
//! - `admin.max_connections` (64): at the cap a new connection is accepted and closed at once,
//!   so the admin port never holds more descriptors than that, whatever clients do; it does not
//!   count against `limits.max_connections`, and device listeners do not count against it;
//! - `admin.header_timeout` (5 s): a request line and headers must arrive within this, counted
//!   from accept for the first request (a silent connection is closed too) and from the first
//!   byte for later ones on a keep-alive connection;
//! - `admin.idle_timeout` (30 s): a keep-alive connection with no request in progress, or one
//!   whose peer stops reading a response, is closed after this;
//! - every connection ends after [`MAX_CONNECTION_AGE`] (or `idle_timeout + header_timeout`
//!   if longer): a response in progress is finished, then the connection is closed.
//!
//! Refused connections are counted as `provgate_refused_connections_total{listener="(admin)",
//! reason="listener_limit"|"denied"}` and logged at most once a second.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::check::Report;
use crate::config;
use crate::metrics::Telemetry;
use crate::snapshot::Snapshot;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Whatever a connection does, it is closed after this long (or after `idle_timeout +
/// header_timeout`, if that is longer).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// The `listener` label of the admin port's refusals in `provgate_refused_connections_total`.
pub const METRIC_LISTENER: &str = "(admin)";

/// The status page reuses a `check` report of the running snapshot for this long (a new
/// snapshot is checked at once): the check reads files and builds TLS contexts.
pub const REPORT_TTL: Duration = Duration::from_secs(30);

/// What the answers are made from.
struct State {
    telemetry: Arc<Telemetry>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The last check report; one check at a time.
    report: tokio::sync::Mutex<Option<CachedReport>>,
}

/// A check report, of which snapshot, made when.
struct CachedReport {
    of: Weak<Snapshot>,
    at: Instant,
    report: Arc<Report>,
}

impl State {
    /// A check report of the running snapshot, at most [`REPORT_TTL`] old.
    async fn report(&self) -> Option<Arc<Report>> {
        let snapshot = self.snapshot.load_full();
        let mut cached = self.report.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.of.upgrade().is_some_and(|s| Arc::ptr_eq(&s, &snapshot))
                && c.at.elapsed() < REPORT_TTL
            {
                return Some(c.report.clone());
            }
        }
        let of = Arc::downgrade(&snapshot);
        let report = tokio::task::spawn_blocking(move || {
            crate::check::check(&snapshot, crate::check::unix_now())
        })
        .await
        .ok()
        .map(Arc::new)?;
        *cached = Some(CachedReport {
            of,
            at: Instant::now(),
            report: report.clone(),
        });
        Some(report)
    }
}

/// Serve until `stop`. `draining` only changes the answers: the admin port stays up through
/// the whole drain so probes and scrapes see it (`stop` is cancelled once the drain is over).
pub async fn serve(
    listener: TcpListener,
    settings: config::AdminOptions,
    telemetry: Arc<Telemetry>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    draining: ShutdownWatch,
    stop: CancellationToken,
) {
    let state = Arc::new(State {
        telemetry: telemetry.clone(),
        snapshot,
        report: tokio::sync::Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let limits = Limits {
        header: settings.header_timeout,
        idle: settings.idle_timeout,
    };
    let max_age = MAX_CONNECTION_AGE.max(settings.idle_timeout + settings.header_timeout);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "admin accept failed");
                if is_fd_exhaustion(&e) {
                    // Back off instead of spinning; the descriptors are freed elsewhere.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        if !settings.admits(peer.ip()) {
            refuse(&telemetry, tcp, peer, "denied");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&telemetry, tcp, peer, "listener_limit");
            continue;
        };
        let (draining, state, stop) = (draining.clone(), state.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            connection(tcp, peer, limits, max_age, draining, state, stop).await;
        });
    }
}

/// Close at once (nothing is read or written) and count it.
fn refuse(t: &Telemetry, tcp: TcpStream, peer: SocketAddr, reason: &'static str) {
    drop(tcp);
    t.metrics.refused(METRIC_LISTENER, reason);
    if t.refusal_log.allow() {
        let why = match reason {
            "denied" => "not in admin.allow",
            _ => "admin.max_connections reached",
        };
        warn!(%peer, reason, "admin connection refused: {why}");
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // ENFILE, EMFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    max_age: Duration,
    draining: ShutdownWatch,
    state: Arc<State>,
    stop: CancellationToken,
) {
    let tracker = Arc::new(Tracker::new());
    let io = Guarded::new(tcp, tracker.clone(), limits);
    let svc = service_fn(move |req: Request<Incoming>| {
        tracker.request();
        let (draining, state, tracker) = (*draining.borrow(), state.clone(), tracker.clone());
        async move {
            let resp = respond(&req, draining, &state).await;
            Ok::<_, Infallible>(resp.map(|inner| TrackedBody { inner, tracker }))
        }
    });
    let conn = http1::Builder::new()
        // Deadlines are `Guarded`'s: hyper's header timer also runs while a keep-alive
        // connection waits for its next request, which would make idle_timeout moot.
        .header_read_timeout(None)
        .max_buf_size(16 * 1024)
        .max_headers(64)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let age = tokio::time::sleep(max_age);
    tokio::pin!(age);
    let result = tokio::select! {
        _ = stop.cancelled() => return,
        r = conn.as_mut() => r,
        _ = &mut age => {
            debug!(%peer, "admin connection reached its maximum age; closing");
            // Finishes a response in progress (still under the deadlines), then closes.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = stop.cancelled() => return,
                r = conn.as_mut() => r,
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "admin connection closed");
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
}

/// Where a connection is, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head that started at this time: `header_timeout` from it.
    Head(Instant),
    /// No request in progress since: `idle_timeout` from it.
    Idle(Instant),
    /// A request was read; its response is produced and written. `idle_timeout` from the last
    /// write progress.
    Busy(Instant),
}

#[derive(Debug)]
struct Tracker {
    state: Mutex<(Phase, bool)>,
}

impl Tracker {
    /// A fresh connection owes its first request head within `header_timeout` of accept.
    fn new() -> Self {
        Tracker {
            state: Mutex::new((Phase::Head(Instant::now()), false)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Phase, &mut bool) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (phase, read_while_busy) = &mut *s;
        f(phase, read_while_busy)
    }

    /// Bytes arrived.
    fn read(&self) {
        self.with(|phase, read_while_busy| match phase {
            Phase::Idle(_) => *phase = Phase::Head(Instant::now()),
            Phase::Busy(_) => *read_while_busy = true,
            Phase::Head(_) => {}
        });
    }

    /// Bytes left: the peer reads.
    fn wrote(&self) {
        self.with(|phase, _| {
            if let Phase::Busy(t) | Phase::Idle(t) = phase {
                *t = Instant::now();
            }
        });
    }

    /// A complete request head was read.
    fn request(&self) {
        self.with(|phase, read_while_busy| {
            *phase = Phase::Busy(Instant::now());
            *read_while_busy = false;
        });
    }

    /// The response was handed over completely. Bytes read meanwhile (a pipelined request)
    /// start the next head's clock now.
    fn response_done(&self) {
        self.with(|phase, read_while_busy| {
            let now = Instant::now();
            *phase = if *read_while_busy {
                Phase::Head(now)
            } else {
                Phase::Idle(now)
            };
            *read_while_busy = false;
        });
    }

    fn deadline(&self, l: Limits) -> (Instant, &'static str) {
        self.with(|phase, _| match *phase {
            Phase::Head(t) => (t + l.header, "admin.header_timeout"),
            Phase::Idle(t) => (t + l.idle, "admin.idle_timeout"),
            Phase::Busy(t) => (t + l.idle, "admin.idle_timeout (peer not reading)"),
        })
    }
}

/// The response body; dropping it (hyper does once the body is written out) ends the request.
struct TrackedBody {
    inner: Full<Bytes>,
    tracker: Arc<Tracker>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.tracker.response_done();
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream with the connection's deadline: whenever reading or writing has to wait,
/// the current phase's deadline is armed, and when it passes the I/O fails (`TimedOut`), which
/// ends the hyper connection and closes the socket.
struct Guarded {
    io: TcpStream,
    tracker: Arc<Tracker>,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Guarded {
    fn new(io: TcpStream, tracker: Arc<Tracker>, limits: Limits) -> Self {
        let (armed, _) = tracker.deadline(limits);
        Guarded {
            io,
            tracker,
            limits,
            timer: Box::pin(tokio::time::sleep_until(armed)),
            armed,
        }
    }

    /// Called when the I/O is pending: the error to fail it with if the deadline has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let (deadline, what) = self.tracker.deadline(self.limits);
        if deadline != self.armed {
            self.timer.as_mut().reset(deadline);
            self.armed = deadline;
        }
        self.timer
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::TimedOut, format!("{what} expired")))
    }

    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.tracker.wrote();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            r => r,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.tracker.read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            r => r,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            r => r,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            r => r,
        }
    }
}

async fn respond(req: &Request<Incoming>, draining: bool, state: &State) -> Response<Full<Bytes>> {
    let t = &state.telemetry;
    let (status, content_type, body) = match req.uri().path() {
        "/" => return status_page(draining, state).await,
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        ),
        "/readyz" => (StatusCode::OK, "text/plain", "ready\n".into()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            t.metrics.render(),
        ),
        "/fingerprints" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&t.fingerprints.snapshot()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// `/`: the HTML status page; never cached, and nothing but inline CSS may load or run.
async fn status_page(draining: bool, state: &State) -> Response<Full<Bytes>> {
    use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
    let (status, body) = match state.report().await {
        Some(report) => (
            StatusCode::OK,
            crate::status_page::render(&crate::status_page::Page {
                report: &report,
                telemetry: &state.telemetry,
                now: std::time::SystemTime::now(),
                draining,
            }),
        ),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "<!DOCTYPE html><title>provgate status</title><p>the status page could not check \
             the running configuration (see the log); /metrics and /fingerprints still answer</p>\n"
                .to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}
