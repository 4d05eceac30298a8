//! Tests of the per-preset value formats (Apache, nginx, HAProxy, Traefik, Envoy, RFC 9440)
//! and of the preset names in the configuration.

use openssl::hash::MessageDigest;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContext, X509VerifyResult};

use super::*;
use crate::identity;
use crate::identity::headers::{headers, DnFormat, Preset};
use crate::identity::presets::asn1_short;
use crate::tls::x509::{dn_legacy, fingerprint_sha1};

#[test]
fn apache_and_nginx_values() {
    let fx = fixture();
    let leaf = fx.verified.leaf().unwrap();
    let a = headers(
        &fx.failed,
        Preset::Apache,
        DnFormat::Legacy,
        &names(),
        false,
    );
    assert_eq!(
        get(&a, "SSL-Client-Verify"),
        "FAILED:unable to get local issuer certificate"
    );
    assert_eq!(get(&a, "SSL-Client-S-DN"), dn_legacy(leaf.subject_name()));
    assert_eq!(get(&a, "SSL-Client-S-DN-CN"), "spa962");
    assert_eq!(get(&a, "SSL-Client-S-DN-OU"), "SPA-962");
    assert_eq!(get(&a, "SSL-Client-I-DN-CN"), "Device Client Root (test)");
    let serial = get(&a, "SSL-Client-M-Serial");
    assert!(serial
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(serial, identity::serial_hex(leaf));
    // mod_ssl / ASN1_TIME_print: `Dec  1 16:04:05 2026 GMT`.
    let date = regex::Regex::new(r"^[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d \d{4} GMT$").unwrap();
    assert!(date.is_match(get(&a, "SSL-Client-V-Start")));
    assert!(date.is_match(get(&a, "SSL-Client-V-End")));
    let cert = get(&a, "SSL-Client-Cert");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE----- MII"));
    assert!(cert.ends_with(" -----END CERTIFICATE-----"));
    let body: String = cert
        .trim_start_matches("-----BEGIN CERTIFICATE-----")
        .trim_end_matches("-----END CERTIFICATE-----")
        .split(' ')
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(X509::from_der(&der).unwrap(), *leaf);

    let n = headers(
        &fx.verified,
        Preset::Nginx,
        DnFormat::Rfc4514,
        &names(),
        false,
    );
    assert_eq!(get(&n, "X-SSL-Client-Verify"), "SUCCESS");
    assert_eq!(
        get(&n, "X-SSL-Client-S-DN"),
        identity::rfc4514(leaf.subject_name())
    );
    let sha1: String = leaf
        .digest(MessageDigest::sha1())
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(get(&n, "X-SSL-Client-Fingerprint"), sha1);
    assert!(date.is_match(get(&n, "X-SSL-Client-V-End")));
    let escaped = get(&n, "X-SSL-Client-Escaped-Cert");
    assert!(escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
    assert!(!escaped.contains(['+', '/', '=', ' ']));
    assert_eq!(X509::from_pem(&pct_decode(escaped, false)).unwrap(), *leaf);
    let none = headers(&fx.none, Preset::Nginx, DnFormat::Rfc4514, &names(), false);
    assert_eq!(get(&none, "X-SSL-Client-Verify"), "NONE");
}

/// The reason text of a real OpenSSL verification.
fn verify_against(roots: &[&X509], leaf: &X509) -> X509VerifyResult {
    let mut b = X509StoreBuilder::new().unwrap();
    for r in roots {
        b.add_cert((*r).clone()).unwrap();
    }
    let store = b.build();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, leaf, &Stack::new().unwrap(), |c| {
        c.verify_cert()?;
        Ok(c.error())
    })
    .unwrap()
}

#[test]
fn haproxy_values_and_verify_codes() {
    let fx = fixture();
    let leaf = fx.verified.leaf().unwrap();
    let v = headers(
        &fx.verified,
        Preset::Haproxy,
        DnFormat::Legacy,
        &names(),
        false,
    );
    assert_eq!(get(&v, "X-SSL"), "1");
    assert_eq!(get(&v, "X-SSL-Client-Cert"), "1");
    assert_eq!(get(&v, "X-SSL-Client-Verify"), "0");
    assert_eq!(get(&v, "X-SSL-Client-DN"), dn_legacy(leaf.subject_name()));
    assert_eq!(get(&v, "X-SSL-Client-CN"), "spa962");
    assert_eq!(
        get(&v, "X-SSL-Issuer"),
        "/O=Sipura/CN=Device Client Root (test)"
    );
    assert_eq!(get(&v, "X-SSL-Client-SHA1"), fingerprint_sha1(leaf));
    assert!(fingerprint_sha1(leaf)
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(fingerprint_sha1(leaf).len(), 40);
    let yymmdd = regex::Regex::new(r"^\d{12}Z$").unwrap();
    assert!(yymmdd.is_match(get(&v, "X-SSL-Client-Not-Before")));
    assert!(yymmdd.is_match(get(&v, "X-SSL-Client-Not-After")));
    let r = headers(
        &fx.verified,
        Preset::Haproxy,
        DnFormat::Rfc4514,
        &names(),
        false,
    );
    assert_eq!(
        get(&r, "X-SSL-Client-DN"),
        identity::rfc4514(leaf.subject_name())
    );

    // Codes recovered from OpenSSL's own reason strings.
    let stranger = Ca::new("Somebody Else's Root", "elsewhere").unwrap();
    let (expired, _) = fx
        .ca
        .issue(&CertSpec {
            not_before_days: -30,
            not_after_days: -1,
            ..CertSpec::legacy_server("old")
        })
        .unwrap();
    for (roots, cert, code) in [
        (vec![&stranger.cert], leaf, 20),
        (vec![&fx.ca.cert], &expired, 10),
    ] {
        let r = verify_against(&roots, cert);
        assert_eq!(r.as_raw(), code);
        let id = ClientIdentity {
            verify: Verify::Failed(r.error_string().to_string()),
            chain: vec![cert.clone()],
        };
        let h = headers(&id, Preset::Haproxy, DnFormat::Legacy, &names(), false);
        assert_eq!(get(&h, "X-SSL-Client-Verify"), code.to_string());
        assert_eq!(get(&h, "X-SSL-Client-Cert"), "1");
    }
    let parse = ClientIdentity {
        verify: Verify::Failed("certificate cannot be parsed".into()),
        chain: vec![],
    };
    let h = headers(&parse, Preset::Haproxy, DnFormat::Legacy, &names(), false);
    assert_eq!(
        header_names(&h),
        ["X-SSL", "X-SSL-Client-Cert", "X-SSL-Client-Verify"]
    );
    assert_eq!(get(&h, "X-SSL-Client-Cert"), "1");
    assert_eq!(get(&h, "X-SSL-Client-Verify"), "1");
}

#[test]
fn haproxy_time_is_utctime_or_generalized() {
    let t = openssl::asn1::Asn1Time::from_str("20261201160405Z").unwrap();
    assert_eq!(asn1_short(&t), "261201160405Z");
    let t = openssl::asn1::Asn1Time::from_str("20510101000000Z").unwrap();
    assert_eq!(asn1_short(&t), "20510101000000Z");
}

#[test]
fn traefik_values() {
    let ca = Ca::new("Device Client Root (test)", "Sipura").unwrap();
    let (leaf, _) = ca
        .issue(&CertSpec {
            subject: vec![
                ("C", "US"),
                ("O", "Sipura"),
                ("OU", "SPA-962"),
                ("CN", "a b"),
            ],
            dns_names: vec!["prov.example", "alt.example"],
            ..CertSpec::legacy_server("unused")
        })
        .unwrap();
    let id = ClientIdentity {
        verify: Verify::Success,
        chain: vec![leaf.clone(), ca.cert.clone()],
    };
    let t = headers(&id, Preset::Traefik, DnFormat::Legacy, &names(), false);
    assert_eq!(get(&t, "X-Client-Verify"), "SUCCESS");
    let cert = get(&t, "X-Forwarded-Tls-Client-Cert");
    assert!(!cert.contains(['+', '/', '=', ',']));
    let der = base64::engine::general_purpose::STANDARD
        .decode(pct_decode(cert, true))
        .unwrap();
    assert_eq!(X509::from_der(&der).unwrap(), leaf);
    let info = String::from_utf8(pct_decode(
        get(&t, "X-Forwarded-Tls-Client-Cert-Info"),
        true,
    ))
    .unwrap();
    let serial = leaf
        .serial_number()
        .to_bn()
        .unwrap()
        .to_dec_str()
        .unwrap()
        .to_string();
    let nb = crate::tls::certs::asn1_to_unix(leaf.not_before());
    let na = crate::tls::certs::asn1_to_unix(leaf.not_after());
    assert_eq!(
        info,
        format!(
            "Subject=\"C=US,O=Sipura,OU=SPA-962,CN=a b\";\
             Issuer=\"O=Sipura,CN=Device Client Root (test)\";\
             SerialNumber=\"{serial}\";NB=\"{nb}\";NA=\"{na}\";\
             SAN=\"prov.example,alt.example\""
        )
    );
    assert!(get(&t, "X-Forwarded-Tls-Client-Cert-Info").starts_with("Subject%3D%22C%3DUS%2C"));
}

#[test]
fn envoy_and_rfc9440_values() {
    let fx = fixture();
    let leaf = fx.verified.leaf().unwrap();
    let e = headers(
        &fx.failed,
        Preset::Envoy,
        DnFormat::Rfc4514,
        &names(),
        false,
    );
    assert_eq!(
        get(&e, "X-Client-Verify"),
        "FAILED:unable to get local issuer certificate"
    );
    let xfcc = get(&e, "X-Forwarded-Client-Cert");
    let prefix = format!("Hash={};Cert=\"", identity::fingerprint_sha256(leaf));
    assert!(xfcc.starts_with(&prefix), "{xfcc}");
    let cert = xfcc[prefix.len()..].split('"').next().unwrap();
    assert!(cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
    assert_eq!(X509::from_pem(&pct_decode(cert, false)).unwrap(), *leaf);
    assert!(xfcc.ends_with(&format!(
        ";Subject=\"{}\"",
        identity::rfc4514(leaf.subject_name())
    )));

    // A legacy DN with a quote stays one quoted XFCC value.
    let ca = Ca::new("x", "y").unwrap();
    let (q, _) = ca
        .issue(&CertSpec {
            subject: vec![("O", "say \"hi\""), ("CN", "q")],
            dns_names: vec![],
            ..CertSpec::legacy_server("unused")
        })
        .unwrap();
    let id = ClientIdentity {
        verify: Verify::Success,
        chain: vec![q.clone()],
    };
    let e = headers(&id, Preset::Envoy, DnFormat::Legacy, &names(), false);
    assert!(get(&e, "X-Forwarded-Client-Cert").ends_with(";Subject=\"/O=say \\\"hi\\\"/CN=q\""));
    let e = headers(&id, Preset::Envoy, DnFormat::Rfc4514, &names(), false);
    assert!(get(&e, "X-Forwarded-Client-Cert").ends_with(";Subject=\"CN=q,O=say \\\"hi\\\"\""));

    let r = headers(
        &fx.verified,
        Preset::Rfc9440,
        DnFormat::Rfc4514,
        &names(),
        false,
    );
    assert_eq!(get(&r, "Client-Cert"), identity::rfc9440(leaf));
}

#[test]
fn presets_deserialize_by_lowercase_name() {
    let p: Preset = serde_yaml::from_str("haproxy").unwrap();
    assert_eq!(p, Preset::Haproxy);
    let p: Preset = serde_yaml::from_str("rfc9440").unwrap();
    assert_eq!(p, Preset::Rfc9440);
    let p: Preset = serde_yaml::from_str("xfcc").unwrap();
    assert_eq!(p, Preset::Envoy);
    let f: DnFormat = serde_yaml::from_str("legacy").unwrap();
    assert_eq!(f, DnFormat::Legacy);
    assert_eq!(Preset::default(), Preset::Provgate);
    assert_eq!(DnFormat::default(), DnFormat::Rfc4514);
}
