//! Tests of the access log: both line formats (hostile input, caps, dates), the configuration
//! types, and the writer (files, reopen, off, SIGUSR1).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;

use super::format::{
    capped, civil_from_days, push_clf_time, push_rfc3339, CAP_HEADER, CAP_OTHER, CAP_TARGET,
};
use super::*;

fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
}

fn entry() -> Entry<'static> {
    Entry {
        time: at(1_796_141_045, 123),
        client: SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
            50_123,
        ),
        local: "198.51.100.1:443".parse().unwrap(),
        listener: "spa",
        route: "cisco",
        method: "GET",
        target: b"/spa/cfg.xml?mac=001122334455",
        version: "HTTP/1.1",
        status: 200,
        bytes_in: 0,
        bytes_out: 1234,
        duration: Duration::from_micros(12_345),
        user_agent: Some(b"Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)"),
        referer: None,
        host: Some(b"prov.example"),
        sni: Some("prov.example"),
        tls_version: "tls1.0",
        cipher: "AES128-SHA",
        ja4: "t10d1205h1_aaaaaaaaaaaa_bbbbbbbbbbbb",
        verify: "SUCCESS",
        mac: Some("001122334455"),
        serial: Some("CBT1234"),
        product: None,
    }
}

fn combined(e: &Entry<'_>) -> String {
    let mut s = String::new();
    format_combined(e, &mut s);
    s
}

fn json(e: &Entry<'_>) -> serde_json::Value {
    let mut s = String::new();
    format_json(e, &mut s);
    assert!(!s.contains('\n'));
    serde_json::from_str(&s).unwrap()
}

/// fail2ban's apache-common prefix, plus the rest of the combined format.
fn combined_re() -> Regex {
    Regex::new(concat!(
        r#"^(?P<host>\S+) -\S* \S+ \[(?P<time>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d+) "#,
        r#"(?P<size>\d+|-) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)" (?P<rest>.*)$"#
    ))
    .unwrap()
}

#[test]
fn combined_line_parses() {
    let line = combined(&entry());
    assert_eq!(
        line,
        "192.0.2.7 - - [01/Dec/2026:16:04:05 +0000] \"GET /spa/cfg.xml?mac=001122334455 \
         HTTP/1.1\" 200 1234 \"-\" \"Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)\" \
         listener=spa route=cisco local=198.51.100.1:443 host=\"prov.example\" \
         sni=prov.example tls=tls1.0 cipher=AES128-SHA \
         ja4=t10d1205h1_aaaaaaaaaaaa_bbbbbbbbbbbb verify=SUCCESS mac=001122334455 \
         serial=\"CBT1234\" product=\"-\" bytes_in=0 ms=12.345"
    );
    let c = combined_re().captures(&line).unwrap();
    assert_eq!(&c["host"], "192.0.2.7");
    assert_eq!(&c["time"], "01/Dec/2026:16:04:05 +0000");
    assert_eq!(&c["req"], "GET /spa/cfg.xml?mac=001122334455 HTTP/1.1");
    assert_eq!(&c["status"], "200");
    assert_eq!(&c["size"], "1234");
    assert_eq!(&c["referer"], "-");
    assert_eq!(&c["ua"], "Cisco/SPA504G-7.6.2 (001122334455)(CBT1234)");
    // The key=value tail is whitespace-separated tokens.
    let rest: Vec<&str> = c["rest"].split(' ').collect();
    assert_eq!(rest.len(), 14, "{rest:?}");
    assert!(rest.iter().all(|kv| kv.contains('=')));
}

#[test]
fn combined_plain_no_response_ipv6() {
    let mut e = entry();
    e.client = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
    e.local = "[::ffff:10.0.0.1]:80".parse().unwrap();
    e.status = 0;
    e.bytes_out = 0;
    e.tls_version = "plain";
    e.cipher = "";
    e.ja4 = "";
    e.sni = None;
    e.mac = None;
    e.verify = "FAILED:unable to get local issuer certificate";
    e.duration = Duration::from_micros(7);
    let line = combined(&e);
    let c = combined_re().captures(&line).unwrap();
    assert_eq!(&c["host"], "::1");
    assert_eq!(&c["status"], "0");
    assert_eq!(&c["size"], "-");
    let rest = &c["rest"];
    assert!(rest.contains(" local=10.0.0.1:80 "), "{rest}");
    assert!(rest.contains(" sni=- tls=plain cipher=- ja4=- "), "{rest}");
    assert!(
        rest.contains(" verify=FAILED:unable\\x20to\\x20get\\x20local\\x20issuer\\x20certificate "),
        "{rest}"
    );
    assert!(rest.contains(" mac=- "), "{rest}");
    assert!(rest.ends_with(" ms=0.007"), "{rest}");
}

