//! The legacy engine: vendored OpenSSL 3.x, tuned for SPA-era clients.
//!
//! Built by hand rather than from `SslAcceptor::mozilla_*`, which switch TLS 1.0 off and clear
//! `DONT_INSERT_EMPTY_FRAGMENTS`. What old devices need (see docs/legacy-devices.md):
//! security level 0, SSLv2-format hellos accepted (OpenSSL does by default), server cipher
//! preference with RSA key exchange first, DHE only with a fixed group of at most 1024 bits
//! (never automatic DH sizing), and no empty fragments.
//!
//! It also answers the questions `check` and config validation ask about a profile's OpenSSL
//! side: which suites a cipher string really selects on this build ([`effective_suites`]),
//! which of its words OpenSSL silently ignores ([`cipher_issues`]), and whether an operator's
//! DH parameter file is usable ([`dh_params_bits`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumContext};
use openssl::dh::Dh;
use openssl::provider::Provider;
use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVersion,
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

/// The version range of a profile's legacy side and the `NO_*` options for the versions
/// missing inside it; `None` when it leaves no version for OpenSSL.
fn version_setup(profile: &Profile) -> Option<(TlsVersion, TlsVersion, SslOptions)> {
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

/// The DH group a profile serves: none (`dh_bits: 0`), the operator's file (`dh_params`) or
/// the built-in fixed group.
fn dh_for(
    profile: &Profile,
) -> Result<Option<Dh<openssl::pkey::Params>>, openssl::error::ErrorStack> {
    if profile.dh_bits == 0 {
        return Ok(None);
    }
    if let Some(own) = &profile.dh_params {
        return Dh::params_from_pem(&own.pem).map(Some);
    }
    dh_group(profile.dh_bits, profile.dh_group).map(Some)
}

/// Which DH group a profile's DHE suites use, in words (`check`, logs).
pub fn describe_dh(profile: &Profile) -> String {
    match (profile.dh_bits, &profile.dh_params, profile.dh_group) {
        (0, _, _) => "no DHE (dh_bits: 0)".to_string(),
        (_, Some(own), _) => format!(
            "DHE with the operator's {}-bit group from {} (dh_params)",
            own.bits,
            own.path.display()
        ),
        (2048, None, _) => "DHE with the fixed 2048-bit RFC 3526 group 14".to_string(),
        (bits, None, DhGroup::Rfc5114) => {
            format!("DHE with the fixed {bits}-bit RFC 5114 group (160-bit subgroup and exponents)")
        }
        (bits, None, DhGroup::Rfc2409) => {
            format!("DHE with the fixed {bits}-bit RFC 2409 Oakley group 2")
        }
    }
}

/// Check an operator's DH parameter file (PEM `DH PARAMETERS`, as `openssl dhparam` writes
/// it) and return the size of its prime in bits. The prime must be prime and the generator
/// inside (1, p-1); a safe prime is not required (`openssl dhparam -dsaparam` output is fine).
pub fn dh_params_bits(pem: &[u8]) -> Result<u32, String> {
    let dh = Dh::params_from_pem(pem).map_err(|_| {
        "no PEM 'DH PARAMETERS' block in it (make one with `openssl dhparam -out dh.pem 1024`)"
            .to_string()
    })?;
    let fail = |e: openssl::error::ErrorStack| format!("cannot check the group: {e}");
    let p = dh.prime_p();
    let g = dh.generator();
    let mut ctx = BigNumContext::new().map_err(fail)?;
    if !p.is_prime(0, &mut ctx).map_err(fail)? {
        return Err("its modulus p is not prime".to_string());
    }
    let one = BigNum::from_u32(1).map_err(fail)?;
    let mut p_minus_1 = BigNum::new().map_err(fail)?;
    p_minus_1.checked_sub(p, &one).map_err(fail)?;
    if *g <= *one || *g >= *p_minus_1 {
        return Err("its generator g is not between 1 and p-1".to_string());
    }
    u32::try_from(p.num_bits()).map_err(|_| "its modulus has no size".to_string())
}

/// One cipher suite as OpenSSL resolves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suite {
    /// The IANA code, as `0x0016`.
    pub id: String,
    /// OpenSSL's name.
    pub name: &'static str,
    /// The lowest protocol version it works with (`SSLv3`, `TLSv1.2`).
    pub version: &'static str,
    /// Key exchange and authentication in OpenSSL's words (`DH`, `RSA`; `ECDH`, `ECDSA`).
    pub kx: String,
    pub auth: String,
}

