//! What the backend receives besides the client's request: client-sent copies of headers
//! provgate owns are removed, then provgate's forwarding and identity headers are set, and a
//! request without Host (HTTP/1.0) gets one.

use pingora_error::Result;
use pingora_http::RequestHeader;

use super::ConnInfo;
use crate::identity::ClientIdentity;
use crate::route::IdentityPolicy;
use crate::tls::Engine;

/// Client-address and original-request headers some backend may trust: provgate sets the
/// ones it owns and drops every client-sent copy of the whole family.
pub const FORWARDING_HEADERS: [&str; 12] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-proxyuser-ip",
];

/// Every `X-Forwarded-*` and `X-Original-*` name (Server, Scheme, Ssl, Prefix, Uri, For,
/// Host, ...) plus [`FORWARDING_HEADERS`]; `name` is lower-case, as `http` stores it.
pub fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-original-")
        || FORWARDING_HEADERS.contains(&name)
}

/// Remove every client-sent header a backend could take for provgate's word: forwarding
/// headers, and every name any common front proxy uses for client-certificate data.
pub fn strip_spoofable(req: &mut RequestHeader, conn: &ConnInfo) {
    let identity = &conn.route.identity;
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            is_forwarding_header(n)
                || crate::identity::headers::is_identity_header(n, &identity.strip_request_headers)
                || identity
                    .headers
                    .all()
                    .iter()
                    .any(|own| own.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// The Host a request without one is sent with: the backend's `host`, else the SNI, else the
/// CN of the certificate the route presented (the name the device was given), else the
/// backend's address.
pub fn default_host(conn: &ConnInfo) -> String {
    let route = &conn.route;
    route
        .backend
        .host
        .clone()
        .or_else(|| conn.sni.clone())
        .or_else(|| route.server_name.clone())
        .unwrap_or_else(|| route.backend.address.to_string())
}

/// Host (when missing), then the connection's X-Forwarded-*, X-Real-IP and identity headers.
pub fn set_forwarding(req: &mut RequestHeader, conn: &ConnInfo) -> Result<()> {
    if !req.headers.contains_key(http::header::HOST) {
        req.insert_header(http::header::HOST, default_host(conn))?;
    }
    for (name, value) in &conn.forwarding {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// What every request of `conn` is sent with, in order: X-Forwarded-For, X-Real-IP,
/// X-Forwarded-Proto, X-Forwarded-Port, then `identity` (the identity headers). Built once per
/// connection: none of it changes between its requests. Values are visible ASCII by
/// construction; one that still is not a header value is left out, with a warning.
pub fn connection_headers(
    conn: &ConnInfo,
    identity: Vec<(String, String)>,
) -> Vec<(bytes::Bytes, http::HeaderValue)> {
    let client_ip = conn.peer.ip().to_canonical().to_string();
    let proto = if conn.engine == Engine::Plain {
        "http"
    } else {
        "https"
    };
    let own = [
        ("X-Forwarded-For", client_ip.clone()),
        ("X-Real-IP", client_ip),
        ("X-Forwarded-Proto", proto.to_string()),
        ("X-Forwarded-Port", conn.local.port().to_string()),
    ];
    own.into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .chain(identity)
        .filter_map(|(name, value)| match http::HeaderValue::try_from(value) {
            Ok(v) => Some((bytes::Bytes::from(name), v)),
            Err(_) => {
                tracing::warn!(header = %name, "not a valid header value; not sent");
                None
            }
        })
        .collect()
}

/// A connection's identity headers under `policy` (built once per connection: DNs,
/// fingerprints and the encoded certificate do not change between its requests).
pub fn identity_headers(
    identity: &ClientIdentity,
    policy: &IdentityPolicy,
    engine: Engine,
) -> Vec<(String, String)> {
    let mut out = crate::identity::headers::headers(
        identity,
        policy.preset,
        policy.dn_format,
        &policy.headers,
        policy.forward_chain,
    );
    // The haproxy preset's `X-SSL` says whether the client spoke TLS.
    if engine == Engine::Plain {
        for (name, value) in &mut out {
            if name == "X-SSL" {
                *value = "0".to_string();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_forwarding_header;

    #[test]
    fn the_whole_forwarding_family_is_recognised() {
        for n in [
            "x-forwarded-for",
            "x-forwarded-server",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-prefix",
            "x-forwarded-uri",
            "x-original-url",
            "x-original-forwarded-for",
            "x-client-ip",
            "true-client-ip",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(is_forwarding_header(n), "{n}");
        }
        for n in ["host", "user-agent", "x-request-id", "via", "authorization"] {
            assert!(!is_forwarding_header(n), "{n}");
        }
    }
}
