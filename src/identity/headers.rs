//! Identity headers under other proxies' names: what the backend learns about the client
//! certificate, spelled the way the front end it used to sit behind (Apache mod_ssl, nginx,
//! HAProxy, Traefik, Envoy, RFC 9440) spelled it, and the list of header families a client must
//! never be able to send itself.
//!
//! Two halves (the per-preset names and value formats are in `presets`):
//! - [`is_identity_header`] / [`STRIPPED_FAMILIES`]: every client-sent header in one of those
//!   families is removed before forwarding, whatever preset is in use, so a device (or anyone
//!   else) cannot forge `SSL_CLIENT_VERIFY: SUCCESS` for a backend that reads another proxy's
//!   names. Names compare ignoring case and treating `_` and `-` alike, because nginx
//!   (`underscores_in_headers`) and Apache's CGI environment fold them together.
//! - [`headers`]: the headers provgate sends for a connection, in the [`Preset`]'s names and
//!   value formats. The verification result is always sent, the certificate's facts whenever one
//!   was presented, and the SPA device fields (MAC, serial, product, generic) only when it
//!   verified, always under provgate's configured names, because `require_mac_match` and device
//!   support read those whatever the preset.
//!
//! Every emitted name is hyphenated (nginx and Apache drop names with `_`) and every value is
//! visible ASCII: formats that percent-encode do so, anything else non-ASCII becomes `?`.

use openssl::x509::{X509NameRef, X509};

use super::presets::{apache, envoy, haproxy, nginx, provgate, rfc9440, traefik};
use super::{ClientIdentity, Verify};
use crate::config::IdentityHeaders;
use crate::tls::x509;

/// Whose header names and value formats the backend expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// provgate's own (configurable) names: `X-Client-*`, RFC 9440 `Client-Cert`.
    #[default]
    Provgate,
    /// mod_ssl variables as `RequestHeader set SSL-Client-... "%{SSL_CLIENT_...}s"` sends them.
    Apache,
    /// The names commonly mapped from nginx's `$ssl_client_*` variables (`X-SSL-Client-*`).
    Nginx,
    /// The `http-request set-header X-SSL-...` idiom over `ssl_c_*` fetches.
    Haproxy,
    /// Traefik's PassTLSClientCert middleware.
    Traefik,
    /// Envoy's `X-Forwarded-Client-Cert`.
    #[serde(alias = "xfcc")]
    Envoy,
    /// RFC 9440 `Client-Cert` / `Client-Cert-Chain` only.
    Rfc9440,
}

/// How distinguished names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnFormat {
    /// `CN=x,O=Sipura,C=US` ([`x509::rfc4514`]); what Apache >= 2.3.11 and nginx send.
    #[default]
    Rfc4514,
    /// `/C=US/O=Sipura/CN=x` (`tls::x509::dn_legacy`); Apache `LegacyDNStringFormat`,
    /// nginx `$ssl_client_s_dn_legacy`, HAProxy's default `ssl_c_s_dn`.
    Legacy,
}

/// Sent (`true`) with the device fields, under every preset, when the device certificate
/// verified only because `client_auth.allow_expired` ignores its dates
/// ([`ClientIdentity::expired`]); absent otherwise. In the stripped `X-Client-*` family, so a
/// client cannot send it itself.
pub const EXPIRED_HEADER: &str = "X-Client-Cert-Expired";

/// The header families stripped from every request, as human text (README, `check`). A trailing
/// `*` means "this prefix"; matching ignores case and treats `_` and `-` alike, so
/// `SSL-Client-*` also covers mod_ssl's `SSL_CLIENT_*`.
pub const STRIPPED_FAMILIES: &[&str] = &[
    // HAProxy's `X-SSL` (1 on TLS) and everything under it; nginx mappings (`X-SSL-Client-*`).
    "X-SSL",
    "X-SSL-*",
    // provgate's defaults, Django/Kong-style `X-Client-Cert-*`.
    "X-Client-*",
    // Apache mod_ssl names (SSL_CLIENT_* / SSL-Client-*), Keycloak's `ssl-client-cert`.
    "SSL-Client-*",
    // Keycloak's Apache/HAProxy chain headers (`CERT_CHAIN_0..9`).
    "Cert-Chain-*",
    // Envoy/Istio XFCC and the `X-Forwarded-Client-Cert-S-DN` style.
    "X-Forwarded-Client-Cert*",
    // Traefik PassTLSClientCert.
    "X-Forwarded-Tls-Client-Cert*",
    // RFC 9440.
    "Client-Cert*",
    // provgate's device fields.
    "X-Device-*",
    // IIS ARR and AWS ALB mTLS: not asked for, but the same kind of trust header.
    "X-ARR-ClientCert",
    "X-Amzn-Mtls-Clientcert*",
];

