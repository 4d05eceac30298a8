//! The decrypted stream handed to pingora. It implements pingora's IO traits and carries the
//! connection's facts, which the proxy hooks read back by downcasting `session.stream()`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::config::Limits;
use crate::identity::{ClientIdentity, Device, Verify};
use crate::route;
use crate::sniff::Replay;
use crate::tls::{Engine, TlsStream};

/// What is known about a connection once its handshake is done.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub route: Arc<route::Route>,
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
    /// The verified device's fields (empty unless the certificate verified), read once.
    pub device: Device,
    /// The headers provgate sets on every request of the connection (forwarding headers,
    /// then the client certificate under the route's identity policy), built once
    /// ([`super::headers::connection_headers`]).
    pub forwarding: Vec<(bytes::Bytes, http::HeaderValue)>,
    pub limits: Limits,
    /// While set, the request line and headers must have arrived by then (slowloris guard);
    /// the proxy clears it when headers are in and re-arms it after each response.
    pub header_deadline: Mutex<Option<Instant>>,
    /// Metric handles the connection's requests share (only its requests touch it).
    pub metrics: Mutex<crate::metrics::ConnMetrics>,
    /// Bytes handed to pingora since the connection loop last reset it (see
    /// [`ConnInfo::request_was_self_contained`]).
    pub delivered: AtomicUsize,
    /// Set at the end of a request that took exactly the bytes it was handed: pingora holds
    /// none of the next request, so the connection loop may wait for it outside pingora.
    pub idle_outside: AtomicBool,
}

impl ConnInfo {
    /// Set the connection's client identity, with what follows from it once per connection:
    /// the device fields and the headers the backend receives.
    pub fn with_identity(mut self, identity: ClientIdentity) -> Self {
        self.device = match (&identity.verify, identity.leaf()) {
            (Verify::Success, Some(leaf)) => crate::identity::device(leaf),
            _ => Device::default(),
        };
        let identity_headers =
            super::headers::identity_headers(&identity, &self.route.identity, self.engine);
        self.forwarding = super::headers::connection_headers(&self, identity_headers);
        self.identity = identity;
        self
    }

    pub fn arm_header_deadline(&self, within: std::time::Duration) {
        *self
            .header_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + within);
    }

    pub fn disarm_header_deadline(&self) {
        *self
            .header_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// At the end of a request: sets `idle_outside` when the request head (`head` bytes) and its
    /// body (`body` bytes read, as framed by Content-Length) are exactly what this stream handed
    /// to pingora. Then pingora has read nothing of a next (pipelined) request, and the
    /// connection can idle outside pingora (`connection.rs`). A chunked body, an unread body or
    /// pipelined bytes clear it, and pingora keeps the connection for its next request.
    pub fn request_was_self_contained(&self, head: usize, body: usize) {
        let clean = self.delivered.load(Ordering::Relaxed) == head + body;
        self.idle_outside.store(clean, Ordering::Relaxed);
    }

    fn header_deadline(&self) -> Option<Instant> {
        *self
            .header_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes up to this size are gathered until pingora flushes.
const WRITE_COALESCE: usize = 16 * 1024;
/// A write buffer larger than this is freed after a flush, so idle connections stay small.
const WRITE_KEEP: usize = 4 * 1024;

/// The header line pingora's own stock responses carry (its 400 for an unparsable request).
const FRAMEWORK_SERVER: &[u8] = b"\r\nServer: Pingora\r\n";

/// A response head written in one piece that carries pingora's `Server` line, without that
/// line: provgate's responses never name another product. Every other write: `None`.
fn without_framework_server_header(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let at = buf[..head_end + 2]
        .windows(FRAMEWORK_SERVER.len())
        .position(|w| w == FRAMEWORK_SERVER)?;
    let mut out = Vec::with_capacity(buf.len());
    out.extend_from_slice(&buf[..at + 2]);
    out.extend_from_slice(&buf[at + FRAMEWORK_SERVER.len()..]);
    Some(out)
}

/// A TLS connection (either engine) plus its [`ConnInfo`].
///
/// Writes are gathered until pingora flushes, as pingora's own (buffered) streams do: a
/// response head and a small body then leave as one TLS record and one syscall, not several.
#[derive(Debug)]
pub struct ProxyStream {
    tls: TlsStream<Replay<TcpStream>>,
    /// Plaintext written but not yet handed to TLS; `written` bytes of it are already sent.
    pending: Vec<u8>,
    written: usize,
    info: Arc<ConnInfo>,
    id: UniqueIDType,
    /// Timer for the header deadline it was last armed with.
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
    /// A header deadline is set: the request head is still arriving.
    armed: bool,
    /// Bytes handed to pingora since the header deadline was last armed: a request head may
    /// not grow past [`header_cap`] while it is still arriving.
    header_bytes: usize,
    /// The 431 for an oversized head has been queued; reads now end the connection.
    refused: bool,
}

/// Room for the request line and line ends beyond `limits.max_request_header_bytes`.
const REQUEST_LINE_ALLOWANCE: usize = 2048;

/// The most bytes a request head may take while it arrives (pingora alone would buffer up to
/// 1 MiB per connection before it parses).
fn header_cap(limits: &Limits) -> usize {
    limits.max_request_header_bytes + REQUEST_LINE_ALLOWANCE
}

const HEADER_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 94\r\nConnection: close\r\n\r\n\
431 Request Header Fields Too Large: the request head exceeds limits.max_request_header_bytes\n";

impl ProxyStream {
    pub fn new(tls: TlsStream<Replay<TcpStream>>, info: ConnInfo) -> Self {
        static NEXT_ID: AtomicI32 = AtomicI32::new(1);
        info.arm_header_deadline(info.limits.header_timeout);
        ProxyStream {
            tls,
            pending: Vec::new(),
            written: 0,
            info: Arc::new(info),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            timer: None,
            armed: false,
            header_bytes: 0,
            refused: false,
        }
    }

    /// `Err(TimedOut)` once the header deadline has passed; registers a wake-up otherwise.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.info.header_deadline() else {
            self.armed = false;
            return Ok(());
        };
        self.armed = true;
        let timer = match &mut self.timer {
            Some((at, t)) if *at == deadline => t,
            Some((at, t)) => {
                // A new deadline: a new request head starts (the timer is re-armed, not
                // reallocated).
                self.header_bytes = 0;
                *at = deadline;
                t.as_mut().reset(deadline.into());
                t
            }
            slot => {
                self.header_bytes = 0;
                let t = Box::pin(tokio::time::sleep_until(deadline.into()));
                &mut slot.insert((deadline, t)).1
            }
        };
        if std::future::Future::poll(timer.as_mut(), cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers not complete within limits.header_timeout",
            ));
        }
        Ok(())
    }

    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }

    /// Hand everything pending to TLS.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.tls).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.pending.capacity() > WRITE_KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = this.read_checked(cx, buf);
        let got = buf.filled().len() - before;
        if got > 0 {
            this.info.delivered.fetch_add(got, Ordering::Relaxed);
        }
        r
    }
}

