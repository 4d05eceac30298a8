//! One connection's pipeline: sniff the ClientHello -> route -> TLS handshake (all under the
//! listener's handshake timeout) -> hand the decrypted stream to pingora until it is done.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::hello::ClientHello;
use crate::proxy::{ConnInfo, ProxyApp, ProxyStream};
use crate::route::{ConnFacts, ListenerRt};
use crate::sniff::{self, Replay, SniffError};
use crate::tls::Engine;

/// Why a connection ended before the HTTP phase. Each maps to one short reason label.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Sniff(#[from] SniffError),
    #[error("no ClientHello and no handshake within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{engine} handshake failed: {reason}", engine = .engine.name())]
    Handshake { engine: Engine, reason: String },
}

impl ConnError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnError::Sniff(SniffError::NotTls(_)) => "not_tls",
            ConnError::Sniff(SniffError::ClientClosed(_)) => "client_closed",
            ConnError::Sniff(SniffError::Io(_)) => "io",
            ConnError::Timeout(_) => "timeout",
            ConnError::Handshake { .. } => "handshake",
        }
    }
}

/// Serve one accepted TCP connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRt>,
    app: Arc<ProxyApp>,
    shutdown: ShutdownWatch,
) {
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, error = %e, "connection gone before it could be served");
            return;
        }
    };
    let limit = listener.handshake_timeout;
    let established =
        match tokio::time::timeout(limit, establish(tcp, peer, local, &listener)).await {
            Ok(r) => r,
            Err(_) => Err((ConnError::Timeout(limit), None)),
        };
    let stream = match established {
        Ok(s) => s,
        Err((e, hello)) => {
            warn!(
                listener = %listener.name, %peer, %local, reason = e.label(),
                hello = hello.as_ref().map(describe_hello).unwrap_or_default(),
                "connection closed before HTTP: {e}"
            );
            return;
        }
    };
    let info = stream.info().clone();
    debug!(
        listener = %info.listener, route = %info.route.name, %peer, %local,
        engine = info.engine.name(), version = info.version, cipher = %info.cipher,
        sni = info.sni.as_deref().unwrap_or("-"), client_cert = %info.identity.verify,
        "handshake done"
    );
    let mut stream: Stream = Box::new(stream);
    while let Some(reused) = app.process_new(stream, &shutdown).await {
        stream = reused;
    }
}

type Failure = (ConnError, Option<ClientHello>);

async fn establish(
    mut tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &ListenerRt,
) -> Result<ProxyStream, Failure> {
    let (hello, bytes) = sniff::read_hello(&mut tcp)
        .await
        .map_err(|e| (ConnError::from(e), None))?;
    let route = listener
        .route(&ConnFacts {
            local: local.ip(),
            source: peer.ip(),
            sni: hello.sni.as_deref(),
        })
        .clone();
    let tls = match route.tls.accept(&hello, Replay::new(bytes, tcp)).await {
        Ok(tls) => tls,
        Err((engine, reason)) => {
            return Err((ConnError::Handshake { engine, reason }, Some(hello)))
        }
    };
    let info = ConnInfo {
        identity: route.tls.identity(&tls),
        listener: listener.name.clone(),
        engine: tls.engine(),
        version: tls.version(),
        cipher: tls.cipher(),
        sni: hello.sni.clone(),
        route,
        peer,
        local,
    };
    Ok(ProxyStream::new(tls, info))
}

/// What the client offered, in one log field.
fn describe_hello(h: &ClientHello) -> String {
    let ciphers: Vec<String> = h
        .cipher_suites
        .iter()
        .map(|c| crate::hello::cipher_name(*c).map_or_else(|| format!("0x{c:04x}"), str::to_string))
        .collect();
    format!(
        "format={:?} max_version={} sni={} ciphers={}",
        h.format,
        h.max_version(),
        h.sni.as_deref().unwrap_or("-"),
        ciphers.join(",")
    )
}
