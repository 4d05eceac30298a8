//! The YAML as written by the operator: serde types that mirror the file one to one.
//!
//! Nothing here is checked beyond its shape (`deny_unknown_fields` catches typos); the
//! conversion into [`super::Config`] does the semantic checks and names the key at fault.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    pub certificates: BTreeMap<String, RawCertificate>,
    #[serde(default)]
    pub tls_profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: String,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub chain: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    #[serde(default)]
    pub ciphers: Option<String>,
    #[serde(default)]
    pub dh_bits: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub bind: Vec<String>,
    pub certificate: String,
    #[serde(default)]
    pub tls: Option<String>,
    pub backend: String,
    /// Everything before the HTTP phase (hello sniff and TLS handshake) must finish within this.
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: RawMatch,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub local: Vec<String>,
    #[serde(default)]
    pub sni: Vec<String>,
    #[serde(default)]
    pub source: Vec<String>,
}
