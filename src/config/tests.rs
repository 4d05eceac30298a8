//! Unit tests for loading and validating: plain and TLS listeners, profiles, DH files,
//! cipher strings, identity and access-log keys, defaults, and key paths in errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::*;

const BASE: &str = r#"
backends:
  b: { address: "127.0.0.1:8080", connect_timeout: 500ms, read_timeout: 1m }
certificates:
  c: { chain: certs/c.pem, key: certs/c.key }
listeners:
  - name: l
    bind: ["127.0.0.1:8443", "[::1]:8443"]
    certificate: c
    backend: b
"#;

fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(
        Path::new("/etc/provgate/config.yaml"),
        &format!("{BASE}{extra}"),
    )
}

fn err(extra: &str) -> String {
    load(extra).unwrap_err().to_string()
}

const PLAIN: &str =
    "  - name: http\n    bind: [\"127.0.0.1:8080\"]\n    tls: plain\n    backend: b\n";

#[test]
fn plain_listener_needs_no_certificate_and_refuses_tls_settings() {
    let c = load(PLAIN).unwrap();
    let http = &c.listeners[1];
    assert!(http.plain);
    assert_eq!(http.defaults.certificate, None);
    assert_eq!(http.defaults.profile, "plain");
    assert!(!c.listeners[0].plain);
    for (extra, key, says) in [
        (
            "    certificate: c\n",
            "listeners[1].certificate",
            "remove the certificate",
        ),
        (
            "    client_auth: { mode: optional, ca: ca.pem }\n",
            "listeners[1].client_auth",
            "no client certificate",
        ),
        (
            "    routes:\n      - match: { sni: [a.example] }\n",
            "listeners[1].routes[0].match.sni",
            "local and source addresses only",
        ),
        (
            "    routes:\n      - match: { source: [10.0.0.0/8] }\n        tls: legacy\n",
            "listeners[1].routes[0].tls",
            "local and source addresses only",
        ),
    ] {
        let e = err(&format!("{PLAIN}{extra}"));
        assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
    }
    // Plain routes on addresses are fine.
    load(&format!(
        "{PLAIN}    routes:\n      - match: {{ source: [10.0.0.0/8] }}\n"
    ))
    .unwrap();
}

#[test]
fn tls_listener_needs_a_certificate_and_plain_is_reserved() {
    let e = err("  - name: x\n    bind: [\"127.0.0.1:9\"]\n    backend: b\n");
    assert!(e.contains("listeners[1].certificate: is required"), "{e}");
    let e = err("    routes:\n      - tls: plain\n");
    assert!(
        e.contains("listeners[0].routes[0].tls") && e.contains("own listener"),
        "{e}"
    );
    let e = err("tls_profiles:\n  plain: { base: legacy }\n");
    assert!(
        e.contains("tls_profiles.plain") && e.contains("reserved"),
        "{e}"
    );
    let e = err("tls_profiles:\n  p: { base: plain }\n");
    assert!(e.contains("tls_profiles.p.base"), "{e}");
}

