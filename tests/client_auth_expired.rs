//! Device certificates that can never be renewed: `client_auth.allow_expired` and the
//! `deny_serials` / `allow_serials` lists, over real TLS on loopback with both engines (an
//! OpenSSL TLS 1.0 client shaped like an SPA, a rustls TLS 1.2 client). Certificates are made
//! here: SPA-shaped device certificates (SHA-1, RSA 1024) for the TLS 1.0 client, RSA 2048 ones
//! for rustls (it cannot sign with 1024-bit keys).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use provgate::pki::{Ca, CertSpec};

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

type Cert = (X509, PKey<Private>);

/// An SPA-shaped device certificate valid from `not_before_days` to `not_after_days` (relative
/// to now); `rsa_bits` 1024 for the TLS 1.0 client, 2048 for rustls.
fn device(ca: &Ca, not_before_days: i64, not_after_days: i64, rsa_bits: u32) -> Cert {
    let digest = if rsa_bits < 2048 {
        MessageDigest::sha1()
    } else {
        MessageDigest::sha256()
    };
    ca.issue(&CertSpec {
        subject: vec![
            ("OU", "SPA-962"),
            ("L", "88012BA01234"),
            ("ST", "000e08abcdef"),
        ],
        dns_names: vec![],
        rsa_bits,
        digest,
        not_before_days,
        not_after_days,
        is_ca: false,
    })
    .unwrap()
}

/// A self-signed CA whose own validity ended `days_ago` days ago (issued ten years before), as
/// the Sipura/Linksys client roots may have. Built here: `pki::Ca::new` makes current roots.
fn expired_root(cn: &str, days_ago: i64) -> Ca {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "Sipura (test)").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(120, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now - (3650 + days_ago) * 86_400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now - days_ago * 86_400).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    Ca {
        cert: b.build(),
        key,
    }
}

/// The certificate serial as `X-Client-Serial` shows it, written with colons in upper case
/// (`0A:1B:...`), one of the spellings the lists accept.
fn colon_serial(c: &Cert) -> String {
    let hex = provgate::identity::serial_hex(&c.0);
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    hex.as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// Listeners on a server certificate `server` and device roots `devices-ca.pem`; `auth` is the
/// rest of the client_auth map (after `ca`).
fn config(backend: std::net::SocketAddr, listeners: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "backends:\n  prov: {{ address: \"{backend}\" }}\ncertificates:\n  server: {{ chain: server.pem, key: server.key }}\nlisteners:\n"
    );
    for (name, tls, auth) in listeners {
        yaml.push_str(&format!(
            "  - name: {name}\n    bind: [\"127.0.0.1:0\"]\n    certificate: server\n    tls: {tls}\n    backend: prov\n    client_auth: {{ ca: devices-ca.pem, {auth} }}\n"
        ));
    }
    yaml
}

fn pki() -> Pki {
    let pki = Pki::new();
    let server_ca = pki.ca("server", "Sipura CA (test)");
    pki.issue(&server_ca, "server", &CertSpec::server("prov.test"));
    pki
}

/// The value the sample backend saw for a header (it echoes them as `<!-- seen name: v -->`).
fn header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("seen {}: ", name.to_ascii_lowercase());
    body.lines()
        .find_map(|l| {
            l.strip_prefix("<!-- ")
                .and_then(|l| l.strip_prefix(&needle))
        })
        .map(|v| v.trim_end_matches(" -->"))
}

fn tls10(cert: &Cert) -> Legacy<'static> {
    Legacy {
        client_cert: Some(cert.clone()),
        ..Legacy::default()
    }
}

/// One request over TLS 1.0 (OpenSSL client) with a device certificate: the backend's body,
/// or `None` when the handshake or the request was refused.
async fn via_tls10(h: &Harness, listener: &str, cert: &Cert, extra: &str) -> Option<String> {
    let mut s = tls10(cert).connect(h.addr(listener)).await.ok()?;
    let (status, body) = get(&mut s, MAC_PATH, extra).await;
    (status == 200).then_some(body)
}

