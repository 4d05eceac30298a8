//! The legacy engine: vendored OpenSSL 3.x, tuned for SPA-era clients.
//!
//! Built by hand rather than from `SslAcceptor::mozilla_*`, which switch TLS 1.0 off and clear
//! `DONT_INSERT_EMPTY_FRAGMENTS`. What old devices need (see docs/legacy-devices.md):
//! security level 0, SSLv2-format hellos accepted (OpenSSL does by default), server cipher
//! preference with RSA key exchange first, DHE only with a fixed group of at most 1024 bits
//! (never automatic DH sizing), and no empty fragments.
//!
//! This file builds the context and runs the handshake. Beside it: [`ciphers`] answers what
//! `check` and config validation ask about a profile's cipher string (which suites it really
//! selects on this build, which words OpenSSL silently ignores), [`dh`] the DH groups (built-in
//! or an operator's file), [`errors`] the failure classification by OpenSSL's codes.

pub mod ciphers;
pub mod dh;
mod errors;

pub use ciphers::{cipher_issues, effective_suites, Suite};
pub use dh::{describe_dh, dh_params_bits};

use std::pin::Pin;
use std::sync::OnceLock;

use openssl::provider::Provider;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVersion,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use super::certs::LoadedCert;
use super::client_auth::ClientVerifier;
use super::Reason;
use crate::config::{Profile, TlsVersion};
use dh::dh_for;

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

pub(crate) fn ssl_version(v: TlsVersion) -> SslVersion {
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

/// The version range of a profile's legacy side and the `NO_*` options for the versions
/// missing inside it; `None` when it leaves no version for OpenSSL.
pub(crate) fn version_setup(profile: &Profile) -> Option<(TlsVersion, TlsVersion, SslOptions)> {
    let versions = profile.legacy_versions();
    let (min, max) = (*versions.first()?, *versions.last()?);
    let mut holes = SslOptions::empty();
    for v in TlsVersion::ALL {
        if v > min && v < max && !versions.contains(&v) {
            holes |= no_option(v);
        }
    }
    Some((min, max, holes))
}

/// The cipher rule OpenSSL gets for a profile: its string, with DHE struck when the profile
/// has no DH group (`dh_bits: 0`).
pub fn cipher_rule(profile: &Profile) -> String {
    if profile.dh_bits == 0 {
        format!("{}:!kDHE", profile.ciphers)
    } else {
        profile.ciphers.clone()
    }
}

impl LegacyContext {
    pub fn build(
        cert: &LoadedCert,
        profile: &Profile,
        client: Option<&ClientVerifier>,
    ) -> Result<LegacyContext, LegacyError> {
        let Some((min, max, holes)) = version_setup(profile) else {
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
            | SslOptions::NO_RENEGOTIATION
            | holes;
        // OpenSSL issues RFC 5077 tickets unless told not to; session-ID resumption from the
        // server's cache stays either way.
        if !profile.session_tickets {
            options |= SslOptions::NO_TICKET;
        }
        b.clear_options(SslOptions::NO_SSLV3);
        b.set_options(options);
        // Give the record buffers (about 34 KB) back while a connection idles between requests.
        b.set_mode(SslMode::RELEASE_BUFFERS);
        // Take a whole record (and whatever follows it) in one read instead of a 5-byte header
        // read and a body read: one `recv` per request instead of three (nginx does the same).
        // OpenSSL reads ahead only once the application keys are in use, so the handshake never
        // consumes bytes past its own records. Encrypt-then-MAC stays honoured when a client
        // offers it (the devices never do: RFC 7366 is newer than their firmware).
        b.set_read_ahead(true);
        b.set_min_proto_version(Some(ssl_version(min)))
            .map_err(setup(format!("minimum version {min}")))?;
        b.set_max_proto_version(Some(ssl_version(max)))
            .map_err(setup(format!("maximum version {max}")))?;

        if let Some(dh) = dh_for(profile).map_err(setup("DH group"))? {
            b.set_tmp_dh(&dh).map_err(setup("DH group"))?;
        }
        b.set_cipher_list(&cipher_rule(profile))
            .map_err(setup(format!(
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
                let mut detail = errors::describe(&e);
                let verify = stream.ssl().verify_result();
                let verify_failed = verify != openssl::x509::X509VerifyResult::OK;
                if verify_failed {
                    detail.push_str(&format!(
                        "; client certificate: {}",
                        super::client_auth::verify_words(verify)
                    ));
                }
                let reason = errors::classify(
                    &errors::codes(&e),
                    verify_failed.then_some(verify.as_raw()),
                    e.ssl_error().is_some(),
                );
                Err((reason, detail))
            }
        }
    }
}
