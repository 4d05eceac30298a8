//! The admin status page (`/`): real handshakes (one good TLS 1.0 device, failing hellos from
//! several loopback addresses, plain HTTP on the TLS port), a failed reload, then the page read
//! as bytes and rendered in headless Chromium. Client-controlled text (a User-Agent and a
//! server name with markup, error texts quoting the config) must show as text, never as markup.
//!
//! Chromium: `chromium` or `chromium-browser` on PATH, or `PROVGATE_CHROMIUM=/path`;
//! scripts/test.sh installs it when it can. `PROVGATE_STATUS_SCREENSHOT=/tmp/status.png`
//! also writes a screenshot of the page.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use provgate::hello::builder::TlsHello;
use provgate::hello::{parse, Parse};
use provgate::pki::CertSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Markup in a device's User-Agent (the parenthesised `(1)` is masked like a MAC would be).
const HOSTILE_UA: &str = "Cisco/SPA508G-7.5.5 <script>alert(1)</script> <b>bold</b> (000E08ABCDEF)";
/// What the page stores and shows of it: masked, then HTML-escaped.
const HOSTILE_UA_SHOWN: &str =
    "Cisco/SPA508G-7.5.5 &lt;script&gt;alert(masked)&lt;/script&gt; &lt;b&gt;bold&lt;/b&gt; (masked)";

fn config(backend: SocketAddr, soon_cert: &str) -> String {
    format!(
        r#"
admin: {{ listen: "127.0.0.1:0" }}
backends:
  prov: {{ address: "{backend}" }}
certificates:
  sipura: {{ chain: sipura.pem, key: sipura.key }}
  soon: {{ chain: soon.pem, key: soon.key }}
listeners:
  - name: l
    bind: ["127.0.0.1:0"]
    certificate: sipura
    tls: legacy
    backend: prov
    routes:
      - name: soon
        match: {{ sni: ["soon.test"] }}
        certificate: {soon_cert}
"#
    )
}

async fn start() -> Harness {
    let pki = sipura_pki();
    // A second certificate that expires in 10 days (highlighted).
    let ca = provgate::pki::Ca::new("Sipura CA (test 2)", "provgate tests").unwrap();
    let mut spec = CertSpec::legacy_server("soon.test");
    spec.not_after_days = 10;
    pki.issue(&ca, "soon", &spec);
    private_keys(&pki);
    let backend = backend().await;
    Harness::start(pki, &config(backend, "soon")).await
}

/// GET over plain HTTP with `Connection: close`: (status, head, body).
async fn fetch(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let text = read_until_close(&mut s, Duration::from_secs(20))
        .await
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Send raw bytes from `source` and read until the server closes; the bytes it answered.
async fn raw(source: IpAddr, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source, 0)).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the server closes a failed handshake");
    got
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The JA4 provgate computes for these hello bytes.
fn ja4_of(wire: &[u8]) -> String {
    let Parse::Parsed(h) = parse(wire) else {
        panic!("test hello does not parse")
    };
    provgate::fingerprint::ja4(&h)
}

/// The text between `open` and the next `close` after it.
fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s
        .find(open)
        .unwrap_or_else(|| panic!("no {open:?} in:\n{s}"))
        + open.len();
    let end = s[start..].find(close).unwrap() + start;
    &s[start..end]
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

struct Seen {
    harness: Harness,
    rc4_ja4: String,
    page: String,
    head: String,
}

