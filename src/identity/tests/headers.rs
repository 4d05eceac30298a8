//! Tests of [`crate::identity::headers`]: what is stripped, which names each preset sends and
//! when, chains, clean names and values, and the provgate preset against its reference.

use super::*;
use crate::identity;
use crate::identity::headers::{
    dn, headers, is_identity_header, DnFormat, Preset, EXPIRED_HEADER, STRIPPED_FAMILIES,
};
use crate::identity::presets::pem_one_line;
use crate::tls::x509::dn_legacy;

const ALL: [Preset; 7] = [
    Preset::Provgate,
    Preset::Apache,
    Preset::Nginx,
    Preset::Haproxy,
    Preset::Traefik,
    Preset::Envoy,
    Preset::Rfc9440,
];

const DEVICE: [&str; 4] = [
    "X-Device-MAC",
    "X-Device-Serial",
    "X-Device-Product",
    "X-Device-Generic-Cert",
];

#[test]
fn strips_every_family_and_nothing_else() {
    let extra = vec!["x-provisioning-token".to_string()];
    for name in [
        "X-SSL-Client-Verify",
        "SSL_CLIENT_VERIFY",
        "SSL-Client-Verify",
        "ssl_client_s_dn_ou",
        "x-ssl-client-dn",
        "X-SSL",
        "x_ssl",
        "X-SSL-Verify",
        "X-Forwarded-Client-Cert",
        "X-Forwarded-Client-Cert-S-DN",
        "X-Forwarded-Tls-Client-Cert",
        "X-Forwarded-Tls-Client-Cert-Info",
        "X-Client-Cert-Subject-DN",
        "X-Client-Verify",
        "HTTP_X_CLIENT_CERT_VERIFY".trim_start_matches("HTTP_"),
        "Client-Cert",
        "Client-Cert-Chain",
        "client_cert",
        "CERT_CHAIN_0",
        "X-Device-MAC",
        "x_device_mac",
        "X-Provisioning-Token",
        "X_PROVISIONING_TOKEN",
    ] {
        assert!(is_identity_header(name, &extra), "{name} must be stripped");
    }
    for name in [
        "Host",
        "User-Agent",
        "Authorization",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "Content-Type",
        "Content-Length",
        "X-Request-Id",
        "Accept",
        "X-SSLy",
        "SSL-Protocol",
        "Forwarded",
    ] {
        assert!(!is_identity_header(name, &extra), "{name} must pass");
    }
    // Every family as written matches itself.
    for family in STRIPPED_FAMILIES {
        let example = family.replace('*', "-Anything");
        assert!(is_identity_header(&example, &[]), "{family}");
    }
}

