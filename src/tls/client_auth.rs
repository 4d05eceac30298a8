//! Client-certificate verification, one implementation for both engines.
//!
//! OpenSSL does the chain verification for the legacy engine *and* for rustls (through a
//! custom [`ClientCertVerifier`]), so `verify_level: legacy` means the same thing on both:
//! SHA-1/MD5 signatures and 1024-bit keys are accepted, which webpki would refuse. A device
//! with such a certificate therefore never fails just because `auto` picked rustls.
//!
//! `optional` requests a certificate, lets the handshake finish whatever it is, and reports the
//! outcome ([`Verify`]); `required` refuses the handshake without a valid one.
//!
//! Device certificates are burned in at manufacture and can never be renewed, so
//! `allow_expired` verifies with OpenSSL's `X509_V_FLAG_NO_CHECK_TIME`: chain, signatures,
//! purpose and key sizes are checked as always, the validity dates of the whole chain are not.
//! The vendor client roots (Sipura, Linksys) are as old as the devices and may have expired
//! too; whoever holds a CA key chooses the dates it signs, so checking the chain "as of" the
//! device certificate's notBefore would add no protection, only another way to lock the fleet
//! out. Whether the device certificate itself is out of date is reported separately
//! ([`ClientIdentity::expired`]). `deny_serials` / `allow_serials` then decide on the verified
//! leaf's serial; a refused serial fails like an unverified certificate, with
//! `X509_V_ERR_APPLICATION_VERIFICATION` as its code ([`SERIAL_REFUSED`] in words).

use std::path::Path;
use std::sync::Arc;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};
use openssl::ssl::{SslContextBuilder, SslVerifyMode};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509PurposeId, X509StoreContext, X509VerifyResult, X509};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::certs::CertError;
use crate::config::{serial_key, ClientAuth, ClientAuthMode, VerifyLevel};
use crate::identity::{ClientIdentity, Verify};

/// Why a verified certificate was refused by `deny_serials` / `allow_serials` (the reason in
/// `FAILED:...` and in the handshake failure's detail).
pub const SERIAL_REFUSED: &str = "certificate serial refused by deny_serials/allow_serials";

/// The `X509_V_ERR_*` code a refused serial fails with on both engines
/// (`X509_V_ERR_APPLICATION_VERIFICATION`), for classifying the handshake failure.
pub(crate) const SERIAL_REFUSED_CODE: i32 = openssl_sys::X509_V_ERR_APPLICATION_VERIFICATION;

/// `deny_serials` / `allow_serials`, compared as [`serial_key`] spells serials.
#[derive(Debug, Default)]
struct Serials {
    deny: Vec<String>,
    allow: Option<Vec<String>>,
}

impl Serials {
    fn any(&self) -> bool {
        !self.deny.is_empty() || self.allow.is_some()
    }

    /// Deny wins; with an allow list only its serials pass.
    fn admits(&self, cert: &openssl::x509::X509Ref) -> bool {
        let hex = super::x509::serial_hex(cert);
        // A (non-conforming) negative serial matches no hex entry.
        let key = serial_key(&hex).unwrap_or_else(|| hex.to_ascii_lowercase());
        !self.deny.contains(&key) && self.allow.as_ref().is_none_or(|a| a.contains(&key))
    }
}

