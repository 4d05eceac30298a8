//! The decrypted stream handed to pingora. It implements pingora's IO traits and carries the
//! connection's facts, which the proxy hooks read back by downcasting `session.stream()`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::identity::ClientIdentity;
use crate::route::RouteRt;
use crate::sniff::Replay;
use crate::tls::{Engine, TlsStream};

/// What is known about a connection once its handshake is done.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub route: Arc<RouteRt>,
    pub engine: Engine,
    pub version: &'static str,
    pub cipher: String,
    pub sni: Option<String>,
    /// JA4 fingerprint of the ClientHello.
    pub ja4: String,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The client certificate and its verification outcome.
    pub identity: ClientIdentity,
}

/// A TLS connection (either engine) plus its [`ConnInfo`].
#[derive(Debug)]
pub struct ProxyStream {
    tls: TlsStream<Replay<TcpStream>>,
    info: Arc<ConnInfo>,
    id: UniqueIDType,
}

impl ProxyStream {
    pub fn new(tls: TlsStream<Replay<TcpStream>>, info: ConnInfo) -> Self {
        static NEXT_ID: AtomicI32 = AtomicI32::new(1);
        ProxyStream {
            tls,
            info: Arc::new(info),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ProxyStream {
    async fn shutdown(&mut self) {
        // Sends close_notify; errors mean the peer is gone already.
        let _ = AsyncWriteExt::shutdown(&mut self.tls).await;
    }
}

impl UniqueID for ProxyStream {
    fn id(&self) -> UniqueIDType {
        self.id
    }
}

/// TLS facts travel in [`ConnInfo`]; pingora's own TLS digest types belong to its TLS features,
/// which provgate does not use.
impl Ssl for ProxyStream {}

impl GetTimingDigest for ProxyStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for ProxyStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for ProxyStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}

#[async_trait]
impl Peek for ProxyStream {}