#[test]
fn json_has_every_key() {
    let v = json(&entry());
    let keys = [
        "time",
        "client",
        "client_port",
        "local",
        "listener",
        "route",
        "method",
        "target",
        "version",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "user_agent",
        "referer",
        "host",
        "sni",
        "tls_version",
        "cipher",
        "ja4",
        "verify",
        "mac",
        "serial",
        "product",
    ];
    let obj = v.as_object().unwrap();
    for k in keys {
        assert!(obj.contains_key(k), "missing {k}");
    }
    assert_eq!(obj.len(), keys.len());
    assert_eq!(v["time"], "2026-12-01T16:04:05.123Z");
    assert_eq!(v["client"], "192.0.2.7");
    assert_eq!(v["client_port"], 50_123);
    assert_eq!(v["local"], "198.51.100.1:443");
    assert_eq!(v["target"], "/spa/cfg.xml?mac=001122334455");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_out"], 1234);
    assert_eq!(v["duration_ms"], 12.345);
    assert_eq!(v["duration_ms"].to_string(), "12.345");
    assert!(v["referer"].is_null());
    assert!(v["product"].is_null());
    assert_eq!(v["serial"], "CBT1234");

    let mut e = entry();
    e.cipher = "";
    e.ja4 = "";
    e.sni = None;
    let v = json(&e);
    assert!(v["cipher"].is_null() && v["ja4"].is_null() && v["sni"].is_null());
}

fn hostile_ua() -> Vec<u8> {
    let mut ua = b"evil\" \\ \n\r\x1b[31m red \xff\xfe\xc3(".to_vec();
    ua.extend(std::iter::repeat_n(b'A', 10 * 1024));
    ua
}