/// Trusted device roots and the policy to check client certificates against them.
pub struct ClientVerifier {
    pub mode: ClientAuthMode,
    pub level: VerifyLevel,
    /// Validity dates not checked (`allow_expired`).
    pub allow_expired: bool,
    serials: Arc<Serials>,
    roots: Vec<X509>,
    store: X509Store,
    hints: Vec<DistinguishedName>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("mode", &self.mode)
            .field("level", &self.level)
            .field("allow_expired", &self.allow_expired)
            .field("serials", &self.serials)
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl VerifyLevel {
    /// OpenSSL's verification "auth level": 0 accepts what the devices carry, 1 is OpenSSL's
    /// default (no SHA-1 signatures, RSA >= 1024... as security level 1 defines).
    fn auth_level(self) -> i32 {
        match self {
            VerifyLevel::Legacy => 0,
            VerifyLevel::Strict => 1,
        }
    }
}

fn other(path: &Path, what: &'static str, e: impl std::fmt::Display) -> CertError {
    CertError::Other {
        path: path.to_path_buf(),
        what,
        detail: e.to_string(),
    }
}

impl ClientVerifier {
    /// `None` when client auth is off.
    pub fn load(auth: &ClientAuth) -> Result<Option<ClientVerifier>, CertError> {
        if auth.mode == ClientAuthMode::Off {
            return Ok(None);
        }
        let mut roots = Vec::new();
        for path in &auth.ca {
            roots.extend(super::x509::load_pem_certs(path)?);
        }
        let first = auth
            .ca
            .first()
            .map(|p| p.as_path())
            .unwrap_or(Path::new("ca"));
        let store = build_store(&roots, auth.verify_level, auth.allow_expired)
            .map_err(|e| other(first, "building the client CA store", e))?;
        let hints = roots
            .iter()
            .filter_map(|r| r.subject_name().to_der().ok())
            .map(DistinguishedName::from)
            .collect();
        Ok(Some(ClientVerifier {
            mode: auth.mode,
            level: auth.verify_level,
            allow_expired: auth.allow_expired,
            serials: Arc::new(Serials {
                deny: auth.deny_serials.clone(),
                allow: auth.allow_serials.clone(),
            }),
            roots,
            store,
            hints,
        }))
    }

    /// Set up an OpenSSL server context to request and check client certificates.
    pub fn configure_openssl(
        &self,
        b: &mut SslContextBuilder,
    ) -> Result<(), openssl::error::ErrorStack> {
        b.set_verify_cert_store(build_store(&self.roots, self.level, self.allow_expired)?)?;
        for root in &self.roots {
            b.add_client_ca(root)?;
        }
        // `allow_expired` is the store's NO_CHECK_TIME: OpenSSL adds the store's flags to the
        // handshake's parameters.
        b.verify_param_mut().set_auth_level(self.level.auth_level());
        let serials = self.serials.clone();
        match self.mode {
            // Let the handshake finish; SSL_get_verify_result still records the outcome (a
            // refused serial as X509_V_ERR_APPLICATION_VERIFICATION).
            ClientAuthMode::Optional => {
                b.set_verify_callback(SslVerifyMode::PEER, move |_, ctx| {
                    if ctx.error() == X509VerifyResult::OK && !serial_admitted(&serials, ctx) {
                        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                    }
                    true
                })
            }
            ClientAuthMode::Required if self.serials.any() => b.set_verify_callback(
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                move |ok, ctx| {
                    if ok && !serial_admitted(&serials, ctx) {
                        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                        return false;
                    }
                    ok
                },
            ),
            ClientAuthMode::Required => {
                b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT)
            }
            ClientAuthMode::Off => b.set_verify(SslVerifyMode::NONE),
        }
        Ok(())
    }

    /// Verify a presented chain (leaf first) against the roots.
    pub fn verify_chain(&self, chain: &[X509]) -> Verify {
        match self.check_chain(chain) {
            None => Verify::None,
            Some(Ok(r)) if r == X509VerifyResult::OK => Verify::Success,
            Some(Ok(r)) => Verify::Failed(verify_words(r).to_string()),
            Some(Err(e)) => Verify::Failed(format!("verification error: {e}")),
        }
    }

    /// OpenSSL's verdict on a chain (leaf first), then the serial lists on a verified leaf:
    /// `None` without a certificate, `Err` when verification could not run at all.
    fn check_chain(
        &self,
        chain: &[X509],
    ) -> Option<Result<X509VerifyResult, openssl::error::ErrorStack>> {
        let verdict = self.openssl_verdict(chain)?;
        Some(verdict.map(|r| match chain.first() {
            Some(leaf) if r == X509VerifyResult::OK && !self.serials.admits(leaf) => {
                X509VerifyResult::APPLICATION_VERIFICATION
            }
            _ => r,
        }))
    }

