//! One connection's pipeline: sniff the ClientHello -> route -> TLS handshake (all under the
//! listener's handshake timeout) -> hand the decrypted stream to pingora until it is done.
//! Every connection that ends before HTTP is logged once and counted once, with one reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pingora_core::apps::{HttpPersistentSettings, HttpServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::config::{Limits, ProxyProtocol};
use crate::diagnose;
use crate::fingerprint;
use crate::hello::ClientHello;
use crate::metrics::{Handshake, LogVerdict, Telemetry};
use crate::proxy::{ConnInfo, ProxyApp, ProxyStream};
use crate::proxy_protocol::{self, ProxyHeaderError};
use crate::route::{self, ConnFacts};
use crate::sniff::{self, Replay, SniffError};
use crate::tls::HandshakeError;

/// Why a connection ended before the HTTP phase.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Sniff(#[from] SniffError),
    #[error("no ClientHello and no handshake within {0:?}")]
    Timeout(std::time::Duration),
    #[error("no handshake slot (limits.max_handshakes) within {0:?}")]
    HandshakeQueue(std::time::Duration),
    #[error("{} handshake failed: {}", .0.engine.name(), .0.detail)]
    Handshake(HandshakeError),
    #[error("{0}")]
    ProxyHeader(#[from] ProxyHeaderError),
    #[error("PROXY header from {0}, which is not in trusted_proxies")]
    UntrustedProxy(std::net::IpAddr),
    #[error("client {0} is not admitted by the allow/deny lists")]
    Denied(std::net::IpAddr),
}

impl ConnError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnError::Sniff(SniffError::NotTls(_)) => "not_tls",
            ConnError::Sniff(SniffError::ClientClosed(_)) => "client_closed",
            ConnError::Sniff(SniffError::Io(_)) => "io",
            ConnError::Timeout(_) => "timeout",
            ConnError::HandshakeQueue(_) => "handshake_queue",
            ConnError::Handshake(h) => h.reason.label(),
            ConnError::ProxyHeader(_) => "proxy_header",
            ConnError::UntrustedProxy(_) => "untrusted_proxy",
            ConnError::Denied(_) => "denied",
        }
    }
}

/// One accepted connection on its way to HTTP: where it arrived, who it is from, and what has
/// been learned so far (for the one log line a failure gets).
struct Connection<'a> {
    listener: &'a route::Listener,
    telemetry: &'a Telemetry,
    limits: &'a Limits,
    /// The address the TCP connection came from.
    tcp_peer: SocketAddr,
    local: SocketAddr,
    /// The client: the TCP peer, or the address a trusted PROXY header carries.
    client: SocketAddr,
    /// The parsed hello and its JA4, kept when the handshake fails.
    hello: Option<(ClientHello, String)>,
    route: Option<Arc<route::Route>>,
}

/// Serve one accepted TCP connection to the end.
#[allow(clippy::too_many_arguments)] // each is one shared handle the accept loop passes on
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<route::Listener>,
    app: Arc<ProxyApp>,
    telemetry: Arc<Telemetry>,
    limits: Limits,
    admission: Arc<crate::admission::Admission>,
    shutdown: ShutdownWatch,
) {
    let m = &telemetry.metrics;
    let name: &str = &listener.name;
    let _open = m.connection_opened(name);
    let started = Instant::now();

    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, error = %e, "connection gone before it could be served");
            return;
        }
    };
    let mut conn = Connection {
        listener: &listener,
        telemetry: &telemetry,
        limits: &limits,
        tcp_peer: peer,
        local,
        client: peer,
        hello: None,
        route: None,
    };
    let limit = listener.config.handshake_timeout;
    // A handshake slot first (limits.max_handshakes, first come first served): the wait is
    // not counted against the handshake timeout but bounded by the same duration.
    let established = match admission.handshake_slot(listener.config.plain, limit).await {
        // Boxed: the handshake's state (hello, TLS accept) is freed once it is done instead
        // of sizing this long-lived task.
        Some(_slot) => tokio::time::timeout(limit, Box::pin(conn.establish(tcp)))
            .await
            .unwrap_or(Err(ConnError::Timeout(limit))),
        None => Err(ConnError::HandshakeQueue(limit)),
    };
    let stream = match established {
        Ok(s) => s,
        Err(e) => {
            conn.failed(&e);
            return;
        }
    };
    let info = stream.info().clone();
    if info.engine != crate::tls::Engine::Plain {
        handshake_done(&info, name, started, &telemetry);
    }
    http(Box::new(stream), &info, &app, shutdown).await;
}

