//! provgate: one TLS front for legacy VoIP provisioning.
//!
//! Old Cisco/Linksys/Sipura SPA devices fetch their config over HTTPS with TLS stacks modern
//! servers dropped (SSLv2-format hellos, TLS 1.0, RSA key exchange, small DH groups), and each
//! family trusts only one vendor CA. provgate owns many listeners, picks the CA-specific
//! certificate per connection, speaks legacy TLS (OpenSSL) beside modern TLS (rustls), and
//! forwards plain HTTP to the existing provisioning backend through pingora.
//!
//! ```text
//!  accept.rs        connection.rs                                            proxy/
//!  listeners ──► sniff.rs + hello.rs ──► route.rs ──► tls/ legacy (OpenSSL) ──► pingora
//!  (tokio)       ClientHello, replayed   listener,    tls/ modern (rustls)     http_proxy()
//!                                        local addr,  (auto: per hello)        process_new()
//!                                        source, SNI                           └─► backend (HTTP/1.1)
//!  config/ (YAML -> validated) ──► snapshot.rs (certs, TLS contexts, routes) in ArcSwap
//! ```
//!
//! [`server::start`] binds and serves a [`snapshot::Snapshot`]; the binary's `main` only parses
//! arguments and sets up logging ([`cli`]).

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod check;
pub mod cli;
pub mod config;
pub mod connection;
pub mod demo;
pub mod diagnose;
pub mod fingerprint;
pub mod hello;
pub mod identity;
// path kept for config/ and check.rs
/// The identity headers under their old path; they live in [`identity::headers`].
pub mod identity_headers {
    pub use crate::identity::headers::*;
}
pub mod metrics;
pub mod pki;
pub mod proxy;
pub mod proxy_protocol;
pub mod route;
pub mod sample_backend;
pub mod server;
pub mod snapshot;
pub mod sniff;
pub mod tls;
