//! The modern engine: rustls (aws-lc-rs provider), TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
//!
//! The server picks the suite ([`suite_order`], `ignore_client_order`), like the legacy
//! engine does with `CIPHER_SERVER_PREFERENCE`.

use std::sync::Arc;

use rustls::server::{ClientHello as RustlsHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::certs::LoadedCert;
use super::client_auth::ClientVerifier;
use super::Reason;
use crate::config::{Profile, TlsVersion};
use crate::hello::{ClientHello, ProtocolVersion};

/// The suites rustls offers, in the server's order of preference: AES-256-GCM, AES-128-GCM,
/// then ChaCha20-Poly1305, for TLS 1.3 and for TLS 1.2; in TLS 1.2 ECDHE-RSA before
/// ECDHE-ECDSA, as in the legacy engine's list (only the ones the certificate's key can sign
/// for are candidates, so RSA-vs-ECDSA order never decides anything). rustls's own default
/// list has the same AES-256 > AES-128 > ChaCha20 order but lets the client decide.
pub fn suite_order() -> Vec<SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The IANA names of [`suite_order`], in order (for `check`).
pub fn suite_names() -> Vec<&'static str> {
    suite_order()
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect()
}

/// What rustls sends after a TLS 1.3 handshake when tickets are on (its own default).
const TLS13_TICKETS: usize = 2;

/// A rustls server config for one (certificate, profile) pair.
pub struct ModernContext {
    acceptor: TlsAcceptor,
    suites: Vec<SupportedCipherSuite>,
    key_algorithm: SignatureAlgorithm,
    tls12: bool,
    tls13: bool,
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: RustlsHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl std::fmt::Debug for ModernContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModernContext")
            .field("tls12", &self.tls12)
            .field("tls13", &self.tls13)
            .finish_non_exhaustive()
    }
}

impl ModernContext {
    /// `Err` says why rustls cannot serve this pair (e.g. a 1024-bit RSA key).
    pub fn build(
        cert: &LoadedCert,
        profile: &Profile,
        client: Option<&Arc<ClientVerifier>>,
    ) -> Result<ModernContext, String> {
        let key = cert.rustls.as_ref().map_err(Clone::clone)?.clone();
        let versions = profile.modern_versions();
        let tls12 = versions.contains(&TlsVersion::Tls12);
        let tls13 = versions.contains(&TlsVersion::Tls13);
        let mut protocol_versions = Vec::new();
        if tls12 {
            protocol_versions.push(&rustls::version::TLS12);
        }
        if tls13 {
            protocol_versions.push(&rustls::version::TLS13);
        }
        if protocol_versions.is_empty() {
            return Err(format!(
                "profile '{}' leaves no version for rustls (tls1.2, tls1.3)",
                profile.name
            ));
        }
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: suite_order(),
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let suites = provider.cipher_suites.clone();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions)
            .map_err(|e| e.to_string())?;
        let builder = match client {
            Some(v) => builder.with_client_cert_verifier(v.for_rustls()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(OneCert(key.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = true;
        // TLS 1.2: rustls's default ticketer never issues RFC 5077 tickets (resumption by
        // session ID from its cache); TLS 1.3: it sends TLS13_TICKETS tickets backed by that
        // cache. `session_tickets: off` stops the TLS 1.3 ones too.
        config.send_tls13_tickets = if profile.session_tickets {
            TLS13_TICKETS
        } else {
            0
        };
        let key_algorithm = key.key.algorithm();
        Ok(ModernContext {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            suites,
            key_algorithm,
            tls12,
            tls13,
        })
    }

    /// Whether rustls can complete a handshake for this hello: it offers a version this context
    /// serves and a cipher suite that works with the certificate's key.
    pub fn can_serve(&self, hello: &ClientHello) -> bool {
        if hello.format != crate::hello::HelloFormat::Tls {
            return false;
        }
        let max = hello.max_version();
        let offers13 = self.tls13 && hello.supported_versions.contains(&ProtocolVersion::TLS1_3);
        let offers12 = self.tls12 && max >= ProtocolVersion::TLS1_2;
        self.suites.iter().any(|s| {
            let code = u16::from(s.suite());
            if !hello.offers_cipher(code) {
                return false;
            }
            let version_ok = match s {
                SupportedCipherSuite::Tls13(_) => offers13,
                SupportedCipherSuite::Tls12(_) => offers12,
            };
            version_ok && s.usable_for_signature_algorithm(self.key_algorithm)
        })
    }

    pub async fn accept<S>(&self, io: S) -> Result<TlsStream<S>, (Reason, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await.map_err(|e| {
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(err) => (classify(err), err.to_string()),
                None => (Reason::ClientClosed, e.to_string()),
            }
        })
    }
}

/// Map a rustls failure onto the reason taxonomy.
fn classify(e: &rustls::Error) -> Reason {
    use rustls::{CertificateError, Error, PeerIncompatible};
    match e {
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::NoCipherSuitesInCommon => Reason::NoSharedCipher,
            // A TLS 1.0/1.1 hello carries neither extension.
            PeerIncompatible::SignatureAlgorithmsExtensionRequired
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic => Reason::ProtocolVersion,
            _ => Reason::NoSharedCipher,
        },
        Error::NoCertificatesPresented => Reason::NoCertificate,
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => Reason::UnknownCa,
        Error::InvalidCertificate(CertificateError::Other(o))
            if o.0
                .downcast_ref::<super::client_auth::Rejected>()
                .and_then(|r| r.verify_code)
                .is_some_and(super::untrusted_issuer) =>
        {
            Reason::UnknownCa
        }
        Error::InvalidCertificate(CertificateError::Other(o))
            if o.0
                .downcast_ref::<super::client_auth::Rejected>()
                .and_then(|r| r.verify_code)
                == Some(super::client_auth::SERIAL_REFUSED_CODE) =>
        {
            Reason::ClientCertDenied
        }
        Error::InvalidCertificate(_) => Reason::BadCertificate,
        Error::AlertReceived(_) => Reason::ClientAlert,
        _ => Reason::Internal,
    }
}
