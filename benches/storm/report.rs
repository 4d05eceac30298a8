//! The results: per-proxy cells, the Markdown table (with the provgate/other ratios, raw and
//! per CPU-second, and the goals), and the notes printed under it.

use std::fmt::Write as _;

use crate::configs::{QUEUE_TIMEOUT_S, SLOW_MAX_CONNS};
use crate::load::{Download, KeepAlive, Latency, Rate, Storm, FIRMWARE_LEN};
use crate::opts::Opts;
use crate::proxies::{Busy, Kind};
use crate::rows::{Ceiling, Memory, SlowStorm};

pub type Cell<T> = Option<std::result::Result<T, String>>;

/// One column of the table: the proxy, whether it is installed, its cells.
pub type Column = (Kind, bool, Col);

/// One proxy's cells; `None` = not measured, `Err` = the error shown in the cell.
#[derive(Default)]
pub struct Col {
    pub p1: Cell<Rate>,
    pub p2: Cell<Rate>,
    pub p3: Cell<Rate>,
    pub p4: Cell<KeepAlive>,
    pub p4lat: Cell<Latency>,
    pub p5: Cell<Memory>,
    pub p6: Cell<Storm>,
    pub p7: Cell<SlowStorm>,
    pub p8: Cell<Download>,
    pub p9: Cell<Download>,
    pub p10: Cell<KeepAlive>,
}

/// What the rows are compared with besides each other: P4's pace and the direct-to-backend
/// measurements (P4, and the firmware download for P8/P9).
pub struct Baselines {
    pub p4_rate: Option<f64>,
    pub direct: Option<(f64, Latency)>,
    pub download_direct: Option<f64>,
}

fn ok<T: Clone>(c: &Cell<T>) -> Option<T> {
    c.as_ref().and_then(|r| r.as_ref().ok()).cloned()
}

fn show<T>(c: &Cell<T>, installed: bool, f: impl Fn(&T) -> String) -> String {
    match c {
        _ if !installed => "not installed".into(),
        None => "—".into(),
        Some(Ok(v)) => f(v),
        Some(Err(e)) => format!(
            "error: {}",
            e.replace('|', "/").chars().take(90).collect::<String>()
        ),
    }
}

fn fails(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} failed)")
    }
}

/// ` · 97% CPU` (the proxy's share of its core over the measured window).
fn busy(b: &Busy) -> String {
    b.proxy
        .map_or(String::new(), |p| format!(" · {:.0}% CPU", p * 100.0))
}

/// Throughput per second of proxy CPU time (robust when something else shares the core).
fn per_core(rate: f64, b: &Busy) -> Option<f64> {
    b.proxy.filter(|p| *p > 0.05).map(|p| rate / p)
}

/// `1.05× (0.98× per CPU-s)`
fn ratio2(a: Option<(f64, Busy)>, b: Option<(f64, Busy)>) -> String {
    let raw = ratio(a.map(|x| x.0), b.map(|x| x.0));
    let eff = ratio(
        a.and_then(|(r, b)| per_core(r, &b)),
        b.and_then(|(r, b)| per_core(r, &b)),
    );
    if eff == "—" {
        raw
    } else {
        format!("{raw} ({eff} per CPU-s)")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "n/a",
    }
}

/// What is printed around the table.
pub struct Env {
    pub machine: Vec<String>,
    pub notes: Vec<String>,
}

