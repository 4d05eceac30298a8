//! The harness's command line (clap): what `./bench/run.sh` passes after `cargo bench --bench
//! storm --`, with `--quick` changing the defaults of the options not given.

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use openssl::bn::BigNum;
use openssl::dh::Dh;
use openssl::pkey::Params;

use crate::proxies::Kind;

/// provgate vs HAProxy vs nginx: the handshake-storm benchmark (see docs/benchmarks.md).
#[derive(Parser, Debug)]
#[command(
    name = "storm",
    override_usage = "./bench/run.sh [OPTIONS]   (or: cargo bench --bench storm -- [OPTIONS])",
    args_override_self = true
)]
struct Args {
    /// Shorter run: 3 s rows, 0.5 s warm-ups, 2,000 idle connections, 5,000- and 1,000-client
    /// storms
    #[arg(long)]
    quick: bool,
    /// Seconds per throughput row [default: 10, with --quick 3]
    #[arg(long, value_name = "SECS", value_parser = positive)]
    duration: Option<usize>,
    /// Concurrent clients in P1-P3 (and while opening P5's connections)
    #[arg(long, value_name = "N", value_parser = positive, default_value_t = 64)]
    concurrency: usize,
    /// Open connections in P4
    #[arg(long, value_name = "N", value_parser = positive, default_value_t = 32)]
    keepalive_conns: usize,
    /// Idle connections in P5 [default: 10000, with --quick 2000]
    #[arg(long, value_name = "N", value_parser = positive)]
    idle: Option<usize>,
    /// Clients at once in P6 [default: 20000, with --quick 5000]
    #[arg(long, value_name = "N", value_parser = positive)]
    storm: Option<usize>,
    /// Clients at once in P7, against the 50 ms backend capped at 64 connections [default:
    /// 3000, with --quick 1000]
    #[arg(long, value_name = "N", value_parser = positive)]
    slow_storm: Option<usize>,
    /// Concurrent clients downloading the 16 MiB firmware image in P8 and P9
    #[arg(long, value_name = "N", value_parser = positive, default_value_t = 4)]
    download_clients: usize,
    /// The columns to run, comma-separated
    #[arg(
        long,
        value_name = "provgate,haproxy,nginx",
        value_parser = parse_only,
        default_value = "provgate,haproxy,nginx"
    )]
    only: Only,
    /// The 1024-bit DH group of every proxy and the ceiling: RFC 2409 group 2, or RFC 5114's
    /// group with a 160-bit subgroup
    #[arg(long, value_enum, default_value_t = DhGroup::Rfc2409)]
    dh_group: DhGroup,
    /// Added by `cargo bench`; ignored
    #[arg(long, hide = true)]
    bench: bool,
}

/// The options of a run, defaults resolved.
pub struct Opts {
    pub quick: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: usize,
    pub keepalive_conns: usize,
    pub idle: usize,
    pub storm: usize,
    pub slow_storm: usize,
    pub download_clients: usize,
    pub only: Vec<Kind>,
    pub dh_group: DhGroup,
}

impl Opts {
    /// Parse the process's arguments; `--help` and errors exit (0 and 2), as clap does.
    pub fn from_args() -> Opts {
        let a = Args::parse();
        let quick = a.quick;
        Opts {
            quick,
            duration: Duration::from_secs(a.duration.unwrap_or(if quick { 3 } else { 10 }) as u64),
            warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
            concurrency: a.concurrency,
            keepalive_conns: a.keepalive_conns,
            idle: a.idle.unwrap_or(if quick { 2_000 } else { 10_000 }),
            storm: a.storm.unwrap_or(if quick { 5_000 } else { 20_000 }),
            slow_storm: a.slow_storm.unwrap_or(if quick { 1_000 } else { 3_000 }),
            download_clients: a.download_clients,
            only: a.only.0,
            dh_group: a.dh_group,
        }
    }
}

/// `--dh-group`: which 1024-bit group every proxy (and the ceiling) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DhGroup {
    /// RFC 2409 group 2 (Oakley group 2)
    Rfc2409,
    /// RFC 5114 section 2.1 (160-bit subgroup)
    Rfc5114,
}

impl DhGroup {
    /// provgate's name for the group (`tls_profiles.*.dh_group`).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Rfc2409 => "rfc2409",
            DhGroup::Rfc5114 => "rfc5114",
        }
    }

    /// The group's parameters.
    pub fn params(self) -> Result<Dh<Params>> {
        if self == DhGroup::Rfc5114 {
            return Ok(Dh::get_1024_160()?);
        }
        Ok(Dh::from_pqg(
            BigNum::get_rfc2409_prime_1024()?,
            None,
            BigNum::from_u32(2)?,
        )?)
    }
}

/// `--only`'s list.
#[derive(Clone, Debug)]
struct Only(Vec<Kind>);

fn parse_only(v: &str) -> Result<Only, String> {
    v.split(',')
        .map(|s| match s.trim() {
            "provgate" => Ok(Kind::Provgate),
            "haproxy" => Ok(Kind::Haproxy),
            "nginx" => Ok(Kind::Nginx),
            other => Err(format!("unknown proxy '{other}'")),
        })
        .collect::<Result<_, _>>()
        .map(Only)
}

/// A number above zero.
fn positive(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("not a positive number: {v}"))
}
