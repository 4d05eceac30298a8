//! Device identity: client certificates verified by either engine and handed to the backend.
//! Device certificates are made here in the shape of the real ones (SHA-1, RSA 1024,
//! `OU=<product>, L=<serial>, ST|SN=<mac>`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::SslVersion;
use openssl::x509::X509;
use provgate::pki::{Ca, CertSpec};
use tokio::io::AsyncWriteExt;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

struct Devices {
    pki: Pki,
    spa962_st: (X509, PKey<Private>),
    spa962_sn: (X509, PKey<Private>),
    modern_phone: (X509, PKey<Private>),
    stranger: (X509, PKey<Private>),
}

fn device(ca: &Ca, mac_attr: &str) -> (X509, PKey<Private>) {
    ca.issue(&CertSpec {
        subject: vec![
            ("OU", "SPA-962"),
            ("L", "88012BA01234"),
            (mac_attr, "000e08abcdef"),
        ],
        dns_names: vec![],
        rsa_bits: 1024,
        digest: MessageDigest::sha1(),
        not_before_days: -1,
        not_after_days: 3650,
        is_ca: false,
    })
    .unwrap()
}

fn devices() -> Devices {
    let pki = Pki::new();
    let server_ca = pki.ca("server", "Sipura CA (test)");
    pki.issue(&server_ca, "server", &CertSpec::server("prov.test"));
    let device_root = pki.ca("devices", "Device Client Root (test)");
    let other_root = Ca::new("Somebody Else's Root", "elsewhere").unwrap();
    let modern_phone = device_root
        .issue(&CertSpec {
            subject: vec![
                ("OU", "CP-8841-3PCC"),
                ("L", "FCH1234ABCD"),
                ("CN", "00562b043615"),
            ],
            dns_names: vec![],
            ..CertSpec::server("unused")
        })
        .unwrap();
    Devices {
        spa962_st: device(&device_root, "ST"),
        spa962_sn: device(&device_root, "SN"),
        stranger: device(&other_root, "ST"),
        modern_phone,
        pki,
    }
}

fn config(backend: std::net::SocketAddr, listeners: &str) -> String {
    format!(
        r#"
backends:
  prov: {{ address: "{backend}" }}
certificates:
  server: {{ chain: server.pem, key: server.key }}
identity:
  forward_chain: true
listeners:
{listeners}"#
    )
}

fn listener(name: &str, tls: &str, mode: &str, level: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    bind: ["127.0.0.1:0"]
    certificate: server
    tls: {tls}
    backend: prov
    client_auth: {{ mode: {mode}, ca: devices-ca.pem, verify_level: {level} }}
{extra}"#
    )
}

fn header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("seen {}: ", name.to_ascii_lowercase());
    body.lines()
        .find_map(|l| {
            l.strip_prefix("<!-- ")
                .and_then(|l| l.strip_prefix(&needle))
        })
        .map(|v| v.trim_end_matches(" -->"))
}

fn tls10_with(cert: &(X509, PKey<Private>)) -> Legacy<'static> {
    Legacy {
        client_cert: Some(cert.clone()),
        ..Legacy::default()
    }
}

#[tokio::test]
async fn legacy_device_certificate_reaches_the_backend_as_identity_headers() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("legacy", "legacy", "optional", "legacy", "")
        + &listener("required", "legacy", "required", "legacy", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;
    for (which, cert) in [("ST", &d.spa962_st), ("SN", &d.spa962_sn)] {
        for l in ["legacy", "required"] {
            let mut s = tls10_with(cert).connect(h.addr(l)).await.unwrap();
            assert_eq!(s.ssl().version_str(), "TLSv1");
            let (status, body) = get(&mut s, MAC_PATH, "").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                header(&body, "x-client-verify"),
                Some("SUCCESS"),
                "{which} {l}: {body}"
            );
            assert_eq!(
                header(&body, "x-device-mac"),
                Some("000e08abcdef"),
                "{which}: {body}"
            );
            assert_eq!(
                header(&body, "x-device-serial"),
                Some("88012BA01234"),
                "{body}"
            );
            assert_eq!(header(&body, "x-device-product"), Some("SPA-962"), "{body}");
            assert_eq!(
                header(&body, "x-device-generic-cert"),
                Some("false"),
                "{body}"
            );
            let subject = header(&body, "x-client-subject").unwrap();
            assert!(
                subject.starts_with("ST=000e08abcdef,")
                    || subject.starts_with("2.5.4.4=000e08abcdef,"),
                "{subject}"
            );
            assert!(subject.contains("L=88012BA01234,OU=SPA-962"), "{subject}");
            assert_eq!(
                header(&body, "x-client-issuer"),
                Some("CN=Device Client Root (test),O=provgate tests")
            );
            assert_eq!(
                header(&body, "x-client-fingerprint-sha256").unwrap(),
                provgate::identity::fingerprint_sha256(&cert.0)
            );
            let cc = header(&body, "client-cert").unwrap();
            assert_eq!(cc, provgate::identity::rfc9440(&cert.0));
            assert!(header(&body, "x-client-not-after").unwrap().ends_with('Z'));
        }
    }
}

