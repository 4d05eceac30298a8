//! The HTTP phase: pingora's `http_proxy()` serves our decrypted [`ProxyStream`]s and forwards
//! each request to the route's backend over plain HTTP/1.1 with keep-alive.

pub mod stream;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, HttpProxy, ProxyHttp, Session};

pub use stream::{ConnInfo, ProxyStream};

use crate::identity::{self, ClientIdentity, Verify};
use crate::metrics::{self, Telemetry};
use crate::route::IdentityRt;

/// Headers provgate owns: any copy the client sends is dropped before forwarding.
pub const FORWARDING_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// The [`ProxyHttp`] implementation. Everything per connection comes from the stream's
/// [`ConnInfo`]; what it holds is process-wide (metrics, fingerprints).
#[derive(Debug)]
pub struct Provgate {
    telemetry: Arc<Telemetry>,
}

/// Per-request context.
#[derive(Debug)]
pub struct RequestCtx {
    conn: Option<Arc<ConnInfo>>,
    started: Instant,
    upstream_started: Option<Instant>,
    body_bytes: u64,
}

pub type ProxyApp = HttpProxy<Provgate>;

/// The process-wide pingora application; its upstream connection pool is shared by all
/// listeners.
pub fn app(telemetry: Arc<Telemetry>) -> Arc<ProxyApp> {
    let conf = Arc::new(ServerConf::default());
    Arc::new(pingora_proxy::http_proxy(&conf, Provgate { telemetry }))
}

fn conn_info(session: &Session) -> Option<Arc<ConnInfo>> {
    session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<ProxyStream>())
        .map(|s| s.info().clone())
}

fn missing_info() -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        "connection carries no provgate facts (not a ProxyStream)",
    )
}