impl Suite {
    /// Whether a certificate with this kind of key can serve the suite.
    pub fn usable_with(&self, key: openssl::pkey::Id) -> bool {
        use openssl::pkey::Id;
        match self.auth.as_str() {
            "RSA" => key == Id::RSA,
            "ECDSA" => key == Id::EC,
            "DSS" => key == Id::DSA,
            _ => true,
        }
    }

    fn from_openssl(c: &openssl::ssl::SslCipherRef) -> Suite {
        let description = c.description();
        let field = |tag: &str| {
            description
                .split_whitespace()
                .find_map(|w| w.strip_prefix(tag))
                .unwrap_or("?")
                .to_string()
        };
        Suite {
            id: format!("0x{:04x}", u16::from_be_bytes(c.protocol_id())),
            name: c.name(),
            version: c.version(),
            kx: field("Kx="),
            auth: field("Au="),
        }
    }
}

/// Swallows what OpenSSL writes and has nothing to read: a client handshake over it stops
/// right after the ClientHello.
#[derive(Debug, Default)]
struct Capture(Vec<u8>);

impl std::io::Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn reasons(e: &openssl::error::ErrorStack) -> String {
    let r: Vec<&str> = e.errors().iter().filter_map(|e| e.reason()).collect();
    if r.is_empty() {
        e.to_string()
    } else {
        r.join("; ")
    }
}

/// The suites the legacy engine can negotiate for a profile on this build, in server order:
/// OpenSSL resolves the profile's cipher rule ([`cipher_rule`]) at security level 0 and keeps
/// what the profile's versions allow. (The list is read from the ClientHello of an OpenSSL
/// client set up like the server: OpenSSL offers exactly its resolved list, in order, minus
/// the suites the enabled versions cannot use; the crate has no unsafe code to read a
/// server context's list directly.) `Err` carries OpenSSL's reason when it rejects the string
/// outright; an empty list means the string selects nothing these versions can use.
pub fn effective_suites(profile: &Profile) -> Result<Vec<Suite>, String> {
    init();
    let Some((min, max, holes)) = version_setup(profile) else {
        return Ok(Vec::new());
    };
    let internal = |e: openssl::error::ErrorStack| format!("cannot set up OpenSSL: {e}");
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(internal)?;
    b.set_security_level(0);
    b.clear_options(SslOptions::NO_SSLV3);
    b.set_options(holes);
    b.set_min_proto_version(Some(ssl_version(min)))
        .map_err(internal)?;
    b.set_max_proto_version(Some(ssl_version(max)))
        .map_err(internal)?;
    b.set_cipher_list(&cipher_rule(profile))
        .map_err(|e| reasons(&e))?;
    let ctx = b.build();
    let ssl = Ssl::new(&ctx).map_err(internal)?;
    let mid = match ssl.connect(Capture::default()) {
        Err(HandshakeError::WouldBlock(mid)) => mid,
        Err(HandshakeError::Failure(mid)) => {
            // OpenSSL refuses to send a hello without a suite for the enabled versions.
            let reason = mid.error().ssl_error().map(reasons).unwrap_or_default();
            return if reason.contains("no ciphers available") {
                Ok(Vec::new())
            } else {
                Err(format!("cannot resolve the cipher list: {reason}"))
            };
        }
        Err(e) => return Err(format!("cannot resolve the cipher list: {e}")),
        Ok(_) => return Err("cannot resolve the cipher list: handshake completed".into()),
    };
    let hello = match crate::hello::parse(&mid.get_ref().0) {
        crate::hello::Parse::Parsed(h) => h,
        other => return Err(format!("cannot read OpenSSL's own hello: {other:?}")),
    };
    let bytes: Vec<u8> = hello
        .cipher_suites
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    let lists = mid
        .ssl()
        .bytes_to_cipher_list(&bytes, false)
        .map_err(internal)?;
    Ok(lists.suites.iter().map(Suite::from_openssl).collect())
}

/// Every cipher suite name the linked OpenSSL knows (OpenSSL and IANA spellings), with the
/// lowest version each works with; whether or not this build can serve it.
fn known_suites() -> &'static HashMap<&'static str, &'static str> {
    static KNOWN: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known = HashMap::new();
        let every_code: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_be_bytes).collect();
        let ssl = SslContextBuilder::new(SslMethod::tls()).and_then(|b| Ssl::new(&b.build()));
        if let Ok(lists) = ssl.and_then(|s| s.bytes_to_cipher_list(&every_code, false)) {
            for c in &lists.suites {
                known.insert(c.name(), c.version());
                if let Some(std) = c.standard_name() {
                    known.insert(std, c.version());
                }
            }
        }
        known
    })
}