#[test]
fn preset_names_for_verified_failed_and_no_certificate() {
    let fx = fixture();
    let h = names();
    let cases: [(Preset, &[&str], &[&str]); 7] = [
        (
            Preset::Provgate,
            &["X-Client-Verify"],
            &[
                "X-Client-Verify",
                "X-Client-Subject",
                "X-Client-Issuer",
                "X-Client-Serial",
                "X-Client-Fingerprint-SHA256",
                "X-Client-Not-After",
                "Client-Cert",
            ],
        ),
        (
            Preset::Apache,
            &["SSL-Client-Verify"],
            &[
                "SSL-Client-Verify",
                "SSL-Client-S-DN",
                "SSL-Client-S-DN-C",
                "SSL-Client-S-DN-ST",
                "SSL-Client-S-DN-L",
                "SSL-Client-S-DN-O",
                "SSL-Client-S-DN-OU",
                "SSL-Client-S-DN-CN",
                "SSL-Client-I-DN",
                "SSL-Client-I-DN-O",
                "SSL-Client-I-DN-CN",
                "SSL-Client-M-Serial",
                "SSL-Client-V-Start",
                "SSL-Client-V-End",
                "SSL-Client-Cert",
            ],
        ),
        (
            Preset::Nginx,
            &["X-SSL-Client-Verify"],
            &[
                "X-SSL-Client-Verify",
                "X-SSL-Client-S-DN",
                "X-SSL-Client-I-DN",
                "X-SSL-Client-Serial",
                "X-SSL-Client-Fingerprint",
                "X-SSL-Client-V-Start",
                "X-SSL-Client-V-End",
                "X-SSL-Client-Escaped-Cert",
            ],
        ),
        (
            Preset::Haproxy,
            &["X-SSL", "X-SSL-Client-Cert", "X-SSL-Client-Verify"],
            &[
                "X-SSL",
                "X-SSL-Client-Cert",
                "X-SSL-Client-Verify",
                "X-SSL-Client-DN",
                "X-SSL-Client-CN",
                "X-SSL-Issuer",
                "X-SSL-Client-SHA1",
                "X-SSL-Client-Not-Before",
                "X-SSL-Client-Not-After",
            ],
        ),
        (
            Preset::Traefik,
            &["X-Client-Verify"],
            &[
                "X-Client-Verify",
                "X-Forwarded-Tls-Client-Cert",
                "X-Forwarded-Tls-Client-Cert-Info",
            ],
        ),
        (
            Preset::Envoy,
            &["X-Client-Verify"],
            &["X-Client-Verify", "X-Forwarded-Client-Cert"],
        ),
        (
            Preset::Rfc9440,
            &["X-Client-Verify"],
            &["X-Client-Verify", "Client-Cert"],
        ),
    ];
    for (preset, without, with_cert) in cases {
        let none = headers(&fx.none, preset, DnFormat::Rfc4514, &h, false);
        assert_eq!(
            header_names(&none),
            without,
            "{preset:?} without a certificate"
        );
        let failed = headers(&fx.failed, preset, DnFormat::Rfc4514, &h, false);
        assert_eq!(
            header_names(&failed),
            with_cert,
            "{preset:?} failed: no device fields"
        );
        let verified = headers(&fx.verified, preset, DnFormat::Rfc4514, &h, false);
        let mut expected = with_cert.to_vec();
        expected.extend(DEVICE);
        assert_eq!(header_names(&verified), expected, "{preset:?} verified");
        assert_eq!(get(&verified, "X-Device-MAC"), "000e08abcdef");
        assert_eq!(get(&verified, "X-Device-Serial"), "88012BA01234");
        assert_eq!(get(&verified, "X-Device-Product"), "SPA-962");
        assert_eq!(get(&verified, "X-Device-Generic-Cert"), "false");
    }
    let none = headers(&fx.none, Preset::Haproxy, DnFormat::Rfc4514, &h, false);
    assert_eq!(
        none,
        [
            ("X-SSL".to_string(), "1".to_string()),
            ("X-SSL-Client-Cert".into(), "0".into()),
            ("X-SSL-Client-Verify".into(), "0".into()),
        ]
    );
}

