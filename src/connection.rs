//! One connection's pipeline: sniff the ClientHello -> route -> TLS handshake (all under the
//! listener's handshake timeout) -> hand the decrypted stream to pingora until it is done.
//! Every connection that ends before HTTP is logged once and counted once, with one reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::diagnose;
use crate::fingerprint;
use crate::hello::ClientHello;
use crate::metrics::Telemetry;
use crate::proxy::{ConnInfo, ProxyApp, ProxyStream};
use crate::route::{ConnFacts, ListenerRt, RouteRt};
use crate::sniff::{self, Replay, SniffError};
use crate::tls::HandshakeError;

/// Why a connection ended before the HTTP phase.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Sniff(#[from] SniffError),
    #[error("no ClientHello and no handshake within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{} handshake failed: {}", .0.engine.name(), .0.detail)]
    Handshake(HandshakeError),
}

impl ConnError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnError::Sniff(SniffError::NotTls(_)) => "not_tls",
            ConnError::Sniff(SniffError::ClientClosed(_)) => "client_closed",
            ConnError::Sniff(SniffError::Io(_)) => "io",
            ConnError::Timeout(_) => "timeout",
            ConnError::Handshake(h) => h.reason.label(),
        }
    }
}

/// Decrements the open-connections gauge however the connection ends.
struct OpenGuard(prometheus::IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serve one accepted TCP connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRt>,
    app: Arc<ProxyApp>,
    telemetry: Arc<Telemetry>,
    shutdown: ShutdownWatch,
) {
    let m = &telemetry.metrics;
    let name: &str = &listener.name;
    m.connections_accepted.with_label_values(&[name]).inc();
    let open = m.connections_open.with_label_values(&[name]);
    open.inc();
    let _open = OpenGuard(open);
    let started = Instant::now();

    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, error = %e, "connection gone before it could be served");
            return;
        }
    };
    let mut seen = Seen::default();
    let limit = listener.handshake_timeout;
    let established = tokio::time::timeout(
        limit,
        establish(tcp, peer, local, &listener, &telemetry, &mut seen),
    )
    .await
    .unwrap_or(Err(ConnError::Timeout(limit)));
    let stream = match established {
        Ok(s) => s,
        Err(e) => {
            failed(&e, &seen, &listener, peer, local, &telemetry);
            return;
        }
    };
    let info = stream.info().clone();
    let engine = info.engine.name();
    let route: &str = &info.route.name;
    m.handshakes
        .with_label_values(&[name, route, engine, info.version, &info.cipher, "success"])
        .inc();
    m.handshake_duration
        .with_label_values(&[name, engine])
        .observe(started.elapsed().as_secs_f64());
    debug!(
        listener = %info.listener, %route, %peer, %local, engine, version = info.version,
        cipher = %info.cipher, sni = info.sni.as_deref().unwrap_or("-"), ja4 = %info.ja4,
        client_cert = %info.identity.verify, "handshake done"
    );
    let mut stream: Stream = Box::new(stream);
    while let Some(reused) = app.process_new(stream, &shutdown).await {
        stream = reused;
    }
}

/// What was learned before a failure, for its log line.
#[derive(Default)]
struct Seen {
    hello: Option<(ClientHello, String)>,
    route: Option<Arc<RouteRt>>,
}

async fn establish(
    mut tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &ListenerRt,
    telemetry: &Telemetry,
    seen: &mut Seen,
) -> Result<ProxyStream, ConnError> {
    let (hello, bytes) = sniff::read_hello(&mut tcp).await?;
    let ja4 = fingerprint::ja4(&hello);
    telemetry.metrics.hello(&listener.name, &hello);
    telemetry.fingerprints.connection(&ja4, &hello);
    let route = listener
        .route(&ConnFacts {
            local: local.ip(),
            source: peer.ip(),
            sni: hello.sni.as_deref(),
            hello: Some((&hello, &ja4)),
        })
        .clone();
    seen.route = Some(route.clone());
    let tls = match route.tls.accept(&hello, Replay::new(bytes, tcp)).await {
        Ok(tls) => tls,
        Err(e) => {
            seen.hello = Some((hello, ja4));
            return Err(ConnError::Handshake(e));
        }
    };
    if let Some(bits) = tls.dh_bits() {
        telemetry
            .metrics
            .dhe_handshakes
            .with_label_values(&[&*listener.name, &bits.to_string()])
            .inc();
    }
    let info = ConnInfo {
        identity: route.tls.identity(&tls),
        listener: listener.name.clone(),
        engine: tls.engine(),
        version: tls.version(),
        cipher: tls.cipher(),
        sni: hello.sni.clone(),
        ja4,
        route,
        peer,
        local,
    };
    Ok(ProxyStream::new(tls, info))
}

/// Log once and count once a connection that ended before HTTP.
fn failed(
    e: &ConnError,
    seen: &Seen,
    listener: &ListenerRt,
    peer: SocketAddr,
    local: SocketAddr,
    telemetry: &Telemetry,
) {
    let m = &telemetry.metrics;
    let name: &str = &listener.name;
    let reason = e.label();
    m.handshake_failures
        .with_label_values(&[name, reason])
        .inc();
    let route = seen.route.as_ref().map_or("-", |r| &*r.name);
    let Some((hello, ja4)) = &seen.hello else {
        warn!(listener = name, route, %peer, %local, reason, "connection closed before HTTP: {e}");
        return;
    };
    let (engine, explanation) = match (e, &seen.route) {
        (ConnError::Handshake(h), Some(r)) => (
            h.engine.name(),
            diagnose::explain(h.reason, h.engine, hello, &r.profile, &h.detail),
        ),
        _ => ("-", e.to_string()),
    };
    if let ConnError::Handshake(_) = e {
        m.handshakes
            .with_label_values(&[name, route, engine, "", "", "failure"])
            .inc();
    }
    warn!(
        listener = name, route, %peer, %local, reason, engine,
        hello_format = ?hello.format,
        offered_versions = %diagnose::offered_versions(hello),
        offered_ciphers = %diagnose::offered_cipher_names(hello).join(","),
        sni = hello.sni.as_deref().unwrap_or("-"), %ja4,
        detail = %e,
        "handshake failed: {explanation}"
    );
}
