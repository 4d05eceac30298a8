//! Reads the client's first flight without losing it: [`read_hello`] buffers bytes until
//! [`hello::parse`] has a verdict, and [`Replay`] hands those same bytes to the TLS engine
//! before the rest of the socket.
//!
//! A first flight that cannot be a ClientHello is answered the way OpenSSL 3 (the legacy
//! engine, and what HAProxy runs on) answers it: with a fatal alert record when the bytes look
//! like TLS, with nothing when they do not (see [`alert_for`]), then the connection closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

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

/// Buffers up to this size are parsed after every read, so garbage is refused at once; past
/// it, only once `Parse::Incomplete::needed` bytes are in, which keeps the parsing work of a
/// hello trickled in tiny segments near-linear instead of quadratic.
const EAGER_PARSE_BYTES: usize = 64;

/// Read until the buffered bytes parse as a ClientHello (or cannot be one). Memory is bounded
/// by [`hello::MAX_HELLO_BYTES`]; time is bounded by the caller's timeout.
/// `buf` holds bytes already read (after a PROXY header), usually none.
///
/// On failure the client is first sent the alert [`alert_for`] picks, if any (best effort:
/// a write error is ignored, the connection is ending anyway).
pub async fn read_hello<S>(io: &mut S, buf: BytesMut) -> Result<(ClientHello, BytesMut), SniffError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = buf;
    let result = read_until_verdict(io, &mut buf).await;
    match result {
        Ok(h) => Ok((h, buf)),
        Err(e) => {
            if let Some(alert) = alert_for(&e, &buf) {
                let _ = send_alert(io, alert).await;
            }
            Err(e)
        }
    }
}

async fn read_until_verdict<S>(io: &mut S, buf: &mut BytesMut) -> Result<ClientHello, SniffError>
where
    S: AsyncRead + Unpin,
{
    let mut needed = 0usize;
    loop {
        if buf.len() >= needed || buf.len() <= EAGER_PARSE_BYTES {
            match hello::parse(buf) {
                Parse::Parsed(h) => return Ok(h),
                Parse::NotTls(reason) => return Err(SniffError::NotTls(reason)),
                Parse::Incomplete { needed: n } => needed = n.unwrap_or(buf.len() + 1),
            }
        }
        let room = hello::MAX_HELLO_BYTES.saturating_sub(buf.len());
        if room == 0 {
            // parse() reports oversized input itself; this is a second fence.
            return Err(SniffError::NotTls(NotTls::TooLarge));
        }
        buf.reserve(room.min(4096));
        let n = (&mut *io).take(room as u64).read_buf(buf).await?;
        if n == 0 {
            return Err(SniffError::ClientClosed(buf.len()));
        }
    }
}

/// TLS alert descriptions the sniffer sends (RFC 5246 7.2, RFC 8446 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDescription {
    UnexpectedMessage = 10,
    RecordOverflow = 22,
    IllegalParameter = 47,
    DecodeError = 50,
    ProtocolVersion = 70,
}

impl AlertDescription {
    #[cfg(test)]
    pub fn name(self) -> &'static str {
        match self {
            AlertDescription::UnexpectedMessage => "unexpected_message",
            AlertDescription::RecordOverflow => "record_overflow",
            AlertDescription::IllegalParameter => "illegal_parameter",
            AlertDescription::DecodeError => "decode_error",
            AlertDescription::ProtocolVersion => "protocol_version",
        }
    }
}

/// A fatal alert and the record version to send it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub version: u16,
    pub description: AlertDescription,
}

impl Alert {
    /// The alert record on the wire: content type 21, version, length 2, level 2 (fatal),
    /// description.
    pub fn record(self) -> [u8; 7] {
        let [hi, lo] = self.version.to_be_bytes();
        [0x15, hi, lo, 0, 2, 2, self.description as u8]
    }
}