#[test]
fn chains_only_with_forward_chain() {
    let fx = fixture();
    let h = names();
    let with = |p| headers(&fx.verified, p, DnFormat::Rfc4514, &h, true);
    let without = |p| headers(&fx.verified, p, DnFormat::Rfc4514, &h, false);
    let root_pem = pem_one_line(&fx.ca.cert);
    assert_eq!(
        get(&with(Preset::Apache), "SSL-Client-Cert-Chain-0"),
        root_pem
    );
    assert!(!header_names(&without(Preset::Apache)).contains(&"SSL-Client-Cert-Chain-0"));
    for p in [Preset::Provgate, Preset::Rfc9440] {
        assert_eq!(
            get(&with(p), "Client-Cert-Chain"),
            identity::rfc9440_chain(&fx.verified.chain)
        );
        assert!(!header_names(&without(p)).contains(&"Client-Cert-Chain"));
    }
    let xfcc = with(Preset::Envoy);
    let xfcc = get(&xfcc, "X-Forwarded-Client-Cert");
    let chain = xfcc
        .split(";Chain=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let pems = String::from_utf8(pct_decode(chain, false)).unwrap();
    let certs = X509::stack_from_pem(pems.as_bytes()).unwrap();
    assert_eq!(certs, fx.verified.chain);
    assert!(!get(&without(Preset::Envoy), "X-Forwarded-Client-Cert").contains("Chain="));
    let t = with(Preset::Traefik);
    let certs: Vec<&str> = get(&t, "X-Forwarded-Tls-Client-Cert").split(',').collect();
    assert_eq!(certs.len(), 2);
    assert_eq!(
        get(&t, "X-Forwarded-Tls-Client-Cert-Info")
            .matches("Subject%3D")
            .count(),
        2
    );
}

#[test]
fn no_underscores_in_names_and_visible_ascii_values() {
    let ca = Ca::new("Root \"R\"", "Zürich/Süd").unwrap();
    let (odd, _) = ca
        .issue(&CertSpec {
            subject: vec![
                ("O", "Acme/Sub, \"Q\""),
                ("CN", "Grüße\tx"),
                ("ST", "000e08abcdef"),
            ],
            dns_names: vec!["prov.example"],
            ..CertSpec::legacy_server("unused")
        })
        .unwrap();
    let fx = fixture();
    let odd = ClientIdentity {
        verify: Verify::Success,
        chain: vec![odd, ca.cert.clone()],
    };
    let mut h = names();
    h.verify = "X_Client_Verify".into();
    h.mac = "X_Device_MAC".into();
    for id in [&fx.verified, &fx.failed, &fx.none, &odd] {
        for preset in ALL {
            for f in [DnFormat::Rfc4514, DnFormat::Legacy] {
                for chain in [false, true] {
                    for (n, v) in headers(id, preset, f, &h, chain) {
                        assert!(!n.contains('_'), "{preset:?}: {n}");
                        assert!(http::HeaderName::from_bytes(n.as_bytes()).is_ok(), "{n}");
                        assert!(
                            v.bytes().all(|b| (0x20..0x7f).contains(&b)),
                            "{preset:?} {n}: {v}"
                        );
                        assert!(http::HeaderValue::from_str(&v).is_ok(), "{n}: {v}");
                        // Whatever provgate sends, a client could not have sent.
                        let extra: Vec<String> =
                            h.all().iter().map(|s| s.to_ascii_lowercase()).collect();
                        assert!(is_identity_header(&n, &extra), "{n} is not stripped");
                    }
                }
            }
        }
    }
    let v = headers(&odd, Preset::Provgate, DnFormat::Rfc4514, &h, false);
    assert_eq!(get(&v, "X-Client-Verify"), "SUCCESS");
    assert_eq!(get(&v, "X-Device-MAC"), "000e08abcdef");
}

#[test]
fn legacy_dn_is_slash_form_in_certificate_order() {
    let fx = fixture();
    let leaf = fx.verified.leaf().unwrap();
    assert_eq!(
        dn_legacy(leaf.subject_name()),
        "/C=US/O=Sipura/OU=SPA-962/L=88012BA01234/ST=000e08abcdef/CN=spa962"
    );
    assert_eq!(
        dn(leaf.subject_name(), DnFormat::Rfc4514),
        "CN=spa962,ST=000e08abcdef,L=88012BA01234,OU=SPA-962,O=Sipura,C=US"
    );
    assert_eq!(
        dn(leaf.issuer_name(), DnFormat::Legacy),
        "/O=Sipura/CN=Device Client Root (test)"
    );
    let ca = Ca::new("x", "y").unwrap();
    let (odd, _) = ca
        .issue(&CertSpec {
            subject: vec![
                ("O", "Acme/Sub\\"),
                ("CN", "Müller"),
                ("SN", "000e08abcdef"),
            ],
            dns_names: vec![],
            ..CertSpec::legacy_server("unused")
        })
        .unwrap();
    let legacy = dn_legacy(odd.subject_name());
    assert_eq!(
        legacy,
        "/O=Acme\\x2FSub\\x5C/CN=M\\xC3\\xBCller/SN=000e08abcdef"
    );
    assert!(legacy.is_ascii());
    assert_eq!(legacy.matches('/').count(), 3);
}

/// The provgate preset's reference: `identity_headers()` as it was in src/proxy/mod.rs
/// before the presets, kept verbatim so the default cannot drift.
/// The identity headers for a connection. The verification result is always sent; the
/// certificate's facts whenever one was presented (so a failure can be diagnosed); the device
/// fields only when it verified, so a backend never acts on an unverified MAC.
fn todays_headers<'a>(
    id: &crate::identity::ClientIdentity,
    rt: &'a crate::route::IdentityPolicy,
) -> Vec<(&'a str, String)> {
    let h = &rt.headers;
    let mut out = vec![(h.verify.as_str(), id.verify.to_string())];
    let Some(leaf) = id.leaf() else {
        return out;
    };
    out.push((
        h.subject.as_str(),
        crate::identity::rfc4514(leaf.subject_name()),
    ));
    out.push((
        h.issuer.as_str(),
        crate::identity::rfc4514(leaf.issuer_name()),
    ));
    out.push((h.serial.as_str(), crate::identity::serial_hex(leaf)));
    out.push((
        h.fingerprint.as_str(),
        crate::identity::fingerprint_sha256(leaf),
    ));
    out.push((
        h.not_after.as_str(),
        crate::identity::not_after_rfc3339(leaf),
    ));
    out.push((h.cert.as_str(), crate::identity::rfc9440(leaf)));
    if rt.forward_chain && id.chain.len() > 1 {
        out.push((
            h.cert_chain.as_str(),
            crate::identity::rfc9440_chain(&id.chain),
        ));
    }
    if id.verify == crate::identity::Verify::Success {
        let d = crate::identity::device(leaf);
        if let Some(mac) = d.mac {
            out.push((h.mac.as_str(), mac));
        }
        if let Some(serial) = d.serial {
            out.push((h.device_serial.as_str(), serial));
        }
        if let Some(product) = d.product {
            out.push((h.product.as_str(), product));
        }
        out.push((h.generic.as_str(), d.generic.to_string()));
    }
    // Header values must be visible ASCII; anything else in a DN is escaped away here.
    out.into_iter()
        .map(|(n, v)| {
            let clean: String = v
                .chars()
                .map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            (n, clean)
        })
        .collect()
}

