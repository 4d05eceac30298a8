//! TLS-profile hardening end to end (real sockets, real OpenSSL and rustls clients, certificates
//! and DH groups generated here): the built-in cipher string serves 0x0016 under its OpenSSL 3
//! name, rustls picks the server's preferred suite, `session_tickets` governs tickets on both
//! engines, `dh_params` is the group DHE clients get (also after a reload), and start-up warns
//! about open key files and ignored cipher names.
#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::*;
use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use provgate::pki::CertSpec;
use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const MAC_PATH: &str = "/spa000e08abcdef.cfg";

/// `sipura`: RSA 1024 (OpenSSL only); `cisco2k`: RSA 2048 (rustls can sign with it).
fn certs() -> Pki {
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    let cisco = pki.ca("cisco2k", "Cisco 2k CA (test)");
    pki.issue(
        &sipura,
        "sipura",
        &CertSpec::legacy_server("prov.sipura.test"),
    );
    pki.issue(&cisco, "cisco2k", &CertSpec::server("prov.cisco2k.test"));
    private_keys(&pki);
    pki
}

fn config(
    backend: std::net::SocketAddr,
    profiles: &str,
    listeners: &[(&str, &str, &str)],
) -> String {
    let mut yaml = format!(
        r#"
backends:
  prov: {{ address: "{backend}", connect_timeout: 1s, read_timeout: 2s }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  cisco2k: {{ chain: cisco2k.pem, key: cisco2k.key }}
{profiles}
listeners:
"#
    );
    for (name, cert, tls) in listeners {
        yaml.push_str(&format!(
            "  - {{ name: {name}, bind: [\"127.0.0.1:0\"], certificate: {cert}, tls: {tls}, backend: prov }}\n"
        ));
    }
    yaml
}

// ---------------------------------------------------------------- ciphers

#[tokio::test]
async fn builtin_legacy_profile_serves_0x0016_dhe_rsa_des_cbc3_sha_at_tls10() {
    let backend = backend().await;
    let h = Harness::start(certs(), &config(backend, "", &[("l", "sipura", "legacy")])).await;
    let client = Legacy {
        min: SslVersion::TLS1,
        max: SslVersion::TLS1,
        ciphers: "DHE-RSA-DES-CBC3-SHA",
        ca: Some(&h.pki.path("sipura-ca.pem")),
        ..Legacy::default()
    };
    let mut s = client.connect(h.addr("l")).await.unwrap();
    assert_eq!(s.ssl().version_str(), "TLSv1");
    let cipher = s.ssl().current_cipher().unwrap();
    assert_eq!(cipher.name(), "DHE-RSA-DES-CBC3-SHA");
    assert_eq!(cipher.protocol_id(), [0x00, 0x16]);
    let dh = s.ssl().peer_tmp_key().unwrap();
    assert_eq!(dh.bits(), 1024);
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}

#[tokio::test]
async fn an_ignored_cipher_name_is_logged_at_start_naming_the_key() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  typo:\n    base: legacy\n    ciphers: \"AES128-SHA:EDH-RSA-DES-CBC3-SHA:!aNULL\"\n";
    let h = Harness::start(
        certs(),
        &config(backend, profiles, &[("l", "sipura", "typo")]),
    )
    .await;
    // Written while the snapshot was built, before start returned.
    let text = logs().text();
    let line = text
        .lines()
        .find(|l| l.contains("key=tls_profiles.typo.ciphers"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("'EDH-RSA-DES-CBC3-SHA' is not an OpenSSL 3"),
        "{line}"
    );
    assert!(line.contains("'DHE-RSA-DES-CBC3-SHA'"), "{line}");
    // What the name meant is indeed not served; the rest is.
    let des3 = Legacy {
        ciphers: "DHE-RSA-DES-CBC3-SHA",
        ..Legacy::default()
    };
    assert!(des3.connect(h.addr("l")).await.is_err());
    let mut s = Legacy::default().connect(h.addr("l")).await.unwrap();
    assert_eq!(s.ssl().current_cipher().unwrap().name(), "AES128-SHA");
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}

/// A rustls client offering exactly `suites`, in that order.
fn rustls_client(
    ca: &std::path::Path,
    suites: Vec<rustls::SupportedCipherSuite>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    store: Option<Arc<dyn rustls::client::ClientSessionStore>>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in openssl::x509::X509::stack_from_pem(&std::fs::read(ca).unwrap()).unwrap() {
        roots
            .add(rustls_pki_types::CertificateDer::from(c.to_der().unwrap()))
            .unwrap();
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(store) = store {
        cfg.resumption = rustls::client::Resumption::store(store);
    }
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn rustls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> ModernStream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("prov.cisco2k.test").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn rustls_picks_the_servers_preferred_suite_not_the_clients_first() {
    let backend = backend().await;
    let h = Harness::start(
        certs(),
        &config(
            backend,
            "",
            &[("m", "cisco2k", "modern"), ("a", "cisco2k", "auto")],
        ),
    )
    .await;
    let ca = h.pki.path("cisco2k-ca.pem");
    let tls12 = [&rustls::version::TLS12];
    let tls13 = [&rustls::version::TLS13];
    for listener in ["m", "a"] {
        for (suites, versions, want) in [
            (
                vec![
                    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                ],
                &tls12[..],
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ),
            (
                vec![
                    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ],
                &tls12[..],
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ),
            (
                vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384],
                &tls13[..],
                "TLS13_AES_256_GCM_SHA384",
            ),
            (
                vec![
                    cs::TLS13_CHACHA20_POLY1305_SHA256,
                    cs::TLS13_AES_128_GCM_SHA256,
                ],
                &tls13[..],
                "TLS13_AES_128_GCM_SHA256",
            ),
        ] {
            let first = suites[0].suite().as_str().unwrap();
            let connector = rustls_client(&ca, suites, versions, None);
            let mut s = rustls_connect(&connector, h.addr(listener)).await;
            let got = s.get_ref().1.negotiated_cipher_suite().unwrap();
            assert_eq!(
                got.suite().as_str(),
                Some(want),
                "{listener}: client listed {first} first"
            );
            assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
        }
    }
}

// ---------------------------------------------------------------- session tickets

/// A TCP stream that keeps a copy of everything the server sent.
struct Tap {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.seen
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The handshake message types the server sent in the clear (up to its ChangeCipherSpec): a
/// TLS 1.2 NewSessionTicket (4) travels there, between ServerHelloDone's answer and CCS.
fn plaintext_handshake_types(bytes: &[u8]) -> Vec<u8> {
    let mut handshake = Vec::new();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[i + 3], bytes[i + 4]]));
        match bytes[i] {
            0x14 => break,
            0x16 => handshake.extend_from_slice(&bytes[i + 5..(i + 5 + len).min(bytes.len())]),
            _ => {}
        }
        i += 5 + len;
    }
    let mut types = Vec::new();
    let mut j = 0;
    while j + 4 <= handshake.len() {
        types.push(handshake[j]);
        j += 4 + u32::from_be_bytes([0, handshake[j + 1], handshake[j + 2], handshake[j + 3]])
            as usize;
    }
    types
}

