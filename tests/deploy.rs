//! The packaging and deployment files (Dockerfile, deploy/kubernetes, deploy/docker-compose.yaml,
//! deploy/prometheus), checked statically against each other and against the code: the admin
//! port, health paths, config and certificate paths, drain grace and metric names must agree,
//! so a change on one side that the other does not follow fails here.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use provgate::config::Config;
use provgate::pki::{self, Ca, CertSpec};
use provgate::snapshot::Snapshot;
use serde::Deserialize;
use serde_yaml::Value;

/// Where the image, the manifests and the compose file expect the admin listener.
const ADMIN_PORT: u16 = 9900;
/// The config path the image's CMD, the DaemonSet and the compose service use.
const CONFIG_PATH: &str = "/etc/provgate/config.yaml";
/// `limits.shutdown_grace` when the config does not set it.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Every metric provgate exports, with its labels (from src/metrics.rs; see
/// `metric_list_matches_src_metrics`). Histograms also appear as `_bucket`/`_sum`/`_count`.
const METRICS: &[(&str, &[&str])] = &[
    ("provgate_connections_accepted_total", &["listener"]),
    ("provgate_connections_open", &["listener"]),
    (
        "provgate_client_hellos_total",
        &["listener", "format", "max_version"],
    ),
    (
        "provgate_handshakes_total",
        &[
            "listener", "route", "engine", "version", "cipher", "outcome",
        ],
    ),
    ("provgate_handshake_failures_total", &["listener", "reason"]),
    (
        "provgate_handshake_duration_seconds",
        &["listener", "engine"],
    ),
    ("provgate_dhe_handshakes_total", &["listener", "bits"]),
    (
        "provgate_requests_total",
        &["listener", "route", "status_class"],
    ),
    ("provgate_upstream_duration_seconds", &["backend"]),
    ("provgate_upstream_errors_total", &["backend", "kind"]),
    ("provgate_devices_seen_total", &["family", "firmware"]),
    ("provgate_certificate_not_after_seconds", &["certificate"]),
    ("provgate_build_info", &["version", "openssl"]),
    ("provgate_openssl_capability", &["feature"]),
    ("provgate_access_log_dropped_total", &[]),
    ("provgate_log_suppressed_total", &["reason"]),
    (
        "provgate_refused_connections_total",
        &["listener", "reason"],
    ),
    ("provgate_reload_total", &["outcome"]),
    ("provgate_draining", &[]),
    ("provgate_accept_paused", &["listener"]),
    ("provgate_handshakes_in_progress", &[]),
    ("provgate_handshake_queue_seconds", &[]),
    ("provgate_backend_queue_depth", &["backend"]),
    ("provgate_backend_queue_seconds", &["backend"]),
    (
        "provgate_device_retries_caused_total",
        &["listener", "cause"],
    ),
];
const HISTOGRAMS: &[&str] = &[
    "provgate_handshake_duration_seconds",
    "provgate_upstream_duration_seconds",
    "provgate_handshake_queue_seconds",
    "provgate_backend_queue_seconds",
];
/// Labels Prometheus adds or histograms carry.
const TARGET_LABELS: &[&str] = &["instance", "job", "le"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: impl AsRef<Path>) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
fn yaml_docs(rel: impl AsRef<Path>) -> Vec<Value> {
    let rel = rel.as_ref();
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", rel.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml(rel: impl AsRef<Path>) -> Value {
    let mut docs = yaml_docs(rel.as_ref());
    assert_eq!(docs.len(), 1, "{}: one document", rel.as_ref().display());
    docs.remove(0)
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v:?}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("expected a list, found {v:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    seq(v).iter().map(|x| s(x).to_string()).collect()
}

/// The value after `--config` (or `-c`) in an argument list.
fn config_arg(args: &[String]) -> Option<String> {
    args.iter()
        .position(|a| a == "--config" || a == "-c")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        })
}