/// The keywords of OpenSSL 3's cipher strings (`cipher_aliases[]` in ssl/ssl_ciph.c of the
/// vendored 3.6). Case matters. `DEFAULT` and `SUITEB*` count only as the first element.
const CIPHER_KEYWORDS: &[&str] = &[
    "ALL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "kRSA",
    "kEDH",
    "kDHE",
    "DH",
    "kEECDH",
    "kECDHE",
    "ECDH",
    "kPSK",
    "kRSAPSK",
    "kECDHEPSK",
    "kDHEPSK",
    "kSRP",
    "kGOST",
    "kGOST18",
    "aRSA",
    "aDSS",
    "DSS",
    "aNULL",
    "aECDSA",
    "ECDSA",
    "aPSK",
    "aGOST01",
    "aGOST12",
    "aGOST",
    "aSRP",
    "EDH",
    "DHE",
    "EECDH",
    "ECDHE",
    "NULL",
    "RSA",
    "ADH",
    "AECDH",
    "PSK",
    "SRP",
    "3DES",
    "RC4",
    "RC2",
    "IDEA",
    "SEED",
    "eNULL",
    "GOST89",
    "AES128",
    "AES256",
    "AES",
    "AESGCM",
    "AESCCM",
    "AESCCM8",
    "CAMELLIA128",
    "CAMELLIA256",
    "CAMELLIA",
    "CHACHA20",
    "GOST2012-GOST8912-GOST8912",
    "ARIA",
    "ARIAGCM",
    "ARIA128",
    "ARIA256",
    "CBC",
    "MD5",
    "SHA1",
    "SHA",
    "GOST94",
    "GOST89MAC",
    "SHA256",
    "SHA384",
    "GOST12",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "TLSv1.2",
    "LOW",
    "MEDIUM",
    "HIGH",
    "FIPS",
];

/// A part of a cipher string that OpenSSL ignores (it never says so itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CipherIssue {
    /// Neither a cipher suite name nor a keyword of OpenSSL 3.
    Unknown {
        word: String,
        suggestion: Option<String>,
    },
    /// A TLS 1.3 suite: cipher strings set the suites of TLS 1.2 and older only.
    Tls13 { word: String },
    /// `DEFAULT` or `SUITEB*` after the first element.
    Misplaced { word: String },
    /// Known words that select no suite this build can serve (algorithms not available).
    Unavailable { element: String },
}

impl CipherIssue {
    /// The word or element at fault.
    pub fn word(&self) -> &str {
        match self {
            CipherIssue::Unknown { word, .. }
            | CipherIssue::Tls13 { word }
            | CipherIssue::Misplaced { word } => word,
            CipherIssue::Unavailable { element } => element,
        }
    }
}

impl std::fmt::Display for CipherIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CipherIssue::Unknown { word, suggestion } => {
                write!(
                    f,
                    "'{word}' is not an OpenSSL 3 cipher suite name or keyword; OpenSSL \
                     ignores it"
                )?;
                if let Some(s) = suggestion {
                    write!(f, " (the OpenSSL 3 name is '{s}')")?;
                }
                Ok(())
            }
            CipherIssue::Tls13 { word } => write!(
                f,
                "'{word}' is a TLS 1.3 suite; a cipher string only sets TLS 1.2-and-older \
                 suites, so OpenSSL ignores it"
            ),
            CipherIssue::Misplaced { word } => write!(
                f,
                "'{word}' only counts as the first element of a cipher string; OpenSSL \
                 ignores it here"
            ),
            CipherIssue::Unavailable { element } => write!(
                f,
                "'{element}' selects no suite on this OpenSSL build (its algorithms are not \
                 available)"
            ),
        }
    }
}

fn suggest(word: &str) -> Option<String> {
    let known = known_suites();
    // OpenSSL 1.1.0 renamed EDH-* to DHE-* and EECDH-* to ECDHE-*; the old names are gone.
    for (old, new) in [("EDH-", "DHE-"), ("EECDH-", "ECDHE-")] {
        if let Some(rest) = word.strip_prefix(old) {
            let renamed = format!("{new}{rest}");
            if known.contains_key(renamed.as_str()) {
                return Some(renamed);
            }
        }
    }
    known
        .keys()
        .chain(CIPHER_KEYWORDS)
        .find(|k| k.eq_ignore_ascii_case(word))
        .map(|k| (*k).to_string())
}