    /// OpenSSL's verdict on a chain (leaf first): `None` without a certificate, `Err` when
    /// verification could not run at all.
    fn openssl_verdict(
        &self,
        chain: &[X509],
    ) -> Option<Result<X509VerifyResult, openssl::error::ErrorStack>> {
        let leaf = chain.first()?;
        let run = || -> Result<X509VerifyResult, openssl::error::ErrorStack> {
            let mut rest = Stack::new()?;
            for c in chain.iter().skip(1) {
                rest.push(c.clone())?;
            }
            let mut ctx = X509StoreContext::new()?;
            ctx.init(&self.store, leaf, &rest, |c| {
                c.verify_cert()?;
                Ok(c.error())
            })
        };
        Some(run())
    }

    /// The identity of a rustls connection from the certificates it presented.
    pub fn identity_from_der(&self, certs: &[CertificateDer<'_>]) -> ClientIdentity {
        let chain: Result<Vec<X509>, _> = certs.iter().map(|c| X509::from_der(c)).collect();
        match chain {
            Ok(chain) if chain.is_empty() => ClientIdentity::none(),
            Ok(chain) => ClientIdentity {
                verify: self.verify_chain(&chain),
                chain,
            },
            Err(_) => ClientIdentity {
                verify: Verify::Failed("certificate cannot be parsed".into()),
                chain: Vec::new(),
            },
        }
    }

    /// A rustls verifier backed by this one.
    pub fn for_rustls(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(RustlsVerifier(self.clone()))
    }
}

fn build_store(
    roots: &[X509],
    level: VerifyLevel,
    allow_expired: bool,
) -> Result<X509Store, openssl::error::ErrorStack> {
    let mut b = X509StoreBuilder::new()?;
    for r in roots {
        b.add_cert(r.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    param.set_auth_level(level.auth_level());
    param.set_purpose(X509PurposeId::SSL_CLIENT)?;
    if allow_expired {
        param.set_flags(X509VerifyFlags::NO_CHECK_TIME)?;
    }
    b.set_param(&param)?;
    Ok(b.build())
}

/// In the OpenSSL verify callback: false when the leaf (depth 0) is refused by the serial
/// lists. Called at every depth; only the leaf's serial counts.
fn serial_admitted(serials: &Serials, ctx: &openssl::x509::X509StoreContextRef) -> bool {
    if !serials.any() || ctx.error_depth() != 0 {
        return true;
    }
    ctx.current_cert().is_none_or(|leaf| serials.admits(leaf))
}

/// A verification result in words; the serial lists' refusal named as such (OpenSSL's own
/// words for the code are "application verification failure").
pub(crate) fn verify_words(r: X509VerifyResult) -> &'static str {
    if r.as_raw() == SERIAL_REFUSED_CODE {
        SERIAL_REFUSED
    } else {
        r.error_string()
    }
}

/// The legacy engine's outcome, read from the finished handshake.
pub fn identity_from_openssl(ssl: &openssl::ssl::SslRef) -> ClientIdentity {
    let Some(leaf) = ssl.peer_certificate() else {
        return ClientIdentity::none();
    };
    // On a server, the peer chain does not include the leaf.
    let mut chain = vec![leaf];
    if let Some(rest) = ssl.peer_cert_chain() {
        chain.extend(rest.iter().map(|c| c.to_owned()));
    }
    let r = ssl.verify_result();
    let verify = if r == X509VerifyResult::OK {
        Verify::Success
    } else {
        Verify::Failed(verify_words(r).to_string())
    };
    ClientIdentity { verify, chain }
}

#[derive(Debug)]
struct RustlsVerifier(Arc<ClientVerifier>);

/// Why the rustls side refused a client certificate (`client_auth: required`): OpenSSL's words
/// and, when verification ran, its `X509_V_ERR_*` code, which the engine classifies by.
#[derive(Debug)]
pub(crate) struct Rejected {
    reason: String,
    pub(crate) verify_code: Option<i32>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejected {}

fn reject(reason: impl Into<String>, verify_code: Option<i32>) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Rejected {
            reason: reason.into(),
            verify_code,
        }),
    )))
}