/// `limits.shutdown_grace` as written in the YAML (humantime), or the default.
fn raw_shutdown_grace(config_text: &str) -> Duration {
    let raw: Value = serde_yaml::from_str(config_text).unwrap();
    match raw["limits"]["shutdown_grace"].as_str() {
        Some(text) => humantime::parse_duration(text).unwrap(),
        None => DEFAULT_SHUTDOWN_GRACE,
    }
}

/// Every port a config binds (listeners and admin).
fn bound_ports(cfg: &Config) -> BTreeSet<u16> {
    cfg.listeners
        .iter()
        .flat_map(|l| l.bind.iter().map(|a| a.port()))
        .chain(cfg.admin.map(|a| a.port()))
        .collect()
}

/// Validate `text` as the config at `path`, then build it for real (every certificate, key and
/// TLS context) with freshly generated certificates in place of the deployment's files.
fn validate_config(path: &str, text: &str) -> Config {
    let cfg = Config::from_yaml(Path::new(path), text)
        .unwrap_or_else(|e| panic!("{path}: invalid configuration: {e}"));
    assert_eq!(
        cfg.limits.shutdown_grace,
        raw_shutdown_grace(text),
        "{path}: limits.shutdown_grace"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Deploy Test CA", "provgate tests").unwrap();
    let mut built = cfg.clone();
    for (name, spec) in &mut built.certificates {
        let (cert, key) = ca.issue(&CertSpec::server("prov.example.com")).unwrap();
        let (chain, keyf) = pki::write_pair(dir.path(), name, &cert, &key).unwrap();
        spec.chain = chain;
        spec.key = keyf;
    }
    if let Err(e) = Snapshot::build(built) {
        panic!("{path}: does not build with generated certificates: {e}");
    }
    cfg
}

// ---------------------------------------------------------------- Dockerfile

struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile as instructions (continuations joined, comments dropped), split into stages.
fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.trim().is_empty(),
        "Dockerfile ends in a continuation"
    );
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let ins = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if ins.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap_or_else(|| panic!("Dockerfile: {} before the first FROM", ins.keyword))
            .push(ins);
    }
    stages
}

fn exec_form(args: &str) -> Vec<String> {
    let start = args
        .find('[')
        .unwrap_or_else(|| panic!("not exec form: {args}"));
    serde_json::from_str(&args[start..]).unwrap_or_else(|e| panic!("{args}: {e}"))
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_health_checked() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "the Dockerfile has one stage");
    let all = |stage: &[Instruction], kw: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|i| i.keyword == kw)
            .map(|i| i.args.clone())
            .collect()
    };

    // The builder: the build tools, the release build, the file capability; no system OpenSSL.
    let builder = &stages[0];
    let runs = all(builder, "RUN").join("\n");
    let install = runs
        .split("&&")
        .find(|c| c.contains("apt-get") && c.contains("install"))
        .expect("the builder installs packages with apt-get");
    for tool in ["cmake", "perl", "make", "libcap2-bin"] {
        assert!(
            install.split_whitespace().any(|w| w == tool),
            "the builder does not install {tool}: {install}"
        );
    }
    assert!(
        runs.contains("cargo build --release --locked"),
        "no `cargo build --release --locked` in the builder"
    );
    assert!(
        runs.contains("setcap cap_net_bind_service=+ep"),
        "the builder does not give the binary cap_net_bind_service"
    );
    for stage in &stages {
        for run in all(stage, "RUN") {
            assert!(
                !run.contains("libssl-dev"),
                "OpenSSL is vendored: no libssl-dev"
            );
        }
    }

    // The final stage: no toolchain, non-root, health check, ports, config path.
    let last = stages.last().unwrap();
    let base = &all(last, "FROM")[0];
    for tool in ["rust", "cargo", "gcc", "golang", "buildpack-deps"] {
        assert!(
            !base.contains(tool),
            "the final stage is based on a toolchain image: {base}"
        );
    }
    let final_runs = all(last, "RUN").join("\n");
    for tool in [
        "cargo",
        "rustc",
        "rustup",
        "gcc",
        "g++",
        "clang",
        "cmake",
        "build-essential",
    ] {
        assert!(
            !final_runs.split_whitespace().any(|w| w == tool),
            "the final stage installs or runs {tool}"
        );
    }
    for copy in all(last, "COPY") {
        assert!(
            copy.contains("--from="),
            "the final stage copies from the build context: COPY {copy}"
        );
    }

    let user = all(last, "USER");
    let user = user.last().expect("the final stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(
        name != "root" && name != "0",
        "the final stage runs as root"
    );
    if let Ok(uid) = name.parse::<u32>() {
        assert!(uid > 0);
    }

    let entrypoint = exec_form(&all(last, "ENTRYPOINT")[0]);
    assert_eq!(entrypoint, ["/usr/local/bin/provgate"]);
    let cmd = exec_form(&all(last, "CMD")[0]);
    assert_eq!(cmd[0], "run");
    assert_eq!(config_arg(&cmd).as_deref(), Some(CONFIG_PATH));

    let health = all(last, "HEALTHCHECK");
    let health = health.first().expect("the final stage has a HEALTHCHECK");
    let (_, health_cmd) = health
        .split_once(" CMD ")
        .or_else(|| health.split_once("CMD "))
        .unwrap();
    let probe = exec_form(health_cmd);
    assert_eq!(probe[0], entrypoint[0], "the health check runs provgate");
    assert_eq!(probe[1], "probe");
    assert_eq!(probe[2], format!("http://127.0.0.1:{ADMIN_PORT}/healthz"));

    let exposed: BTreeSet<u16> = all(last, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace().map(|p| p.trim_end_matches("/tcp")))
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(exposed.contains(&ADMIN_PORT), "EXPOSE lacks the admin port");
    assert!(exposed.contains(&443), "EXPOSE lacks 443");

    let ignore = read(".dockerignore");
    for entry in ["target", ".git"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == entry),
            ".dockerignore does not exclude {entry}"
        );
    }
}

