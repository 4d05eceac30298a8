//! The two TLS engines behind one small enum.
//!
//! - [`legacy`]: OpenSSL (vendored 3.x) for SSLv3..TLS 1.2 and SSLv2-format hellos.
//! - [`modern`]: rustls for TLS 1.2/1.3.
//!
//! A route's [`ServerTls`] decides per connection, from the sniffed [`ClientHello`], which
//! engine runs the handshake; the result is one [`TlsStream`] either way.

pub mod certs;
pub mod client_auth;
pub mod legacy;
pub mod modern;
pub mod x509;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{EngineKind, Profile};
use crate::hello::ClientHello;
use crate::identity::ClientIdentity;
use certs::LoadedCert;
use client_auth::ClientVerifier;
use legacy::LegacyContext;
use modern::ModernContext;

/// Why a handshake failed, from a small fixed taxonomy (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoSharedCipher,
    ProtocolVersion,
    NoCertificate,
    BadCertificate,
    UnknownCa,
    /// The client certificate verified, but `deny_serials` / `allow_serials` refuse its serial.
    ClientCertDenied,
    ClientAlert,
    ClientClosed,
    Internal,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::NoSharedCipher => "no_shared_cipher",
            Reason::ProtocolVersion => "protocol_version",
            Reason::NoCertificate => "no_certificate",
            Reason::BadCertificate => "bad_certificate",
            Reason::UnknownCa => "unknown_ca",
            Reason::ClientCertDenied => "client_cert_denied",
            Reason::ClientAlert => "client_alert",
            Reason::ClientClosed => "client_closed",
            Reason::Internal => "internal",
        }
    }
}

/// Whether an `X509_V_ERR_*` verification result (include/openssl/x509_vfy.h) means the
/// client certificate's issuer is not trusted: 2 unable to get issuer certificate, 18
/// self-signed leaf, 19 self-signed in chain, 20 unable to get local issuer, 21 unable to
/// verify the first certificate. Both engines classify `unknown_ca` by it.
pub(crate) fn untrusted_issuer(verify: i32) -> bool {
    matches!(verify, 2 | 18..=21)
}

/// A failed handshake: the engine, the classified reason and the library's own words.
#[derive(Debug, Clone)]
pub struct HandshakeError {
    pub engine: Engine,
    pub reason: Reason,
    pub detail: String,
}

/// Which engine served a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Legacy,
    Modern,
    /// No TLS (`tls: plain` listeners).
    Plain,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Legacy => "legacy",
            Engine::Modern => "modern",
            Engine::Plain => "plain",
        }
    }
}

/// The engine contexts of a route's (certificate, profile, client auth).
#[derive(Debug)]
pub enum Engines {
    Legacy(Arc<LegacyContext>),
    Modern(Arc<ModernContext>),
    /// rustls when it can serve the hello, otherwise OpenSSL. `modern` is `None` when rustls
    /// cannot use the certificate's key at all (e.g. RSA 1024).
    Auto {
        legacy: Arc<LegacyContext>,
        modern: Option<Arc<ModernContext>>,
    },
    /// HTTP without TLS.
    Plain,
}

/// A route's TLS: its engines and, when client auth is on, the client verifier.
#[derive(Debug)]
pub struct ServerTls {
    pub engines: Engines,
    pub client: Option<Arc<ClientVerifier>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error("{0}")]
    Modern(String),
}

impl ServerTls {
    /// A plain-HTTP route: no handshake, no client certificate.
    pub fn plain() -> ServerTls {
        ServerTls {
            engines: Engines::Plain,
            client: None,
        }
    }

    pub fn build(
        cert: &LoadedCert,
        profile: &Profile,
        client: Option<Arc<ClientVerifier>>,
    ) -> Result<ServerTls, TlsSetupError> {
        let c = client.as_ref();
        let legacy = || LegacyContext::build(cert, profile, c.map(|v| &**v)).map(Arc::new);
        let engines = match profile.engine {
            EngineKind::Legacy => Engines::Legacy(legacy()?),
            EngineKind::Modern => Engines::Modern(Arc::new(
                ModernContext::build(cert, profile, c).map_err(TlsSetupError::Modern)?,
            )),
            EngineKind::Auto => Engines::Auto {
                legacy: legacy()?,
                modern: ModernContext::build(cert, profile, c).ok().map(Arc::new),
            },
            EngineKind::Plain => Engines::Plain,
        };
        Ok(ServerTls { engines, client })
    }