/// The alert description OpenSSL 3 sends for this sniffing failure; `None` when it sends
/// nothing. Mostly a function of the error alone; bytes that are not a TLS record at all
/// (plain HTTP, a PROXY header, random bytes) get no alert, as from OpenSSL ("doesn't look
/// like TLS - don't send an alert"), which needs a look at the bytes themselves.
///
/// | sniffer verdict | alert |
/// |---|---|
/// | a record longer than 2^14 bytes | `record_overflow` (22) |
/// | a handshake message other than ClientHello, another record type first or interleaved | `unexpected_message` (10) |
/// | bad lengths, truncated fields, trailing bytes, empty lists | `decode_error` (50) |
/// | a duplicated extension; an SSLv2 session id over 32 bytes | `illegal_parameter` (47) |
/// | hello over the size cap | `illegal_parameter` (47), OpenSSL's "excessive message size" |
/// | hello version below SSLv3, record version 0x03xx above TLS 1.3 | `protocol_version` (70) |
/// | the client closed before the hello was complete | `decode_error` (50), as OpenSSL on a socket |
/// | not TLS: plain HTTP, PROXY header, other bytes; record version not 3.x | none |
pub fn alert_description(e: &SniffError, buf: &[u8]) -> Option<AlertDescription> {
    use AlertDescription::*;
    let looks_like_a_record = buf.get(1) == Some(&3);
    Some(match e {
        SniffError::Io(_) => return None,
        SniffError::ClientClosed(_) => DecodeError,
        SniffError::NotTls(reason) => match reason {
            NotTls::PlainHttp | NotTls::ProxyProtocol => return None,
            NotTls::NotHandshake { .. } | NotTls::Sslv2NotClientHello(_) => {
                // OpenSSL reads any first byte as a record type once the version is 3.x,
                // and a record type it does not expect first is unexpected_message.
                if !looks_like_a_record {
                    return None;
                }
                UnexpectedMessage
            }
            NotTls::BadRecordVersion(v) => {
                if v >> 8 != 3 {
                    return None;
                }
                ProtocolVersion
            }
            NotTls::RecordTooLong(_) => RecordOverflow,
            NotTls::UnexpectedRecord { .. } | NotTls::NotClientHello(_) => UnexpectedMessage,
            NotTls::BadClientVersion(_) => ProtocolVersion,
            NotTls::TooLarge => IllegalParameter,
            NotTls::Malformed(what) => match *what {
                "duplicate extension" | "SSLv2 session id longer than 32 bytes" => IllegalParameter,
                _ => DecodeError,
            },
        },
    })
}

/// The alert to send before closing, if any: [`alert_description`] in the record version the
/// client used (its record header's, or for an SSLv2-format hello the version it asks for)
/// when that is SSLv3..TLS 1.2, else TLS 1.0 (0x0301), which every SSL/TLS stack reads.
pub fn alert_for(e: &SniffError, buf: &[u8]) -> Option<Alert> {
    let description = alert_description(e, buf)?;
    let claimed = match buf.first() {
        Some(&b) if b & 0x80 != 0 => buf.get(3..5),
        _ => buf.get(1..3),
    };
    let version = claimed
        .and_then(|v| <[u8; 2]>::try_from(v).ok())
        .map(u16::from_be_bytes)
        .filter(|v| (0x0300..=0x0303).contains(v))
        .unwrap_or(0x0301);
    Some(Alert {
        version,
        description,
    })
}