/// Start, drive one good and four failing connections and a failed reload, and return the
/// page once it shows all of them.
async fn drive() -> Seen {
    let h = start().await;
    let device = h.addr("l");

    // A good TLS 1.0 device with markup in its User-Agent.
    let mut s = Legacy::default().connect(device).await.unwrap();
    let req = format!(
        "GET /spa000e08abcdef.cfg HTTP/1.1\r\nHost: p\r\nUser-Agent: {HOSTILE_UA}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    read_until_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap();

    // RC4 only, with a server name full of markup (the parser refuses it: `<invalid>`).
    let rc4 = TlsHello::new(0x0301, &[0x0005]).sni(b"<script>alert(1)</script>".as_slice());
    let rc4_ja4 = ja4_of(&rc4.wire());
    raw(ip("127.0.0.1"), device, &rc4.wire()).await;
    // RC4 from another device, clean name.
    let rc4b = TlsHello::new(0x0301, &[0x0005, 0x0004]).sni("prov.sipura.test");
    raw(ip("127.0.0.2"), device, &rc4b.wire()).await;
    // SSL 3.0 only: the legacy profile serves TLS 1.0-1.2.
    let ssl3 = TlsHello::new(0x0300, &[0x002f]);
    raw(ip("127.0.0.3"), device, &ssl3.record(0x0300)).await;
    // Plain HTTP on the TLS port.
    raw(
        ip("127.0.0.4"),
        device,
        b"GET /<script>x</script> HTTP/1.0\r\n\r\n",
    )
    .await;

    // A reload that fails, naming a certificate with markup in it.
    let good = std::fs::read_to_string(h.pki.path("config.yaml")).unwrap();
    let broken = good.replace("certificate: soon", "certificate: \"<b>nope</b>\"");
    assert_ne!(broken, good);
    h.pki.write("config.yaml", &broken);
    let err = h.running.reload().unwrap_err().to_string();
    assert!(err.contains("<b>nope</b>"), "{err}");

    let admin = h.running.admin_addr().unwrap();
    // Failures are recorded as their connections end and User-Agents after the response:
    // poll (bounded) until the page shows all of them.
    for _ in 0..400 {
        let (status, head, page) = fetch(admin, "/").await;
        assert_eq!(status, 200, "{page}");
        if page.contains("5 handshakes") && page.contains("<li class=\"ua\">Cisco/SPA508G-7.5.5") {
            return Seen {
                harness: h,
                rc4_ja4,
                page,
                head,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, _, page) = fetch(admin, "/").await;
    panic!("the page never showed 5 handshakes and the User-Agent:\n{page}");
}

#[tokio::test]
async fn status_page_shows_the_last_hour_escaped() {
    let Seen {
        harness: h,
        rc4_ja4,
        page,
        head,
    } = drive().await;
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(lower.contains("cache-control: no-store"), "{head}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'"),
        "{head}"
    );

    // Nothing the clients or the config sent appears as markup.
    assert!(!page.to_ascii_lowercase().contains("<script"), "{page}");
    assert!(!page.contains("<b>bold"), "{page}");
    assert!(!page.contains("<b>nope"), "{page}");
    assert!(!page.contains("<invalid>"), "{page}");
    assert!(page.contains(HOSTILE_UA_SHOWN), "{page}");
    assert!(page.contains("&lt;invalid&gt;"), "{page}");

    // Totals and reasons over the hour.
    assert!(page.contains("5 handshakes: <b class=\"ok\">1 succeeded</b>, <b>4 failed</b>"));
    let reasons = between(&page, "<table id=\"reasons\">", "</table>");
    assert!(
        reasons.contains("<code>no_shared_cipher</code></td><td>2</td>"),
        "{reasons}"
    );
    assert!(
        reasons.contains("<code>protocol_version</code></td><td>1</td>"),
        "{reasons}"
    );
    assert!(
        reasons.contains("<code>not_tls</code></td><td>1</td>"),
        "{reasons}"
    );

    // The failure rows, newest first.
    let failed = between(&page, "<table id=\"failed\"", "</table>");
    let rows: Vec<&str> = failed.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 4, "{failed}");
    assert!(rows[0].contains("127.0.0.4:") && rows[0].contains("<code>not_tls</code>"));
    assert!(rows[1].contains("127.0.0.3:") && rows[1].contains("<code>protocol_version</code>"));
    assert!(rows[1].contains("up to ssl3"), "{}", rows[1]);
    assert!(rows[2].contains("127.0.0.2:") && rows[2].contains("RC4-SHA, RC4-MD5"));
    assert!(rows[2].contains("prov.sipura.test"), "{}", rows[2]);
    let hostile = rows[3];
    assert!(hostile.contains("127.0.0.1:"), "{hostile}");
    assert!(
        hostile.contains("<code>no_shared_cipher</code>"),
        "{hostile}"
    );
    assert!(hostile.contains(&rc4_ja4), "{hostile}");
    assert!(hostile.contains("up to tls1.0"), "{hostile}");
    assert!(hostile.contains("&lt;invalid&gt;"), "{hostile}");
    assert!(
        hostile.contains("client offers only RC4 suites; profile &#39;legacy&#39; allows"),
        "{hostile}"
    );

    // The reload that failed, escaped.
    let reload = between(&page, "<p id=\"reload-result\"", "</p>");
    assert!(reload.contains("failed"), "{reload}");
    assert!(reload.contains("&lt;b&gt;nope&lt;/b&gt;"), "{reload}");

    // Routes and certificates from the running snapshot.
    let routes = between(&page, "<table id=\"routes\">", "</table>");
    assert!(
        routes.contains(
            "<td>l/soon</td><td>soon.test</td><td>legacy (OpenSSL)</td>\
                             <td>tls1.0, tls1.1, tls1.2</td><td>soon</td>"
        ),
        "{routes}"
    );
    let certs = between(&page, "<table id=\"certs\">", "</table>");
    let soon = between(certs, "<tr class=\"warn\"><td>soon</td>", "</tr>");
    assert!(
        soon.contains("<td class=\"days\">9</td>") || soon.contains("<td class=\"days\">10</td>"),
        "{soon}"
    );
    assert!(
        soon.contains("Sipura CA") && soon.contains("PAP2T"),
        "{soon}"
    );
    let sipura = between(certs, "<tr><td>sipura</td>", "</tr>");
    assert!(sipura.contains("SPA508G 7.5.4"), "{sipura}");

    // Devices by family and firmware.
    let devices = between(&page, "<table id=\"device-table\">", "</table>");
    assert!(
        devices.contains("<td>SPA5xx</td><td>7.5</td><td>1</td>"),
        "{devices}"
    );

    // The fingerprint of the good device, with a route that loads as it is pasted.
    let fps = between(&page, "<table id=\"fingerprint-table\">", "</table>");
    let row = fps
        .split("<tr>")
        .find(|r| r.contains(HOSTILE_UA_SHOWN))
        .unwrap();
    let snippet = unescape(between(row, "<pre class=\"snippet\">", "</pre>"));
    assert!(snippet.contains("client_hello:"), "{snippet}");
    let yaml = config(common::dead_addr(), "soon")
        .replace("    routes:\n", &snippet.replace("CHANGE-ME", "sipura"));
    let path = h.pki.write("pasted.yaml", &yaml);
    provgate::snapshot::Snapshot::load(&path)
        .unwrap_or_else(|e| panic!("pasted route does not load: {e}\n{yaml}"));
}

/// Chromium, when it can be found: `PROVGATE_CHROMIUM`, else `chromium` or
/// `chromium-browser` on PATH.
fn chromium() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PROVGATE_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

async fn run_chromium(bin: &std::path::Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(bin)
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within 90 s")
    .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn status_page_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        eprintln!(
            "SKIPPED status_page_renders_in_headless_chromium: no chromium or chromium-browser \
             on PATH and PROVGATE_CHROMIUM unset (Debian: apt-get install chromium; \
             scripts/test.sh installs it when run as root)"
        );
        return;
    };
    let seen = drive().await;
    let url = format!("http://{}/", seen.harness.running.admin_addr().unwrap());
    let dom = run_chromium(&bin, &["--dump-dom".to_string(), url.clone()]).await;

    // The browser built the tables...
    for id in [
        "routes",
        "certs",
        "reasons",
        "failed",
        "device-table",
        "fingerprint-table",
    ] {
        assert!(
            dom.contains(&format!("<table id=\"{id}\"")),
            "no table {id}:\n{dom}"
        );
    }
    let failed = between(&dom, "<table id=\"failed\"", "</table>");
    assert_eq!(failed.matches("<tr>").count(), 5, "{failed}");
    // ...and the client's markup is text in it: serialised back as entities, no element.
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    assert!(!dom.contains("<b>bold"), "{dom}");
    assert!(!dom.contains("<b>nope"), "{dom}");
    assert!(dom.contains(HOSTILE_UA_SHOWN), "{dom}");
    assert!(dom.contains("&lt;invalid&gt;"), "{dom}");
    assert!(dom.contains("&lt;b&gt;nope&lt;/b&gt;"), "{dom}");

    if let Some(png) = std::env::var_os("PROVGATE_STATUS_SCREENSHOT") {
        let png = std::path::PathBuf::from(png);
        run_chromium(
            &bin,
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,2000".to_string(),
                url,
            ],
        )
        .await;
        assert!(png.is_file(), "no screenshot at {}", png.display());
    }
}