#[tokio::test]
async fn strict_level_rejects_sha1_device_certificates_with_a_reason() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("optional", "legacy", "optional", "strict", "")
        + &listener("required", "legacy", "required", "strict", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;

    let mut s = tls10_with(&d.spa962_st)
        .connect(h.addr("optional"))
        .await
        .unwrap();
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(status, 200);
    let verify = header(&body, "x-client-verify").unwrap();
    assert!(
        verify.starts_with("FAILED:") && verify.contains("too weak"),
        "{verify}"
    );
    assert_eq!(
        header(&body, "x-device-mac"),
        None,
        "unverified MAC must not be forwarded"
    );

    let client = tls10_with(&d.spa962_st);
    let refused = client.connect(h.addr("required")).await;
    let peer_ok = match refused {
        // TLS 1.0 sends the client Finished before the server's verdict arrives: the refusal
        // shows on the first read.
        Ok(mut s) => get(&mut s, MAC_PATH, "").await.0 == 200,
        Err(_) => false,
    };
    assert!(
        !peer_ok,
        "strict + required must refuse a SHA-1 device certificate"
    );
    let port = h.addr("required").to_string();
    let line = logs()
        .wait_for(&[&format!("local={port}"), "reason=\"bad_certificate\""])
        .await;
    assert!(line.contains("too weak"), "{line}");
}

#[tokio::test]
async fn required_without_certificate_is_refused_and_optional_forwards_none() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("optional", "legacy", "optional", "legacy", "")
        + &listener("required", "legacy", "required", "legacy", "")
        + &listener("required-modern", "modern", "required", "legacy", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;

    let mut s = Legacy::default().connect(h.addr("optional")).await.unwrap();
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&body, "x-client-verify"), Some("NONE"));
    assert_eq!(header(&body, "client-cert"), None);

    let r = Legacy::default().connect(h.addr("required")).await;
    assert!(
        r.is_err(),
        "required without a certificate must fail the handshake"
    );
    let port = h.addr("required").to_string();
    let line = logs()
        .wait_for(&[&format!("local={port}"), "reason=\"no_certificate\""])
        .await;
    assert!(line.contains("client sent no certificate"), "{line}");

    let ca = h.pki.path("server-ca.pem");
    let addr = h.addr("required-modern");
    let r = modern(addr, &ca, "prov.test", true, &[&rustls::version::TLS13]).await;
    let served = match r {
        Ok(mut s) => get(&mut s, MAC_PATH, "").await.0 == 200,
        Err(_) => false,
    };
    assert!(!served, "rustls required without a certificate must refuse");
    logs()
        .wait_for(&[&format!("local={addr}"), "reason=\"no_certificate\""])
        .await;
}

