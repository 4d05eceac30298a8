//! The HTTP phase: pingora's `http_proxy()` serves our decrypted [`ProxyStream`]s and forwards
//! each request to the route's backend over plain HTTP/1.1 with keep-alive.
//!
//! This file holds only the pingora hooks, in the order pingora calls them; the policy lives
//! beside it: [`headers`] (what the backend receives), [`mac_match`] (`require_mac_match`),
//! [`limits`] (request limits), [`respond`] (provgate's own error responses).
//!
//! HTTP semantics are pingora's (RFC 9112): keep-alive is what the client asked for
//! (HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`), and a
//! request with both Transfer-Encoding and Content-Length closes its connection after the
//! response. provgate adds: pipelined requests are answered in order, an HTTP/1.0 client
//! never receives chunked encoding, and a request without Host gets one for the backend.

pub mod headers;
pub mod limits;
pub mod mac_match;
pub mod respond;
pub mod stream;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use http::Version;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, HttpProxy, ProxyHttp, Session};

pub use stream::{ConnInfo, ProxyStream};

use crate::access_log::{AccessLog, Entry};

use crate::metrics::Telemetry;

/// provgate's HTTP behaviour, as pingora hooks. Everything per connection comes from the
/// stream's [`ConnInfo`]; what it holds is process-wide (metrics, fingerprints, access log).
#[derive(Debug)]
pub struct ProvisioningProxy {
    telemetry: Arc<Telemetry>,
    access_log: AccessLog,
}

