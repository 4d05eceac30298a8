//! The legacy engine: vendored OpenSSL 3.x, tuned for SPA-era clients.
//!
//! Built by hand rather than from `SslAcceptor::mozilla_*`, which switch TLS 1.0 off and clear
//! `DONT_INSERT_EMPTY_FRAGMENTS`. What old devices need (see docs/legacy-devices.md):
//! security level 0, SSLv2-format hellos accepted (OpenSSL does by default), server cipher
//! preference with RSA key exchange first, DHE only with a fixed group of at most 1024 bits
//! (never automatic DH sizing), and no empty fragments.

use std::pin::Pin;
use std::sync::OnceLock;

use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::provider::Provider;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVersion,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use super::certs::LoadedCert;
use super::client_auth::ClientVerifier;
use super::Reason;
use crate::config::{DhGroup, Profile, TlsVersion};

/// An OpenSSL server context for one (certificate, profile) pair.
pub struct LegacyContext {
    ctx: SslContext,
}

impl std::fmt::Debug for LegacyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyContext")
    }
}

/// What the linked OpenSSL can do, for start-up logs and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub ssl3: bool,
    pub tls1_0: bool,
    pub des3: bool,
    pub rc4: bool,
    pub dhe: bool,
    pub legacy_provider: bool,
}

impl Capabilities {
    pub fn as_pairs(&self) -> [(&'static str, bool); 5] {
        [
            ("ssl3", self.ssl3),
            ("tls1.0", self.tls1_0),
            ("3des", self.des3),
            ("rc4", self.rc4),
            ("dhe", self.dhe),
        ]
    }
}

/// Whether OpenSSL accepts a cipher string at security level 0 (the suites exist and their
/// algorithms are available from the loaded providers).
fn cipher_available(list: &str) -> bool {
    SslContextBuilder::new(SslMethod::tls_server())
        .map(|mut b| {
            b.set_security_level(0);
            b.set_cipher_list(list).is_ok()
        })
        .unwrap_or(false)
}

/// Whether a cipher string keeps any suite with RSA key exchange (what old firmware needs):
/// strip every other key exchange and see whether OpenSSL still finds a suite.
pub fn offers_rsa_key_exchange(ciphers: &str) -> bool {
    cipher_available(&format!(
        "{ciphers}:!kDHE:!kECDHE:!kPSK:!kRSAPSK:!kDHEPSK:!kECDHEPSK:!kSRP:!kGOST:!aNULL"
    ))
}

/// Load OpenSSL's legacy provider (RC4 lives there) next to the default one. Idempotent; the
/// provider stays loaded for the life of the process.
pub fn init() -> Capabilities {
    static LEGACY: OnceLock<Option<Provider>> = OnceLock::new();
    let legacy = LEGACY.get_or_init(|| Provider::try_load(None, "legacy", true).ok());
    Capabilities {
        ssl3: !cfg!(provgate_no_ssl3),
        tls1_0: cipher_available("AES128-SHA"),
        des3: cipher_available("DES-CBC3-SHA"),
        rc4: cipher_available("RC4-SHA"),
        dhe: cipher_available("DHE-RSA-AES128-SHA"),
        legacy_provider: legacy.is_some(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("OpenSSL rejected the {what}: {detail}")]
    Setup { what: String, detail: String },
}

fn setup(what: impl Into<String>) -> impl FnOnce(openssl::error::ErrorStack) -> LegacyError {
    let what = what.into();
    move |e| LegacyError::Setup {
        what,
        detail: e.to_string(),
    }
}

fn ssl_version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Ssl3 => SslVersion::SSL3,
        TlsVersion::Tls10 => SslVersion::TLS1,
        TlsVersion::Tls11 => SslVersion::TLS1_1,
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    }
}

/// The `SSL_OP_NO_*` option that switches one version off inside the min..max range.
fn no_option(v: TlsVersion) -> SslOptions {
    match v {
        TlsVersion::Ssl3 => SslOptions::NO_SSLV3,
        TlsVersion::Tls10 => SslOptions::NO_TLSV1,
        TlsVersion::Tls11 => SslOptions::NO_TLSV1_1,
        TlsVersion::Tls12 => SslOptions::NO_TLSV1_2,
        TlsVersion::Tls13 => SslOptions::NO_TLSV1_3,
    }
}

/// The fixed DH group: for 1024 bits RFC 2409 Oakley group 2 (a safe prime, generator 2, the
/// group Apache 2.2-era servers gave these devices) or the RFC 5114 group with a 160-bit
/// subgroup (OpenSSL recognises it and uses 160-bit private exponents: cheaper DHE); for 2048
/// RFC 3526 group 14, for operators who know every device on the route copes (`check` warns).
fn dh_group(
    bits: u32,
    group: DhGroup,
) -> Result<Dh<openssl::pkey::Params>, openssl::error::ErrorStack> {
    match (bits, group) {
        (2048, _) => Dh::from_pqg(
            BigNum::get_rfc3526_prime_2048()?,
            None,
            BigNum::from_u32(2)?,
        ),
        (_, DhGroup::Rfc5114) => Dh::get_1024_160(),
        (_, DhGroup::Rfc2409) => Dh::from_pqg(
            BigNum::get_rfc2409_prime_1024()?,
            None,
            BigNum::from_u32(2)?,
        ),
    }
}