// ---------------------------------------------------------------- Kubernetes

const K8S: &str = "deploy/kubernetes";

/// Every object of the kustomization's resources, checked to parse.
fn kubernetes_objects() -> Vec<Value> {
    let kustomization = yaml(format!("{K8S}/kustomization.yaml"));
    let namespace = kustomization["namespace"].as_str();
    let mut objects = Vec::new();
    for file in strings(&kustomization["resources"]) {
        let rel = format!("{K8S}/{file}");
        assert!(root().join(&rel).is_file(), "{rel}: listed but missing");
        for obj in yaml_docs(&rel) {
            let kind = obj["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: no kind"));
            assert!(
                obj["apiVersion"].is_string(),
                "{rel}: {kind} has no apiVersion"
            );
            assert!(
                obj["metadata"]["name"].is_string(),
                "{rel}: {kind} has no name"
            );
            if let (Some(ns), Some(own)) = (namespace, obj["metadata"]["namespace"].as_str()) {
                assert_eq!(own, ns, "{rel}: {kind} in another namespace");
            }
            objects.push(obj);
        }
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
}

/// The keys a ConfigMap or Secret provides (data and stringData).
fn keys(obj: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .filter_map(|k| obj[*k].as_mapping())
        .flat_map(|m| m.keys().map(|k| s(k).to_string()))
        .collect()
}

/// A probe's or annotation's port: a number or the name of a container port.
fn port_of(v: &Value, container: &Value) -> u16 {
    if let Some(n) = v.as_u64() {
        return u16::try_from(n).unwrap();
    }
    let name = s(v);
    if let Ok(n) = name.parse() {
        return n;
    }
    let port = seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"));
    u16::try_from(port["containerPort"].as_u64().unwrap()).unwrap()
}

#[test]
fn kustomization_resources_exist_and_parse() {
    let objects = kubernetes_objects();
    let kinds: BTreeSet<&str> = objects.iter().map(|o| s(&o["kind"])).collect();
    for kind in ["DaemonSet", "ConfigMap", "Secret"] {
        assert!(kinds.contains(kind), "no {kind} in {K8S}");
    }
}