/// Per-request context.
#[derive(Debug)]
pub struct RequestCtx {
    conn: Option<Arc<ConnInfo>>,
    started: Instant,
    started_at: SystemTime,
    upstream_started: Option<Instant>,
    body_bytes: u64,
    /// One of the backend's `max_connections`, held until the request is done.
    backend_slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub type ProxyApp = HttpProxy<ProvisioningProxy>;

/// The process-wide pingora application; its upstream connection pool (`idle_pool` idle
/// connections at most, one LRU for every backend) is shared by all listeners.
pub fn app(telemetry: Arc<Telemetry>, access_log: AccessLog, idle_pool: usize) -> Arc<ProxyApp> {
    let conf = Arc::new(ServerConf {
        upstream_keepalive_pool_size: idle_pool,
        ..ServerConf::default()
    });
    Arc::new(pingora_proxy::http_proxy(
        &conf,
        ProvisioningProxy {
            telemetry,
            access_log,
        },
    ))
}

/// The backend as pingora's peer with its timeouts, built once per route in the snapshot
/// ([`crate::route::Route::upstream`]); each request gets a copy.
pub fn backend_peer(backend: &crate::config::Backend) -> HttpPeer {
    let mut peer = HttpPeer::new(backend.address, false, String::new());
    peer.options.connection_timeout = Some(backend.connect_timeout);
    peer.options.total_connection_timeout = Some(backend.connect_timeout);
    peer.options.read_timeout = Some(backend.read_timeout);
    peer.options.write_timeout = Some(backend.read_timeout);
    peer.options.idle_timeout = Some(backend.idle_timeout);
    peer
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
impl ProxyHttp for ProvisioningProxy {
    type CTX = RequestCtx;

    /// No downstream modules: pingora's default adds a (disabled) response-compression module
    /// whose context is built and run for every request. provgate never compresses: devices
    /// and backends get the bytes as they are.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            conn: None,
            started: Instant::now(),
            started_at: SystemTime::now(),
            upstream_started: None,
            body_bytes: 0,
            backend_slot: None,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        ctx.conn = conn_info(session);
        if let Some(conn) = &ctx.conn {
            conn.disarm_header_deadline();
            // pingora has decided whether this connection stays open (RFC 9112 §9.3); only
            // the idle timeout is ours.
            if session.get_keepalive().is_some() {
                session.set_keepalive(Some(conn.limits.keepalive_timeout.as_secs().max(1)));
            }
            session.set_pipelining_enabled(true);
        }
        Ok(())
    }

    /// Request limits, then `require_mac_match`: a target naming a MAC other than the verified
    /// certificate's is answered 403 here, an ambiguous one 400; the backend never sees either.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let conn = ctx.conn.clone().ok_or_else(missing_info)?;
        if let Some(status) = limits::over_limits(session.req_header(), &conn.limits) {
            tracing::warn!(
                listener = %conn.listener, peer = %conn.peer, status,
                "request refused: over the configured request limits"
            );
            respond::error(session, status, &respond::explain(status, "")).await?;
            return Ok(true);
        }
        if !conn.route.require_mac_match {
            return continue_if_expected(session).await;
        }
        let req = session.req_header();
        if is_form_body(req) {
            tracing::warn!(
                listener = %conn.listener, route = %conn.route.name, peer = %conn.peer,
                target = %req.raw_path().escape_ascii(),
                "refused (415): form body on a require_mac_match route"
            );
            // Backends read form fields like query parameters (PHP's $_REQUEST): a POSTed
            // `mac=` would name a profile the target check never saw.
            let why = "form bodies are not accepted on this route: it checks the device's MAC, \
                       and a form field could name another device";
            respond::error(session, 415, why).await?;
            return Ok(true);
        }
        let target = req.raw_path();
        let wanted = match mac_match::target_macs(target, Some(&conn.route.identity.mac_path)) {
            Ok(mut macs) => {
                if let Some(ua) = req.headers.get(http::header::USER_AGENT) {
                    for mac in mac_match::text_macs(ua.as_bytes()) {
                        if !macs.contains(&mac) {
                            macs.push(mac);
                        }
                    }
                }
                if macs.is_empty() {
                    return continue_if_expected(session).await;
                }
                macs
            }
            Err(ambiguous) => {
                tracing::warn!(
                    listener = %conn.listener, route = %conn.route.name, peer = %conn.peer,
                    target = %target.escape_ascii(), reason = ambiguous.label(),
                    "refused: ambiguous request-target on a require_mac_match route"
                );
                let why = format!(
                    "{ambiguous}; this route checks the device's MAC and refuses targets \
                     whose decoding is ambiguous"
                );
                respond::error(session, 400, &why).await?;
                return Ok(true);
            }
        };
        let cert_mac = &conn.device.mac;
        if wanted.iter().all(|m| Some(m) == cert_mac.as_ref()) {
            return continue_if_expected(session).await;
        }
        tracing::warn!(
            listener = %conn.listener, route = %conn.route.name, peer = %conn.peer,
            target = %target.escape_ascii(), target_macs = %wanted.join(","),
            cert_mac = cert_mac.as_deref().unwrap_or("-"), client_cert = %conn.identity.verify,
            "refused: the request names a MAC that is not the client certificate's \
             (require_mac_match)"
        );
        let why = "the request names a MAC address other than the one in this device's \
                   verified client certificate";
        respond::error(session, 403, why).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let conn = ctx.conn.clone().ok_or_else(missing_info)?;
        // A retried connect keeps the slot it has.
        if let (Some(slots), None) = (&conn.route.backend_slots, &ctx.backend_slot) {
            ctx.backend_slot = Some(self.backend_slot(&conn, slots.clone()).await?);
        }
        Ok(Box::new(conn.route.upstream.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.upstream_started = Some(Instant::now());
        let conn = ctx.conn.as_ref().ok_or_else(missing_info)?;
        headers::strip_spoofable(upstream, conn);
        headers::set_forwarding(upstream, conn)
    }

    /// An HTTP/1.0 client cannot decode chunked encoding: send the body close-delimited (the
    /// connection ends with it) when the backend gave no length.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        if session.req_header().version == Version::HTTP_10
            && response
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            response.remove_header(&http::header::TRANSFER_ENCODING);
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = respond::status_for(e);
        if let Some(code) = code {
            let backend = ctx.conn.as_ref().map_or("", |c| &*c.route.backend.name);
            if let Err(err) = respond::error(session, code, &respond::explain(code, backend)).await
            {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code.unwrap_or(0),
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
        let Some(conn) = ctx.conn.clone() else {
            return;
        };
        // The next request on this connection gets the idle time plus the header time.
        conn.arm_header_deadline(conn.limits.keepalive_timeout + conn.limits.header_timeout);
        if let Some(h1) = session.as_downstream().as_http1() {
            conn.request_was_self_contained(
                h1.get_headers_raw_bytes().len(),
                session.body_bytes_read(),
            );
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        self.observe(&conn, session.req_header(), status, e, ctx.upstream_started);
        ctx.backend_slot = None;
        if self.access_log.enabled() {
            self.access_log(session, &conn, status, ctx);
        }
        if let Some(err) = e {
            let req = session.req_header();
            tracing::warn!(
                listener = %conn.listener, route = %conn.route.name, peer = %conn.peer,
                method = %req.method, target = %req.raw_path().escape_ascii(), status,
                elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0, error = %err,
                "request failed"
            );
        }
    }
}

/// A body a backend would parse as form fields.
fn is_form_body(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start().to_ascii_lowercase())
        .is_some_and(|v| {
            v.starts_with("application/x-www-form-urlencoded") || v.starts_with("multipart/")
        })
}

/// `Expect: 100-continue` is answered here, once the request passed every check (as nginx
/// and Apache do as proxies), and not forwarded: the client sends its body now, and a refused
/// request never sends it at all.
async fn continue_if_expected(session: &mut Session) -> Result<bool> {
    let expects = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects && session.req_header().version == Version::HTTP_11 {
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
        session.write_continue_response().await?;
    }
    Ok(false)
}

impl ProvisioningProxy {
    /// Wait, in arrival order, for one of the backend's `max_connections`: a device that
    /// waits is served late instead of refused. 503 (with Retry-After) once
    /// `queue_timeout` has passed.
    async fn backend_slot(
        &self,
        conn: &ConnInfo,
        slots: Arc<tokio::sync::Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let backend = &conn.route.backend;
        let m = &self.telemetry.metrics;
        let depth = m.backend_queue_depth.with_label_values(&[&backend.name]);
        depth.inc();
        let started = Instant::now();
        let slot = tokio::time::timeout(backend.queue_timeout, slots.acquire_owned()).await;
        depth.dec();
        m.backend_queue
            .with_label_values(&[&backend.name])
            .observe(started.elapsed().as_secs_f64());
        match slot {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no free backend connection within backends.<name>.queue_timeout",
            )),
        }
    }

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
        let mut cached = conn.metrics.lock().unwrap_or_else(|e| e.into_inner());
        m.request_on(&mut cached, &conn.listener, &conn.route.name, status);
        if status >= 500 {
            m.device_retry_caused(&conn.listener, "status_5xx");
        }
        if let Some(t) = upstream_started {
            match e {
                Some(err) if err.esource() == &ErrorSource::Upstream => {
                    let kind = if respond::status_for(err) == Some(504) {
                        "timeout"
                    } else {
                        "unreachable"
                    };
                    m.upstream_error(backend, kind);
                }
                _ => m.upstream_seconds_on(&mut cached, backend, t.elapsed().as_secs_f64()),
            }
        }
        if let Some(ua) = req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            if m.device_seen_on(&mut cached, ua) {
                self.telemetry.fingerprints.user_agent(&conn.ja4, ua);
            }
        }
    }

    /// One access-log line for a finished request.
    fn access_log(&self, session: &Session, conn: &ConnInfo, status: u16, ctx: &RequestCtx) {
        let req = session.req_header();
        let header = |name: http::header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let device = &conn.device;
        let verify = conn.identity.verify.to_string();
        let queued = self.access_log.log(&Entry {
            time: ctx.started_at,
            client: conn.peer,
            local: conn.local,
            listener: &conn.listener,
            route: &conn.route.name,
            method: req.method.as_str(),
            target: req.raw_path(),
            version: match req.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_09 => "HTTP/0.9",
                _ => "HTTP/1.1",
            },
            status,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            duration: ctx.started.elapsed(),
            user_agent: header(http::header::USER_AGENT),
            referer: header(http::header::REFERER),
            host: header(http::header::HOST),
            sni: conn.sni.as_deref(),
            tls_version: conn.version,
            cipher: &conn.cipher,
            ja4: &conn.ja4,
            verify: &verify,
            mac: device.mac.as_deref(),
            serial: device.serial.as_deref(),
            product: device.product.as_deref(),
        });
        if !queued {
            self.telemetry.metrics.access_log_line_dropped();
        }
    }
}
