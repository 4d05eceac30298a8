//! Command line: `run` (default), `check`, `demo`, `init`, `csr`, `probe`. Config problems
//! exit 64 (EX_USAGE) before any port is bound.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::snapshot::Snapshot;
use crate::{csr, demo, server};

/// EX_USAGE from sysexits.h: the configuration is wrong.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "provgate",
    version,
    about = "TLS-terminating reverse proxy for legacy VoIP provisioning (Cisco/Linksys/Sipura SPA)"
)]
pub struct Cli {
    /// Config file (YAML); `provgate --config FILE` alone means `run`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured listeners until SIGINT/SIGTERM.
    Run,
    /// The pre-flight: validate the config, load every certificate and key, build every TLS
    /// context, report what each listener and route serves (vendor CA family included) and
    /// warn about what old devices reject. Exit 0 valid, 64 invalid; with --strict, 1 when
    /// valid with warnings.
    Check {
        /// JSON on stdout instead of the table (also for an invalid config).
        #[arg(long)]
        json: bool,
        /// Exit 1 when the config is valid but has warnings.
        #[arg(long)]
        strict: bool,
        /// Skip the DNS lookups of the certificates' CNs (cn_does_not_resolve,
        /// cn_resolves_elsewhere), e.g. on a build machine without the production DNS.
        #[arg(long)]
        offline: bool,
    },
    /// Run on a throwaway setup (generated CAs, three listeners, a sample backend) and print
    /// commands to try.
    Demo,
    /// Write throwaway per-family CAs and certificates and a config.yaml that `check` and
    /// `run` accept into an empty folder: a first configuration to edit.
    Init(demo::InitArgs),
    /// Write a private key (0600) and a certificate signing request for one vendor CA
    /// family, and print where to send it.
    Csr(csr::CsrArgs),
    /// GET an http:// URL (e.g. http://127.0.0.1:9900/healthz) and exit 0 on 200, 1
    /// otherwise: a health check for images without curl.
    Probe {
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let command = cli.command.unwrap_or(Command::Run);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Demo => runtime.block_on(demo::run()),
        Command::Init(args) => return demo::init(&args),
        Command::Csr(args) => return csr::run(&args),
        Command::Probe { url, timeout } => {
            return match runtime.block_on(probe(&url, timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("provgate probe {url}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Check {
            json,
            strict,
            offline,
        } => {
            return check(cli.config.as_deref(), json, strict, offline);
        }
        Command::Run => {
            let Some(snapshot) = load(cli.config.as_deref()) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            runtime.block_on(server::run_until_signal(snapshot))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: one worker per CPU the process may use (`available_parallelism`: the
/// affinity mask and the cgroup CPU quota). With a single CPU, tokio's current-thread
/// scheduler: the same work without the work-stealing machinery, which measured 2-5% cheaper
/// per request on one core (docs/benchmarks.md). `PROVGATE_RUNTIME=multi|single` overrides
/// the choice.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let single = match std::env::var("PROVGATE_RUNTIME").as_deref() {
        Ok("single") => true,
        Ok("multi") => false,
        _ => cpus == 1,
    };
    if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

/// Load and build the config, or say why not on stderr.
fn load(config: Option<&Path>) -> Option<Snapshot> {
    let Some(file) = config else {
        eprintln!("provgate: --config FILE is required (or try `provgate demo`)");
        return None;
    };
    match Snapshot::load(file) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("provgate: invalid configuration: {e}");
            None
        }
    }
}

fn check(config: Option<&Path>, json: bool, strict: bool, offline: bool) -> ExitCode {
    let loaded = match config {
        None => Err("--config FILE is required (or try `provgate demo`)".to_string()),
        Some(file) => Snapshot::load(file).map_err(|e| format!("invalid configuration: {e}")),
    };
    let snapshot = match loaded {
        Ok(s) => s,
        Err(error) if json => {
            let file = config.map(|f| f.display().to_string());
            println!(
                "{}",
                serde_json::json!({ "file": file, "valid": false, "error": error })
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(error) => {
            eprintln!("provgate: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let report = if offline {
        crate::check::check(&snapshot, crate::check::unix_now())
    } else {
        let timeout = crate::check::LOOKUP_TIMEOUT;
        crate::check::check_with_lookups(&snapshot, crate::check::unix_now(), timeout)
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("provgate: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.human());
    }
    ExitCode::from(report.exit_code(strict))
}

/// One HTTP/1.1 GET over plain TCP; Ok only for status 200.
async fn probe(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: http::Uri = url.parse()?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "only http:// URLs are supported"
    );
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("the URL names no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        // The status line is all we need; read a bounded amount.
        let mut head = vec![0u8; 256];
        let mut got = 0;
        while got < head.len() && !head[..got].contains(&b'\n') {
            let n = tcp.read(&mut head[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        anyhow::Ok(String::from_utf8_lossy(&head[..got]).into_owned())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))??;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "answered {status:?}"
    );
    Ok(())
}

/// Dependencies whose DEBUG/TRACE output carries request and response heads and bodies
/// (provisioning profiles hold SIP passwords; `Client-Cert` is a header): held at `info` unless
/// the filter names one of them itself.
const QUIET_DEPENDENCIES: [&str; 8] = [
    "pingora",
    "pingora_core",
    "pingora_proxy",
    "pingora_pool",
    "pingora_http",
    "h2",
    "hyper",
    "rustls",
];

/// The filter actually installed: the operator's, plus `<dependency>=info` for every quiet
/// dependency the operator's filter does not mention.
pub fn log_filter(requested: &str) -> String {
    let targets: Vec<&str> = requested
        .split(',')
        .filter_map(|d| d.trim().split(['=', '[']).next())
        .collect();
    let mut filter = requested.to_string();
    for dep in QUIET_DEPENDENCIES {
        // `pingora=trace` reaches every pingora_* target (prefix match), so naming one of
        // the family counts for all of it.
        let family = |t: &&str| t.starts_with("pingora") && dep.starts_with("pingora");
        if !targets.iter().any(|t| *t == dep || family(t)) {
            filter.push_str(&format!(",{dep}=info"));
        }
    }
    filter
}

fn init_logging(format: LogFormat, level: &str) {
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = EnvFilter::try_new(log_filter(&requested))
        .or_else(|_| EnvFilter::try_new(log_filter("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: piped logs (docker, journald, tests) stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // pingora logs through the `log` crate; bridge it into tracing.
    let _ = tracing_log::LogTracer::init();
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn dependencies_that_log_bodies_stay_at_info_unless_named() {
        let f = log_filter("trace");
        assert!(f.starts_with("trace,"));
        for dep in [
            "pingora_proxy=info",
            "pingora_core=info",
            "hyper=info",
            "rustls=info",
        ] {
            assert!(f.contains(dep), "{f}");
        }
        let f = log_filter("info,pingora_proxy=trace");
        assert!(
            !f.contains("pingora_core=info") && f.contains("hyper=info"),
            "{f}"
        );
        let f = log_filter("debug,hyper=debug");
        assert!(
            !f.contains("hyper=info") && f.contains("pingora=info"),
            "{f}"
        );
    }
}