#[test]
fn daemonset_matches_its_configmap_config() {
    let objects = kubernetes_objects();
    let ds = objects
        .iter()
        .find(|o| o["kind"].as_str() == Some("DaemonSet"))
        .unwrap();
    let template = &ds["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "hostNetwork");
    assert_eq!(pod["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let container = seq(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("provgate"))
        .expect("a container named provgate");

    // Volumes: every ConfigMap and Secret exists; mounts by volume name.
    let volumes: BTreeMap<String, &Value> = seq(&pod["volumes"])
        .iter()
        .map(|v| (s(&v["name"]).to_string(), v))
        .collect();
    for (name, v) in &volumes {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            assert!(
                find(&objects, "ConfigMap", cm).is_some(),
                "volume {name}: no ConfigMap {cm}"
            );
        }
        if let Some(secret) = v["secret"]["secretName"].as_str() {
            assert!(
                find(&objects, "Secret", secret).is_some(),
                "volume {name}: no Secret {secret}"
            );
        }
    }
    let mounts: Vec<(String, &Value)> = seq(&container["volumeMounts"])
        .iter()
        .map(|m| {
            assert!(m["subPath"].is_null(), "subPath mounts never see updates");
            (s(&m["mountPath"]).to_string(), volumes[s(&m["name"])])
        })
        .collect();

    // The config file: the ConfigMap key that the mount puts at the --config path.
    let args = strings(&container["args"]);
    let config_path = config_arg(&args).expect("the container args name --config");
    assert_eq!(config_path, CONFIG_PATH);
    let (config_map, key) = mounts
        .iter()
        .filter_map(|(path, v)| {
            let cm = v["configMap"]["name"].as_str()?;
            let rel = Path::new(&config_path).strip_prefix(path).ok()?;
            let rel = rel.to_str().unwrap();
            // With `items`, the file at `rel` comes from the item whose path it is.
            let key = match v["configMap"]["items"].as_sequence() {
                Some(items) => {
                    s(&items.iter().find(|i| i["path"].as_str() == Some(rel))?["key"]).to_string()
                }
                None => rel.to_string(),
            };
            Some((find(&objects, "ConfigMap", cm).unwrap(), key))
        })
        .next()
        .expect("no ConfigMap volume is mounted at the --config path");
    let text = config_map["data"][key.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"));
    let cfg = validate_config(&config_path, text);

    // Admin port: probes, annotations, container ports.
    let admin = cfg.admin.expect("the config has admin.listen");
    assert_eq!(admin.port(), ADMIN_PORT);
    assert!(
        admin.ip().is_unspecified(),
        "with hostNetwork the kubelet probes the node address: admin.listen must be 0.0.0.0"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert_eq!(
            port_of(&get["port"], container),
            admin.port(),
            "{probe} port"
        );
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin.port().to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    let declared: BTreeSet<u16> = seq(&container["ports"])
        .iter()
        .map(|p| u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(declared, bound_ports(&cfg), "container ports vs the config");

    // Drain: the kubelet must not kill provgate before its own grace ends.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        Duration::from_secs(grace) > cfg.limits.shutdown_grace,
        "terminationGracePeriodSeconds {grace} <= shutdown_grace {:?}",
        cfg.limits.shutdown_grace
    );

    // Certificates: every chain and key is a key of a mounted Secret.
    for spec in cfg.certificates.values() {
        for file in [&spec.chain, &spec.key] {
            let (mount, volume) = mounts
                .iter()
                .filter(|(_, v)| v["secret"].is_mapping())
                .find(|(path, _)| file.starts_with(path))
                .unwrap_or_else(|| {
                    panic!("{}: not under a Secret volume's mountPath", file.display())
                });
            let secret = find(&objects, "Secret", s(&volume["secret"]["secretName"])).unwrap();
            let rel = file.strip_prefix(mount).unwrap().to_str().unwrap();
            let provided: BTreeSet<String> = match volume["secret"]["items"].as_sequence() {
                Some(items) => items.iter().map(|i| s(&i["path"]).to_string()).collect(),
                None => keys(secret),
            };
            assert!(
                provided.contains(rel),
                "{}: Secret {} provides {provided:?}",
                file.display(),
                s(&secret["metadata"]["name"])
            );
        }
    }

    // Non-root with only NET_BIND_SERVICE.
    let sc = &container["securityContext"];
    let pod_sc = &pod["securityContext"];
    let non_root = sc["runAsNonRoot"]
        .as_bool()
        .or(pod_sc["runAsNonRoot"].as_bool());
    assert_eq!(non_root, Some(true), "runAsNonRoot");
    let uid = sc["runAsUser"]
        .as_u64()
        .or(pod_sc["runAsUser"].as_u64())
        .unwrap();
    assert_ne!(uid, 0);
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(strings(&sc["capabilities"]["add"]), ["NET_BIND_SERVICE"]);
    assert!(!container["resources"]["requests"].is_null());
    assert!(!container["resources"]["limits"].is_null());
}

// ---------------------------------------------------------------- docker compose

/// A compose port entry's container port: "443", "443:443", "127.0.0.1:9900:9900/tcp" or the
/// long syntax.
fn compose_container_port(p: &Value) -> u16 {
    if let Some(target) = p["target"].as_u64() {
        return u16::try_from(target).unwrap();
    }
    let text = match p.as_u64() {
        Some(n) => n.to_string(),
        None => s(p).to_string(),
    };
    let last = text.rsplit(':').next().unwrap();
    last.trim_end_matches("/tcp").parse().unwrap()
}

#[test]
fn compose_provgate_service_matches_its_config() {
    let compose = yaml("deploy/docker-compose.yaml");
    let services = &compose["services"];
    let provgate = &services["provgate"];
    let build = &provgate["build"];
    let context = root().join("deploy").join(s(&build["context"]));
    let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(
        context.join(dockerfile).is_file(),
        "the build context has no {dockerfile}"
    );

    let command = strings(&provgate["command"]);
    let config_path = config_arg(&command).expect("the command names --config");
    assert_eq!(config_path, CONFIG_PATH);

    // Bind mounts: (host path relative to deploy/, container path).
    let mounts: Vec<(String, String)> = seq(&provgate["volumes"])
        .iter()
        .map(|v| {
            let parts: Vec<&str> = s(v).split(':').collect();
            assert!(parts.len() >= 2, "not a bind mount: {v:?}");
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect();
    let host_config = mounts
        .iter()
        .find_map(|(host, target)| {
            let rel = Path::new(&config_path).strip_prefix(target).ok()?;
            let host = Path::new("deploy").join(host);
            // A file mount leaves nothing to join (joining "" would add a slash).
            Some(if rel.as_os_str().is_empty() {
                host
            } else {
                host.join(rel)
            })
        })
        .expect("nothing is mounted at the config path");
    let text = read(&host_config);
    let cfg = validate_config(&config_path, &text);

    for spec in cfg.certificates.values() {
        for file in [&spec.chain, &spec.key] {
            assert!(
                mounts.iter().any(|(_, target)| file.starts_with(target)),
                "{}: not under a mounted folder",
                file.display()
            );
        }
    }

    // Every bind-mounted host path is in the repository (certs/ holds only its .gitignore).
    for svc in services.as_mapping().unwrap().values() {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let host = s(v).split(':').next().unwrap();
            if host.starts_with('.') {
                let path = root().join("deploy").join(host);
                assert!(
                    path.exists(),
                    "{}: bind mount source missing",
                    path.display()
                );
            }
        }
    }

    let published: BTreeSet<u16> = seq(&provgate["ports"])
        .iter()
        .map(compose_container_port)
        .collect();
    assert_eq!(
        published,
        bound_ports(&cfg),
        "published ports vs the config"
    );
    assert_eq!(cfg.admin.map(|a| a.port()), Some(ADMIN_PORT));

    // The backend is the sample service, at its fixed address.
    let addresses: BTreeSet<String> = services
        .as_mapping()
        .unwrap()
        .values()
        .filter_map(|svc| svc["networks"].as_mapping())
        .flat_map(|nets| nets.values())
        .filter_map(|n| n["ipv4_address"].as_str().map(str::to_string))
        .collect();
    for backend in cfg.backends.values() {
        assert!(
            addresses.contains(&backend.address.ip().to_string()),
            "backend {} at {}: no compose service has that address ({addresses:?})",
            backend.name,
            backend.address
        );
    }

    let stop = humantime::parse_duration(s(&provgate["stop_grace_period"])).unwrap();
    assert!(
        stop > cfg.limits.shutdown_grace,
        "stop_grace_period {stop:?} <= shutdown_grace"
    );
    assert_eq!(strings(&provgate["cap_add"]), ["NET_BIND_SERVICE"]);
}

// ---------------------------------------------------------------- Prometheus and Grafana

/// Metric names in `text`: `provgate_` words not preceded by a word character.
fn metric_names(text: &str) -> Vec<(String, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("provgate_").map(|i| i + from) {
        let end = text[i..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(text.len(), |n| i + n);
        let word_before = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !word_before {
            out.push((text[i..end].to_string(), end));
        }
        from = end;
    }
    out
}

/// The exported metric a name refers to (a histogram's series carry suffixes).
fn base_metric(name: &str) -> Option<&'static (&'static str, &'static [&'static str])> {
    METRICS.iter().find(|(m, _)| {
        *m == name
            || (HISTOGRAMS.contains(m)
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(*m)))
    })
}

/// Label names inside the `{...}` starting at `open`.
fn selector_labels(text: &str, open: usize) -> Vec<String> {
    let close = text[open..].find('}').unwrap() + open;
    let inner = &text[open + 1..close];
    let mut labels = Vec::new();
    let mut rest = inner;
    while !rest.trim().is_empty() {
        let name_end = rest.find(['=', '!']).unwrap();
        labels.push(rest[..name_end].trim().to_string());
        // Skip the quoted value (values may hold commas).
        let q1 = rest.find('"').unwrap();
        let q2 = rest[q1 + 1..].find('"').unwrap() + q1 + 1;
        rest = rest[q2 + 1..].trim_start().trim_start_matches(',');
    }
    labels
}

/// Check one PromQL expression (or text naming metrics): every metric exists, every selector
/// and grouping label belongs to a metric used in it.
fn check_promql(what: &str, text: &str) -> usize {
    let names = metric_names(text);
    let mut allowed: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    for (name, _) in &names {
        let (_, labels) =
            base_metric(name).unwrap_or_else(|| panic!("{what}: unknown metric {name} in {text}"));
        allowed.extend(labels.iter().copied());
    }
    for (name, end) in &names {
        if text[*end..].starts_with('{') {
            let (_, labels) = base_metric(name).unwrap();
            for label in selector_labels(text, *end) {
                assert!(
                    labels.contains(&label.as_str()) || TARGET_LABELS.contains(&label.as_str()),
                    "{what}: {name} has no label {label}"
                );
            }
        }
    }
    for clause in [
        "by (",
        "by(",
        "on (",
        "on(",
        "without (",
        "group_left (",
        "ignoring (",
    ] {
        for (i, _) in text.match_indices(clause) {
            let open = i + clause.len();
            let close = text[open..].find(')').unwrap() + open;
            for label in text[open..close].split(',').map(str::trim) {
                if !label.is_empty() {
                    assert!(
                        allowed.contains(label),
                        "{what}: no metric in the expression has label {label}: {text}"
                    );
                }
            }
        }
    }
    names.len()
}

#[test]
fn metric_list_matches_src_metrics() {
    let src = include_str!("../src/metrics.rs");
    let literals: BTreeSet<String> = src
        .match_indices("\"provgate_")
        .map(|(i, _)| {
            let rest = &src[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap();
            rest[..end].to_string()
        })
        .collect();
    let listed: BTreeSet<String> = METRICS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        listed, literals,
        "the metric list here differs from src/metrics.rs: update it, the alerts and the dashboard"
    );
    for (name, labels) in METRICS {
        let at = src.find(&format!("\"{name}\"")).unwrap();
        let (before, after) = (&src[..at], &src[at..]);
        // `histogram(r, "name", ...)` for histograms, `counter(`/`gauge(`/`IntGauge::new(`
        // otherwise.
        let call = before.rfind('(').unwrap();
        assert_eq!(
            before[..call].trim_end().ends_with("histogram"),
            HISTOGRAMS.contains(name),
            "{name}: histogram or not"
        );
        // The label list follows the name and the help text: `&["listener", ...]`.
        if !labels.is_empty() {
            let open = after.find("&[").unwrap();
            let close = after[open..].find(']').unwrap() + open;
            let declared: Vec<&str> = after[open + 2..close]
                .split(',')
                .map(|l| l.trim().trim_matches('"'))
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(&declared, labels, "labels of {name}");
        }
    }
}

#[test]
fn alert_rules_are_complete_and_use_real_metrics() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let groups = seq(&alerts["groups"]);
    assert!(!groups.is_empty());
    let mut names = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in groups {
        let gname = s(&group["name"]);
        let rules = seq(&group["rules"]);
        assert!(!rules.is_empty(), "group {gname} has no rules");
        for rule in rules {
            let alert = s(&rule["alert"]);
            assert!(names.insert(alert.to_string()), "duplicate alert {alert}");
            let expr = s(&rule["expr"]);
            assert!(
                check_promql(alert, expr) > 0,
                "{alert}: the expression uses no provgate metric"
            );
            used.extend(metric_names(expr).into_iter().map(|(n, _)| n));
            humantime::parse_duration(s(&rule["for"]))
                .unwrap_or_else(|e| panic!("{alert}: for: {e}"));
            let severity = s(&rule["labels"]["severity"]);
            assert!(
                ["info", "warning", "critical"].contains(&severity),
                "{alert}: severity {severity}"
            );
            for key in ["summary", "description"] {
                let text = s(&rule["annotations"][key]);
                assert!(!text.trim().is_empty(), "{alert}: empty {key}");
                check_promql(&format!("{alert} {key}"), text);
            }
        }
    }
    // The ones the deployment docs promise.
    for metric in [
        "provgate_certificate_not_after_seconds",
        "provgate_handshake_failures_total",
        "provgate_connections_accepted_total",
        "provgate_requests_total",
        "provgate_upstream_errors_total",
        "provgate_reload_total",
    ] {
        assert!(used.contains(metric), "no alert uses {metric}");
    }
    let text = read("deploy/prometheus/alerts.yaml");
    assert!(text.contains(r#"provgate_reload_total{outcome="failure"}"#));
    assert!(text.contains(r#"provgate_requests_total{status_class="5xx"}"#));
}

fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_uses_real_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/prometheus/grafana-dashboard.json")).unwrap();
    assert!(dash["title"].is_string());
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                check_promql(title, expr) > 0,
                "panel {title}: no provgate metric in {expr}"
            );
            used.extend(metric_names(expr).into_iter().map(|(n, _)| n));
        }
    }
    // Descriptions, variables and everything else that names a metric.
    let mut texts = Vec::new();
    json_strings(&dash, &mut texts);
    for text in texts {
        for (name, _) in metric_names(text) {
            assert!(
                base_metric(&name).is_some(),
                "unknown metric {name} in {text}"
            );
        }
    }
    for metric in [
        "provgate_connections_open",
        "provgate_handshakes_total",
        "provgate_handshake_failures_total",
        "provgate_handshake_duration_seconds_bucket",
        "provgate_requests_total",
        "provgate_upstream_errors_total",
        "provgate_devices_seen_total",
        "provgate_certificate_not_after_seconds",
        "provgate_reload_total",
    ] {
        assert!(used.contains(metric), "no dashboard panel shows {metric}");
    }
}