/// As [`via_tls10`], with a rustls TLS 1.2 client (TLS 1.2 so that a refused client
/// certificate fails the handshake itself).
async fn via_rustls(h: &Harness, listener: &str, cert: &Cert) -> Option<String> {
    let ca = h.pki.path("server-ca.pem");
    let mut s = modern_with_cert(
        h.addr(listener),
        &ca,
        "prov.test",
        true,
        &[&rustls::version::TLS12],
        Some(cert.clone()),
    )
    .await
    .ok()?;
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    (status == 200).then_some(body)
}

/// The count of failed handshakes on `listener` (every reason).
fn failures(h: &Harness, listener: &str) -> u64 {
    h.running
        .telemetry()
        .metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("provgate_handshake_failures_total")
                && l.contains(&format!("listener=\"{listener}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The count of failed handshakes on `listener` with this reason label.
fn failures_for(h: &Harness, listener: &str, reason: &str) -> u64 {
    h.running
        .telemetry()
        .metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("provgate_handshake_failures_total")
                && l.contains(&format!("listener=\"{listener}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Accepted as a verified device whose certificate is out of date.
fn assert_expired_success(body: &str, what: &str) {
    assert_eq!(
        header(body, "x-client-verify"),
        Some("SUCCESS"),
        "{what}: {body}"
    );
    assert_eq!(
        header(body, "x-client-cert-expired"),
        Some("true"),
        "{what}: {body}"
    );
    assert_eq!(
        header(body, "x-device-mac"),
        Some("000e08abcdef"),
        "{what}: {body}"
    );
    assert_eq!(
        header(body, "x-device-serial"),
        Some("88012BA01234"),
        "{what}"
    );
    assert_eq!(header(body, "x-device-product"), Some("SPA-962"), "{what}");
}

#[tokio::test]
async fn expired_device_certificates_pass_only_with_allow_expired() {
    let pki = pki();
    let root = pki.ca("devices", "Device Client Root (test)");
    let expired = device(&root, -3650, -30, 1024);
    let not_yet = device(&root, 30, 3650, 1024);
    let valid = device(&root, -1, 3650, 1024);
    let expired_2048 = device(&root, -3650, -30, 2048);
    let valid_2048 = device(&root, -1, 3650, 2048);
    let backend = backend().await;
    let yaml = config(
        backend,
        &[
            ("req", "legacy", "mode: required"),
            ("opt", "legacy", "mode: optional"),
            ("req_exp", "legacy", "mode: required, allow_expired: true"),
            ("opt_exp", "legacy", "mode: optional, allow_expired: true"),
            ("req13", "modern", "mode: required"),
            ("req13_exp", "modern", "mode: required, allow_expired: true"),
            ("opt13_exp", "modern", "mode: optional, allow_expired: true"),
        ],
    );
    let h = Harness::start(pki, &yaml).await;

    // Without the option an expired certificate never gets in: refused by both engines under
    // `required`, FAILED with no device fields under `optional`.
    assert_eq!(via_tls10(&h, "req", &expired, "").await, None);
    assert_eq!(via_tls10(&h, "req", &not_yet, "").await, None);
    assert_eq!(failures(&h, "req"), 2);
    assert_eq!(via_rustls(&h, "req13", &expired_2048).await, None);
    assert_eq!(failures(&h, "req13"), 1);
    let body = via_tls10(&h, "opt", &expired, "").await.unwrap();
    assert_eq!(
        header(&body, "x-client-verify"),
        Some("FAILED:certificate has expired"),
        "{body}"
    );
    assert_eq!(header(&body, "x-device-mac"), None, "{body}");
    assert_eq!(header(&body, "x-client-cert-expired"), None, "{body}");

    // With it: SUCCESS, the expired flag and the device fields, on both engines and modes.
    for l in ["req_exp", "opt_exp"] {
        let body = via_tls10(&h, l, &expired, "").await.unwrap();
        assert_expired_success(&body, &format!("{l} expired"));
        let body = via_tls10(&h, l, &not_yet, "").await.unwrap();
        assert_expired_success(&body, &format!("{l} not yet valid"));
        let body = via_tls10(&h, l, &valid, "").await.unwrap();
        assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"));
        assert_eq!(header(&body, "x-client-cert-expired"), None, "{l}: {body}");
        assert_eq!(header(&body, "x-device-mac"), Some("000e08abcdef"));
    }
    for l in ["req13_exp", "opt13_exp"] {
        let body = via_rustls(&h, l, &expired_2048).await.unwrap();
        assert_expired_success(&body, &format!("{l} rustls"));
        let body = via_rustls(&h, l, &valid_2048).await.unwrap();
        assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"));
        assert_eq!(header(&body, "x-client-cert-expired"), None, "{l}: {body}");
    }
    assert_eq!(failures(&h, "req_exp") + failures(&h, "req13_exp"), 0);
}

#[tokio::test]
async fn a_client_cannot_send_the_expired_header_itself() {
    let pki = pki();
    let root = pki.ca("devices", "Device Client Root (test)");
    let valid = device(&root, -1, 3650, 1024);
    let backend = backend().await;
    let h = Harness::start(
        pki,
        &config(
            backend,
            &[("opt_exp", "legacy", "mode: optional, allow_expired: true")],
        ),
    )
    .await;
    let forged = "X-Client-Cert-Expired: true\r\nx_client_cert_expired: true\r\n";
    let body = via_tls10(&h, "opt_exp", &valid, forged).await.unwrap();
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"));
    assert!(
        !body.to_ascii_lowercase().contains("expired"),
        "a client-sent expired header reached the backend: {body}"
    );
    // Without a certificate too.
    let mut s = Legacy::default().connect(h.addr("opt_exp")).await.unwrap();
    let (status, body) = get(&mut s, MAC_PATH, forged).await;
    assert_eq!(status, 200);
    assert_eq!(header(&body, "x-client-verify"), Some("NONE"));
    assert!(!body.to_ascii_lowercase().contains("expired"), "{body}");
}

#[tokio::test]
async fn another_ca_and_a_forged_signature_stay_refused_with_allow_expired() {
    let pki = pki();
    // Writes devices-ca.pem, the root the listeners trust.
    let _trusted = pki.ca("devices", "Device Client Root (test)");
    let stranger_root = Ca::new("Device Client Root (test)", "Somebody else").unwrap();
    let strangers = [
        device(&stranger_root, -3650, -30, 1024),
        device(&stranger_root, -1, 3650, 1024),
    ];
    let stranger_2048 = device(&stranger_root, -3650, -30, 2048);
    let backend = backend().await;
    let h = Harness::start(
        pki,
        &config(
            backend,
            &[
                ("req_exp", "legacy", "mode: required, allow_expired: true"),
                ("opt_exp", "legacy", "mode: optional, allow_expired: true"),
                ("req13_exp", "modern", "mode: required, allow_expired: true"),
            ],
        ),
    )
    .await;
    // The stranger root has the same subject as the configured one: only the signature check
    // tells them apart.
    for c in &strangers {
        assert_eq!(via_tls10(&h, "req_exp", c, "").await, None);
        let body = via_tls10(&h, "opt_exp", c, "").await.unwrap();
        let verify = header(&body, "x-client-verify").unwrap();
        assert!(verify.starts_with("FAILED:"), "{verify}");
        assert_eq!(header(&body, "x-device-mac"), None, "{body}");
        assert_eq!(header(&body, "x-client-cert-expired"), None, "{body}");
    }
    assert_eq!(failures(&h, "req_exp"), 2);
    assert_eq!(failures_for(&h, "req_exp", "client_cert_denied"), 0);
    assert_eq!(via_rustls(&h, "req13_exp", &stranger_2048).await, None);
    assert_eq!(failures(&h, "req13_exp"), 1);
}

#[tokio::test]
async fn an_expired_vendor_root_is_accepted_with_allow_expired_only() {
    let pki = pki();
    let root = expired_root("Linksys Client Root (test)", 400);
    std::fs::write(pki.path("devices-ca.pem"), root.cert_pem().unwrap()).unwrap();
    // A device certificate still inside its dates, under a root that expired.
    let under_expired_root = device(&root, -3700, 3650, 1024);
    let backend = backend().await;
    let h = Harness::start(
        pki,
        &config(
            backend,
            &[
                ("req", "legacy", "mode: required"),
                ("req_exp", "legacy", "mode: required, allow_expired: true"),
            ],
        ),
    )
    .await;
    assert_eq!(via_tls10(&h, "req", &under_expired_root, "").await, None);
    let body = via_tls10(&h, "req_exp", &under_expired_root, "")
        .await
        .unwrap();
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"), "{body}");
    assert_eq!(header(&body, "x-device-mac"), Some("000e08abcdef"));
    // The device's own certificate is in date: the flag is about it, not the root.
    assert_eq!(header(&body, "x-client-cert-expired"), None, "{body}");
}

#[tokio::test]
async fn deny_serials_refuse_a_unit_and_allow_serials_admit_only_theirs() {
    let pki = pki();
    let root = pki.ca("devices", "Device Client Root (test)");
    let bad = device(&root, -3650, -30, 1024);
    let good = device(&root, -3650, -30, 1024);
    let bad_2048 = device(&root, -1, 3650, 2048);
    let good_2048 = device(&root, -1, 3650, 2048);
    let lower = |c: &Cert| provgate::identity::serial_hex(&c.0).to_ascii_lowercase();
    let deny = format!(
        "mode: required, allow_expired: true, deny_serials: [\"{}\"]",
        colon_serial(&bad)
    );
    let allow = format!(
        "mode: required, allow_expired: true, allow_serials: [\"{}\"]",
        lower(&good)
    );
    let both = format!(
        "mode: required, allow_expired: true, allow_serials: [\"{g}\", \"{b}\"], deny_serials: [\"{b}\"]",
        g = colon_serial(&good),
        b = colon_serial(&bad)
    );
    let opt = format!(
        "mode: optional, allow_expired: true, deny_serials: [\"{}\"]",
        lower(&bad)
    );
    let deny13 = format!(
        "mode: required, deny_serials: [\"{}\"]",
        colon_serial(&bad_2048)
    );
    let opt13 = format!(
        "mode: optional, allow_serials: [\"{}\"]",
        colon_serial(&good_2048)
    );
    let backend = backend().await;
    let h = Harness::start(
        pki,
        &config(
            backend,
            &[
                ("deny", "legacy", &deny),
                ("allow", "legacy", &allow),
                ("both", "legacy", &both),
                ("opt", "legacy", &opt),
                ("deny13", "modern", &deny13),
                ("opt13", "modern", &opt13),
            ],
        ),
    )
    .await;
    for l in ["deny", "allow", "both"] {
        assert_eq!(
            via_tls10(&h, l, &bad, "").await,
            None,
            "{l} let the bad unit in"
        );
        assert_eq!(failures(&h, l), 1, "{l}");
        assert_eq!(failures_for(&h, l, "client_cert_denied"), 1, "{l}");
        let body = via_tls10(&h, l, &good, "").await.unwrap();
        assert_expired_success(&body, l);
    }
    logs()
        .wait_for(&[
            &format!("local={}", h.addr("deny")),
            "reason=\"client_cert_denied\"",
            "certificate serial refused by deny_serials/allow_serials",
        ])
        .await;
    // optional: the handshake finishes and the backend hears why, without device fields.
    let body = via_tls10(&h, "opt", &bad, "").await.unwrap();
    assert_eq!(
        header(&body, "x-client-verify"),
        Some("FAILED:certificate serial refused by deny_serials/allow_serials"),
        "{body}"
    );
    assert_eq!(header(&body, "x-device-mac"), None, "{body}");
    assert_eq!(header(&body, "x-client-cert-expired"), None, "{body}");
    let body = via_tls10(&h, "opt", &good, "").await.unwrap();
    assert_expired_success(&body, "opt good");
    // rustls: the same lists.
    assert_eq!(via_rustls(&h, "deny13", &bad_2048).await, None);
    assert_eq!(failures(&h, "deny13"), 1);
    assert_eq!(failures_for(&h, "deny13", "client_cert_denied"), 1);
    logs()
        .wait_for(&[
            &format!("local={}", h.addr("deny13")),
            "certificate serial refused by deny_serials/allow_serials",
        ])
        .await;
    let body = via_rustls(&h, "deny13", &good_2048).await.unwrap();
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"));
    let body = via_rustls(&h, "opt13", &bad_2048).await.unwrap();
    assert_eq!(
        header(&body, "x-client-verify"),
        Some("FAILED:certificate serial refused by deny_serials/allow_serials"),
        "{body}"
    );
    let body = via_rustls(&h, "opt13", &good_2048).await.unwrap();
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"));
    assert_eq!(header(&body, "x-device-mac"), Some("000e08abcdef"));
}