#[test]
fn backend_host_access_log_and_identity_keys() {
    let c = Config::from_yaml(
        Path::new("/etc/provgate/config.yaml"),
        &BASE.replace(
            "read_timeout: 1m }",
            "read_timeout: 1m, host: prov.example.com }",
        ),
    )
    .unwrap();
    assert_eq!(c.backends["b"].host.as_deref(), Some("prov.example.com"));
    let e = Config::from_yaml(
        Path::new("/c.yaml"),
        &BASE.replace("read_timeout: 1m }", "read_timeout: 1m, host: \"a\\nb\" }"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("backends.b.host"), "{e}");
    let c = load(
        "access_log: { format: json, target: /var/log/provgate/access.log }\n\
         identity: { preset: nginx, dn_format: legacy, strip_request_headers: [X-Tenant] }\n",
    )
    .unwrap();
    assert_eq!(c.access_log.format, crate::access_log::Format::Json);
    assert_eq!(c.identity.preset, crate::identity_headers::Preset::Nginx);
    assert_eq!(
        c.identity.dn_format,
        crate::identity_headers::DnFormat::Legacy
    );
    assert_eq!(
        c.identity.strip_request_headers,
        vec!["x-tenant".to_string()]
    );
    let e = err("access_log: { target: \"\" }\n");
    assert!(e.contains("access_log.target"), "{e}");
    let e = err("identity: { preset: iis }\n");
    assert!(e.contains("identity.preset"), "{e}");
}

#[test]
fn defaults_durations_and_paths() {
    let c = load("").unwrap();
    let b = &c.backends["b"];
    assert_eq!(b.connect_timeout, Duration::from_millis(500));
    assert_eq!(b.read_timeout, Duration::from_secs(60));
    assert_eq!(c.listeners[0].defaults.profile, "auto");
    assert_eq!(c.listeners[0].handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(c.listeners[0].bind.len(), 2);
    assert_eq!(
        c.certificates["c"].chain,
        PathBuf::from("/etc/provgate/certs/c.pem")
    );
}

#[test]
fn profiles_inherit_and_are_checked_per_engine() {
    let c = load(
        "tls_profiles:\n  a: { base: legacy, versions: [ssl3, tls1.0] }\n  b: { base: a, dh_bits: 0 }\n",
    )
    .unwrap();
    let b = &c.profiles["b"];
    assert_eq!(b.engine, EngineKind::Legacy);
    assert_eq!(
        b.versions.iter().copied().collect::<Vec<_>>(),
        vec![TlsVersion::Ssl3, TlsVersion::Tls10]
    );
    assert_eq!(b.dh_bits, 0);

    let e = err("tls_profiles:\n  m: { base: modern, versions: [tls1.0] }\n");
    assert!(
        e.contains("tls_profiles.m.versions") && e.contains("tls1.0"),
        "{e}"
    );
    let e = err("tls_profiles:\n  x: { base: y }\n  y: { base: x }\n");
    assert!(e.contains("loop"), "{e}");
    let e = err("tls_profiles:\n  x: { dh_bits: 2048, dh_group: rfc5114 }\n");
    assert!(
        e.contains("tls_profiles.x.dh_group") && e.contains("1024-bit"),
        "{e}"
    );
    let e = err("tls_profiles:\n  x: { dh_bits: 4096 }\n");
    assert!(
        e.contains("tls_profiles.x.dh_bits") && e.contains("4096"),
        "{e}"
    );
    let e = err("tls_profiles:\n  x: { versions: [tls9] }\n");
    assert!(e.contains("tls_profiles.x.versions[0]"), "{e}");
}

#[test]
fn builtin_cipher_string_names_only_openssl3_suites() {
    // OpenSSL drops unknown names without a word; 0x0016 was lost to a pre-1.1.0 name.
    assert_eq!(crate::tls::legacy::cipher_issues(LEGACY_CIPHERS), vec![]);
    assert!(LEGACY_CIPHERS.contains(":DHE-RSA-DES-CBC3-SHA:"));
    let c = load("").unwrap();
    for name in ["legacy", "auto", "modern"] {
        assert!(c.profiles[name].session_tickets, "{name}");
        assert_eq!(c.profiles[name].dh_params, None, "{name}");
    }
}

#[test]
fn ciphers_that_select_nothing_are_errors_unknown_names_are_not() {
    // Unknown words are warnings (check / start-up log); something is still selected.
    let c = load("tls_profiles:\n  x: { ciphers: \"AES128-SHA:EDH-RSA-DES-CBC3-SHA\" }\n").unwrap();
    assert_eq!(c.profiles["x"].ciphers, "AES128-SHA:EDH-RSA-DES-CBC3-SHA");
    for (yaml, says) in [
        (
            "x: { ciphers: \"EDH-RSA-DES-CBC3-SHA\" }",
            "no cipher match",
        ),
        ("x: { ciphers: \"AES128-SHA:#bad\" }", "invalid command"),
        (
            "x: { versions: [tls1.0], ciphers: \"AES128-GCM-SHA256\" }",
            "that tls1.0 can use",
        ),
        (
            "x: { dh_bits: 0, ciphers: \"DHE-RSA-AES128-SHA\" }",
            "once DHE is struck (dh_bits: 0)",
        ),
    ] {
        let e = err(&format!("tls_profiles:\n  {yaml}\n"));
        assert!(
            e.contains("tls_profiles.x.ciphers") && e.contains(says),
            "{yaml}: {e}"
        );
    }
    // The modern engine ignores the string.
    load("tls_profiles:\n  m: { base: modern, ciphers: \"NOPE\" }\n").unwrap();
}

#[test]
fn session_tickets_on_off() {
    let c = load(
        "tls_profiles:\n  a: { session_tickets: off }\n  b: { base: a }\n  \
         c: { base: a, session_tickets: on }\n  d: { session_tickets: false }\n",
    )
    .unwrap();
    let on = |n: &str| c.profiles[n].session_tickets;
    assert_eq!(
        (on("a"), on("b"), on("c"), on("d")),
        (false, false, true, false)
    );
    let e = err("tls_profiles:\n  a: { session_tickets: maybe }\n");
    assert!(
        e.contains("tls_profiles.a.session_tickets") && e.contains("on or off"),
        "{e}"
    );
}

#[test]
fn dh_params_files_resolve_beside_the_config_and_are_checked() {
    use openssl::bn::BigNum;
    use openssl::dh::Dh;
    let dir = tempfile::tempdir().unwrap();
    let pem = |p: BigNum| {
        Dh::from_pqg(p, None, BigNum::from_u32(2).unwrap())
            .unwrap()
            .params_to_pem()
            .unwrap()
    };
    std::fs::create_dir(dir.path().join("dh")).unwrap();
    let files = [
        (
            "dh/1024.pem",
            pem(BigNum::get_rfc2409_prime_1024().unwrap()),
        ),
        ("2048.pem", pem(BigNum::get_rfc3526_prime_2048().unwrap())),
        ("768.pem", pem(BigNum::get_rfc2409_prime_768().unwrap())),
        ("composite.pem", {
            let mut p = BigNum::get_rfc2409_prime_1024().unwrap();
            p.add_word(1).unwrap();
            pem(p)
        }),
        (
            "junk.pem",
            b"-----BEGIN DH PARAMETERS-----\nnope\n".to_vec(),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let file = dir.path().join("config.yaml");
    let load =
        |profiles: &str| Config::from_yaml(&file, &format!("{BASE}tls_profiles:\n{profiles}"));
    let err = |profiles: &str| load(profiles).unwrap_err().to_string();

    let c = load(
        "  own: { dh_params: dh/1024.pem }\n  big: { dh_bits: 2048, dh_params: 2048.pem }\n  \
         child: { base: own }\n  nodhe: { base: own, dh_bits: 0 }\n  \
         back: { base: own, dh_group: rfc5114 }\n",
    )
    .unwrap();
    let own = c.profiles["own"].dh_params.as_ref().unwrap();
    assert_eq!(own.path, dir.path().join("dh/1024.pem"));
    assert_eq!(own.bits, 1024);
    assert_eq!(c.profiles["big"].dh_params.as_ref().unwrap().bits, 2048);
    assert_eq!(c.profiles["child"].dh_params, c.profiles["own"].dh_params);
    assert_eq!(c.profiles["nodhe"].dh_params, None, "no DHE drops the file");
    assert_eq!(
        c.profiles["back"].dh_params, None,
        "a built-in group replaces it"
    );
    assert_eq!(c.profiles["back"].dh_group, DhGroup::Rfc5114);

    for (profiles, key, says) in [
        (
            "  x: { dh_params: 2048.pem }\n",
            "x.dh_params",
            "set dh_bits: 2048",
        ),
        (
            "  x: { dh_bits: 2048, dh_params: 2048.pem }\n  y: { base: x, dh_bits: 1024 }\n",
            "y.dh_bits",
            "2048-bit group but dh_bits is 1024",
        ),
        (
            "  x: { dh_params: 768.pem }\n",
            "x.dh_params",
            "768-bit group, weaker",
        ),
        (
            "  x: { dh_params: composite.pem }\n",
            "x.dh_params",
            "not prime",
        ),
        (
            "  x: { dh_params: junk.pem }\n",
            "x.dh_params",
            "no PEM 'DH PARAMETERS'",
        ),
        (
            "  x: { dh_params: missing.pem }\n",
            "x.dh_params",
            "cannot read",
        ),
        (
            "  x: { dh_bits: 0, dh_params: dh/1024.pem }\n",
            "x.dh_params",
            "dh_bits is 0",
        ),
        (
            "  x: { dh_group: rfc5114, dh_params: dh/1024.pem }\n",
            "x.dh_group",
            "keep one",
        ),
    ] {
        let e = err(profiles);
        assert!(
            e.contains(&format!("tls_profiles.{key}")) && e.contains(says),
            "{profiles}: {e}"
        );
    }
}

#[test]
fn errors_name_the_key_path() {
    let e = err("    routes:\n      - match: { sni: [\"bad name!\"] }\n");
    assert!(e.contains("listeners[0].routes[0].match.sni[0]"), "{e}");
    let e = err("    routes:\n      - match: { source: [\"10.0.0.0/33\"] }\n");
    assert!(e.contains("listeners[0].routes[0].match.source[0]"), "{e}");
    let e = err("    routes:\n      - match: { color: [red] }\n");
    assert!(e.contains("unknown field `color`"), "{e}");
    let e = err("    routes:\n      - backend: nope\n");
    assert!(
        e.contains("listeners[0].routes[0].backend") && e.contains("'nope'"),
        "{e}"
    );
    let e = Config::from_yaml(Path::new("x.yaml"), "listeners: []\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.yaml: listeners: at least one listener"),
        "{e}"
    );
    let e = Config::from_yaml(Path::new("x.yaml"), "listeners: [\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.yaml: "), "{e}");
}

#[test]
fn routes_inherit_listener_defaults_and_accept_plain_ips() {
    let c = load(
        "    tls: legacy\n    routes:\n      - match: { local: [\"192.0.2.10\"], sni: [\"*.Example.NET.\"] }\n        tls: modern\n",
    )
    .unwrap();
    let r = &c.listeners[0].routes[0];
    assert_eq!(r.name, "l/routes[0]");
    assert_eq!(r.target.certificate.as_deref(), Some("c"));
    assert_eq!(r.target.profile, "modern");
    assert_eq!(
        r.matches.local,
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        r.matches.sni,
        vec![SniPattern::Wildcard("example.net".into())]
    );
}

#[test]
fn reference_and_version_errors_read_word_for_word() {
    let at = "/etc/provgate/config.yaml: listeners[0].routes[0]";
    for (route, says) in [
        (
            "certificate: nope",
            "certificate: no certificate named 'nope' under certificates (known: c)",
        ),
        (
            "backend: nope",
            "backend: no backend named 'nope' under backends (known: b)",
        ),
        (
            "tls: nope",
            "tls: no TLS profile named 'nope' (known: auto, legacy, modern, plain)",
        ),
        (
            "match: { client_hello: { max_version: tls9 } }",
            "match.client_hello.max_version: unknown version 'tls9' \
             (use ssl3, tls1.0, tls1.1, tls1.2, tls1.3)",
        ),
    ] {
        assert_eq!(
            err(&format!("    routes:\n      - {route}\n")),
            format!("{at}.{says}")
        );
    }
    assert_eq!(
        err("tls_profiles:\n  x: { versions: [tls1.0, tls9] }\n"),
        "/etc/provgate/config.yaml: tls_profiles.x.versions[1]: unknown version 'tls9' \
         (use ssl3, tls1.0, tls1.1, tls1.2, tls1.3)"
    );
    let e = Config::from_yaml(
        Path::new("/c.yaml"),
        "backends: {}\nlisteners:\n  - { name: l, bind: [\"127.0.0.1:1\"], certificate: c, backend: b }\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/c.yaml: listeners[0].certificate: no certificate named 'c' under certificates (known: none)"
    );
}

#[test]
fn the_mac_path_pattern_is_compiled_once_and_compares_by_text() {
    let c = load("").unwrap();
    assert_eq!(c.identity.mac_path_pattern, DEFAULT_MAC_PATH_PATTERN);
    assert_eq!(c.identity.mac_path().as_str(), DEFAULT_MAC_PATH_PATTERN);
    let caps = c
        .identity
        .mac_path()
        .captures("/spa000e08abcdef.cfg")
        .unwrap();
    assert_eq!(&caps[1], "000e08abcdef");
    assert_eq!(load("").unwrap(), c);
    let own = load("identity: { mac_path_pattern: \"/([0-9a-f]{12})$\" }\n").unwrap();
    assert_eq!(own.identity.mac_path().as_str(), "/([0-9a-f]{12})$");
    assert_ne!(own.identity, c.identity);
    let e = err("identity: { mac_path_pattern: \"[0-9a-f]{12}\" }\n");
    assert!(
        e.contains("identity.mac_path_pattern: needs a capture group"),
        "{e}"
    );
}

#[test]
fn connection_and_handshake_limits_default_and_validate() {
    let c = load("").unwrap();
    // No max_connections: what the open-file limit allows, decided at start.
    assert_eq!(c.limits.max_connections, None);
    assert_eq!(c.limits.on_limit, OnLimit::Wait);
    assert_eq!(c.limits.max_handshakes, default_max_handshakes());
    assert!((1..=DEFAULT_MAX_HANDSHAKES_CAP).contains(&c.limits.max_handshakes));
    assert_eq!(c.listeners[0].listen_backlog, DEFAULT_LISTEN_BACKLOG);
    assert_eq!(DEFAULT_LISTEN_BACKLOG, 4096);

    let c = load(
        "    listen_backlog: 128\n\
         limits: { max_connections: 300, on_limit: close, max_handshakes: 8 }\n",
    )
    .unwrap();
    assert_eq!(c.limits.max_connections, Some(300));
    assert_eq!(c.limits.on_limit, OnLimit::Close);
    assert_eq!(c.limits.max_handshakes, 8);
    assert_eq!(c.listeners[0].listen_backlog, 128);
    assert_eq!(
        load("limits: { on_limit: wait }\n")
            .unwrap()
            .limits
            .on_limit,
        OnLimit::Wait
    );

    for (extra, key) in [
        ("limits: { max_connections: 0 }\n", "limits.max_connections"),
        ("limits: { max_handshakes: 0 }\n", "limits.max_handshakes"),
        ("    listen_backlog: 0\n", "listeners[0].listen_backlog"),
    ] {
        let e = err(extra);
        assert!(e.contains(key) && e.contains("at least 1"), "{extra}: {e}");
    }
    let e = err("limits: { on_limit: drop }\n");
    assert!(
        e.contains("on_limit") || e.contains("unknown variant"),
        "{e}"
    );
    assert!(e.contains("wait") && e.contains("close"), "{e}");
    let e = err("    listen_backlog: -1\n");
    assert!(
        e.contains("listen_backlog") || e.contains("listeners[0]"),
        "{e}"
    );
}

#[test]
fn backend_connection_cap_and_queue_timeout() {
    let c = load("").unwrap();
    assert_eq!(c.backends["b"].max_connections, None);
    assert_eq!(c.backends["b"].queue_timeout, DEFAULT_QUEUE_TIMEOUT);
    let yaml = BASE.replace(
        "read_timeout: 1m }",
        "read_timeout: 1m, max_connections: 64, queue_timeout: 5s }",
    );
    let c = Config::from_yaml(Path::new("/etc/provgate/config.yaml"), &yaml).unwrap();
    assert_eq!(c.backends["b"].max_connections, Some(64));
    assert_eq!(c.backends["b"].queue_timeout, Duration::from_secs(5));
    let yaml = BASE.replace(
        "read_timeout: 1m }",
        "read_timeout: 1m, max_connections: 0 }",
    );
    let e = Config::from_yaml(Path::new("/c.yaml"), &yaml)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("backends.b.max_connections: must be at least 1"),
        "{e}"
    );
}

#[test]
fn backend_idle_timeout_and_the_idle_pool() {
    let c = load("").unwrap();
    assert_eq!(c.backends["b"].idle_timeout, DEFAULT_BACKEND_IDLE_TIMEOUT);
    assert_eq!(c.limits.backend_idle_pool, DEFAULT_BACKEND_IDLE_POOL);
    let yaml = BASE.replace("read_timeout: 1m }", "read_timeout: 1m, idle_timeout: 2s }")
        + "limits: { backend_idle_pool: 16 }\n";
    let c = Config::from_yaml(Path::new("/c.yaml"), &yaml).unwrap();
    assert_eq!(c.backends["b"].idle_timeout, Duration::from_secs(2));
    assert_eq!(c.limits.backend_idle_pool, 16);
    assert!(err("limits: { backend_idle_pool: 0 }\n").contains("limits.backend_idle_pool"));
    let yaml = BASE.replace("read_timeout: 1m }", "read_timeout: 1m, idle_timeout: 0s }");
    let e = Config::from_yaml(Path::new("/c.yaml"), &yaml)
        .unwrap_err()
        .to_string();
    assert!(e.contains("backends.b.idle_timeout"), "{e}");
}

#[test]
fn client_auth_allow_expired_and_serial_lists() {
    let c = load(concat!(
        "    client_auth:\n",
        "      mode: required\n",
        "      ca: devices.pem\n",
        "      allow_expired: true\n",
        "      deny_serials: [\"0A:1B:2C\", \"00ff\"]\n",
        "      allow_serials: [\"DEADbeef\", \"0\"]\n",
        "    routes:\n",
        "      - match: { source: [10.0.0.0/8] }\n",
        "        client_auth: { mode: optional, ca: devices.pem }\n",
        "      - match: { source: [10.1.0.0/16] }\n",
    ))
    .unwrap();
    let l = &c.listeners[0];
    let auth = &l.defaults.client_auth;
    assert!(auth.allow_expired);
    assert_eq!(auth.deny_serials, ["a1b2c", "ff"]);
    assert_eq!(
        auth.allow_serials.as_deref(),
        Some(&["deadbeef".to_string(), "0".to_string()][..])
    );
    // A route's own client_auth starts afresh; one without inherits the listener's.
    assert!(!l.routes[0].target.client_auth.allow_expired);
    assert!(l.routes[0].target.client_auth.deny_serials.is_empty());
    assert_eq!(l.routes[0].target.client_auth.allow_serials, None);
    assert_eq!(l.routes[1].target.client_auth, *auth);
    // Off by default.
    let c = load("    client_auth: { mode: optional, ca: devices.pem }\n").unwrap();
    let auth = &c.listeners[0].defaults.client_auth;
    assert!(!auth.allow_expired && auth.deny_serials.is_empty() && auth.allow_serials.is_none());
    assert_eq!(serial_key("00:00"), Some("0".into()));
    assert_eq!(serial_key("0a:1B"), Some("a1b".into()));
    assert_eq!(serial_key(""), None);
    assert_eq!(serial_key("0x1a"), None);
}

#[test]
fn client_auth_serial_and_expiry_errors_name_the_entry() {
    let at = "/etc/provgate/config.yaml: listeners[0].client_auth";
    for (auth, says) in [
        (
            "mode: required, ca: d.pem, deny_serials: [\"0a:1b\", \"zz:01\"]",
            format!(
                "{at}.deny_serials[1]: 'zz:01' is not a certificate serial in hex \
                 (e.g. \"0A:1B:2C\" or \"0a1b2c\")"
            ),
        ),
        (
            "mode: required, ca: d.pem, allow_serials: [\"\"]",
            format!("{at}.allow_serials[0]: '' is not a certificate serial in hex"),
        ),
        (
            "mode: required, ca: d.pem, deny_serials: [0x1a]",
            format!(
                "{at}.deny_serials[0]: YAML reads this as the number 26; quote the serial as \
                 written (e.g. \"0a1b2c\") so its hex digits are kept"
            ),
        ),
        (
            "mode: required, ca: d.pem, allow_serials: [1234, \"ab\"]",
            format!("{at}.allow_serials[0]: YAML reads this as the number 1234"),
        ),
        (
            "mode: required, ca: d.pem, deny_serials: [[1]]",
            format!("{at}.deny_serials[0]: is not a certificate serial in hex"),
        ),
        (
            "mode: required, ca: d.pem, allow_serials: []",
            format!("{at}.allow_serials: is empty, which would refuse every device"),
        ),
        (
            "mode: off, allow_expired: true",
            format!("{at}: allow_expired, deny_serials and allow_serials need mode optional or required"),
        ),
        (
            "mode: off, deny_serials: [\"01\"]",
            format!("{at}: allow_expired, deny_serials and allow_serials need mode"),
        ),
        (
            "mode: required, ca: d.pem, allow_expired: yes",
            "listeners[0].client_auth.allow_expired".to_string(),
        ),
    ] {
        let e = err(&format!("    client_auth: {{ {auth} }}\n"));
        assert!(e.contains(&says), "{auth}:\n  got  {e}\n  want {says}");
    }
}