/// What OpenSSL will silently ignore in a cipher string: unknown names (typos, pre-1.1.0
/// names such as `EDH-RSA-DES-CBC3-SHA`), TLS 1.3 suites, misplaced `DEFAULT`, and added
/// elements that select nothing on this build. Keywords (`HIGH`, `!aNULL`, `+RSA`,
/// `kEDH+AESGCM`) and commands (`@STRENGTH`, `@SECLEVEL=0`) are fine. The tokenising follows
/// `ssl_cipher_process_rulestr`: elements split at `:`, ` `, `;`, `,`; one prefix of `!`, `-`,
/// `+` or `@`; words joined by `+`.
pub fn cipher_issues(ciphers: &str) -> Vec<CipherIssue> {
    init();
    let known = known_suites();
    let mut probe = SslContextBuilder::new(SslMethod::tls()).ok();
    if let Some(p) = probe.as_mut() {
        p.set_security_level(0);
    }
    let mut issues = Vec::new();
    let elements = ciphers
        .split([':', ' ', ';', ','])
        .filter(|e| !e.is_empty());
    for (i, element) in elements.enumerate() {
        let (prefix, body) = match element.chars().next() {
            Some(c @ ('!' | '-' | '+' | '@')) => (Some(c), &element[1..]),
            _ => (None, element),
        };
        // Commands: @STRENGTH and @SECLEVEL=n work, anything else fails the whole string.
        if prefix == Some('@') {
            continue;
        }
        if i == 0 && prefix.is_none() && (body == "DEFAULT" || body.starts_with("SUITEB")) {
            continue;
        }
        let mut all_known = true;
        for word in body.split('+').filter(|w| !w.is_empty()) {
            if CIPHER_KEYWORDS.contains(&word) {
                continue;
            }
            all_known = false;
            match known.get(word) {
                Some(&"TLSv1.3") => issues.push(CipherIssue::Tls13 { word: word.into() }),
                Some(_) => all_known = true,
                None if word == "DEFAULT" || word.starts_with("SUITEB") => {
                    issues.push(CipherIssue::Misplaced { word: word.into() })
                }
                None => issues.push(CipherIssue::Unknown {
                    word: word.into(),
                    suggestion: suggest(word),
                }),
            }
            if !all_known {
                break;
            }
        }
        // Removing or reordering what is not there does no harm; adding it does nothing.
        if all_known && prefix.is_none() {
            if let Some(p) = probe.as_mut() {
                if p.set_cipher_list(body).is_err() {
                    issues.push(CipherIssue::Unavailable {
                        element: element.into(),
                    });
                }
            }
        }
    }
    issues
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineKind, LEGACY_CIPHERS};
    use crate::pki::{Ca, CertSpec};

    fn profile(versions: &[TlsVersion], ciphers: &str) -> Profile {
        Profile {
            name: "t".into(),
            engine: EngineKind::Legacy,
            versions: versions.iter().copied().collect(),
            ciphers: ciphers.into(),
            dh_bits: 1024,
            dh_group: DhGroup::Rfc2409,
            dh_params: None,
            session_tickets: true,
        }
    }

    fn names(suites: &[Suite]) -> Vec<&'static str> {
        suites.iter().map(|s| s.name).collect()
    }

    #[test]
    fn the_builtin_string_is_all_openssl3_names_and_serves_0x0016() {
        assert_eq!(cipher_issues(LEGACY_CIPHERS), vec![]);
        use TlsVersion::*;
        let all = effective_suites(&profile(&[Tls10, Tls11, Tls12], LEGACY_CIPHERS)).unwrap();
        assert_eq!(
            names(&all),
            [
                "AES256-SHA",
                "AES128-SHA",
                "DHE-RSA-AES256-SHA",
                "DHE-RSA-AES128-SHA",
                "DES-CBC3-SHA",
                "DHE-RSA-DES-CBC3-SHA",
                "AES256-GCM-SHA384",
                "AES128-GCM-SHA256",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ]
        );
        let des3_dhe = &all[5];
        assert_eq!(
            (
                des3_dhe.id.as_str(),
                des3_dhe.kx.as_str(),
                des3_dhe.auth.as_str()
            ),
            ("0x0016", "DH", "RSA")
        );
        // TLS 1.0 only: the GCM suites (TLS 1.2) drop out.
        let tls10 = effective_suites(&profile(&[Tls10], LEGACY_CIPHERS)).unwrap();
        assert_eq!(names(&tls10), names(&all[..6]));
        // dh_bits: 0 strikes every DHE suite.
        let mut nodhe = profile(&[Tls10], LEGACY_CIPHERS);
        nodhe.dh_bits = 0;
        assert_eq!(
            names(&effective_suites(&nodhe).unwrap()),
            ["AES256-SHA", "AES128-SHA", "DES-CBC3-SHA"]
        );
    }

    #[test]
    fn unknown_names_are_named_and_keywords_are_not() {
        let issues = cipher_issues("AES128-SHA:EDH-RSA-DES-CBC3-SHA:!FOO-BAR:high");
        assert_eq!(
            issues,
            vec![
                CipherIssue::Unknown {
                    word: "EDH-RSA-DES-CBC3-SHA".into(),
                    suggestion: Some("DHE-RSA-DES-CBC3-SHA".into()),
                },
                CipherIssue::Unknown {
                    word: "FOO-BAR".into(),
                    suggestion: None,
                },
                CipherIssue::Unknown {
                    word: "high".into(),
                    suggestion: Some("HIGH".into()),
                },
            ]
        );
        assert!(issues[0].to_string().contains("'DHE-RSA-DES-CBC3-SHA'"));
        for fine in [
            "DEFAULT:!aNULL",
            "HIGH:!aNULL:!MD5:@STRENGTH:@SECLEVEL=0",
            "ALL:+RSA:-kDHE:kEDH+AESGCM,RC4-SHA;3DES TLS_RSA_WITH_AES_128_CBC_SHA",
            "COMPLEMENTOFDEFAULT:!kGOST:!kSRP:TLSv1.0:SSLv3",
        ] {
            assert_eq!(cipher_issues(fine), vec![], "{fine}");
        }
        assert_eq!(
            cipher_issues("AES128-SHA:DEFAULT:TLS_AES_128_GCM_SHA256:kGOST"),
            vec![
                CipherIssue::Misplaced {
                    word: "DEFAULT".into()
                },
                CipherIssue::Tls13 {
                    word: "TLS_AES_128_GCM_SHA256".into()
                },
                CipherIssue::Unavailable {
                    element: "kGOST".into()
                },
            ]
        );
    }

    #[test]
    fn openssl_ignores_what_cipher_issues_names() {
        // The premise: an unknown name changes nothing and raises no error.
        use TlsVersion::*;
        let with = effective_suites(&profile(&[Tls10], "AES128-SHA:EDH-RSA-DES-CBC3-SHA")).unwrap();
        assert_eq!(names(&with), ["AES128-SHA"]);
        let none = effective_suites(&profile(&[Tls10], "EDH-RSA-DES-CBC3-SHA"));
        assert!(none.unwrap_err().contains("no cipher match"));
        // IANA names work as well as OpenSSL's.
        let iana = effective_suites(&profile(&[Tls10], "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"));
        assert_eq!(names(&iana.unwrap()), ["DHE-RSA-DES-CBC3-SHA"]);
        // Names valid only for TLS 1.2 leave a TLS 1.0 profile nothing.
        let gcm = effective_suites(&profile(&[Tls10], "AES128-GCM-SHA256")).unwrap();
        assert_eq!(gcm, vec![]);
    }

    /// The order `effective_suites` reads from an OpenSSL client's hello is the order the
    /// server context really prefers: offer the list reversed, take what the server picks,
    /// strike it, repeat.
    #[tokio::test]
    async fn effective_order_is_the_servers_preference() {
        use TlsVersion::*;
        let ca = Ca::new("Order CA", "provgate tests").unwrap();
        let (cert, key) = ca.issue(&CertSpec::legacy_server("order.test")).unwrap();
        let cert = LoadedCert::from_pem(
            "order",
            std::path::Path::new("order.pem"),
            &cert.to_pem().unwrap(),
            std::path::Path::new("order.key"),
            &key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let p = profile(&[Tls10, Tls11, Tls12], LEGACY_CIPHERS);
        let ctx = LegacyContext::build(&cert, &p, None).unwrap();
        let want: Vec<&str> = effective_suites(&p)
            .unwrap()
            .into_iter()
            .filter(|s| s.usable_with(openssl::pkey::Id::RSA))
            .map(|s| s.name)
            .collect();
        let mut offer: Vec<&str> = want.iter().rev().copied().collect();
        let mut picked = Vec::new();
        while !offer.is_empty() {
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn({
                let ctx = LegacyContext {
                    ctx: ctx.ctx.clone(),
                };
                async move { ctx.accept(server_io).await.map(|_| ()) }
            });
            let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
            b.set_security_level(0);
            b.set_cipher_list(&offer.join(":")).unwrap();
            b.set_verify(openssl::ssl::SslVerifyMode::NONE);
            let ssl = Ssl::new(&b.build()).unwrap();
            let mut s = SslStream::new(ssl, client_io).unwrap();
            Pin::new(&mut s).connect().await.unwrap();
            server.await.unwrap().unwrap();
            let name = s.ssl().current_cipher().unwrap().name();
            picked.push(name);
            offer.retain(|n| *n != name);
        }
        assert_eq!(picked, want);
    }
}