/// A TLS 1.2 OpenSSL client handshake; returns the server's cleartext handshake types.
async fn tls12_handshake(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_security_level(0);
    b.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_cipher_list("AES128-SHA").unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let mut cfg = b.build().configure().unwrap();
    cfg.set_verify_hostname(false);
    cfg.set_use_server_name_indication(false);
    let ssl = cfg.into_ssl("unused").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: TcpStream::connect(addr).await.unwrap(),
        seen: seen.clone(),
    };
    let mut s = tokio_openssl::SslStream::new(ssl, tap).unwrap();
    Pin::new(&mut s).connect().await.unwrap();
    assert_eq!(s.ssl().version_str(), "TLSv1.2");
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    let bytes = seen.lock().unwrap().clone();
    plaintext_handshake_types(&bytes)
}

/// Counts the TLS 1.3 tickets a rustls client is given.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tls13_tickets: AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: rustls_pki_types::ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, g)
    }
    fn kx_hint(&self, name: &rustls_pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &rustls_pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &rustls_pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tls13_tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &rustls_pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// TLS 1.3 tickets rustls sends on one connection (read to the end, so all are processed).
async fn tls13_tickets(ca: &std::path::Path, addr: std::net::SocketAddr) -> usize {
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(8),
        tls13_tickets: AtomicUsize::new(0),
    });
    let connector = rustls_client(
        ca,
        rustls::crypto::aws_lc_rs::default_provider().cipher_suites,
        &[&rustls::version::TLS13],
        Some(store.clone()),
    );
    let mut s = rustls_connect(&connector, addr).await;
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    store.tls13_tickets.load(Ordering::SeqCst)
}

#[tokio::test]
async fn session_tickets_off_sends_none_and_the_default_keeps_them() {
    let backend = backend().await;
    let profiles = "tls_profiles:\n  noticket_legacy: { base: legacy, session_tickets: off }\n  \
                    noticket_modern: { base: modern, session_tickets: off }\n  \
                    ticket_legacy: { base: legacy, session_tickets: on }\n";
    let h = Harness::start(
        certs(),
        &config(
            backend,
            profiles,
            &[
                ("default", "sipura", "legacy"),
                ("on", "sipura", "ticket_legacy"),
                ("off", "sipura", "noticket_legacy"),
                ("modern", "cisco2k", "modern"),
                ("modern_off", "cisco2k", "noticket_modern"),
            ],
        ),
    )
    .await;
    const NEW_SESSION_TICKET: u8 = 4;
    // OpenSSL, TLS 1.2: ServerHello, Certificate, ServerHelloDone, then (tickets on) the
    // NewSessionTicket before ChangeCipherSpec.
    for listener in ["default", "on"] {
        let types = tls12_handshake(h.addr(listener)).await;
        assert_eq!(types, [2, 11, 14, NEW_SESSION_TICKET], "{listener}");
    }
    let types = tls12_handshake(h.addr("off")).await;
    assert_eq!(types, [2, 11, 14], "off: no NewSessionTicket");

    // rustls, TLS 1.3: its default two tickets, none when off.
    let ca = h.pki.path("cisco2k-ca.pem");
    assert_eq!(tls13_tickets(&ca, h.addr("modern")).await, 2);
    assert_eq!(tls13_tickets(&ca, h.addr("modern_off")).await, 0);
}

