//! Shared test harness: generated PKI, an in-process provgate on loopback, a sample backend,
//! real TLS clients (OpenSSL for legacy, rustls for modern) and captured logs.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use provgate::pki::{self, Ca, CertSpec};
use provgate::server::{self, Running};
use provgate::snapshot::Snapshot;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

mod http_backend;
#[allow(unused_imports)]
pub use http_backend::{strict_backend, Received};

// ---------------------------------------------------------------- logs

#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install (once per test binary) a subscriber that keeps every log line.
pub fn logs() -> LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug,pingora=info,pingora_core=info,pingora_proxy=info,hyper=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
    .clone()
}

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Wait (bounded) until a line containing every needle appears; returns that line.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        for _ in 0..200 {
            if let Some(line) = self
                .text()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let text = self.text();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        panic!(
            "no log line with {needles:?}; last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

// ---------------------------------------------------------------- PKI

pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A CA written to `<stem>-ca.pem`.
    pub fn ca(&self, stem: &str, cn: &str) -> Ca {
        let ca = Ca::new(cn, "provgate tests").unwrap();
        std::fs::write(self.path(&format!("{stem}-ca.pem")), ca.cert_pem().unwrap()).unwrap();
        ca
    }

    /// Issue a certificate and write `<stem>.pem` / `<stem>.key`.
    pub fn issue(&self, ca: &Ca, stem: &str, spec: &CertSpec<'_>) -> X509 {
        let (cert, key) = ca.issue(spec).unwrap();
        pki::write_pair(self.dir.path(), stem, &cert, &key).unwrap();
        cert
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A Sipura-family CA with two legacy server certificates: `sipura` (prov.sipura.test) and
/// `other` (other.test).
pub fn sipura_pki() -> Pki {
    let pki = Pki::new();
    let ca = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(&ca, "sipura", &CertSpec::legacy_server("prov.sipura.test"));
    pki.issue(&ca, "other", &CertSpec::legacy_server("other.test"));
    pki
}

/// Run the real binary to completion: (exit code, stdout, stderr).
pub fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- servers

pub struct Harness {
    pub running: Running,
    pub pki: Pki,
}

impl Harness {
    /// Write `yaml` as config.yaml next to the PKI files, load it as the binary does, start.
    pub async fn start(pki: Pki, yaml: &str) -> Harness {
        logs();
        // The access log goes to stdout by default, which a test binary would print; tests
        // that read it name a file.
        let yaml = if yaml.contains("access_log:") {
            yaml.to_string()
        } else {
            format!("{yaml}\naccess_log: {{ target: \"off\" }}\n")
        };
        let path = pki.write("config.yaml", &yaml);
        let snapshot = Snapshot::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let running = server::start(snapshot).await.unwrap();
        Harness { running, pki }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running.addrs(listener)[0]
    }
}

/// The sample backend on an ephemeral port.
pub async fn backend() -> SocketAddr {
    provgate::sample_backend::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .0
}

/// An address nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A backend that accepts connections and never answers.
pub async fn stalled_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

// ---------------------------------------------------------------- clients

/// An OpenSSL client shaped like an old device: version range, cipher list, optional SNI.
#[derive(Clone)]
pub struct Legacy<'a> {
    pub min: SslVersion,
    pub max: SslVersion,
    pub ciphers: &'a str,
    pub sni: Option<&'a str>,
    pub ca: Option<&'a Path>,
    /// A client certificate and its key (a device identity).
    pub client_cert: Option<(X509, openssl::pkey::PKey<openssl::pkey::Private>)>,
}

impl Default for Legacy<'_> {
    fn default() -> Self {
        Legacy {
            min: SslVersion::TLS1,
            max: SslVersion::TLS1,
            ciphers: "AES256-SHA:AES128-SHA",
            sni: None,
            ca: None,
            client_cert: None,
        }
    }
}

pub type LegacyStream = tokio_openssl::SslStream<TcpStream>;

impl Legacy<'_> {
    pub async fn connect(&self, addr: SocketAddr) -> Result<LegacyStream, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        self.handshake(tcp).await
    }

    /// Connect from a given loopback source address (e.g. 127.0.0.3).
    pub async fn connect_from(
        &self,
        source: std::net::IpAddr,
        addr: SocketAddr,
    ) -> Result<LegacyStream, String> {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(source, 0)).unwrap();
        let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
        self.handshake(tcp).await
    }

    /// Run the client handshake over an already connected stream.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<LegacyStream, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_security_level(0);
        b.clear_options(openssl::ssl::SslOptions::NO_SSLV3);
        b.set_min_proto_version(Some(self.min)).unwrap();
        b.set_max_proto_version(Some(self.max)).unwrap();
        b.set_cipher_list(self.ciphers).unwrap();
        if let Some((cert, key)) = &self.client_cert {
            b.set_certificate(cert).unwrap();
            b.set_private_key(key).unwrap();
        }
        match self.ca {
            Some(ca) => b.set_ca_file(ca).unwrap(),
            None => b.set_verify(SslVerifyMode::NONE),
        }
        let connector = b.build();
        let mut cfg = connector.configure().unwrap();
        cfg.set_verify_hostname(false);
        cfg.set_use_server_name_indication(self.sni.is_some());
        let ssl = cfg.into_ssl(self.sni.unwrap_or("unused")).unwrap();
        // The TLS 1.0 client's CBC countermeasure writes two records; without NODELAY the
        // second waits for a delayed ACK (40 ms a request).
        tcp.set_nodelay(true).unwrap();
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        Pin::new(&mut s)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(s)
    }
}

