//! Command line: `run` (default), `check`, `demo`. Config problems exit 64 (EX_USAGE) before
//! any port is bound.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::snapshot::Snapshot;
use crate::tls::Engines;
use crate::{demo, server};

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
    /// Validate the config, load every certificate and key, build every TLS context, and print
    /// what each listener and route will serve. Exit 0 when valid, 64 when not.
    Check,
    /// Run on a throwaway setup (generated CAs, three listeners, a sample backend) and print
    /// commands to try.
    Demo,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let command = cli.command.unwrap_or(Command::Run);
    let config = match (&command, cli.config) {
        (Command::Demo, _) => None,
        (_, Some(c)) => Some(c),
        (_, None) => {
            eprintln!("provgate: --config FILE is required (or try `provgate demo`)");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let loaded = match config.as_deref().map(Snapshot::load).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("provgate: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (command, loaded) {
        (Command::Check, Some(s)) => {
            print!("{}", check_report(&s));
            Ok(())
        }
        (Command::Run, Some(s)) => runtime.block_on(server::run_until_signal(s)),
        (Command::Demo, _) => runtime.block_on(demo::run()),
        (_, None) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
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

/// The human report of `provgate check`.
pub fn check_report(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", s.config.file.display());
    for l in &s.config.listeners {
        let binds: Vec<String> = l.bind.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "\nlistener {}  bind {}", l.name, binds.join(", "));
        let targets = std::iter::once(("(default)".to_string(), &l.defaults))
            .chain(l.routes.iter().map(|r| (r.name.clone(), &r.target)));
        for (name, t) in targets {
            let _ = writeln!(out, "  route {name}  backend {}", t.backend);
            if let Some(c) = s.certificates.get(&t.certificate) {
                let i = &c.info;
                let _ = writeln!(
                    out,
                    "    certificate {}: subject {}; issuer {}; expires {}; key {}; signed {}; chain of {}",
                    t.certificate, i.subject, i.issuer, i.not_after, i.key, i.signature, i.chain_len
                );
            }
            if let Some(p) = s.config.profiles.get(&t.profile) {
                let tls = s
                    .listeners
                    .get(&l.name)
                    .and_then(|rt| {
                        std::iter::once(&rt.default)
                            .chain(rt.routes.iter().map(|(_, r)| r))
                            .find(|r| {
                                *r.name == *name || (name == "(default)" && *r.name == *l.name)
                            })
                    })
                    .map(|r| r.tls.clone());
                let versions: Vec<&str> = p.versions.iter().map(|v| v.name()).collect();
                let engines = match tls.as_deref().map(|t| &t.engines) {
                    Some(Engines::Legacy(_)) => "legacy (OpenSSL)".to_string(),
                    Some(Engines::Modern(_)) => "modern (rustls)".to_string(),
                    Some(Engines::Auto {
                        modern: Some(_), ..
                    }) => {
                        "auto (rustls for TLS 1.2+ hellos it can serve, else OpenSSL)".to_string()
                    }
                    Some(Engines::Auto { modern: None, .. }) => {
                        format!("auto, but OpenSSL only: {}", c_reason(s, &t.certificate))
                    }
                    None => "?".to_string(),
                };
                let _ = writeln!(
                    out,
                    "    tls profile {}: engine {engines}; versions {}",
                    p.name,
                    versions.join(", ")
                );
                if p.engine != crate::config::EngineKind::Modern {
                    let dh = if p.dh_bits == 0 {
                        "no DHE".to_string()
                    } else {
                        format!("DHE fixed {}-bit group", p.dh_bits)
                    };
                    let _ = writeln!(
                        out,
                        "    OpenSSL ciphers (server order): {}; {dh}",
                        p.ciphers
                    );
                }
                if p.engine != crate::config::EngineKind::Legacy {
                    let _ = writeln!(
                        out,
                        "    rustls: TLS 1.3 and TLS 1.2 ECDHE AEAD suites (ring defaults)"
                    );
                }
            }
        }
    }
    out
}

fn c_reason(s: &Snapshot, cert: &str) -> String {
    s.certificates
        .get(cert)
        .and_then(|c| c.rustls.as_ref().err().cloned())
        .unwrap_or_default()
}
