//! Unit tests for the `admin:` section: defaults, every key, and errors naming the key.

use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::*;

const BASE: &str = r#"
backends:
  b: { address: "127.0.0.1:8080" }
certificates:
  c: { chain: c.pem, key: c.key }
listeners:
  - { name: l, bind: ["127.0.0.1:8443"], certificate: c, backend: b }
"#;

fn load(admin: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(
        Path::new("/etc/provgate/config.yaml"),
        &format!("{BASE}admin: {admin}\n"),
    )
}

fn err(admin: &str) -> String {
    load(admin).unwrap_err().to_string()
}

#[test]
fn admin_defaults() {
    let c = load(r#"{ listen: "0.0.0.0:9900" }"#).unwrap();
    assert_eq!(c.admin, Some("0.0.0.0:9900".parse().unwrap()));
    let o = &c.admin_options;
    assert_eq!(o, &AdminOptions::default());
    assert!(o.allow.is_empty());
    assert_eq!(o.max_connections, 64);
    assert_eq!(o.header_timeout, Duration::from_secs(5));
    assert_eq!(o.idle_timeout, Duration::from_secs(30));
    assert!(!o.show_device_ids);
    assert!(o.admits("192.0.2.1".parse().unwrap()));
    // No admin section: no listener, and the same defaults (device ids masked).
    let c = Config::from_yaml(Path::new("/c.yaml"), BASE).unwrap();
    assert_eq!(c.admin, None);
    assert_eq!(c.admin_options, AdminOptions::default());
}

#[test]
fn admin_keys_are_read() {
    let c = load(
        r#"{ listen: "127.0.0.1:9900", allow: ["10.0.0.0/8", "192.0.2.7", "fd00::/8"], max_connections: 4, header_timeout: 1s, idle_timeout: 2m, show_device_ids: true }"#,
    )
    .unwrap();
    let o = &c.admin_options;
    assert_eq!(
        o.allow,
        ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
            .iter()
            .map(|s| s.parse::<IpNet>().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(o.max_connections, 4);
    assert_eq!(o.header_timeout, Duration::from_secs(1));
    assert_eq!(o.idle_timeout, Duration::from_secs(120));
    assert!(o.show_device_ids);
    for (ip, admitted) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("192.0.2.7", true),
        ("::ffff:192.0.2.8", false),
        ("127.0.0.1", false),
        ("fd12::1", true),
        ("::1", false),
    ] {
        assert_eq!(o.admits(ip.parse().unwrap()), admitted, "{ip}");
    }
}

#[test]
fn admin_errors_name_the_key() {
    for (admin, key, says) in [
        (
            r#"{ listen: "127.0.0.1:9900", allow: ["10.0.0.0/8", "10.0.0.0/33"] }"#,
            "admin.allow[1]: '10.0.0.0/33' is not an IP address or CIDR",
            "",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", allow: [localhost] }"#,
            "admin.allow[0]",
            "not an IP address or CIDR",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", max_connections: 0 }"#,
            "admin.max_connections",
            "at least 1",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", header_timeout: 0s }"#,
            "admin.header_timeout",
            "greater than zero",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", idle_timeout: 0ms }"#,
            "admin.idle_timeout",
            "greater than zero",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", idle_timeout: soon }"#,
            "admin.idle_timeout",
            "",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", max_connections: -1 }"#,
            "admin.max_connections",
            "",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", show_device_ids: maybe }"#,
            "admin.show_device_ids",
            "",
        ),
        (
            r#"{ listen: "127.0.0.1:9900", allow_from: [] }"#,
            "admin",
            "unknown field `allow_from`",
        ),
        (r#"{ listen: "localhost:9900" }"#, "admin.listen", "IP:port"),
    ] {
        let e = err(admin);
        assert!(
            e.starts_with("/etc/provgate/config.yaml: ") && e.contains(key) && e.contains(says),
            "{admin}: {e}"
        );
    }
}
