//! Certificate chains and keys: loaded once per snapshot from PEM, usable by both engines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openssl::pkey::{Id, PKey, Private};
use openssl::x509::X509;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::x509::{self, X509Error};
use crate::config::CertificateSpec;

// Paths kept for check.rs and snapshot.rs; the helpers live in [`super::x509`].
pub use super::x509::{asn1_to_unix, common_name, name_to_string};

/// Why a certificate or key could not be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found{detail}")]
    NoCertificate { path: PathBuf, detail: String },
    #[error(
        "{path}: not a usable PEM private key (RSA or EC, PKCS#1, SEC1 or PKCS#8, unencrypted)"
    )]
    BadKey { path: PathBuf },
    #[error("{key}: this key does not belong to the first certificate in {chain}")]
    Mismatch { key: PathBuf, chain: PathBuf },
    #[error("{path}: {what}: {detail}")]
    Other {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
}

impl From<X509Error> for CertError {
    fn from(e: X509Error) -> Self {
        match e {
            X509Error::Read { path, source } => CertError::Read { path, source },
            X509Error::Parse { path, detail } => CertError::NoCertificate {
                path,
                detail: format!(" ({detail})"),
            },
            X509Error::Empty { path } => CertError::NoCertificate {
                path,
                detail: String::new(),
            },
        }
    }
}

/// What an operator wants to see about a certificate (`provgate check`, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// Seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// e.g. "RSA 1024" or "EC 256".
    pub key: String,
    pub signature: String,
    pub chain_len: usize,
}

/// A certificate chain with its key, parsed for OpenSSL and (when it can) for rustls.
pub struct LoadedCert {
    pub name: String,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// The chain and key for rustls, or why rustls cannot use this key.
    pub rustls: Result<Arc<CertifiedKey>, String>,
    pub info: CertInfo,
    /// The key file, and its permission bits when it was read from disk.
    pub key_file: PathBuf,
    pub key_mode: Option<u32>,
}

/// Permission bits that let anyone but the owner at a private key file.
pub const KEY_MODE_TOO_OPEN: u32 = 0o077;

/// A key file's permission bits (`0o600`), following symlinks; `None` off Unix or when it
/// cannot be read.
pub fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl LoadedCert {
    /// The key file's mode when group or others have any access to it (`0644`, `0640`).
    pub fn key_too_open(&self) -> Option<u32> {
        self.key_mode.filter(|m| m & KEY_MODE_TOO_OPEN != 0)
    }
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is deliberately left out.
        f.debug_struct("LoadedCert")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl LoadedCert {
    pub fn load(spec: &CertificateSpec) -> Result<LoadedCert, CertError> {
        let chain_pem = read(&spec.chain)?;
        let key_pem = read(&spec.key)?;
        let mut cert = Self::from_pem(&spec.name, &spec.chain, &chain_pem, &spec.key, &key_pem)?;
        cert.key_mode = file_mode(&spec.key);
        if let Some(mode) = cert.key_too_open() {
            tracing::warn!(
                certificate = %spec.name,
                file = %spec.key.display(),
                mode = %format!("{mode:04o}"),
                "private key file {} is readable by group or others (mode {mode:04o}); \
                 chmod 600 it",
                spec.key.display()
            );
        }
        Ok(cert)
    }

    pub fn from_pem(
        name: &str,
        chain_path: &Path,
        chain_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<LoadedCert, CertError> {
        let chain = x509::parse_pem_certs(chain_path, chain_pem)?;
        let Some(leaf) = chain.first() else {
            return Err(CertError::NoCertificate {
                path: chain_path.to_path_buf(),
                detail: String::new(),
            });
        };
        // OpenSSL's error text for a key can quote its input; only the path is reported.
        let key = PKey::private_key_from_pem(key_pem).map_err(|_| CertError::BadKey {
            path: key_path.to_path_buf(),
        })?;
        let public = leaf.public_key().map_err(|e| CertError::Other {
            path: chain_path.to_path_buf(),
            what: "reading the certificate's public key",
            detail: e.to_string(),
        })?;
        if !public.public_eq(&key) {
            return Err(CertError::Mismatch {
                key: key_path.to_path_buf(),
                chain: chain_path.to_path_buf(),
            });
        }
        let info = inspect(leaf, &key, chain.len());
        let rustls = rustls_key(&chain, &key);
        Ok(LoadedCert {
            name: name.to_string(),
            chain,
            key,
            rustls,
            info,
            key_file: key_path.to_path_buf(),
            key_mode: None,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// rustls (aws-lc-rs) signs with RSA 2048-8192 and EC keys; the old devices' 1024-bit RSA
/// keys are refused, and such certificates are then served by the legacy engine only.
fn rustls_key(chain: &[X509], key: &PKey<Private>) -> Result<Arc<CertifiedKey>, String> {
    let pkcs8 = key
        .private_key_to_pkcs8()
        .map_err(|e| format!("cannot encode key as PKCS#8: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|_| {
        format!(
            "rustls cannot sign with a {} key (it needs RSA 2048-8192 or EC P-256/P-384)",
            describe_key(key)
        )
    })?;
    let certs = chain
        .iter()
        .map(|c| c.to_der().map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot encode chain: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(certs, signer)))
}

pub fn describe_key<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> String {
    let kind = match key.id() {
        Id::RSA => "RSA",
        Id::EC => "EC",
        Id::ED25519 => "Ed25519",
        Id::DSA => "DSA",
        _ => "other",
    };
    format!("{kind} {}", key.bits())
}

fn inspect(leaf: &X509, key: &PKey<Private>, chain_len: usize) -> CertInfo {
    let serial = x509::serial_hex(leaf);
    let not_after_unix = asn1_to_unix(leaf.not_after());
    CertInfo {
        subject: name_to_string(leaf.subject_name()),
        issuer: name_to_string(leaf.issuer_name()),
        serial,
        not_before: leaf.not_before().to_string(),
        not_after: leaf.not_after().to_string(),
        not_after_unix,
        key: describe_key(key),
        signature: leaf
            .signature_algorithm()
            .object()
            .nid()
            .long_name()
            .unwrap_or("unknown")
            .to_string(),
        chain_len,
    }
}
