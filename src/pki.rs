//! Throwaway certificate authorities and certificates, made with OpenSSL, for `provgate demo`
//! and the tests. Nothing here is meant for production keys, except [`write_new_key`], which
//! also stores the key `provgate csr` generates.

use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

/// A certificate authority that can sign certificates.
pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// What to put in a certificate issued by a [`Ca`].
#[derive(Clone)]
pub struct CertSpec<'a> {
    /// Subject attributes as (short name, value), e.g. `("CN", "prov.example.com")`.
    pub subject: Vec<(&'a str, &'a str)>,
    pub dns_names: Vec<&'a str>,
    pub rsa_bits: u32,
    pub digest: MessageDigest,
    /// Validity relative to now, in days (negative `not_after_days` makes it expired).
    pub not_before_days: i64,
    pub not_after_days: i64,
    pub is_ca: bool,
}

impl<'a> CertSpec<'a> {
    /// A server certificate for `cn` (also its DNS name), RSA 2048, SHA-256, valid a year.
    pub fn server(cn: &'a str) -> Self {
        CertSpec {
            subject: vec![("CN", cn)],
            dns_names: vec![cn],
            rsa_bits: 2048,
            digest: MessageDigest::sha256(),
            not_before_days: -1,
            not_after_days: 365,
            is_ca: false,
        }
    }

    /// What the old devices' world looks like: RSA 1024, SHA-1.
    pub fn legacy_server(cn: &'a str) -> Self {
        CertSpec {
            rsa_bits: 1024,
            digest: MessageDigest::sha1(),
            ..Self::server(cn)
        }
    }
}

fn name(entries: &[(&str, &str)]) -> Result<X509Name, ErrorStack> {
    let mut b = X509NameBuilder::new()?;
    for (k, v) in entries {
        b.append_entry_by_text(k, v)?;
    }
    Ok(b.build())
}

fn serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(120, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn days_from_now(days: i64) -> Result<Asn1Time, ErrorStack> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Asn1Time::from_unix(now + days * 86_400)
}

fn build(
    spec: &CertSpec<'_>,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> Result<X509, ErrorStack> {
    let subject = name(&spec.subject)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(issuer.map_or(&*subject, |(c, _)| c.subject_name()))?;
    b.set_pubkey(key)?;
    let (not_before, not_after) = (
        days_from_now(spec.not_before_days)?,
        days_from_now(spec.not_after_days)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    if spec.is_ca {
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
    } else {
        b.append_extension(BasicConstraints::new().build()?)?;
    }
    if !spec.dns_names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in &spec.dns_names {
            san.dns(d);
        }
        let ext = san.build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))?;
        b.append_extension(ext)?;
    }
    let signing_key = issuer.map_or(key, |(_, k)| k);
    b.sign(signing_key, spec.digest)?;
    Ok(b.build())
}

fn rsa_key(bits: u32) -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(bits)?)
}

impl Ca {
    /// A self-signed RSA 2048 CA with the given subject CN (and O).
    pub fn new(common_name: &str, organization: &str) -> Result<Ca, ErrorStack> {
        let key = rsa_key(2048)?;
        let spec = CertSpec {
            subject: vec![("O", organization), ("CN", common_name)],
            dns_names: vec![],
            rsa_bits: 2048,
            digest: MessageDigest::sha256(),
            not_before_days: -1,
            not_after_days: 3650,
            is_ca: true,
        };
        let cert = build(&spec, &key, None)?;
        Ok(Ca { cert, key })
    }

    /// Issue a certificate with a fresh RSA key.
    pub fn issue(&self, spec: &CertSpec<'_>) -> Result<(X509, PKey<Private>), ErrorStack> {
        let key = rsa_key(spec.rsa_bits)?;
        let cert = build(spec, &key, Some((&self.cert, &self.key)))?;
        Ok((cert, key))
    }

    /// Issue a certificate with a fresh EC P-256 key (`spec.rsa_bits` is ignored).
    pub fn issue_ec(&self, spec: &CertSpec<'_>) -> Result<(X509, PKey<Private>), ErrorStack> {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
        let cert = build(spec, &key, Some((&self.cert, &self.key)))?;
        Ok((cert, key))
    }

    pub fn cert_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.cert.to_pem()
    }
}

/// Write `cert` (as the chain file) and `key` (PKCS#8 PEM) to `dir/<stem>.pem` and
/// `dir/<stem>.key`.
pub fn write_pair(
    dir: &Path,
    stem: &str,
    cert: &X509,
    key: &PKey<Private>,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let chain = dir.join(format!("{stem}.pem"));
    let keyf = dir.join(format!("{stem}.key"));
    std::fs::write(&chain, cert.to_pem().map_err(std::io::Error::other)?)?;
    let _ = std::fs::remove_file(&keyf);
    write_new_key(&keyf, key)?;
    Ok((chain, keyf))
}

/// Write `key` (PKCS#8 PEM) to a new file `path`, created 0600: only its owner reads it
/// (check warns about anything wider). Fails with `AlreadyExists` rather than replace a file.
pub fn write_new_key(path: &Path, key: &PKey<Private>) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let pem = key
        .private_key_to_pem_pkcs8()
        .map_err(std::io::Error::other)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(&pem)
}
