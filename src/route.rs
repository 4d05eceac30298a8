//! Picks a connection's route from what is known before the handshake: the listener it arrived
//! on, the local (destination) address, the client (source) address and the SNI name.
//! First match wins; no match means the listener's defaults.
//!
//! The types here are the runtime forms of the validated [`crate::config::Listener`] and
//! [`crate::config::Route`]: names resolved into built TLS contexts, backends and compiled
//! patterns, shared by every connection of one snapshot.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{self, Access, Backend, HelloMatch, IdentityHeaders, Profile, RouteMatch};
use crate::hello::ClientHello;
use crate::tls::ServerTls;

/// Everything a connection needs once routed. Shared by all connections of a snapshot.
#[derive(Debug)]
pub struct Route {
    /// The listener's name for its defaults, `listener/<route>` for a route.
    pub name: Arc<str>,
    /// `None` on plain-HTTP listeners.
    pub certificate: Option<String>,
    pub profile: Profile,
    pub tls: Arc<ServerTls>,
    pub backend: Arc<Backend>,
    /// `backend` as pingora's peer (address and timeouts), built with the snapshot.
    pub upstream: pingora_core::upstreams::peer::HttpPeer,
    /// The backend's connection slots when it has `max_connections`; shared by every route
    /// of the snapshot that uses the backend.
    pub backend_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Refuse (403) requests whose path holds a MAC other than the client certificate's.
    pub require_mac_match: bool,
    pub identity: Arc<IdentityPolicy>,
    /// The route's own source allow/deny lists.
    pub access: Access,
    /// The host name of the certificate the route presents (its CN up to any `/`): the Host
    /// for requests without one, when there is no SNI.
    pub server_name: Option<String>,
}

/// What the backend is told about client certificates (header names, preset, DN format),
/// which client headers are stripped, and the MAC-in-path pattern: one per snapshot.
#[derive(Debug)]
pub struct IdentityPolicy {
    pub headers: IdentityHeaders,
    pub forward_chain: bool,
    pub mac_path: regex::Regex,
    pub preset: crate::identity::headers::Preset,
    pub dn_format: crate::identity::headers::DnFormat,
    /// Extra client header names to strip (lower-case).
    pub strip_request_headers: Vec<String>,
}

/// A listener's routes, built, beside its validated settings (`config`: timeouts, limits,
/// PROXY protocol, allow/deny, `tls: plain`).
#[derive(Debug)]
pub struct Listener {
    /// The listener's name, shared by its connections' metric labels and logs.
    pub name: Arc<str>,
    pub config: config::Listener,
    pub routes: Vec<(RouteMatch, Arc<Route>)>,
    pub default: Arc<Route>,
}

/// The facts routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts<'a> {
    pub local: IpAddr,
    pub source: IpAddr,
    pub sni: Option<&'a str>,
    /// The parsed hello and its JA4, for `client_hello` matches.
    pub hello: Option<(&'a ClientHello, &'a str)>,
}

impl RouteMatch {
    pub fn matches(&self, c: &ConnFacts<'_>) -> bool {
        // IPv4 clients on a dual-stack socket appear as ::ffff:a.b.c.d.
        let local = c.local.to_canonical();
        let source = c.source.to_canonical();
        (self.local.is_empty() || self.local.iter().any(|n| n.contains(&local)))
            && (self.source.is_empty() || self.source.iter().any(|n| n.contains(&source)))
            && (self.sni.is_empty()
                || c.sni
                    .is_some_and(|sni| self.sni.iter().any(|p| p.matches(sni))))
            && self
                .client_hello
                .as_ref()
                .is_none_or(|m| c.hello.is_some_and(|(h, ja4)| m.matches(h, ja4)))
    }
}

impl HelloMatch {
    pub fn matches(&self, h: &ClientHello, ja4: &str) -> bool {
        self.format.is_none_or(|f| f == h.format)
            && self
                .max_version
                .is_none_or(|v| h.max_version().0 <= v.wire())
            && (self.ja4.is_empty() || self.ja4.iter().any(|j| j == ja4))
            && (self.offers_cipher.is_empty()
                || self.offers_cipher.iter().any(|c| h.offers_cipher(*c)))
    }
}

impl Listener {
    pub fn route(&self, c: &ConnFacts<'_>) -> &Arc<Route> {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(c))
            .map(|(_, r)| r)
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniPattern;

    fn facts<'a>(local: &str, source: &str, sni: Option<&'a str>) -> ConnFacts<'a> {
        ConnFacts {
            local: local.parse().unwrap(),
            source: source.parse().unwrap(),
            sni,
            hello: None,
        }
    }

    #[test]
    fn every_listed_criterion_must_match() {
        let m = RouteMatch {
            local: vec!["192.0.2.10/32".parse().unwrap()],
            sni: vec![SniPattern::Exact("prov.example.com".into())],
            source: vec!["10.0.0.0/8".parse().unwrap()],
            client_hello: None,
        };
        assert!(m.matches(&facts("192.0.2.10", "10.1.2.3", Some("prov.example.com"))));
        assert!(!m.matches(&facts("192.0.2.11", "10.1.2.3", Some("prov.example.com"))));
        assert!(!m.matches(&facts("192.0.2.10", "11.1.2.3", Some("prov.example.com"))));
        assert!(!m.matches(&facts("192.0.2.10", "10.1.2.3", None)));
        assert!(!m.matches(&facts("192.0.2.10", "10.1.2.3", Some("other.example.com"))));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_cidr() {
        let m = RouteMatch {
            local: vec!["127.0.0.3/32".parse().unwrap()],
            ..Default::default()
        };
        assert!(m.matches(&facts("::ffff:127.0.0.3", "::1", None)));
        assert!(!m.matches(&facts("::ffff:127.0.0.2", "::1", None)));
    }

    #[test]
    fn wildcard_sni_matches_one_label() {
        let p = SniPattern::Wildcard("example.net".into());
        assert!(p.matches("a.example.net"));
        assert!(p.matches("A.Example.NET"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("a.b.example.net"));
        assert!(!p.matches(".example.net"));
    }

    #[test]
    fn empty_match_matches_everything() {
        assert!(RouteMatch::default().matches(&facts("127.0.0.1", "127.0.0.1", None)));
    }
}