/// The CN of the certificate the server presented.
pub fn peer_cn(s: &LegacyStream) -> String {
    let cert = s.ssl().peer_certificate().unwrap();
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap()
}

pub type ModernStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A rustls client trusting `ca`, sending SNI `name` (or none).
pub async fn modern(
    addr: SocketAddr,
    ca: &Path,
    name: &str,
    send_sni: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ModernStream, String> {
    modern_with_cert(addr, ca, name, send_sni, versions, None).await
}

/// As [`modern`], presenting a client certificate.
pub async fn modern_with_cert(
    addr: SocketAddr,
    ca: &Path,
    name: &str,
    send_sni: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<(X509, openssl::pkey::PKey<openssl::pkey::Private>)>,
) -> Result<ModernStream, String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in X509::stack_from_pem(&pem).unwrap() {
        roots
            .add(rustls_pki_types::CertificateDer::from(c.to_der().unwrap()))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![rustls_pki_types::CertificateDer::from(
                    cert.to_der().unwrap(),
                )],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.private_key_to_pkcs8().unwrap().into()),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.enable_sni = send_sni;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// One HTTP/1.1 request (`Connection: close`) with an SPA User-Agent naming the test devices' MAC
/// (000e08abcdef); returns (status, body).
pub async fn get<S>(stream: &mut S, path: &str, extra_headers: &str) -> (u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: prov.test\r\nUser-Agent: Cisco/SPA508G-7.4.8a (000E08ABCDEF)\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    // Peers may end without close_notify; what was read is what counts.
    let _ = stream.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Read everything until the server closes (bounded: a server that holds the connection open
/// fails the test instead of hanging it).
pub async fn read_until_close<S>(
    stream: &mut S,
    within: std::time::Duration,
) -> Result<String, String>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut buf)).await {
        Ok(_) => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => Err(format!(
            "connection still open after {within:?}; read so far: {}",
            String::from_utf8_lossy(&buf)
        )),
    }
}

/// Read one response whose body has a Content-Length (or none, for 1xx/204/304 and errors
/// with `Content-Length: 0`); returns (status, head, body).
pub async fn read_response<S>(stream: &mut S) -> (u16, String, String)
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w: &[u8]| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut b))
            .await
            .expect("response head within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut b = vec![0u8; 65536];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut b))
            .await
            .expect("response body within 10 s")
            .unwrap();
        assert!(n > 0, "closed inside a body");
        body.extend_from_slice(&b[..n]);
    }
    assert_eq!(body.len(), len, "read past the response (pipelined bytes?)");
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Set a file's permission bits (e.g. 0o600).
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Make every `*.key` file of the PKI folder owner-only (0600), as an operator should: the
/// files are written with the process umask, which usually leaves them 0644.
pub fn private_keys(pki: &Pki) {
    for entry in std::fs::read_dir(pki.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            set_mode(&path, 0o600);
        }
    }
}