/// A header-name byte folded for comparison: lower case, `_` as `-`.
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

fn starts_with_folded(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

fn eq_folded(a: &str, b: &str) -> bool {
    a.len() == b.len() && starts_with_folded(a, b)
}

/// True when a client-sent header with this (any-case) name must be removed before forwarding:
/// a name in one of [`STRIPPED_FAMILIES`] or in `extra` (the operator's configured identity
/// names, e.g. `IdentityHeaders::all()`, which may lie outside the families). Compares
/// ignoring case and treating `_` and `-` alike; allocates nothing (it runs on every header of
/// every request).
pub fn is_identity_header(name: &str, extra: &[String]) -> bool {
    STRIPPED_FAMILIES
        .iter()
        .any(|family| match family.strip_suffix('*') {
            Some(prefix) => starts_with_folded(name, prefix),
            None => eq_folded(name, family),
        })
        || extra.iter().any(|e| eq_folded(name, e))
}

/// A distinguished name in the chosen format.
pub fn dn(name: &X509NameRef, f: DnFormat) -> String {
    match f {
        DnFormat::Rfc4514 => x509::rfc4514(name),
        DnFormat::Legacy => x509::dn_legacy(name),
    }
}

/// The identity headers to send for a connection. `names` is used by the Provgate preset
/// (operator-configurable names) and, for every preset, for the device fields; the other presets
/// use their ecosystem's fixed names. Traefik, Envoy and RFC 9440 have no verification header of
/// their own, so they add provgate's (`names.verify`).
///
/// The verification result is always sent; certificate facts whenever one was presented; device
/// fields (and [`EXPIRED_HEADER`] for an out-of-date one) only on [`Verify::Success`]. Names
/// never contain `_` (a configured one is hyphenated); values are visible ASCII.
pub fn headers(
    id: &ClientIdentity,
    preset: Preset,
    dn: DnFormat,
    names: &IdentityHeaders,
    forward_chain: bool,
) -> Vec<(String, String)> {
    let mut out = Out(Vec::new());
    let chain: &[X509] = if forward_chain { &id.chain } else { &[] };
    match preset {
        Preset::Provgate => provgate(&mut out, id, dn, names, forward_chain),
        Preset::Apache => apache(&mut out, id, dn, chain),
        Preset::Nginx => nginx(&mut out, id, dn),
        Preset::Haproxy => haproxy(&mut out, id, dn),
        Preset::Traefik => traefik(&mut out, id, names, chain),
        Preset::Envoy => envoy(&mut out, id, dn, names, chain),
        Preset::Rfc9440 => rfc9440(&mut out, id, names, forward_chain),
    }
    if id.verify == Verify::Success {
        if let Some(leaf) = id.leaf() {
            let d = super::device(leaf);
            if let Some(mac) = d.mac {
                out.push(&names.mac, mac);
            }
            if let Some(serial) = d.serial {
                out.push(&names.device_serial, serial);
            }
            if let Some(product) = d.product {
                out.push(&names.product, product);
            }
            out.push(&names.generic, d.generic.to_string());
            if id.expired() {
                out.push(EXPIRED_HEADER, "true");
            }
        }
    }
    out.0
        .into_iter()
        .map(|(n, v)| (n.replace('_', "-"), visible_ascii(&v)))
        .collect()
}

/// The headers being built, in order; names and values are cleaned up at the end.
pub(super) struct Out(Vec<(String, String)>);

impl Out {
    pub(super) fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }
}

/// Visible ASCII (and space) kept, anything else `?`: what today's provgate headers do.
fn visible_ascii(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}