#[tokio::test]
async fn unknown_ca_fails_under_optional_and_is_refused_under_required() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("optional", "legacy", "optional", "legacy", "")
        + &listener("required", "legacy", "required", "legacy", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;
    let mut s = tls10_with(&d.stranger)
        .connect(h.addr("optional"))
        .await
        .unwrap();
    let (_, body) = get(&mut s, MAC_PATH, "").await;
    let verify = header(&body, "x-client-verify").unwrap();
    assert!(
        verify.starts_with("FAILED:") && verify.len() > "FAILED:".len(),
        "{verify}"
    );
    assert!(
        verify.contains("verify") || verify.contains("issuer"),
        "{verify}"
    );
    assert!(
        header(&body, "x-client-subject").is_some(),
        "facts forwarded for diagnosis"
    );
    assert_eq!(header(&body, "x-device-mac"), None);

    let served = match tls10_with(&d.stranger).connect(h.addr("required")).await {
        Ok(mut s) => get(&mut s, MAC_PATH, "").await.0 == 200,
        Err(_) => false,
    };
    assert!(!served);
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_the_backend() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("optional", "legacy", "optional", "legacy", "")
        + "  - name: noauth\n    bind: [\"127.0.0.1:0\"]\n    certificate: server\n    tls: legacy\n    backend: prov\n";
    let h = Harness::start(d.pki, &config(backend, &ls)).await;
    let forged = "Client-Cert: :Zm9yZ2Vk:\r\nClient-Cert-Chain: :Zm9yZ2Vk:\r\nX-Client-Verify: SUCCESS\r\n\
                  X-Device-MAC: 0000deadbeef\r\nx-device-serial: forged\r\nX-Client-Subject: CN=forged\r\n";
    for l in ["optional", "noauth"] {
        let mut s = Legacy::default().connect(h.addr(l)).await.unwrap();
        let (status, body) = get(&mut s, MAC_PATH, forged).await;
        assert_eq!(status, 200);
        assert!(
            !body.contains("forged") && !body.contains("deadbeef"),
            "{l}: {body}"
        );
        assert!(!body.contains("Zm9yZ2Vk"), "{body}");
        let verify = header(&body, "x-client-verify");
        assert_eq!(verify, Some("NONE"), "{l}: {body}");
    }
    // With a real certificate, the forged values are replaced, not appended.
    let mut s = tls10_with(&d.spa962_st)
        .connect(h.addr("optional"))
        .await
        .unwrap();
    let (_, body) = get(&mut s, MAC_PATH, forged).await;
    assert_eq!(body.matches("seen x-client-verify:").count(), 1, "{body}");
    assert_eq!(header(&body, "x-device-mac"), Some("000e08abcdef"));
}