/// The HTTP phase: pingora serves one request at a time (`process_new_http`); between
/// requests the connection waits here, holding no pingora session, header buffer or proxy
/// future, and pingora gets the next request's first bytes. When pingora may already hold
/// bytes of the next request (pipelining, chunked or unread bodies), it gets the connection
/// straight back instead. Idle time and header time are bounded by the stream's deadline
/// ([`ProxyStream`]); shutdown closes an idle connection at once.
async fn http(
    mut stream: Stream,
    info: &ConnInfo,
    app: &Arc<ProxyApp>,
    mut shutdown: ShutdownWatch,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut settings: Option<HttpPersistentSettings> = None;
    let mut prefix: Option<bytes::BytesMut> = None;
    loop {
        let mut session = ServerSession::new_http1(stream);
        match settings {
            Some(s) => s.apply_to_session(&mut session),
            // pingora's own default; the proxy sets the configured idle time per request.
            None => session.set_keepalive(Some(60)),
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        if let Some(p) = prefix.take() {
            session.set_pipelined_prefix(p);
        }
        info.idle_outside.store(false, Relaxed);
        info.delivered.store(0, Relaxed);
        let Some(reused) = app.process_new_http(session, &shutdown).await else {
            return;
        };
        let (next, kept) = reused.consume();
        stream = next;
        settings = kept;
        if info.idle_outside.load(Relaxed) {
            info.delivered.store(0, Relaxed);
            match next_request(&mut stream, &mut shutdown).await {
                Some(bytes) => prefix = Some(bytes),
                None => return,
            }
        }
    }
}

/// Wait for the next request's first bytes (read through TLS, so bytes OpenSSL or rustls
/// already hold count). `None`: the client closed, the deadline passed, or shutdown.
async fn next_request(
    stream: &mut Stream,
    shutdown: &mut ShutdownWatch,
) -> Option<bytes::BytesMut> {
    use tokio::io::ReadBuf;
    if *shutdown.borrow() {
        return None;
    }
    let read = std::future::poll_fn(|cx| {
        // On the stack only while polled: an idle connection keeps no buffer. Left
        // uninitialised (ReadBuf tracks what was written), so a wake-up costs no 4 KiB memset.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut rb = ReadBuf::uninit(&mut buf);
        match std::pin::Pin::new(&mut **stream).poll_read(cx, &mut rb) {
            std::task::Poll::Ready(Ok(())) => {
                std::task::Poll::Ready(Ok(bytes::BytesMut::from(rb.filled())))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    });
    tokio::select! {
        biased;
        r = read => match r {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => None,
            Err(e) => {
                debug!(error = %e, "keep-alive connection ended");
                None
            }
        },
        _ = async {
            // A dropped sender is no shutdown: keep waiting for the client.
            if shutdown.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        } => None,
    }
}

/// Count and log a finished TLS handshake.
fn handshake_done(info: &ConnInfo, name: &str, started: Instant, telemetry: &Telemetry) {
    let m = &telemetry.metrics;
    let engine = info.engine.name();
    let route: &str = &info.route.name;
    let peer = info.peer;
    let local = info.local;
    m.handshake(Handshake {
        listener: name,
        route,
        engine,
        version: info.version,
        cipher: &info.cipher,
        outcome: "success",
    });
    m.handshake_seconds(name, engine, started.elapsed().as_secs_f64());
    telemetry.recent.handshake_ok();
    debug!(
        listener = %info.listener, %route, %peer, %local, engine, version = info.version,
        cipher = %info.cipher, sni = info.sni.as_deref().unwrap_or("-"), ja4 = %info.ja4,
        client_cert = %info.identity.verify, client_cert_expired = info.identity.expired(),
        "handshake done"
    );
}

impl Connection<'_> {
    /// PROXY header, allow/deny, then (TLS listeners) hello -> route -> handshake, or (plain
    /// listeners) route on addresses alone.
    async fn establish(&mut self, mut tcp: TcpStream) -> Result<ProxyStream, ConnError> {
        let listener = self.listener;
        let settings = &listener.config;
        let mut early = bytes::BytesMut::new();
        if settings.proxy_protocol != ProxyProtocol::Off {
            let tcp_peer = self.tcp_peer.ip().to_canonical();
            if !settings
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&tcp_peer))
            {
                return Err(ConnError::UntrustedProxy(tcp_peer));
            }
            let (client, rest) =
                proxy_protocol::read_header(&mut tcp, settings.proxy_protocol).await?;
            if let Some(client) = client {
                self.client = client;
            }
            early = rest;
        }
        if !settings.access.admits(self.client.ip()) {
            return Err(ConnError::Denied(self.client.ip()));
        }
        if settings.plain {
            return self.plain(tcp, early);
        }
        let (hello, bytes) = sniff::read_hello(&mut tcp, early).await?;
        let ja4 = fingerprint::ja4(&hello);
        self.telemetry.metrics.hello(&listener.name, &hello);
        self.telemetry.fingerprints.connection(&ja4, &hello);
        let route = self.route(hello.sni.as_deref(), Some((&hello, &ja4)))?;
        let tls = match route.tls.accept(&hello, Replay::new(bytes, tcp)).await {
            Ok(tls) => tls,
            Err(e) => {
                self.hello = Some((hello, ja4));
                return Err(ConnError::Handshake(e));
            }
        };
        if let Some(bits) = tls.dh_bits() {
            self.telemetry.metrics.dhe_handshake(&listener.name, bits);
        }
        let identity = route.tls.identity(&tls);
        let info = ConnInfo {
            engine: tls.engine(),
            version: tls.version(),
            cipher: tls.cipher(),
            sni: hello.sni.clone(),
            ja4,
            ..self.info(route)
        }
        .with_identity(identity);
        Ok(ProxyStream::new(tls, info))
    }

    /// A `tls: plain` listener: route on addresses alone and hand the bytes (with whatever
    /// followed a PROXY header) straight to HTTP.
    fn plain(&mut self, tcp: TcpStream, early: bytes::BytesMut) -> Result<ProxyStream, ConnError> {
        let route = self.route(None, None)?;
        Ok(ProxyStream::new(
            crate::tls::TlsStream::Plain(Replay::new(early, tcp)),
            self.info(route)
                .with_identity(crate::identity::ClientIdentity::none()),
        ))
    }

    /// Pick the route (remembered for a failure's log line) and apply its allow/deny lists.
    fn route(
        &mut self,
        sni: Option<&str>,
        hello: Option<(&ClientHello, &str)>,
    ) -> Result<Arc<route::Route>, ConnError> {
        let route = self
            .listener
            .route(&ConnFacts {
                local: self.local.ip(),
                source: self.client.ip(),
                sni,
                hello,
            })
            .clone();
        self.route = Some(route.clone());
        if !route.access.admits(self.client.ip()) {
            return Err(ConnError::Denied(self.client.ip()));
        }
        Ok(route)
    }

    /// The connection's facts for the HTTP phase, as a plain-HTTP connection has them; a TLS
    /// connection fills in its handshake's. Either then sets its identity
    /// ([`ConnInfo::with_identity`]).
    fn info(&self, route: Arc<route::Route>) -> ConnInfo {
        ConnInfo {
            identity: crate::identity::ClientIdentity::none(),
            device: Default::default(),
            forwarding: Vec::new(),
            listener: self.listener.name.clone(),
            engine: crate::tls::Engine::Plain,
            version: "plain",
            cipher: String::new(),
            sni: None,
            ja4: String::new(),
            route,
            peer: self.client,
            local: self.local,
            limits: self.limits.clone(),
            header_deadline: Default::default(),
            metrics: Default::default(),
            delivered: Default::default(),
            idle_outside: Default::default(),
        }
    }

    /// Count once and log once a connection that ended before HTTP. The count is exact; the line
    /// passes the per-(reason, client network) rate limit ([`crate::metrics::FailureLogLimit`]),
    /// and everything the client controls in it is escaped and capped ([`diagnose::Field`]).
    fn failed(&self, e: &ConnError) {
        let telemetry = self.telemetry;
        let m = &telemetry.metrics;
        let name: &str = &self.listener.name;
        let reason = e.label();
        let peer = self.client;
        let local = self.local;
        let route = self.route.as_ref().map_or("-", |r| &*r.name);
        if matches!(e, ConnError::Denied(_) | ConnError::UntrustedProxy(_)) {
            m.refused(name, reason);
            if telemetry.refusal_log.allow() {
                warn!(listener = name, route, %peer, %local, reason, "connection refused: {e}");
            }
            return;
        }
        // Every failure is counted; only the log line is rate-limited.
        m.handshake_failure(name, reason);
        telemetry
            .recent
            .failed(name, peer, e, self.hello.as_ref(), self.route.as_deref());
        if matches!(
            e,
            ConnError::Handshake(_) | ConnError::Timeout(_) | ConnError::HandshakeQueue(_)
        ) {
            m.device_retry_caused(name, "handshake_failure");
        }
        if let (ConnError::Handshake(h), Some(_)) = (e, &self.hello) {
            m.handshake(Handshake {
                listener: name,
                route,
                engine: h.engine.name(),
                version: "",
                cipher: "",
                outcome: "failure",
            });
        }
        // At most a few lines per (reason, client network) per window; the next line written
        // for a key says how many of its lines were dropped.
        let (suppressed, suppressed_elsewhere) =
            match telemetry.failure_log.check(reason, peer.ip()) {
                LogVerdict::Suppress => {
                    m.log_line_suppressed(reason);
                    return;
                }
                LogVerdict::Write {
                    suppressed,
                    suppressed_elsewhere,
                } => (
                    (suppressed > 0).then_some(suppressed),
                    (suppressed_elsewhere > 0).then_some(suppressed_elsewhere),
                ),
            };
        // Error texts can quote the client (a PROXY header, a library's message): escaped, capped.
        let error = e.to_string();
        let Some((hello, ja4)) = &self.hello else {
            warn!(
                listener = name, route, %peer, %local, reason, suppressed, suppressed_elsewhere,
                "connection closed before HTTP: {}",
                diagnose::escape(&error, diagnose::TEXT_MAX)
            );
            return;
        };
        let detail = diagnose::Field::new(&error, diagnose::TEXT_MAX);
        let (engine, explanation) = match (e, &self.route) {
            (ConnError::Handshake(h), Some(r)) => (
                h.engine.name(),
                diagnose::explain(h.reason, h.engine, hello, &r.profile, &h.detail),
            ),
            _ => ("-", error.clone()),
        };
        warn!(
            listener = name, route, %peer, %local, reason, engine,
            hello_format = ?hello.format,
            offered_versions = %diagnose::offered_versions(hello),
            offered_ciphers = %diagnose::offered_ciphers(hello),
            sni = %diagnose::sni_field(hello), %ja4,
            %detail, suppressed, suppressed_elsewhere,
            "handshake failed: {}",
            diagnose::escape(&explanation, diagnose::TEXT_MAX)
        );
    }
}