#[tokio::test]
async fn the_certificate_name_warnings_of_the_background_check_are_on_the_page() {
    let logs = logs();
    let pki = Pki::new();
    let sipura = pki.ca("sipura", "Sipura CA (test)");
    pki.issue(
        &sipura,
        "unresolved",
        &CertSpec::legacy_server("prov.status-page.invalid"),
    );
    private_keys(&pki);
    let yaml = r#"
admin: { listen: "127.0.0.1:0" }
backends:
  prov: { address: "127.0.0.1:9" }
certificates:
  unresolved: { chain: unresolved.pem, key: unresolved.key }
listeners:
  - { name: l, bind: ["127.0.0.1:0"], certificate: unresolved, tls: legacy, backend: prov }
"#;
    let h = Harness::start(pki, yaml).await;
    // The page never waits on DNS: it shows what the check stored before it logged this.
    logs.wait_for(&["certificate names checked", "prov.status-page.invalid"])
        .await;
    let admin = h.running.admin_addr().unwrap();
    let (status, _, page) = fetch(admin, "/").await;
    assert_eq!(status, 200);
    let warnings = between(&page, "id=\"warnings\"", "id=\"listeners\"");
    assert!(
        warnings.contains("cn_does_not_resolve") && warnings.contains("prov.status-page.invalid"),
        "{warnings}"
    );
}
