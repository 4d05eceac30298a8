//! The TLS profile vocabulary: versions, engines, the built-in profiles and their cipher
//! string and DH group sizes, and cipher-suite names as a route's `offers_cipher` writes them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use super::raw::DhGroup;

/// A TLS protocol version as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 5] = [
        TlsVersion::Ssl3,
        TlsVersion::Tls10,
        TlsVersion::Tls11,
        TlsVersion::Tls12,
        TlsVersion::Tls13,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "ssl3",
            TlsVersion::Tls10 => "tls1.0",
            TlsVersion::Tls11 => "tls1.1",
            TlsVersion::Tls12 => "tls1.2",
            TlsVersion::Tls13 => "tls1.3",
        }
    }

    /// The version's wire code (0x0300 for SSLv3 ... 0x0304 for TLS 1.3).
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Ssl3 => 0x0300,
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which TLS implementation a profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// OpenSSL (vendored 3.x) at security level 0: SSLv3 (when listed) up to TLS 1.2.
    Legacy,
    /// rustls: TLS 1.2 and 1.3.
    Modern,
    /// Per connection: rustls when the ClientHello and the key allow it, else OpenSSL.
    Auto,
    /// No TLS: the listener speaks HTTP (`tls: plain`; firmware and encrypted profiles).
    Plain,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Legacy => "legacy",
            EngineKind::Modern => "modern",
            EngineKind::Auto => "auto",
            EngineKind::Plain => "plain",
        }
    }
}

/// Cipher order for the legacy engine: RSA key exchange first (old devices list DHE first and
/// fail on large groups), then DHE with the fixed group, then 3DES (RSA, then DHE: 0x000a,
/// 0x0016); modern suites last, for TLS 1.2 clients that land on a legacy listener. OpenSSL 3
/// names only: OpenSSL ignores unknown names silently (the pre-1.1.0 `EDH-RSA-DES-CBC3-SHA`
/// once left 0x0016 out), which `builtin_cipher_string_names_only_openssl3_suites` guards against.
pub const LEGACY_CIPHERS: &str = "AES256-SHA:AES128-SHA:DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:\
DES-CBC3-SHA:DHE-RSA-DES-CBC3-SHA:AES256-GCM-SHA384:AES128-GCM-SHA256:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-GCM-SHA256";

/// The DH group the legacy engine uses by default: PAP2T and SPA5xx < 7.5.2b fail above it.
pub const MAX_LEGACY_DH_BITS: u32 = 1024;
/// Fixed DH group sizes a profile may name (0 = no DHE). 2048 is there for operators whose
/// devices on a route all cope with it; `check` warns about anything above 1024.
pub const DH_GROUP_BITS: [u32; 3] = [0, 1024, 2048];

/// The profile name that turns TLS off on a listener.
pub const PLAIN: &str = "plain";

/// A resolved TLS profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub engine: EngineKind,
    pub versions: BTreeSet<TlsVersion>,
    /// OpenSSL cipher string for the legacy engine (ignored by rustls).
    pub ciphers: String,
    /// 0 = no DHE; otherwise the fixed DH group size used by the legacy engine.
    pub dh_bits: u32,
    /// Which 1024-bit group (`dh_bits: 1024` only; ignored when `dh_params` is set).
    pub dh_group: DhGroup,
    /// The operator's own DH group (`dh_params: FILE`) instead of the built-in one.
    pub dh_params: Option<DhParams>,
    /// Session tickets: RFC 5077 tickets on OpenSSL (TLS 1.0-1.2), TLS 1.3 tickets on rustls.
    /// On by default (what both libraries do unless told otherwise).
    pub session_tickets: bool,
}

/// A DH group from an operator's PEM file, checked when the config was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct DhParams {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
    /// The file as read (public parameters only).
    pub pem: Vec<u8>,
    /// Size of the prime.
    pub bits: u32,
}

impl fmt::Debug for DhParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhParams")
            .field("path", &self.path)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// `legacy`, `modern`, `auto` and `plain` as they are before a profile changes them.
    pub(super) fn builtin(name: &str) -> Option<Profile> {
        use TlsVersion::*;
        let (engine, versions): (EngineKind, &[TlsVersion]) = match name {
            "legacy" => (EngineKind::Legacy, &[Tls10, Tls11, Tls12]),
            "modern" => (EngineKind::Modern, &[Tls12, Tls13]),
            "auto" => (EngineKind::Auto, &[Tls10, Tls11, Tls12, Tls13]),
            PLAIN => (EngineKind::Plain, &[]),
            _ => return None,
        };
        Some(Profile {
            name: name.to_string(),
            engine,
            versions: versions.iter().copied().collect(),
            ciphers: LEGACY_CIPHERS.to_string(),
            dh_bits: MAX_LEGACY_DH_BITS,
            dh_group: DhGroup::Rfc2409,
            dh_params: None,
            session_tickets: true,
        })
    }

    /// Versions the legacy (OpenSSL) side serves: everything up to TLS 1.2.
    pub fn legacy_versions(&self) -> BTreeSet<TlsVersion> {
        let mut v = self.versions.clone();
        v.remove(&TlsVersion::Tls13);
        v
    }

    /// Versions the modern (rustls) side serves: TLS 1.2 and 1.3.
    pub fn modern_versions(&self) -> BTreeSet<TlsVersion> {
        self.versions
            .iter()
            .copied()
            .filter(|v| *v >= TlsVersion::Tls12)
            .collect()
    }

    /// Whether the profile's cipher string names RC4 (needs OpenSSL's legacy provider).
    pub fn wants_rc4(&self) -> bool {
        self.ciphers.to_ascii_uppercase().contains("RC4")
    }
}

/// A cipher suite's code from its OpenSSL name, its TLS 1.3 IANA name, or `0x....`.
pub fn cipher_code(name: &str) -> Option<u16> {
    if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        return u16::from_str_radix(hex, 16).ok();
    }
    (0..=u16::MAX)
        .find(|c| crate::hello::cipher_name(*c).is_some_and(|n| n.eq_ignore_ascii_case(name)))
}