#[tokio::test]
async fn tls13_client_certificate_is_verified_by_rustls_and_forwarded() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("modern", "modern", "required", "legacy", "")
        + &listener("auto", "auto", "optional", "legacy", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;
    let ca = h.pki.path("server-ca.pem");
    for l in ["modern", "auto"] {
        let addr = h.addr(l);
        let mut s = modern_with_cert(
            addr,
            &ca,
            "prov.test",
            true,
            &[&rustls::version::TLS13],
            Some(d.modern_phone.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let (status, body) = get(&mut s, "/spa00562b043615.cfg", "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            header(&body, "x-client-verify"),
            Some("SUCCESS"),
            "{l}: {body}"
        );
        assert_eq!(
            header(&body, "x-device-mac"),
            Some("00562b043615"),
            "{body}"
        );
        assert_eq!(header(&body, "x-device-product"), Some("CP-8841-3PCC"));
        logs()
            .wait_for(&[
                &format!("local={addr}"),
                "engine=\"modern\"",
                "client_cert=SUCCESS",
            ])
            .await;
    }
    // A legacy SHA-1 / RSA 1024 device under auto still verifies (TLS 1.0 -> OpenSSL).
    let mut s = tls10_with(&d.spa962_st)
        .connect(h.addr("auto"))
        .await
        .unwrap();
    let (_, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"), "{body}");
    // The same SHA-1 device certificate over TLS 1.2 to rustls also verifies: the verifier is
    // OpenSSL's on both engines.
    let tls12 = Legacy {
        min: SslVersion::TLS1_2,
        max: SslVersion::TLS1_2,
        ciphers: "ECDHE-RSA-AES128-GCM-SHA256",
        client_cert: Some(d.spa962_st.clone()),
        ..Legacy::default()
    };
    let mut s = tls12.connect(h.addr("auto")).await.unwrap();
    let (_, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(header(&body, "x-client-verify"), Some("SUCCESS"), "{body}");
    logs()
        .wait_for(&[
            &format!("local={}", h.addr("auto")),
            "engine=\"modern\"",
            "version=\"tls1.2\"",
            "client_cert=SUCCESS",
        ])
        .await;
}

/// Device certificates (moved out of `Devices`) and a harness with one legacy listener `l`:
/// client auth optional, `require_mac_match: true`.
async fn mac_match_listener() -> (MacDevices, Harness) {
    let d = devices();
    let backend = backend().await;
    let ls = listener(
        "l",
        "legacy",
        "optional",
        "legacy",
        "    require_mac_match: true\n",
    );
    let devices = MacDevices {
        spa962_st: d.spa962_st.clone(),
    };
    (devices, Harness::start(d.pki, &config(backend, &ls)).await)
}

struct MacDevices {
    spa962_st: (X509, PKey<Private>),
}

#[tokio::test]
async fn require_mac_match_blocks_other_devices_profiles() {
    let (d, h) = mac_match_listener().await;
    let addr = h.addr("l");

    let mut s = tls10_with(&d.spa962_st).connect(addr).await.unwrap();
    let (status, body) = get(&mut s, MAC_PATH, "").await;
    assert_eq!(status, 200, "{body}");

    let mut s = tls10_with(&d.spa962_st).connect(addr).await.unwrap();
    let (status, body) = get(&mut s, "/spa000e08000001.cfg", "").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        !body.contains("seen "),
        "the backend must not see it: {body}"
    );
    logs()
        .wait_for(&[
            "require_mac_match",
            "target_macs=000e08000001",
            "cert_mac=\"000e08abcdef\"",
        ])
        .await;

    // No certificate: a MAC path is refused, a path without a MAC passes.
    let mut s = Legacy::default().connect(addr).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 403);
    // (A User-Agent without a MAC: an SPA's names its MAC, which counts like the path's.)
    let mut s = Legacy::default().connect(addr).await.unwrap();
    s.write_all(
        b"GET /index.html HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_until_close(&mut s, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        text.starts_with("HTTP/1.1 404"),
        "backend's own 404: {text}"
    );
}

#[tokio::test]
async fn the_real_cisco_client_root_loads_as_a_client_ca() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cisco-sb-client-root-authority-2.pem");
    assert!(fixture.exists(), "fixture missing at {}", fixture.display());
    let d = devices();
    std::fs::copy(&fixture, d.pki.path("cisco-root.pem")).unwrap();
    let backend = backend().await;
    let ls = "  - name: l\n    bind: [\"127.0.0.1:0\"]\n    certificate: server\n    tls: legacy\n    backend: prov\n    client_auth: { mode: optional, ca: cisco-root.pem, verify_level: legacy }\n";
    let h = Harness::start(d.pki, &config(backend, ls)).await;

    // The server asks for certificates under that root: the CertificateRequest names it
    // (seen by a rustls client's certificate resolver over TLS 1.2 to OpenSSL).
    let hints = ca_hints(h.addr("l"), &h.pki.path("server-ca.pem")).await;
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert!(
        hints[0].contains("CN=Cisco Small Business Client Root Authority 2"),
        "{hints:?}"
    );
    let mut s = Legacy::default().connect(h.addr("l")).await.unwrap();
    assert_eq!(
        header(&get(&mut s, MAC_PATH, "").await.1, "x-client-verify"),
        Some("NONE")
    );

    // A device certificate from another CA is reported, not trusted.
    let mut s = tls10_with(&d.spa962_st).connect(h.addr("l")).await.unwrap();
    let (_, body) = get(&mut s, MAC_PATH, "").await;
    let verify = header(&body, "x-client-verify").unwrap();
    assert!(verify.starts_with("FAILED:"), "{verify}");
}

/// The CA names a server's CertificateRequest carries, as RFC 4514 strings.
async fn ca_hints(addr: std::net::SocketAddr, ca: &std::path::Path) -> Vec<String> {
    use std::sync::{Arc, Mutex};
    #[derive(Debug, Default)]
    struct Capture(Mutex<Vec<Vec<u8>>>);
    impl rustls::client::ResolvesClientCert for Capture {
        fn resolve(
            &self,
            hints: &[&[u8]],
            _: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            *self.0.lock().unwrap() = hints.iter().map(|h| h.to_vec()).collect();
            None
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in X509::stack_from_pem(&std::fs::read(ca).unwrap()).unwrap() {
        roots.add(c.to_der().unwrap().into()).unwrap();
    }
    let capture = Arc::new(Capture::default());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(capture.clone());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("prov.test").unwrap();
    let _ = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await;
    let hints = capture.0.lock().unwrap().clone();
    hints
        .iter()
        .map(|der| {
            openssl::x509::X509Name::from_der(der)
                .map(|n| provgate::identity::rfc4514(&n))
                .unwrap_or_else(|_| format!("undecodable {der:?}"))
        })
        .collect()
}

/// Every URL shape the backends use names the MAC somewhere: file name, directory, query
/// parameter, `$MAC` with colons. A device may fetch its own and nothing else, however the
/// target is spelled; targets whose decoding is ambiguous are refused.
#[tokio::test]
async fn require_mac_match_holds_for_every_url_shape_and_spelling() {
    let (d, h) = mac_match_listener().await;
    let addr = h.addr("l");
    async fn status(addr: std::net::SocketAddr, who: &Legacy<'_>, target: &str) -> u16 {
        let mut s = who.connect(addr).await.unwrap();
        get(&mut s, target, "").await.0
    }
    let device = tls10_with(&d.spa962_st);
    // The device's own MAC (000e08abcdef) in each shape: the backend answers (its 200 or 404).
    for own in [
        "/spa000e08abcdef.cfg",
        "/SPA000E08ABCDEF.cfg",
        "/app/provision/?mac=000e08abcdef",
        "/app/provision/index.php?mac=00:0E:08:AB:CD:EF&file=spa.cfg",
        "/cisco/000e08abcdef/spa.cfg",
        "/prov/00-0e-08-ab-cd-ef/spa504g.cfg",
        "/spa000e08abcde%66.cfg",
        "/firmware/spa525g2-7-6-2.bin",
    ] {
        let got = status(addr, &device, own).await;
        assert!(got == 200 || got == 404, "{own}: {got}");
    }
    // Another device's MAC (000e08aaaaaa), however it is written: 403.
    for other in [
        "/spa000e08aaaaaa.cfg",
        "/spa000e08aaaaa%61.cfg",
        "/%73pa000e08aaaaaa.cfg",
        "/app/provision/?mac=000e08aaaaaa",
        "/app/provision/?MAC=000E08AAAAAA",
        "/app/provision/?mac=00%3A0e%3A08%3Aaa%3Aaa%3Aaa",
        "/app/provision/?mac=00:0e:08:aa:aa:aa",
        "/000e08aaaaaa/spa.cfg",
        "/cisco/000E08AAAAAA/spa.cfg",
        "/spa000e08abcdef.cfg?mac=000e08aaaaaa",
        "http://prov.test/spa000e08aaaaaa.cfg",
    ] {
        assert_eq!(status(addr, &device, other).await, 403, "{other}");
    }
    // Ambiguous decodings: 400, whoever asks.
    for ambiguous in [
        "/x/..%2fspa000e08aaaaaa.cfg",
        "/x/%2e%2e/spa000e08abcdef.cfg",
        "/x/../spa000e08abcdef.cfg",
        "/spa000e08abcdef.cfg%00",
        "/x%5cspa000e08aaaaaa.cfg",
        "/spa%zz.cfg",
    ] {
        assert_eq!(status(addr, &device, ambiguous).await, 400, "{ambiguous}");
    }
    // No certificate (mode: optional): any MAC-bearing target is refused.
    let anonymous = Legacy::default();
    for target in [
        "/spa000e08abcdef.cfg",
        "/app/provision/?mac=000e08aaaaaa",
        "/spa000e08aaaaa%61.cfg",
    ] {
        assert_eq!(status(addr, &anonymous, target).await, 403, "{target}");
    }
}

/// Names other front proxies use for client-certificate facts never reach the backend from
/// the client, on TLS and plain listeners alike.
#[tokio::test]
async fn spoofed_identity_headers_of_every_front_proxy_family_are_stripped() {
    let d = devices();
    let backend = backend().await;
    let mut ls = listener("l", "legacy", "optional", "legacy", "");
    ls.push_str("  - name: http\n    bind: [\"127.0.0.1:0\"]\n    tls: plain\n    backend: prov\n");
    let yaml = config(backend, &ls).replace(
        "identity:\n  forward_chain: true\n",
        "identity:\n  forward_chain: true\n  strip_request_headers: [X-Tenant-Admin]\n",
    );
    let h = Harness::start(d.pki, &yaml).await;
    let spoofed = [
        "X-SSL-Client-Verify: SUCCESS",
        "SSL_CLIENT_VERIFY: SUCCESS",
        "SSL-Client-Verify: SUCCESS",
        "X-SSL-Client-DN: CN=000e08aaaaaa",
        "X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=x\"",
        "X-Forwarded-Tls-Client-Cert: MIIB",
        "X-Forwarded-Tls-Client-Cert-Info: Subject%3D%22CN%3Dx%22",
        "X-Client-Cert-Subject-DN: CN=x",
        "X-Client-Verify: SUCCESS",
        "X-Device-MAC: 000e08aaaaaa",
        "Client-Cert: :MIIB:",
        "X-Tenant-Admin: yes",
    ];
    let extra: String = spoofed.iter().map(|h| format!("{h}\r\n")).collect();
    // A verified device on TLS, and an anonymous client on plain HTTP.
    let mut tls = tls10_with(&d.spa962_st).connect(h.addr("l")).await.unwrap();
    let (status, tls_body) = get(&mut tls, MAC_PATH, &extra).await;
    assert_eq!(status, 200, "{tls_body}");
    let mut tcp = tokio::net::TcpStream::connect(h.addr("http"))
        .await
        .unwrap();
    let (status, plain_body) = get(&mut tcp, MAC_PATH, &extra).await;
    assert_eq!(status, 200, "{plain_body}");
    // provgate sets X-Client-Verify (and for a verified device X-Device-MAC and Client-Cert)
    // itself, checked below; every other spoofed name must be gone.
    for (body, own) in [
        (
            &tls_body,
            &["x-client-verify", "x-device-mac", "client-cert"][..],
        ),
        (&plain_body, &["x-client-verify"][..]),
    ] {
        for h in spoofed {
            let name = h.split_once(':').unwrap().0.to_ascii_lowercase();
            if own.contains(&name.as_str()) {
                continue;
            }
            assert_eq!(
                header(body, &name),
                None,
                "spoofed '{h}' reached the backend: {body}"
            );
        }
    }
    // provgate's own say: the device verified on TLS, nothing on plain HTTP.
    assert_eq!(header(&tls_body, "x-client-verify"), Some("SUCCESS"));
    assert_eq!(header(&tls_body, "x-device-mac"), Some("000e08abcdef"));
    assert_eq!(header(&plain_body, "x-client-verify"), Some("NONE"));
    assert_eq!(header(&plain_body, "x-device-mac"), None);
    assert_eq!(header(&plain_body, "client-cert"), None);
    assert_ne!(header(&tls_body, "client-cert"), Some(":MIIB:"));
    assert_eq!(header(&plain_body, "x-forwarded-proto"), Some("http"));
}

/// FusionPBX also takes the MAC from a form field and, without one, from the User-Agent: on a
/// require_mac_match route a form body is refused and a User-Agent naming another MAC is 403.
#[tokio::test]
async fn require_mac_match_covers_form_bodies_and_the_user_agent() {
    let (d, h) = mac_match_listener().await;
    let device = tls10_with(&d.spa962_st);
    let mut s = device.connect(h.addr("l")).await.unwrap();
    s.write_all(
        b"POST /app/provision/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\nConnection: close\r\n\r\nmac=000e08aaaaaa",
    )
    .await
    .unwrap();
    let text = read_until_close(&mut s, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");
    let mut s = device.connect(h.addr("l")).await.unwrap();
    s.write_all(
        b"GET /app/provision/ HTTP/1.1\r\nHost: a\r\nUser-Agent: Cisco/SPA508G-7.4.8a (000E08AAAAAA)(CBT141400UK)\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_until_close(&mut s, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
}

/// rustls under `required` refuses a certificate from a CA it does not trust, and the failure
/// is classified `unknown_ca` from OpenSSL's verification code (as the legacy engine does).
#[tokio::test]
async fn rustls_required_refuses_an_untrusted_device_as_unknown_ca() {
    let d = devices();
    let backend = backend().await;
    let ls = listener("req13", "modern", "required", "legacy", "");
    let h = Harness::start(d.pki, &config(backend, &ls)).await;
    // RSA 2048 (rustls clients cannot sign with the devices' 1024-bit keys).
    let stranger = Ca::new("Somebody Else's Root", "elsewhere")
        .unwrap()
        .issue(&CertSpec {
            subject: vec![("OU", "CP-8841-3PCC"), ("CN", "00562b043615")],
            dns_names: vec![],
            ..CertSpec::server("unused")
        })
        .unwrap();
    let ca = h.pki.path("server-ca.pem");
    let attempt = modern_with_cert(
        h.addr("req13"),
        &ca,
        "prov.test",
        true,
        &[&rustls::version::TLS12],
        Some(stranger),
    )
    .await;
    assert!(attempt.is_err(), "an untrusted device got in");
    let metrics = h.running.telemetry().metrics.render();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("provgate_handshake_failures_total")
                && l.contains("listener=\"req13\"")
                && l.contains("reason=\"unknown_ca\"")
        })
        .unwrap_or_else(|| panic!("no unknown_ca failure counted:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}
