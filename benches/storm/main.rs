//! Handshake-storm benchmark: provgate vs HAProxy vs nginx (distribution packages), side by side.
//!
//! Run it through `./bench/run.sh [--quick]` (installs the proxies, raises `ulimit -n`, builds
//! `target/release/provgate`, then `cargo bench --bench storm`). What each row measures and how
//! is described in `docs/benchmarks.md`.
//!
//! Layout: every proxy is a child process pinned to core 0 (`taskset -c 0`); this process (load
//! generator + plain-HTTP backends, one tokio thread) pins itself to core 1. Everything is on
//! loopback: each proxy gets its own four ephemeral ports (a "legacy" one and a "modern" one,
//! like provgate's two TLS listeners, and a plain-HTTP one, all to the same backend; and a
//! "slow" TLS one to a second backend that answers after 50 ms, capped at 64 connections). The
//! same RSA-2048 certificate (made with `provgate::pki`) and the same 1024-bit DH group serve
//! all three.
//!
//! Files: `opts` (command line), `proxies` + `configs` (the children and their configuration,
//! from `bench/templates/`), `sys` (`/proc`), `load` (clients and backend), `rows` (what is
//! measured), `report` (the table). This file runs them in order.

mod configs;
mod load;
mod opts;
mod proxies;
mod report;
mod rows;
mod sys;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::opts::Opts;
use crate::proxies::{haproxy_maxconn, material, setup_proxy, Backends, Kind, Proxy};
use crate::report::{render, Baselines, Col, Column, Env};
use crate::rows::{ceiling, Clients};
use crate::sys::{fd_limit, machine_info, pin_self};

/// P7's backend: this long before every answer.
const SLOW_BACKEND_DELAY: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let opts = Opts::from_args();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Pin before the runtime exists, so every thread of this process stays on core 1.
    if nproc >= 2 {
        if let Err(e) = pin_self(1) {
            eprintln!("storm: {e:#}");
            return ExitCode::FAILURE;
        }
    } else {
        eprintln!("storm: only one CPU: proxies and load generator share it; numbers are not comparable with the goals");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storm: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(opts, nproc) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: impl AsRef<str>) {
    eprintln!(
        "[storm {:>7.1}s] {}",
        started().elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Cap P5, P6 and P7 to what the open-file limit allows; returns the notes saying so.
fn cap_to_fd_limit(opts: &mut Opts) -> Result<Vec<String>> {
    let mut early_notes = Vec::new();
    if let Some(l) = fd_limit() {
        // Every client holds one descriptor here and one in the proxy; stay under the limit.
        let cap = l.saturating_sub(2000) as usize;
        if cap < 100 {
            bail!("open-file limit {l} is too low: run through ./bench/run.sh (it raises ulimit -n) or `ulimit -n 200000`");
        }
        // P5 keeps every connection open at once: with HAProxy in the run, stay under the
        // maxconn it can be given (the same count for all three columns).
        let idle_cap = if opts.only.contains(&Kind::Haproxy) {
            cap.min(haproxy_maxconn().saturating_sub(50) as usize)
        } else {
            cap
        };
        for (what, n, cap) in [
            ("P6 storm clients", &mut opts.storm, cap),
            ("P7 storm clients", &mut opts.slow_storm, cap),
            ("P5 idle connections", &mut opts.idle, idle_cap),
        ] {
            if *n > cap {
                let msg = format!(
                    "{what} capped at {cap} (requested {n}): the open-file limit is {l} and cannot be raised here (ulimit -Hn); HAProxy maxconn {}",
                    haproxy_maxconn(),
                    n = *n
                );
                progress(&msg);
                early_notes.push(msg);
                *n = cap;
            }
        }
    }
    Ok(early_notes)
}

async fn run(mut opts: Opts, nproc: usize) -> Result<()> {
    started();
    let early_notes = cap_to_fd_limit(&mut opts)?;
    let dir = tempfile::Builder::new()
        .prefix("provgate-storm-")
        .tempdir()?;
    progress(format!("work dir {}", dir.path().display()));
    let m = material(dir.path(), opts.dh_group)
        .context("generating the certificate and DH parameters")?;
    let machine = machine_info(nproc);
    for l in &machine {
        progress(l);
    }

    progress("ceiling: RSA-2048 sign and DH-1024 on one core (in-process)");
    let ceil = ceiling(
        &m.key_obj,
        if opts.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        },
        opts.dh_group,
    )?;
    progress(format!(
        "ceiling: RSA-2048 sign {:.0}/s, DH-1024 keygen+derive {:.0}/s",
        ceil.rsa_sign_s, ceil.dh_s
    ));

    let backend = load::spawn_backend(Duration::ZERO).await?;
    let slow_backend = load::spawn_backend(SLOW_BACKEND_DELAY).await?;
    let backends = Backends {
        main: backend.addr,
        slow: slow_backend.addr,
    };
    progress(format!(
        "backend on {}, slow backend ({} ms per request) on {}",
        backend.addr,
        SLOW_BACKEND_DELAY.as_millis(),
        slow_backend.addr
    ));

    let clients = Clients::new()?;
    clients.check_no_encrypt_then_mac().await?;
    progress("TLS 1.0 clients: no encrypt-then-MAC in their ClientHello (checked)");
    let probes = clients.probes();

    // Set up and start every proxy; a missing one is a skipped column.
    let mut proxies: Vec<Proxy> = Vec::new();
    let mut cols: Vec<Column> = Vec::new();
    for &k in &opts.only {
        match setup_proxy(k, dir.path(), &m, backends) {
            Ok(mut p) => {
                p.start(&probes)
                    .await
                    .with_context(|| format!("starting {}", k.title()))?;
                progress(format!(
                    "{} ready on {} (legacy), {} (modern), {} (slow), {} (plain), pid {:?}",
                    k.title(),
                    p.legacy,
                    p.modern,
                    p.slow,
                    p.plain,
                    p.pid()
                ));
                proxies.push(p);
                cols.push((k, true, Col::default()));
            }
            Err(e) if k != Kind::Provgate && e.to_string().contains("not installed") => {
                progress(format!("{}: {e}; column skipped", k.title()));
                cols.push((k, false, Col::default()));
            }
            Err(e) => return Err(e),
        }
    }

    rows::handshake_rows(&opts, &proxies, &clients, &mut cols).await;
    let (p4_rate, direct) =
        rows::keepalive_rows(&opts, backend.addr, &proxies, &clients.rsa, &mut cols).await?;
    let download_direct =
        rows::download_rows(&opts, backend.addr, &proxies, &clients.rsa, &mut cols).await;
    rows::plain_keepalive_row(&opts, &proxies, &mut cols).await;
    rows::memory_row(&opts, &mut proxies, &probes, &clients.rsa, &mut cols).await;
    rows::storm_row(&opts, &mut proxies, &probes, &clients.rsa, &mut cols).await;
    let slow = &slow_backend;
    rows::slow_storm_row(&opts, &mut proxies, &probes, &clients.rsa, slow, &mut cols).await;
    drop(proxies);

    let notes = report::notes(&opts, early_notes, &cols);
    let env = Env { machine, notes };
    let base = Baselines {
        p4_rate,
        direct,
        download_direct,
    };
    let out = render(&opts, &env, &cols, &ceil, &base);
    println!("\n{out}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-results.md");
    std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    progress(format!("written to {}", path.display()));
    Ok(())
}