impl LegacyContext {
    pub fn build(
        cert: &LoadedCert,
        profile: &Profile,
        client: Option<&ClientVerifier>,
    ) -> Result<LegacyContext, LegacyError> {
        let versions = profile.legacy_versions();
        let (Some(min), Some(max)) = (versions.first(), versions.last()) else {
            return Err(LegacyError::Setup {
                what: format!("profile '{}'", profile.name),
                detail: "it leaves no version for the legacy engine (ssl3..tls1.2)".into(),
            });
        };
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(setup("context"))?;
        b.set_security_level(0);
        let mut options = SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::DONT_INSERT_EMPTY_FRAGMENTS
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_RENEGOTIATION;
        for v in TlsVersion::ALL {
            if v > *min && v < *max && !versions.contains(&v) {
                options |= no_option(v);
            }
        }
        b.clear_options(SslOptions::NO_SSLV3);
        b.set_options(options);
        // Give the record buffers (about 34 KB) back while a connection idles between requests.
        b.set_mode(SslMode::RELEASE_BUFFERS);
        b.set_min_proto_version(Some(ssl_version(*min)))
            .map_err(setup(format!("minimum version {min}")))?;
        b.set_max_proto_version(Some(ssl_version(*max)))
            .map_err(setup(format!("maximum version {max}")))?;

        let mut ciphers = profile.ciphers.clone();
        if profile.dh_bits == 0 {
            ciphers.push_str(":!kDHE");
        } else {
            let dh = dh_group(profile.dh_bits, profile.dh_group).map_err(setup("DH group"))?;
            b.set_tmp_dh(&dh).map_err(setup("DH group"))?;
        }
        b.set_cipher_list(&ciphers).map_err(setup(format!(
            "cipher list '{}' of profile '{}'",
            profile.ciphers, profile.name
        )))?;

        let what = format!("certificate '{}'", cert.name);
        let leaf = cert.chain.first().ok_or_else(|| LegacyError::Setup {
            what: what.clone(),
            detail: "empty chain".into(),
        })?;
        b.set_certificate(leaf).map_err(setup(what.clone()))?;
        for extra in cert.chain.iter().skip(1) {
            b.add_extra_chain_cert(extra.clone())
                .map_err(setup(what.clone()))?;
        }
        b.set_private_key(&cert.key)
            .map_err(setup(format!("{what} key")))?;
        b.check_private_key()
            .map_err(setup(format!("{what} key")))?;
        // Needed for session resumption once peers are verified; harmless otherwise.
        b.set_session_id_context(b"provgate")
            .map_err(setup("session id context"))?;
        if let Some(client) = client {
            client
                .configure_openssl(&mut b)
                .map_err(setup("client CA store"))?;
        }
        Ok(LegacyContext { ctx: b.build() })
    }

    /// Run the server handshake over `io` (which replays the sniffed hello).
    pub async fn accept<S>(&self, io: S) -> Result<SslStream<S>, (Reason, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let internal = |e: openssl::error::ErrorStack| (Reason::Internal, e.to_string());
        let ssl = Ssl::new(&self.ctx).map_err(internal)?;
        let mut stream = SslStream::new(ssl, io).map_err(internal)?;
        match Pin::new(&mut stream).accept().await {
            Ok(()) => Ok(stream),
            Err(e) => {
                let mut detail = describe_ssl_error(&e);
                let verify = stream.ssl().verify_result();
                let verify_failed = verify != openssl::x509::X509VerifyResult::OK;
                if verify_failed {
                    detail.push_str(&format!("; client certificate: {}", verify.error_string()));
                }
                Err((
                    classify(&e, &detail, verify_failed.then_some(verify)),
                    detail,
                ))
            }
        }
    }
}

/// Map an OpenSSL failure onto the reason taxonomy.
fn classify(
    e: &openssl::ssl::Error,
    detail: &str,
    verify: Option<openssl::x509::X509VerifyResult>,
) -> Reason {
    if let Some(v) = verify {
        // 18-21: self-signed / no local issuer / cannot verify the first certificate.
        return match v.as_raw() {
            18..=21 | 2 => Reason::UnknownCa,
            _ => Reason::BadCertificate,
        };
    }
    let d = detail.to_ascii_lowercase();
    if d.contains("no shared cipher") || d.contains("no cipher") {
        Reason::NoSharedCipher
    } else if d.contains("protocol") || d.contains("version") {
        Reason::ProtocolVersion
    } else if d.contains("did not return a certificate") {
        Reason::NoCertificate
    } else if d.contains("certificate") {
        Reason::BadCertificate
    } else if d.contains("alert") {
        Reason::ClientAlert
    } else if e.ssl_error().is_none() {
        Reason::ClientClosed
    } else {
        Reason::Internal
    }
}

/// One line for an OpenSSL handshake failure: the library's reason, or what happened on the
/// socket.
fn describe_ssl_error(e: &openssl::ssl::Error) -> String {
    if let Some(stack) = e.ssl_error() {
        let reasons: Vec<String> = stack
            .errors()
            .iter()
            .map(|err| err.reason().unwrap_or("unknown").to_string())
            .collect();
        if !reasons.is_empty() {
            return reasons.join("; ");
        }
    }
    if let Some(io) = e.io_error() {
        return format!("i/o: {io}");
    }
    if e.code() == openssl::ssl::ErrorCode::ZERO_RETURN
        || e.code() == openssl::ssl::ErrorCode::SYSCALL
    {
        return "client closed the connection".to_string();
    }
    e.to_string()
}