#[test]
fn provgate_preset_is_todays_headers() {
    let fx = fixture();
    let mac_path = regex::Regex::new(crate::config::DEFAULT_MAC_PATH_PATTERN).unwrap();
    for forward_chain in [false, true] {
        let rt = crate::route::IdentityPolicy {
            headers: names(),
            forward_chain,
            mac_path: mac_path.clone(),
            preset: Preset::Provgate,
            dn_format: DnFormat::Rfc4514,
            strip_request_headers: Vec::new(),
        };
        for id in [&fx.verified, &fx.failed, &fx.none] {
            let today: Vec<(String, String)> = todays_headers(id, &rt)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
            let now = headers(
                id,
                Preset::Provgate,
                DnFormat::Rfc4514,
                &rt.headers,
                forward_chain,
            );
            assert_eq!(now, today);
        }
    }
    let legacy = headers(
        &fx.verified,
        Preset::Provgate,
        DnFormat::Legacy,
        &names(),
        false,
    );
    assert_eq!(
        get(&legacy, "X-Client-Subject"),
        "/C=US/O=Sipura/OU=SPA-962/L=88012BA01234/ST=000e08abcdef/CN=spa962"
    );
}

#[test]
fn expired_header_only_for_a_verified_out_of_date_device_and_always_stripped() {
    assert!(is_identity_header(EXPIRED_HEADER, &[]));
    assert!(is_identity_header("x_client_cert_expired", &[]));
    let ca = Ca::new("Device Client Root (test)", "Sipura").unwrap();
    let cert = |not_before_days, not_after_days| {
        ca.issue(&CertSpec {
            subject: vec![("OU", "SPA-962"), ("ST", "000e08abcdef")],
            dns_names: vec![],
            not_before_days,
            not_after_days,
            ..CertSpec::legacy_server("unused")
        })
        .unwrap()
        .0
    };
    let id = |verify: Verify, leaf: X509| ClientIdentity {
        verify,
        chain: vec![leaf],
    };
    let expired = id(Verify::Success, cert(-3650, -1));
    let not_yet = id(Verify::Success, cert(1, 3650));
    let valid = id(Verify::Success, cert(-1, 3650));
    let refused = id(
        Verify::Failed("certificate has expired".into()),
        cert(-3650, -1),
    );
    for preset in ALL {
        let flag = |i: &ClientIdentity| {
            headers(i, preset, DnFormat::Rfc4514, &names(), false)
                .into_iter()
                .find(|(n, _)| n == EXPIRED_HEADER)
                .map(|(_, v)| v)
        };
        assert_eq!(flag(&expired).as_deref(), Some("true"), "{preset:?}");
        assert_eq!(flag(&not_yet).as_deref(), Some("true"), "{preset:?}");
        assert_eq!(flag(&valid), None, "{preset:?}");
        assert_eq!(flag(&refused), None, "{preset:?}");
        assert_eq!(flag(&ClientIdentity::none()), None, "{preset:?}");
    }
}
