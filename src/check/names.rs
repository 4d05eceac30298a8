//! What names a certificate carries (CN, DNS SANs) and what they are good for: whether a CN is
//! a host name, and whether a certificate name covers a route's SNI pattern.

use openssl::x509::X509Ref;

use crate::config::SniPattern;

/// The DNS names among the certificate's subject alternative names.
pub(super) fn dns_names(cert: &X509Ref) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A host name with at least two labels, optionally followed by `/anything` (the devices
/// accept a CN like `prov.example.com/spa`); IP addresses are not host names.
pub fn looks_like_fqdn(cn: &str) -> bool {
    let host = cn.split('/').next().unwrap_or_default();
    let host = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    labels.len() >= 2
        && host.parse::<std::net::IpAddr>().is_err()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a certificate name (CN or SAN, maybe `*.suffix`) covers an SNI pattern.
pub(super) fn covers(cert_name: &str, pattern: &SniPattern) -> bool {
    let cert_name = cert_name.split('/').next().unwrap_or_default();
    match pattern {
        SniPattern::Exact(host) => {
            cert_name.eq_ignore_ascii_case(host)
                || cert_name
                    .strip_prefix("*.")
                    .is_some_and(|suffix| SniPattern::Wildcard(suffix.to_string()).matches(host))
        }
        SniPattern::Wildcard(suffix) => cert_name
            .strip_prefix("*.")
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_heuristic() {
        for ok in [
            "prov.example.com",
            "prov.example.com/spa",
            "*.example.net",
            "a-b.c.org.",
        ] {
            assert!(looks_like_fqdn(ok), "{ok}");
        }
        for bad in [
            "localhost",
            "10.0.0.1",
            "prov_x.example.com",
            "",
            "a..b",
            "x.123",
        ] {
            assert!(!looks_like_fqdn(bad), "{bad}");
        }
    }

    #[test]
    fn sni_coverage_by_certificate_names() {
        let exact = SniPattern::Exact("a.example.com".into());
        let wild = SniPattern::Wildcard("example.com".into());
        assert!(covers("a.example.com", &exact));
        assert!(covers("*.example.com", &exact));
        assert!(!covers(
            "*.example.com",
            &SniPattern::Exact("b.a.example.com".into())
        ));
        assert!(covers("*.example.com", &wild));
        assert!(!covers("a.example.com", &wild));
        assert!(!covers("other.test", &exact));
    }
}