#[test]
fn hostile_user_agent_combined() {
    let ua = hostile_ua();
    let target = b"/x\"y z\r\n".to_vec();
    let mut e = entry();
    e.user_agent = Some(&ua);
    e.target = &target;
    e.serial = Some("a\"b\nc");
    e.sni = Some("a b\u{7f}");
    let line = combined(&e);
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
    assert!(line.is_ascii());
    let c = combined_re().captures(&line).unwrap();
    let got = &c["ua"];
    assert!(
        got.starts_with(r"evil\x22 \x5C \x0A\x0D\x1B[31m red \xFF\xFE\xC3(AAA"),
        "{got}"
    );
    assert!(got.ends_with("AAA..."));
    // Capped at 512 raw bytes including the ellipsis; 8 of them are escaped (4 chars each).
    let raw_escaped = 8;
    assert_eq!(got.len(), CAP_HEADER + raw_escaped * 3);
    assert_eq!(&c["req"], r"GET /x\x22y\x20z\x0D\x0A HTTP/1.1");
    let rest = &c["rest"];
    assert!(rest.contains(r#" serial="a\x22b\x0Ac" "#), "{rest}");
    assert!(rest.contains(r" sni=a\x20b\x7F "), "{rest}");
}

#[test]
fn hostile_user_agent_json() {
    let ua = hostile_ua();
    let mut e = entry();
    e.user_agent = Some(&ua);
    let mut s = String::new();
    format_json(&e, &mut s);
    assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    let got = v["user_agent"].as_str().unwrap();
    assert!(got.starts_with("evil\" \\ \n\r\x1b[31m red \u{fffd}\u{fffd}\u{fffd}(AA"));
    assert!(got.ends_with("AA..."));
    assert!(got.len() < CAP_HEADER + 10);
}

#[test]
fn caps() {
    let long = "x".repeat(5000);
    let mut e = entry();
    e.target = long.as_bytes();
    e.method = &long;
    e.host = Some(long.as_bytes());
    let v = json(&e);
    assert_eq!(v["target"].as_str().unwrap().len(), CAP_TARGET);
    assert_eq!(v["method"].as_str().unwrap().len(), CAP_OTHER);
    assert_eq!(v["host"].as_str().unwrap().len(), CAP_HEADER);
    assert!(v["target"].as_str().unwrap().ends_with("x..."));
    // A cut never splits a UTF-8 character.
    let s = "é".repeat(300);
    let (b, cut) = capped(s.as_bytes(), CAP_OTHER);
    assert!(cut);
    assert!(std::str::from_utf8(b).is_ok());
    assert_eq!(capped(b"abc", 3), (&b"abc"[..], false));
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    let mut s = String::new();
    push_clf_time(&mut s, at(0, 0));
    assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
    s.clear();
    push_clf_time(&mut s, at(951_868_799, 999));
    assert_eq!(s, "29/Feb/2000:23:59:59 +0000");
    s.clear();
    push_clf_time(&mut s, at(1_796_141_045, 0));
    assert_eq!(s, "01/Dec/2026:16:04:05 +0000");
    s.clear();
    push_rfc3339(&mut s, at(1_709_164_800, 5));
    assert_eq!(s, "2024-02-29T00:00:00.005Z");
    s.clear();
    push_rfc3339(&mut s, at(4_107_542_400, 0));
    assert_eq!(s, "2100-03-01T00:00:00.000Z");
    s.clear();
    push_rfc3339(&mut s, UNIX_EPOCH - Duration::from_millis(1));
    assert_eq!(s, "1969-12-31T23:59:59.999Z");
    s.clear();
    push_rfc3339(&mut s, UNIX_EPOCH - Duration::from_secs(1));
    assert_eq!(s, "1969-12-31T23:59:59.000Z");
}

#[test]
fn target_deserialisation() {
    let t = |y: &str| serde_yaml::from_str::<Target>(y);
    assert_eq!(t("stdout").unwrap(), Target::Stdout);
    assert_eq!(t("stderr").unwrap(), Target::Stderr);
    assert_eq!(t("off").unwrap(), Target::Off);
    assert_eq!(
        t("/var/log/provgate/access.log").unwrap(),
        Target::File(PathBuf::from("/var/log/provgate/access.log"))
    );
    let err = t("''").unwrap_err().to_string();
    assert!(err.contains("must not be empty"), "{err}");

    let c: AccessLogConfig = serde_yaml::from_str("format: json\ntarget: stderr").unwrap();
    assert_eq!(
        c,
        AccessLogConfig {
            format: Format::Json,
            target: Target::Stderr
        }
    );
    let c: AccessLogConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(c, AccessLogConfig::default());
    assert_eq!(c.target, Target::Stdout);
    assert_eq!(c.format, Format::Combined);
    assert!(serde_yaml::from_str::<AccessLogConfig>("colour: red").is_err());
    assert!(serde_yaml::from_str::<AccessLogConfig>("format: xml").is_err());
}

#[test]
fn off_is_disabled() {
    let log = AccessLog::start(&AccessLogConfig {
        format: Format::Json,
        target: Target::Off,
    })
    .unwrap();
    assert!(!log.enabled());
    assert_eq!(log.format(), Format::Json);
    log.log(&entry());
    log.reopen();
    log.flush_blocking(Duration::from_secs(1));
    assert_eq!(log.dropped(), 0);
}

#[test]
fn bad_path_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = AccessLog::start(&AccessLogConfig {
        format: Format::Combined,
        target: Target::File(dir.path().join("missing/access.log")),
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("missing/access.log"), "{err}");
}

#[test]
fn file_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "existing\n").unwrap();
    let log = AccessLog::start(&AccessLogConfig {
        format: Format::Combined,
        target: Target::File(path.clone()),
    })
    .unwrap();
    assert!(log.enabled());
    let e = entry();
    log.log(&e);
    log.clone().log(&e);
    log.flush_blocking(Duration::from_secs(5));
    let first = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert_eq!(lines[0], "existing");
    assert!(combined_re().is_match(lines[1]));

    // logrotate: rename, then SIGUSR1 -> reopen.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    log.reopen();
    let mut e2 = entry();
    e2.route = "after";
    log.log(&e2);
    log.flush_blocking(Duration::from_secs(5));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 3);
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(new.lines().count(), 1, "{new}");
    assert!(new.contains(" route=after "));
    assert!(new.ends_with('\n'));
    assert_eq!(log.dropped(), 0);
}

#[test]
fn json_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.json");
    let log = AccessLog::start(&AccessLogConfig {
        format: Format::Json,
        target: Target::File(path.clone()),
    })
    .unwrap();
    for _ in 0..100 {
        log.log(&entry());
    }
    log.flush_blocking(Duration::from_secs(5));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 100);
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["status"], 200);
    }
    // Dropping the last handle ends the writer thread after a final flush.
    drop(log);
}

#[tokio::test]
async fn sigusr1_task_runs() {
    let log = AccessLog::start(&AccessLogConfig {
        format: Format::Combined,
        target: Target::Off,
    })
    .unwrap();
    let task = tokio::spawn(reopen_on_sigusr1(log));
    tokio::task::yield_now().await;
    assert!(!task.is_finished());
    task.abort();
}
