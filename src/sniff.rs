//! Reads the client's first flight without losing it: [`read_hello`] buffers bytes until
//! [`hello::parse`] has a verdict, and [`Replay`] hands those same bytes to the TLS engine
//! before the rest of the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::hello::{self, ClientHello, NotTls, Parse};

#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("client closed the connection before sending a complete ClientHello ({0} bytes)")]
    ClientClosed(usize),
    #[error("not TLS: {0}")]
    NotTls(NotTls),
    #[error("i/o while reading the ClientHello: {0}")]
    Io(#[from] io::Error),
}

/// Read until the buffered bytes parse as a ClientHello (or cannot be one). Memory is bounded
/// by [`hello::MAX_HELLO_BYTES`]; time is bounded by the caller's timeout.
/// `buf` holds bytes already read (after a PROXY header), usually none.
pub async fn read_hello<S>(
    io: &mut S,
    mut buf: BytesMut,
) -> Result<(ClientHello, BytesMut), SniffError>
where
    S: AsyncRead + Unpin,
{
    loop {
        match hello::parse(&buf) {
            Parse::Parsed(h) => return Ok((h, buf)),
            Parse::NotTls(reason) => return Err(SniffError::NotTls(reason)),
            Parse::Incomplete { .. } => {}
        }
        let room = hello::MAX_HELLO_BYTES.saturating_sub(buf.len());
        if room == 0 {
            // parse() reports oversized input itself; this is a second fence.
            return Err(SniffError::Io(io::Error::other(
                "ClientHello exceeds the size cap",
            )));
        }
        buf.reserve(room.min(4096));
        let n = (&mut *io).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(SniffError::ClientClosed(buf.len()));
        }
    }
}

/// A stream that first yields `prefix`, then reads from `inner`. Writes go straight through.
#[derive(Debug)]
pub struct Replay<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Replay { prefix, inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Replayed in full: free the sniff buffer for the rest of the connection.
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replay_yields_prefix_then_inner() {
        let inner: &[u8] = b" world";
        let mut r = Replay::new(BytesMut::from(&b"hello"[..]), inner);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