impl ClientCertVerifier for RustlsVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.0.mode == ClientAuthMode::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.0.mode == ClientAuthMode::Optional {
            // The outcome is computed after the handshake and forwarded; the signature
            // checks below still prove the client holds the key.
            return Ok(ClientCertVerified::assertion());
        }
        let chain: Result<Vec<X509>, _> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| X509::from_der(c))
            .collect();
        let Ok(chain) = chain else {
            return Err(reject("certificate cannot be parsed", None));
        };
        match self.0.check_chain(&chain) {
            None => Err(rustls::Error::NoCertificatesPresented),
            Some(Ok(r)) if r == X509VerifyResult::OK => Ok(ClientCertVerified::assertion()),
            Some(Ok(r)) => Err(reject(verify_words(r), Some(r.as_raw()))),
            Some(Err(e)) => Err(reject(format!("verification error: {e}"), None)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(cert, dss.scheme, message, dss.signature(), false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(cert, dss.scheme, message, dss.signature(), true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut v = vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP521_SHA512,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
        ];
        if self.0.level == VerifyLevel::Legacy {
            v.push(SignatureScheme::RSA_PKCS1_SHA1);
            v.push(SignatureScheme::ECDSA_SHA1_Legacy);
        }
        v
    }
}

/// Check a handshake signature with OpenSSL. The key type must fit the scheme; TLS 1.3 allows
/// neither PKCS#1 v1.5 nor SHA-1.
fn verify_signature(
    cert: &CertificateDer<'_>,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use SignatureScheme as S;
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let key: PKey<Public> = X509::from_der(cert)
        .and_then(|c| c.public_key())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let (kind, digest, pss) = match scheme {
        S::RSA_PKCS1_SHA1 if !tls13 => (Id::RSA, Some(MessageDigest::sha1()), false),
        S::RSA_PKCS1_SHA256 if !tls13 => (Id::RSA, Some(MessageDigest::sha256()), false),
        S::RSA_PKCS1_SHA384 if !tls13 => (Id::RSA, Some(MessageDigest::sha384()), false),
        S::RSA_PKCS1_SHA512 if !tls13 => (Id::RSA, Some(MessageDigest::sha512()), false),
        S::RSA_PSS_SHA256 => (Id::RSA, Some(MessageDigest::sha256()), true),
        S::RSA_PSS_SHA384 => (Id::RSA, Some(MessageDigest::sha384()), true),
        S::RSA_PSS_SHA512 => (Id::RSA, Some(MessageDigest::sha512()), true),
        S::ECDSA_SHA1_Legacy if !tls13 => (Id::EC, Some(MessageDigest::sha1()), false),
        S::ECDSA_NISTP256_SHA256 => (Id::EC, Some(MessageDigest::sha256()), false),
        S::ECDSA_NISTP384_SHA384 => (Id::EC, Some(MessageDigest::sha384()), false),
        S::ECDSA_NISTP521_SHA512 => (Id::EC, Some(MessageDigest::sha512()), false),
        S::ED25519 => (Id::ED25519, None, false),
        _ => {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))
        }
    };
    if key.id() != kind {
        return Err(bad());
    }
    let ok = (|| -> Result<bool, openssl::error::ErrorStack> {
        let mut v = match digest {
            Some(md) => Verifier::new(md, &key)?,
            None => Verifier::new_without_digest(&key)?,
        };
        if pss {
            v.set_rsa_padding(Padding::PKCS1_PSS)?;
            v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            if let Some(md) = digest {
                v.set_rsa_mgf1_md(md)?;
            }
        }
        v.verify_oneshot(signature, message)
    })()
    .unwrap_or(false);
    if ok {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(bad())
    }
}