// ---------------------------------------------------------------- dh_params

fn dh_pem(dh: &Dh<openssl::pkey::Params>) -> Vec<u8> {
    dh.params_to_pem().unwrap()
}

#[tokio::test]
async fn dh_params_is_the_group_a_dhe_only_client_gets_and_reload_rereads_it() {
    let backend = backend().await;
    let pki = certs();
    std::fs::create_dir(pki.path("dh")).unwrap();
    // A fresh 1024-bit safe-prime group, as `openssl dhparam 1024` makes (about 0.1-0.5 s).
    let generated = Dh::generate_params(1024, 2).unwrap();
    let generated_p = generated.prime_p().to_owned().unwrap();
    std::fs::write(pki.path("dh/group.pem"), dh_pem(&generated)).unwrap();
    let profiles = "tls_profiles:\n  own: { base: legacy, dh_params: dh/group.pem }\n";
    let h = Harness::start(
        pki,
        &config(
            backend,
            profiles,
            &[("own", "cisco2k", "own"), ("builtin", "cisco2k", "legacy")],
        ),
    )
    .await;
    let dhe_only = Legacy {
        ciphers: "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA",
        ..Legacy::default()
    };
    let prime_seen = |s: &LegacyStream| {
        let key = s.ssl().peer_tmp_key().unwrap();
        assert_eq!(key.id(), openssl::pkey::Id::DH);
        key.dh().unwrap().prime_p().to_owned().unwrap()
    };
    let mut s = dhe_only.connect(h.addr("own")).await.unwrap();
    assert_eq!(
        s.ssl().current_cipher().unwrap().name(),
        "DHE-RSA-AES256-SHA"
    );
    assert_eq!(prime_seen(&s), generated_p);
    assert_eq!(s.ssl().peer_tmp_key().unwrap().bits(), 1024);
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
    let s = dhe_only.connect(h.addr("builtin")).await.unwrap();
    assert_eq!(
        prime_seen(&s),
        BigNum::get_rfc2409_prime_1024().unwrap(),
        "other profiles keep the built-in group"
    );

    // Replace the file (another 1024-bit group) and reload: new handshakes get the new group.
    let rfc5114 = Dh::get_1024_160().unwrap();
    let other = Dh::from_pqg(
        rfc5114.prime_p().to_owned().unwrap(),
        None,
        rfc5114.generator().to_owned().unwrap(),
    )
    .unwrap();
    std::fs::write(h.pki.path("dh/group.pem"), dh_pem(&other)).unwrap();
    h.running.reload().unwrap();
    let s = dhe_only.connect(h.addr("own")).await.unwrap();
    assert_eq!(prime_seen(&s), *rfc5114.prime_p());

    // A broken file fails the reload, naming the key, and the running group stays.
    std::fs::write(h.pki.path("dh/group.pem"), "garbage\n").unwrap();
    let e = h.running.reload().unwrap_err().to_string();
    assert!(e.contains("tls_profiles.own.dh_params"), "{e}");
    let s = dhe_only.connect(h.addr("own")).await.unwrap();
    assert_eq!(prime_seen(&s), *rfc5114.prime_p());
}

// ---------------------------------------------------------------- key files

#[tokio::test]
async fn start_warns_about_a_key_file_readable_by_others_and_not_about_0600() {
    let backend = backend().await;
    let pki = certs();
    set_mode(&pki.path("sipura.key"), 0o644);
    let open_key = pki.path("sipura.key").display().to_string();
    let closed_key = pki.path("cisco2k.key").display().to_string();
    let h = Harness::start(
        pki,
        &config(
            backend,
            "",
            &[("a", "sipura", "legacy"), ("b", "cisco2k", "legacy")],
        ),
    )
    .await;
    let text = logs().text();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("file={open_key}")))
        .unwrap_or_else(|| panic!("no warning for {open_key}:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("readable by group or others"), "{line}");
    assert!(line.contains("mode=0644"), "{line}");
    assert!(!text.contains(&closed_key), "0600 is not warned about");
    assert!(!text.contains("PRIVATE KEY"));
    // Still serving: a warning, not an error.
    let mut s = Legacy::default().connect(h.addr("a")).await.unwrap();
    assert_eq!(get(&mut s, MAC_PATH, "").await.0, 200);
}