#[async_trait]
impl ProxyHttp for Provgate {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            conn: None,
            started: Instant::now(),
            upstream_started: None,
            body_bytes: 0,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        ctx.conn = conn_info(session);
        if let Some(conn) = &ctx.conn {
            conn.disarm_header_deadline();
            session.set_keepalive(Some(conn.limits.keepalive_timeout.as_secs().max(1)));
        }
        Ok(())
    }

    /// `require_mac_match`: a path naming a MAC other than the verified certificate's is
    /// answered 403 here; the backend never sees it.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let conn = ctx.conn.as_ref().ok_or_else(missing_info)?;
        if let Some(status) = over_limits(session.req_header(), &conn.limits) {
            tracing::warn!(
                listener = %conn.listener, peer = %conn.peer, status,
                "request refused: over the configured request limits"
            );
            session.respond_error(status).await?;
            return Ok(true);
        }
        if !conn.route.require_mac_match {
            return Ok(false);
        }
        let path = session.req_header().uri.path().to_string();
        let Some(wanted) = mac_in_path(&conn.route.identity.mac_path, &path) else {
            return Ok(false);
        };
        let cert_mac = match (&conn.identity.verify, conn.identity.leaf()) {
            (Verify::Success, Some(leaf)) => identity::device(leaf).mac,
            _ => None,
        };
        if cert_mac.as_deref() == Some(wanted.as_str()) {
            return Ok(false);
        }
        tracing::warn!(
            listener = %conn.listener, route = %conn.route.name, peer = %conn.peer, %path,
            path_mac = %wanted, cert_mac = cert_mac.as_deref().unwrap_or("-"),
            client_cert = %conn.identity.verify,
            "refused: the path's MAC is not the client certificate's (require_mac_match)"
        );
        session.respond_error(403).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let conn = ctx.conn.as_ref().ok_or_else(missing_info)?;
        let backend = &conn.route.backend;
        let mut peer = HttpPeer::new(backend.address, false, String::new());
        peer.options.connection_timeout = Some(backend.connect_timeout);
        peer.options.total_connection_timeout = Some(backend.connect_timeout);
        peer.options.read_timeout = Some(backend.read_timeout);
        peer.options.write_timeout = Some(backend.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.upstream_started = Some(Instant::now());
        let conn = ctx.conn.as_ref().ok_or_else(missing_info)?;
        for name in FORWARDING_HEADERS {
            upstream.remove_header(name);
        }
        let client_ip = conn.peer.ip().to_canonical().to_string();
        upstream.insert_header("X-Forwarded-For", &client_ip)?;
        upstream.insert_header("X-Real-IP", &client_ip)?;
        upstream.insert_header("X-Forwarded-Proto", "https")?;
        upstream.insert_header("X-Forwarded-Port", conn.local.port().to_string())?;
        let names = &conn.route.identity.headers;
        for name in names.all() {
            upstream.remove_header(name);
        }
        for (name, value) in identity_headers(&conn.identity, &conn.route.identity) {
            upstream.insert_header(name.to_string(), value)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = status_for(e);
        if code > 0 {
            if let Err(err) = session.respond_error(code).await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let conn = ctx.conn.as_ref().ok_or_else(missing_info)?;
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > conn.limits.max_request_body_bytes {
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body larger than limits.max_request_body_bytes",
            ));
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(conn) = &ctx.conn {
            // The next request on this connection gets the idle time plus the header time.
            conn.arm_header_deadline(conn.limits.keepalive_timeout + conn.limits.header_timeout);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let (listener, route, peer) = match &ctx.conn {
            Some(c) => (
                c.listener.to_string(),
                c.route.name.to_string(),
                c.peer.to_string(),
            ),
            None => Default::default(),
        };
        let elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(conn) = &ctx.conn {
            self.observe(conn, req, status, e, ctx.upstream_started);
        }
        match e {
            None => tracing::info!(
                %listener, %route, %peer, method = %req.method, path = %req.uri.path(),
                status, elapsed_ms, "request"
            ),
            Some(err) => tracing::warn!(
                %listener, %route, %peer, method = %req.method, path = %req.uri.path(),
                status, elapsed_ms, error = %err, "request failed"
            ),
        }
    }
}

impl Provgate {
    /// Count a finished request: status class, backend latency and errors, the device family.
    fn observe(
        &self,
        conn: &ConnInfo,
        req: &RequestHeader,
        status: u16,
        e: Option<&Error>,
        upstream_started: Option<Instant>,
    ) {
        let m = &self.telemetry.metrics;
        let backend: &str = &conn.route.backend.name;
        m.requests
            .with_label_values(&[
                &*conn.listener,
                &*conn.route.name,
                metrics::status_class(status),
            ])
            .inc();
        if let Some(t) = upstream_started {
            match e {
                Some(err) if err.esource() == &ErrorSource::Upstream => {
                    let kind = if status_for(err) == 504 {
                        "timeout"
                    } else {
                        "unreachable"
                    };
                    m.upstream_errors.with_label_values(&[backend, kind]).inc();
                }
                _ => m
                    .upstream_duration
                    .with_label_values(&[backend])
                    .observe(t.elapsed().as_secs_f64()),
            }
        }
        if let Some(ua) = req.headers.get("user-agent").and_then(|v| v.to_str().ok()) {
            let (family, firmware) = metrics::device_bucket(ua);
            m.devices_seen.with_label_values(&[family, &firmware]).inc();
            self.telemetry.fingerprints.user_agent(&conn.ja4, ua);
        }
    }
}

/// 431 for too many or too large headers, 413 for a declared body over the limit.
pub fn over_limits(req: &RequestHeader, limits: &crate::config::Limits) -> Option<u16> {
    let headers = &req.headers;
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri.to_string().len();
    if headers.len() > limits.max_request_headers || header_bytes > limits.max_request_header_bytes
    {
        return Some(431);
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limits.max_request_body_bytes => Some(413),
        _ => None,
    }
}

/// The MAC (lower-case) a request path names, by the configured pattern's first group.
pub fn mac_in_path(pattern: &regex::Regex, path: &str) -> Option<String> {
    pattern
        .captures(path)
        .and_then(|c| c.get(1))
        .and_then(|m| identity::normalize_mac(m.as_str()))
}

/// The identity headers for a connection. The verification result is always sent; the
/// certificate's facts whenever one was presented (so a failure can be diagnosed); the device
/// fields only when it verified, so a backend never acts on an unverified MAC.
pub fn identity_headers<'a>(id: &ClientIdentity, rt: &'a IdentityRt) -> Vec<(&'a str, String)> {
    let h = &rt.headers;
    let mut out = vec![(h.verify.as_str(), id.verify.to_string())];
    let Some(leaf) = id.leaf() else {
        return out;
    };
    out.push((h.subject.as_str(), identity::rfc4514(leaf.subject_name())));
    out.push((h.issuer.as_str(), identity::rfc4514(leaf.issuer_name())));
    out.push((h.serial.as_str(), identity::serial_hex(leaf)));
    out.push((h.fingerprint.as_str(), identity::fingerprint_sha256(leaf)));
    out.push((h.not_after.as_str(), identity::not_after_rfc3339(leaf)));
    out.push((h.cert.as_str(), identity::rfc9440(leaf)));
    if rt.forward_chain && id.chain.len() > 1 {
        out.push((h.cert_chain.as_str(), identity::rfc9440_chain(&id.chain)));
    }
    if id.verify == Verify::Success {
        let d = identity::device(leaf);
        if let Some(mac) = d.mac {
            out.push((h.mac.as_str(), mac));
        }
        if let Some(serial) = d.serial {
            out.push((h.device_serial.as_str(), serial));
        }
        if let Some(product) = d.product {
            out.push((h.product.as_str(), product));
        }
        out.push((h.generic.as_str(), d.generic.to_string()));
    }
    // Header values must be visible ASCII; anything else in a DN is escaped away here.
    out.into_iter()
        .map(|(n, v)| {
            let clean: String = v
                .chars()
                .map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            (n, clean)
        })
        .collect()
}

/// Status for a request that could not be proxied: 504 when the backend was too slow
/// (connect or read timeout), 502 when it could not be reached or answered badly.
pub fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}
