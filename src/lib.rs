//! provgate: one TLS front for legacy VoIP provisioning.
//!
//! Old Cisco/Linksys/Sipura SPA devices fetch their config over HTTPS with TLS stacks modern
//! servers dropped (SSLv2-format hellos, TLS 1.0, RSA key exchange, small DH groups), and each
//! family trusts only one vendor CA. provgate owns many listeners, picks the CA-specific
//! certificate per connection, speaks legacy TLS (OpenSSL) beside modern TLS (rustls), and
//! forwards plain HTTP to the existing provisioning backend through pingora.
//!
//! ```text
//!  accept.rs      connection.rs (one Connection context per accepted socket)
//!  listeners ──► [proxy_protocol.rs] ──► allow/deny ──► sniff.rs + hello/ ──► route.rs
//!  (tokio)        PROXY v1/v2                          ClientHello, parsed,    listener, local
//!                                                      replayed                addr, source, SNI,
//!                                                                              hello traits
//!   ──► tls/ legacy/ (OpenSSL 3.x) | modern.rs (rustls) | plain     client_auth.rs, x509.rs
//!   ──► proxy/ stream.rs (our IO for pingora) ──► pingora http_proxy(), one request at a
//!         time (process_new_http); between requests connection.rs waits, holding no pingora state
//!         mod.rs: the hooks; headers.rs (what the backend receives, identity/ presets),
//!         mac_match.rs (require_mac_match), limits.rs, respond.rs (own errors)
//!   ──► backend (HTTP/1.1)                    access_log/ (one line per request)
//!
//!  config/ (raw YAML -> validate/ -> model) ──► snapshot.rs (certs, TLS contexts, routes),
//!  swapped whole in an ArcSwap by server.rs on reload; admin.rs (status_page.rs, recent.rs),
//!  metrics.rs, check/ beside; demo.rs (demo, init) and csr.rs for the operator.
//! ```
//!
//! [`server::start`] binds and serves a [`snapshot::Snapshot`]; the binary's `main` only parses
//! arguments and sets up logging ([`cli`]).
//!
//! Public: what the binary and the integration tests use (config, snapshot, server, the pure
//! parsers and formatters they drive, the test PKI); the data path's internals are
//! `pub(crate)`.

pub(crate) mod accept;
pub mod access_log;
pub(crate) mod admin;
pub(crate) mod admission;
pub(crate) mod check;
pub mod cli;
pub mod config;
pub(crate) mod connection;
pub(crate) mod csr;
pub(crate) mod demo;
pub mod diagnose;
pub mod fingerprint;
pub mod hello;
pub mod identity;
/// The identity headers under their old path (config/ and check/ use it); they live in
/// [`identity::headers`].
pub(crate) mod identity_headers {
    pub use crate::identity::headers::*;
}
pub mod metrics;
pub mod pki;
pub mod proxy;
pub mod proxy_protocol;
pub mod recent;
pub(crate) mod route;
pub mod sample_backend;
pub mod server;
pub mod snapshot;
pub(crate) mod sniff;
pub(crate) mod status_page;
pub(crate) mod tls;