impl ProxyStream {
    /// A read with the header deadline and the request-head cap applied.
    fn read_checked(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
        if this.refused {
            // Answer sent (or being sent): flush it, then end the connection.
            ready!(this.poll_drain(cx))?;
            ready!(Pin::new(&mut this.tls).poll_flush(cx))?;
            return Poll::Ready(Ok(()));
        }
        if let Err(e) = this.check_deadline(cx) {
            return Poll::Ready(Err(e));
        }
        if !this.armed {
            // Headers are in: the body and the connection's next bytes flow freely.
            return Pin::new(&mut this.tls).poll_read(cx, buf);
        }
        let allowance = header_cap(&this.info.limits).saturating_sub(this.header_bytes);
        if allowance == 0 {
            refuse_oversized_head(&this.info);
            this.refused = true;
            this.pending.extend_from_slice(HEADER_TOO_LARGE);
            ready!(this.poll_drain(cx))?;
            ready!(Pin::new(&mut this.tls).poll_flush(cx))?;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if allowance >= buf.remaining() {
            ready!(Pin::new(&mut this.tls).poll_read(cx, buf))?;
        } else {
            // Never hand pingora more than the head may still take.
            let mut tmp = [0u8; 4096];
            let take = allowance.min(tmp.len());
            let mut limited = ReadBuf::new(&mut tmp[..take]);
            ready!(Pin::new(&mut this.tls).poll_read(cx, &mut limited))?;
            buf.put_slice(limited.filled());
        }
        this.header_bytes += buf.filled().len() - before;
        Poll::Ready(Ok(()))
    }
}

/// Log (at most once a second, process-wide) a connection refused for an oversized head.
fn refuse_oversized_head(info: &ConnInfo) {
    static LOG: crate::metrics::RateLimit = crate::metrics::RateLimit::new();
    if LOG.allow() {
        tracing::warn!(
            listener = %info.listener, peer = %info.peer,
            limit = info.limits.max_request_header_bytes,
            "request refused (431): the request head kept growing past \
             limits.max_request_header_bytes while arriving"
        );
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(head) = without_framework_server_header(buf) {
            ready!(this.poll_drain(cx))?;
            this.pending.extend_from_slice(&head);
            return Poll::Ready(Ok(buf.len()));
        }
        if this.pending.len() + buf.len() > WRITE_COALESCE {
            ready!(this.poll_drain(cx))?;
            if buf.len() >= WRITE_COALESCE {
                return Pin::new(&mut this.tls).poll_write(cx, buf);
            }
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tls).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ProxyStream {
    async fn shutdown(&mut self) {
        // Sends close_notify; errors mean the peer is gone already.
        let _ = AsyncWriteExt::shutdown(self).await;
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

#[cfg(test)]
mod tests {
    use super::without_framework_server_header as strip;

    #[test]
    fn the_431_response_declares_its_own_length() {
        let text = std::str::from_utf8(super::HEADER_TOO_LARGE).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn pingoras_server_line_is_removed_from_response_heads_only() {
        let head = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            strip(head).as_deref(),
            Some(&b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..])
        );
        assert_eq!(strip(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n"), None);
        // In a body, after the head, it is data.
        assert_eq!(
            strip(b"HTTP/1.1 200 OK\r\n\r\nx\r\nServer: Pingora\r\n"),
            None
        );
        assert_eq!(strip(b"body bytes\r\nServer: Pingora\r\n\r\n"), None);
    }
}