async fn send_alert<S: AsyncWrite + Unpin>(io: &mut S, alert: Alert) -> io::Result<()> {
    io.write_all(&alert.record()).await?;
    io.flush().await?;
    // FIN after the alert, as OpenSSL's close does; the caller drops the socket next.
    io.shutdown().await
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
    use crate::hello::builder::TlsHello;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replay_yields_prefix_then_inner() {
        let inner: &[u8] = b" world";
        let mut r = Replay::new(BytesMut::from(&b"hello"[..]), inner);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    /// A minimal TLS ClientHello (TLS 1.2 body, one suite, no extensions).
    fn minimal_hello() -> TlsHello {
        TlsHello::new(0x0303, &[0x2f])
    }

    /// [`minimal_hello`] in one record with record version `rv`.
    fn hello_record(rv: u16) -> Vec<u8> {
        minimal_hello().record(rv)
    }

    fn verdict(buf: &[u8]) -> SniffError {
        match hello::parse(buf) {
            Parse::NotTls(e) => SniffError::NotTls(e),
            other => panic!("{buf:02x?}: {other:?}"),
        }
    }

    fn described(buf: &[u8]) -> Option<&'static str> {
        alert_description(&verdict(buf), buf).map(AlertDescription::name)
    }

    #[test]
    fn alerts_follow_openssl() {
        use AlertDescription::*;
        let good = hello_record(0x0301);
        // Record layer.
        assert_eq!(
            described(&[0x16, 3, 1, 0x40, 0x01]),
            Some("record_overflow")
        );
        assert_eq!(
            described(&[0x17, 3, 3, 0, 1, 0]),
            Some("unexpected_message")
        );
        assert_eq!(
            described(&[0x15, 3, 1, 0, 2, 2, 40]),
            Some("unexpected_message")
        );
        let mut interleaved = good[..10].to_vec();
        interleaved[3..5].copy_from_slice(&5u16.to_be_bytes());
        interleaved.truncate(10);
        interleaved.extend_from_slice(&[0x15, 3, 1, 0, 2]);
        assert_eq!(described(&interleaved), Some("unexpected_message"));
        assert_eq!(described(&[0x16, 3, 0x05, 0, 5]), Some("protocol_version"));
        // Not TLS at all: nothing, as from OpenSSL.
        assert_eq!(described(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(described(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), None);
        assert_eq!(described(&[0xde, 0xad, 0xbe, 0xef]), None);
        assert_eq!(described(&[0x16, 2, 0, 0, 5]), None);
        assert_eq!(
            described(&[0x80, 0x2e, 0x04, 0, 2]),
            None,
            "SSLv2 non-hello"
        );
        // Handshake layer.
        let mut wrong = good.clone();
        wrong[5] = 2;
        assert_eq!(described(&wrong), Some("unexpected_message"));
        let mut sid = good.clone();
        sid[5 + 38] = 0xff;
        assert_eq!(described(&sid), Some("decode_error"));
        let mut old = good.clone();
        old[9..11].copy_from_slice(&[2, 0]);
        assert_eq!(described(&old), Some("protocol_version"));
        let mut huge = vec![0x16, 3, 1, 0x40, 0, 1];
        huge.extend_from_slice(&[0x10, 0, 0]);
        assert_eq!(described(&huge), Some("illegal_parameter"));
        // Closed early: decode_error; an I/O error: nothing can be sent.
        assert_eq!(
            alert_description(&SniffError::ClientClosed(3), &good[..3]),
            Some(DecodeError)
        );
        assert_eq!(
            alert_description(&SniffError::Io(io::Error::other("reset")), &[]),
            None
        );
    }

    #[test]
    fn alert_record_uses_the_clients_version() {
        let e = SniffError::ClientClosed(0);
        let a = |buf: &[u8]| alert_for(&e, buf).map(Alert::record);
        assert_eq!(a(&[0x16, 3, 0]), Some([0x15, 3, 0, 0, 2, 2, 50]));
        assert_eq!(a(&[0x16, 3, 3]), Some([0x15, 3, 3, 0, 2, 2, 50]));
        assert_eq!(
            a(&[0x16, 3, 4]),
            Some([0x15, 3, 1, 0, 2, 2, 50]),
            "TLS 1.3 record"
        );
        assert_eq!(a(&[]), Some([0x15, 3, 1, 0, 2, 2, 50]));
        // SSLv2 format: the version the hello asks for.
        assert_eq!(a(&[0x80, 0x2e, 1, 3, 0]), Some([0x15, 3, 0, 0, 2, 2, 50]));
        assert_eq!(a(&[0x80, 0x2e, 1, 0, 2]), Some([0x15, 3, 1, 0, 2, 2, 50]));
    }

    #[tokio::test]
    async fn read_hello_answers_with_the_alert_then_closes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut bad = hello_record(0x0303);
        bad[5 + 38] = 0xff;
        client.write_all(&bad).await.unwrap();
        let e = read_hello(&mut server, BytesMut::new()).await.unwrap_err();
        assert!(matches!(e, SniffError::NotTls(NotTls::Malformed(_))), "{e}");
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, [0x15, 3, 3, 0, 2, 2, 50]);

        // Plain HTTP: closed with nothing sent.
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_hello(&mut server, BytesMut::new()).await.is_err());
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty(), "{out:02x?}");
    }

    #[tokio::test]
    async fn read_hello_reassembles_a_trickled_hello() {
        let wire = hello_record(0x0301);
        // One byte per write, and also as 1-byte records.
        let tiny = minimal_hello().fragmented(0x0301, 1, 1);
        for input in [wire.clone(), tiny] {
            let (mut client, mut server) = tokio::io::duplex(16);
            let feed = input.clone();
            let writer = tokio::spawn(async move {
                for b in feed {
                    client.write_all(&[b]).await.unwrap();
                }
                client
            });
            let (h, bytes) = read_hello(&mut server, BytesMut::new()).await.unwrap();
            assert_eq!(h.wire_len, input.len());
            assert_eq!(&bytes[..], &input[..]);
            drop(writer.await.unwrap());
        }
    }
}