    /// The engine that will handle this hello.
    pub fn engine_for(&self, hello: &ClientHello) -> Engine {
        match &self.engines {
            Engines::Legacy(_) => Engine::Legacy,
            Engines::Modern(_) => Engine::Modern,
            Engines::Plain => Engine::Plain,
            Engines::Auto { modern, .. } => match modern {
                Some(m) if m.can_serve(hello) => Engine::Modern,
                _ => Engine::Legacy,
            },
        }
    }

    /// Run the handshake on the engine chosen for `hello`.
    pub async fn accept<S>(
        &self,
        hello: &ClientHello,
        io: S,
    ) -> Result<TlsStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let engine = self.engine_for(hello);
        let (legacy, modern) = match &self.engines {
            Engines::Legacy(l) => (Some(l), None),
            Engines::Modern(m) => (None, Some(m)),
            Engines::Auto { legacy, modern } => (Some(legacy), modern.as_ref()),
            Engines::Plain => return Ok(TlsStream::Plain(io)),
        };
        match (engine, legacy, modern) {
            (Engine::Modern, _, Some(m)) => m
                .accept(io)
                .await
                .map(|s| TlsStream::Modern(Box::new(s)))
                .map_err(|(reason, detail)| HandshakeError {
                    engine: Engine::Modern,
                    reason,
                    detail,
                }),
            (Engine::Legacy, Some(l), _) => l
                .accept(io)
                .await
                .map(|s| TlsStream::Legacy(Box::new(s)))
                .map_err(|(reason, detail)| HandshakeError {
                    engine: Engine::Legacy,
                    reason,
                    detail,
                }),
            _ => Err(HandshakeError {
                engine,
                reason: Reason::Internal,
                detail: "no context for the chosen engine".to_string(),
            }),
        }
    }

    /// The client certificate outcome of an established connection.
    pub fn identity<S>(&self, stream: &TlsStream<S>) -> ClientIdentity {
        let Some(client) = &self.client else {
            return ClientIdentity::none();
        };
        match stream {
            TlsStream::Legacy(s) => client_auth::identity_from_openssl(s.ssl()),
            TlsStream::Modern(s) => match s.get_ref().1.peer_certificates() {
                Some(certs) => client.identity_from_der(certs),
                None => ClientIdentity::none(),
            },
            TlsStream::Plain(_) => ClientIdentity::none(),
        }
    }
}

/// An established TLS connection from either engine.
#[derive(Debug)]
pub enum TlsStream<S> {
    Legacy(Box<tokio_openssl::SslStream<S>>),
    Modern(Box<tokio_rustls::server::TlsStream<S>>),
    /// Plain HTTP: the bytes as they come.
    Plain(S),
}

impl<S> TlsStream<S> {
    pub fn engine(&self) -> Engine {
        match self {
            TlsStream::Legacy(_) => Engine::Legacy,
            TlsStream::Modern(_) => Engine::Modern,
            TlsStream::Plain(_) => Engine::Plain,
        }
    }

    /// Negotiated protocol version, e.g. "tls1.0" (the names used in the config).
    pub fn version(&self) -> &'static str {
        match self {
            TlsStream::Legacy(s) => match s.ssl().version_str() {
                "SSLv3" => "ssl3",
                "TLSv1" => "tls1.0",
                "TLSv1.1" => "tls1.1",
                "TLSv1.2" => "tls1.2",
                "TLSv1.3" => "tls1.3",
                _ => "unknown",
            },
            TlsStream::Modern(s) => match s.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => "tls1.2",
                Some(rustls::ProtocolVersion::TLSv1_3) => "tls1.3",
                _ => "unknown",
            },
            TlsStream::Plain(_) => "plain",
        }
    }

    /// Size of the finite-field DH group used, when the handshake used DHE.
    pub fn dh_bits(&self) -> Option<u32> {
        match self {
            TlsStream::Legacy(s) => s
                .ssl()
                .tmp_key()
                .ok()
                .filter(|k| k.id() == openssl::pkey::Id::DH)
                .map(|k| k.bits()),
            TlsStream::Modern(_) | TlsStream::Plain(_) => None,
        }
    }

    /// Negotiated cipher: OpenSSL's name for legacy, the IANA name for rustls.
    pub fn cipher(&self) -> String {
        match self {
            TlsStream::Legacy(s) => s
                .ssl()
                .current_cipher()
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            TlsStream::Modern(s) => s
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or_default()
                .to_string(),
            TlsStream::Plain(_) => String::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Legacy(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            TlsStream::Modern(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            TlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsStream::Legacy(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            TlsStream::Modern(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            TlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Legacy(s) => Pin::new(s.as_mut()).poll_flush(cx),
            TlsStream::Modern(s) => Pin::new(s.as_mut()).poll_flush(cx),
            TlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Legacy(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            TlsStream::Modern(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            TlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