pub fn render(opts: &Opts, env: &Env, cols: &[Column], ceil: &Ceiling, base: &Baselines) -> String {
    let (p4_rate, direct) = (base.p4_rate, &base.direct);
    let get = |k: Kind| cols.iter().find(|c| c.0 == k);
    let installed = |k: Kind| get(k).is_some_and(|c| c.1);
    let empty = Col::default();
    let col = |k: Kind| get(k).map_or(&empty, |c| &c.2);
    let (pg, ha, ng) = (col(Kind::Provgate), col(Kind::Haproxy), col(Kind::Nginx));
    let inst = [
        installed(Kind::Provgate),
        installed(Kind::Haproxy),
        installed(Kind::Nginx),
    ];
    let p2_ceiling = 1.0 / (1.0 / ceil.rsa_sign_s + 1.0 / ceil.dh_s);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| row | measure | provgate | HAProxy | nginx | provgate/HAProxy | provgate/nginx | ceiling (1 core) | goal | goal met? |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---|---|---|");
    let rate = |c: &Cell<Rate>, i: usize| {
        show(c, inst[i], |r| {
            format!("{:.0}/s{}{}", r.per_s, busy(&r.busy), fails(r.fail))
        })
    };
    let per = |c: &Cell<Rate>| ok(c).map(|r| r.per_s);
    let pb = |c: &Cell<Rate>| ok(c).map(|r| (r.per_s, r.busy));
    let kb = |c: &Cell<KeepAlive>| ok(c).map(|r| (r.per_s, r.busy));

    // P1
    let p1 = per(&pg.p1);
    let share1 = p1.map(|p| p / ceil.rsa_sign_s);
    let _ = writeln!(
        t,
        "| P1 | TLS 1.0 AES128-SHA (RSA kx) full handshake + 1 GET, per s ({} clients) | {} | {} | {} | {} | {} | RSA-2048 sign {:.0}/s; P1 = {} | ≥ 1.1× HAProxy and ≥ 70% of ceiling | {} |",
        opts.concurrency,
        rate(&pg.p1, 0), rate(&ha.p1, 1), rate(&ng.p1, 2),
        ratio2(pb(&pg.p1), pb(&ha.p1)), ratio2(pb(&pg.p1), pb(&ng.p1)),
        ceil.rsa_sign_s,
        share1.map_or("—".into(), |s| format!("{:.0}%", s * 100.0)),
        yes_no(p1.zip(per(&ha.p1)).zip(share1).map(|((a, b), s)| a >= 1.1 * b && s >= 0.7)),
    );
    // P2
    let p2 = per(&pg.p2);
    let _ = writeln!(
        t,
        "| P2 | TLS 1.0 DHE-RSA-AES128-SHA (DH 1024) full handshake + 1 GET, per s | {} | {} | {} | {} | {} | RSA sign + DH-1024 ({:.0}/s) = {:.0}/s; P2 = {} | ≥ 1.0× HAProxy | {} |",
        rate(&pg.p2, 0), rate(&ha.p2, 1), rate(&ng.p2, 2),
        ratio2(pb(&pg.p2), pb(&ha.p2)), ratio2(pb(&pg.p2), pb(&ng.p2)),
        ceil.dh_s, p2_ceiling,
        p2.map_or("—".into(), |p| format!("{:.0}%", p / p2_ceiling * 100.0)),
        yes_no(p2.zip(per(&ha.p2)).map(|(a, b)| a >= b)),
    );
    // P3
    let p3 = per(&pg.p3);
    let _ = writeln!(
        t,
        "| P3 | TLS 1.3 (AES128-GCM, X25519, RSA-PSS) full handshake + 1 GET, per s (provgate: modern listener) | {} | {} | {} | {} | {} | RSA-2048 sign {:.0}/s (OpenSSL; rustls signs with aws-lc-rs) | ≥ 1.2× HAProxy | {} |",
        rate(&pg.p3, 0), rate(&ha.p3, 1), rate(&ng.p3, 2),
        ratio2(pb(&pg.p3), pb(&ha.p3)), ratio2(pb(&pg.p3), pb(&ng.p3)),
        ceil.rsa_sign_s,
        yes_no(p3.zip(per(&ha.p3)).map(|(a, b)| a >= 1.2 * b)),
    );
    // P4
    let ka = |c: &Cell<KeepAlive>, i: usize| {
        show(c, inst[i], |r| {
            format!("{:.0}/s{}{}", r.per_s, busy(&r.busy), fails(r.fail))
        })
    };
    let kper = |c: &Cell<KeepAlive>| ok(c).map(|r| r.per_s);
    let p4 = kper(&pg.p4);
    let direct_p = direct.as_ref().map(|d| d.1.p99_us);
    let direct_5 = direct.as_ref().map(|d| d.1.p50_us);
    let added = |c: &Cell<Latency>| {
        ok(c)
            .zip(direct_p)
            .zip(direct_5)
            .map(|((l, d99), d50)| (l.p50_us - d50, l.p99_us - d99))
    };
    let lat = |c: &Cell<Latency>, i: usize| {
        show(c, inst[i], |l| match direct.as_ref() {
            Some((_, d)) => format!(
                "+{:.3} / +{:.3} ms{}",
                (l.p50_us - d.p50_us) / 1000.0,
                (l.p99_us - d.p99_us) / 1000.0,
                fails(l.fail)
            ),
            None => format!(
                "{:.3} / {:.3} ms (abs)",
                l.p50_us / 1000.0,
                l.p99_us / 1000.0
            ),
        })
    };
    let _ = writeln!(
        t,
        "| P4 | keep-alive GETs over {} open TLS 1.0 AES128-SHA connections, per s | {} | {} | {} | {} | {} | load generator + backend, plain HTTP direct: {} | ≥ 1.0× HAProxy | {} |",
        opts.keepalive_conns,
        ka(&pg.p4, 0), ka(&ha.p4, 1), ka(&ng.p4, 2),
        ratio2(kb(&pg.p4), kb(&ha.p4)), ratio2(kb(&pg.p4), kb(&ng.p4)),
        direct.as_ref().map_or("—".into(), |d| format!("{:.0}/s", d.0)),
        yes_no(p4.zip(kper(&ha.p4)).map(|(a, b)| a >= b)),
    );
    let a_pg = added(&pg.p4lat);
    let _ = writeln!(
        t,
        "| P4 lat | added latency p50 / p99 vs direct to the backend, paced at {} req/s | {} | {} | {} | {} | {} | direct: {} | added p99 ≤ 1 ms | {} |",
        p4_rate.map_or("—".into(), |r| format!("{r:.0}")),
        lat(&pg.p4lat, 0), lat(&ha.p4lat, 1), lat(&ng.p4lat, 2),
        ratio(a_pg.map(|a| a.1), added(&ha.p4lat).map(|a| a.1)),
        ratio(a_pg.map(|a| a.1), added(&ng.p4lat).map(|a| a.1)),
        direct.as_ref().map_or("—".into(), |d| format!("p50 {:.3} / p99 {:.3} ms", d.1.p50_us / 1000.0, d.1.p99_us / 1000.0)),
        yes_no(a_pg.map(|a| a.1 <= 1000.0)),
    );
    // P5
    let mem = |c: &Cell<Memory>, i: usize| {
        show(c, inst[i], |m| {
            let f = if m.fail > 0 {
                format!(", {} open, {} failed", m.open, m.fail)
            } else {
                String::new()
            };
            format!(
                "{:.1} KiB ({} → {} MiB{f})",
                m.kib_per_conn,
                m.before_kib / 1024,
                m.after_kib / 1024
            )
        })
    };
    let mper = |c: &Cell<Memory>| ok(c).map(|m| m.kib_per_conn);
    let p5 = mper(&pg.p5);
    let _ = writeln!(
        t,
        "| P5 | resident memory per idle TLS connection (after 1 GET), {} connections | {} | {} | {} | {} | {} | — | ≤ 1.0× HAProxy | {} |",
        opts.idle,
        mem(&pg.p5, 0), mem(&ha.p5, 1), mem(&ng.p5, 2),
        ratio(p5, mper(&ha.p5)), ratio(p5, mper(&ng.p5)),
        yes_no(p5.zip(mper(&ha.p5)).map(|(a, b)| a <= b)),
    );
    // P6
    let st = |c: &Cell<Storm>, i: usize, p1: Option<f64>| {
        show(c, inst[i], |s| {
            let e = p1.map_or(String::new(), |r| format!("; N/P1 {:.1} s", s.n as f64 / r));
            format!("{:.1} s, {} failed{e}", s.secs, s.fail)
        })
    };
    let ssecs = |c: &Cell<Storm>| ok(c).filter(|s| s.ok > 0).map(|s| s.secs);
    let p6 = ok(&pg.p6);
    let _ = writeln!(
        t,
        "| P6 | reconnect storm: {} clients at once, TLS 1.0 AES128-SHA + 1 GET; time until all served | {} | {} | {} | {} | {} | — | 0 failures, time ≤ 1.2 × N/P1 | {} |",
        opts.storm,
        st(&pg.p6, 0, p1), st(&ha.p6, 1, per(&ha.p1)), st(&ng.p6, 2, per(&ng.p1)),
        ratio(ssecs(&pg.p6), ssecs(&ha.p6)), ratio(ssecs(&pg.p6), ssecs(&ng.p6)),
        yes_no(p6.zip(p1).map(|(s, r)| s.fail == 0 && s.secs <= 1.2 * s.n as f64 / r)),
    );
    slow_storm_line(&mut t, opts, [pg, ha, ng], inst);
    download_lines(&mut t, opts, [pg, ha, ng], inst, base.download_direct);
    // P10
    let p10 = kper(&pg.p10);
    let _ = writeln!(
        t,
        "| P10 | keep-alive GETs over {} open plain-HTTP connections (plain port), per s | {} | {} | {} | {} | {} | load generator + backend, plain HTTP direct: {} | ≥ 1.0× HAProxy | {} |",
        opts.keepalive_conns,
        ka(&pg.p10, 0), ka(&ha.p10, 1), ka(&ng.p10, 2),
        ratio2(kb(&pg.p10), kb(&ha.p10)), ratio2(kb(&pg.p10), kb(&ng.p10)),
        direct.as_ref().map_or("—".into(), |d| format!("{:.0}/s", d.0)),
        yes_no(p10.zip(kper(&ha.p10)).map(|(a, b)| a >= b)),
    );

    let mut out = String::new();
    let _ = writeln!(out, "## provgate vs HAProxy vs nginx: handshake storm\n");
    for m in &env.machine {
        let _ = writeln!(out, "- {m}");
    }
    let _ = writeln!(out, "\n{t}");
    let _ = writeln!(out, "Ratios: throughput rows provgate ÷ other (higher is better), in brackets the same per second of the proxy's own CPU time (its core can be shared with other work on this machine); P4 lat (added p99), P5, P6 and P7 (time): provgate ÷ other (lower is better). `· N% CPU` = share of its core the proxy used during the measured window.\n");
    for n in &env.notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// P7's lower bound for one proxy: max(N / its P1 rate, N x 50 ms / 64).
fn slow_bound(n: usize, p1: Option<f64>) -> f64 {
    let backend = n as f64 * 0.050 / SLOW_MAX_CONNS as f64;
    p1.filter(|r| *r > 0.0)
        .map_or(backend, |r| backend.max(n as f64 / r))
}

/// P7: the storm against the 50 ms backend capped at 64 connections.
fn slow_storm_line(t: &mut String, opts: &Opts, c: [&Col; 3], inst: [bool; 3]) {
    let p1 = |c: &Col| ok(&c.p1).map(|r| r.per_s);
    let cell = |i: usize| {
        show(&c[i].p7, inst[i], |s| {
            format!(
                "{:.1} s, {} failed, backend max {} conns ({} requests); bound {:.1} s",
                s.storm.secs,
                s.storm.fail,
                s.backend_max,
                s.requests_max,
                slow_bound(s.storm.n, p1(c[i]))
            )
        })
    };
    let secs = |c: &Col| ok(&c.p7).filter(|s| s.storm.ok > 0).map(|s| s.storm.secs);
    let n = opts.slow_storm;
    let _ = writeln!(
        t,
        "| P7 | storm on a slow backend: {n} clients at once, TLS 1.0 AES128-SHA + 1 GET, backend answers after 50 ms, at most {SLOW_MAX_CONNS} connections to it ({QUEUE_TIMEOUT_S} s queue; nginx: no queue); time until all served | {} | {} | {} | {} | {} | bound = max(N/P1, N × 50 ms / {SLOW_MAX_CONNS} = {:.1} s) | 0 failures, backend ≤ {SLOW_MAX_CONNS} connections | {} |",
        cell(0), cell(1), cell(2),
        ratio(secs(c[0]), secs(c[1])), ratio(secs(c[0]), secs(c[2])),
        n as f64 * 0.050 / SLOW_MAX_CONNS as f64,
        yes_no(ok(&c[0].p7).map(|s| s.storm.fail == 0 && s.backend_max <= SLOW_MAX_CONNS)),
    );
}

/// P8 (`tls`) or P9: the firmware-download cell of a column.
fn download_cell(c: &Col, tls: bool) -> &Cell<Download> {
    if tls {
        &c.p8
    } else {
        &c.p9
    }
}

/// P8 and P9: firmware downloads through TLS 1.0 and through plain HTTP.
fn download_lines(t: &mut String, opts: &Opts, c: [&Col; 3], inst: [bool; 3], direct: Option<f64>) {
    let mib = FIRMWARE_LEN >> 20;
    for (row, how, tls) in [
        ("P8", "TLS 1.0 AES128-SHA, legacy port", true),
        ("P9", "plain HTTP, plain port", false),
    ] {
        let cell = |i: usize| {
            show(download_cell(c[i], tls), inst[i], |d| {
                format!("{:.0} MB/s{}{}", d.mb_s, busy(&d.busy), fails(d.fail))
            })
        };
        let pb = |c: &Col| ok(download_cell(c, tls)).map(|d| (d.mb_s, d.busy));
        let _ = writeln!(
            t,
            "| {row} | firmware download: {mib} MiB through {how}, a new connection per download, {} clients, MB/s | {} | {} | {} | {} | {} | load generator + backend, plain HTTP direct: {} | ≥ 1.0× HAProxy | {} |",
            opts.download_clients,
            cell(0), cell(1), cell(2),
            ratio2(pb(c[0]), pb(c[1])), ratio2(pb(c[0]), pb(c[2])),
            direct.map_or("—".into(), |d| format!("{d:.0} MB/s")),
            yes_no(pb(c[0]).zip(pb(c[1])).map(|(a, b)| a.0 >= b.0)),
        );
    }
}

/// The notes under the table: `early` (caps applied at start-up), the run's settings, the load
/// average now, then per proxy the first failures and how busy the load generator was.
pub fn notes(opts: &Opts, early: Vec<String>, cols: &[Column]) -> Vec<String> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut notes = early;
    notes.extend([
        format!(
            "{} mode: {} s per throughput row after a {} ms warm-up, {} concurrent clients (P1-P3), {} keep-alive connections (P4, P10), {} idle connections (P5), {} storm clients (P6), {} slow-backend storm clients (P7), {} download clients (P8, P9)",
            if opts.quick { "--quick" } else { "full" },
            opts.duration.as_secs(),
            opts.warmup.as_millis(),
            opts.concurrency,
            opts.keepalive_conns,
            opts.idle,
            opts.storm,
            opts.slow_storm,
            opts.download_clients
        ),
        "TLS 1.0 clients offer no encrypt-then-MAC (`SSL_OP_NO_ENCRYPT_THEN_MAC`, checked on their ClientHello), like the devices".into(),
        "proxies pinned to core 0 (`taskset -c 0`, one worker each), load generator + backend on core 1 (one tokio thread); all on 127.0.0.1".into(),
        format!("load average at end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
    ]);
    if opts.only.contains(&Kind::Nginx) {
        notes.push("P7: open-source nginx has no queue for `max_conns`: a request over the cap fails at once (502)".into());
    }
    for (k, _, c) in cols {
        for (row, r) in [("P1", &c.p1), ("P2", &c.p2), ("P3", &c.p3)] {
            if let Some(Ok(r)) = r {
                if let Some(e) = &r.first_error {
                    notes.push(format!("{row} {}: first failure: {e}", k.title()));
                }
            }
        }
        let mut gen = Vec::new();
        for (row, b) in [
            ("P1", ok(&c.p1).map(|r| r.busy)),
            ("P2", ok(&c.p2).map(|r| r.busy)),
            ("P3", ok(&c.p3).map(|r| r.busy)),
            ("P4", ok(&c.p4).map(|r| r.busy)),
            ("P8", ok(&c.p8).map(|r| r.busy)),
            ("P9", ok(&c.p9).map(|r| r.busy)),
            ("P10", ok(&c.p10).map(|r| r.busy)),
        ] {
            if let Some(g) = b.and_then(|b| b.loadgen) {
                gen.push(format!("{row} {:.0}%", g * 100.0));
            }
        }
        if !gen.is_empty() {
            notes.push(format!(
                "load generator + backend core busy while measuring {}: {}",
                k.title(),
                gen.join(", ")
            ));
        }
        if let Some(Ok(l)) = &c.p4lat {
            notes.push(format!(
                "P4 lat {}: {} samples, {} failed",
                k.title(),
                l.sent,
                l.fail
            ));
        }
        let storms = [("P6", ok(&c.p6)), ("P7", ok(&c.p7).map(|s| s.storm))];
        for (row, s) in storms {
            if let Some(e) = s.and_then(|s| s.first_error) {
                notes.push(format!("{row} {}: first failure: {e}", k.title()));
            }
        }
        for (row, d) in [("P8", ok(&c.p8)), ("P9", ok(&c.p9))] {
            if let Some(d) = d {
                let e = d
                    .first_error
                    .map_or(String::new(), |e| format!("; first failure: {e}"));
                notes.push(format!(
                    "{row} {}: {} downloads completed in the window, {} failed{e}",
                    k.title(),
                    d.done,
                    d.fail
                ));
            }
        }
    }
    notes
}
