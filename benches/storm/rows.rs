//! The rows, measured in order for every running proxy: the in-process ceiling, P1-P3 (full
//! handshakes), P4 (keep-alive throughput and added latency), P8-P9 (firmware downloads), P10
//! (plain-HTTP keep-alive), P5 (memory), P6 (the storm), P7 (the storm on a slow, capped
//! backend).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::ssl::SslContext;

use crate::configs::SLOW_MAX_CONNS;
use crate::load::{
    client_context, closed_loop, download_loop, expect_negotiated, keepalive_run,
    offers_encrypt_then_mac, open_many, open_plain_conns, open_tls_conns, percentiles, storm,
    Backend, Latency, Storm, Tls,
};
use crate::opts::{DhGroup, Opts};
use crate::progress;
use crate::proxies::{CpuMeter, Kind, Probes, Proxy};
use crate::report::{Col, Column};

// ------------------------------------------------------------------------------------------
// Ceiling: what one core can do with the vendored OpenSSL (like `openssl speed`).

pub struct Ceiling {
    pub rsa_sign_s: f64,
    pub dh_s: f64,
}

pub fn ceiling(key: &PKey<Private>, dur: Duration, dh_group: DhGroup) -> Result<Ceiling> {
    let data = [7u8; 48];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < dur {
        let mut s = Signer::new(MessageDigest::sha256(), key)?;
        s.update(&data)?;
        std::hint::black_box(s.sign_to_vec()?);
        n += 1;
    }
    let rsa_sign_s = n as f64 / t.elapsed().as_secs_f64();
    let group = || dh_group.params();
    let peer = group()?.generate_key()?;
    let peer_pub = peer.public_key().to_owned()?;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < dur {
        // What a server does per DHE handshake: a fresh ephemeral key, then the shared secret.
        let mine = group()?.generate_key()?;
        std::hint::black_box(mine.compute_key(&peer_pub)?);
        n += 1;
    }
    Ok(Ceiling {
        rsa_sign_s,
        dh_s: n as f64 / t.elapsed().as_secs_f64(),
    })
}

// ------------------------------------------------------------------------------------------
// Client contexts

/// The load generator's client contexts, one per kind of handshake.
pub struct Clients {
    /// TLS 1.0 `AES128-SHA` (P1, P4-P6, the legacy-port probe).
    pub rsa: Arc<SslContext>,
    /// TLS 1.0 `DHE-RSA-AES128-SHA` (P2).
    pub dhe: Arc<SslContext>,
    /// TLS 1.3 `TLS_AES_128_GCM_SHA256` (P3, the modern-port probe).
    pub tls13: Arc<SslContext>,
}

impl Clients {
    pub fn new() -> Result<Clients> {
        Ok(Clients {
            rsa: Arc::new(client_context(Tls::V10("AES128-SHA"))?),
            dhe: Arc::new(client_context(Tls::V10("DHE-RSA-AES128-SHA"))?),
            tls13: Arc::new(client_context(Tls::V13)?),
        })
    }

    /// The TLS 1.0 contexts must not offer encrypt-then-MAC (the devices never do); checked on
    /// the ClientHello they actually send.
    pub async fn check_no_encrypt_then_mac(&self) -> Result<()> {
        for (name, ctx) in [("AES128-SHA", &self.rsa), ("DHE-RSA-AES128-SHA", &self.dhe)] {
            if offers_encrypt_then_mac(ctx).await? {
                bail!("the TLS 1.0 {name} client offers encrypt-then-MAC");
            }
        }
        Ok(())
    }

    pub fn probes(&self) -> Probes {
        Probes {
            legacy: self.rsa.clone(),
            modern: self.tls13.clone(),
        }
    }
}

/// The column of `k` (the first one when there is none, as the table has all three).
fn col(cols: &mut [Column], k: Kind) -> &mut Col {
    let i = cols.iter().position(|c| c.0 == k).unwrap_or(0);
    &mut cols[i].2
}

// ------------------------------------------------------------------------------------------
// Rows

/// P1-P3: closed-loop full handshakes (warm-up first, not counted).
pub async fn handshake_rows(
    opts: &Opts,
    proxies: &[Proxy],
    clients: &Clients,
    cols: &mut [Column],
) {
    let rows: [(&str, &Arc<SslContext>, bool, &str, &str); 3] = [
        ("P1", &clients.rsa, false, "TLSv1", "AES128-SHA"),
        ("P2", &clients.dhe, false, "TLSv1", "DHE-RSA-AES128-SHA"),
        (
            "P3",
            &clients.tls13,
            true,
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
        ),
    ];
    for (row, ctx, modern, version, cipher) in rows {
        for p in proxies {
            let addr = if modern { p.modern } else { p.legacy };
            let r = match expect_negotiated(addr, ctx, version, cipher).await {
                Err(e) => Err(format!("{e:#}")),
                Ok(()) => {
                    closed_loop(addr, ctx, opts.concurrency, opts.warmup).await;
                    let cpu = CpuMeter::start(p);
                    let mut r = closed_loop(addr, ctx, opts.concurrency, opts.duration).await;
                    r.busy = cpu.stop(p);
                    if r.ok == 0 {
                        Err(r.first_error.clone().unwrap_or_else(|| "no success".into()))
                    } else {
                        Ok(r)
                    }
                }
            };
            progress(format!("{row} {}: {:?}", p.kind.title(), r));
            let c = col(cols, p.kind);
            match row {
                "P1" => c.p1 = Some(r),
                "P2" => c.p2 = Some(r),
                _ => c.p3 = Some(r),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The P4 pace (half the lowest peak) and the direct-to-backend peak and latencies.
pub type KeepAliveBaseline = (Option<f64>, Option<(f64, Latency)>);

/// P4: keep-alive throughput, then latency paced at half the lowest peak.
pub async fn keepalive_rows(
    opts: &Opts,
    backend: SocketAddr,
    proxies: &[Proxy],
    rsa_ctx: &Arc<SslContext>,
    cols: &mut [Column],
) -> Result<KeepAliveBaseline> {
    let direct_peak = {
        let conns = open_plain_conns(backend, opts.keepalive_conns).await?;
        keepalive_run(conns, opts.duration.min(Duration::from_secs(5)), None)
            .await
            .0
            .per_s
    };
    progress(format!(
        "P4 direct to backend (plain HTTP): {direct_peak:.0}/s"
    ));
    let mut peaks = Vec::new();
    for p in proxies {
        let r = match open_tls_conns(p.legacy, rsa_ctx, opts.keepalive_conns).await {
            Ok(conns) => {
                let cpu = CpuMeter::start(p);
                let (mut ka, _) = keepalive_run(conns, opts.duration, None).await;
                ka.busy = cpu.stop(p);
                peaks.push(ka.per_s);
                Ok(ka)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        progress(format!("P4 {}: {:?}", p.kind.title(), r));
        col(cols, p.kind).p4 = Some(r);
    }
    let p4_rate = peaks
        .iter()
        .cloned()
        .reduce(f64::min)
        .map(|r| (r / 2.0).max(100.0));
    let mut direct = None;
    if let Some(rate) = p4_rate {
        let conns = open_plain_conns(backend, opts.keepalive_conns).await?;
        let (ka, lat) = keepalive_run(conns, opts.duration, Some(rate)).await;
        let l = percentiles(lat, ka.fail)?;
        progress(format!("P4 latency direct at {rate:.0}/s: {l:?}"));
        direct = Some((direct_peak, l));
        for p in proxies {
            let r = match open_tls_conns(p.legacy, rsa_ctx, opts.keepalive_conns).await {
                Ok(conns) => {
                    let (ka, lat) = keepalive_run(conns, opts.duration, Some(rate)).await;
                    percentiles(lat, ka.fail).map_err(|e| format!("{e:#}"))
                }
                Err(e) => Err(format!("{e:#}")),
            };
            progress(format!(
                "P4 latency {} at {rate:.0}/s: {:?}",
                p.kind.title(),
                r
            ));
            col(cols, p.kind).p4lat = Some(r);
        }
    }
    Ok((p4_rate, direct))
}

#[derive(Clone, Debug)]
pub struct Memory {
    pub kib_per_conn: f64,
    pub before_kib: u64,
    pub after_kib: u64,
    pub open: usize,
    pub fail: usize,
}

/// P5: memory per idle connection, on a freshly started proxy.
pub async fn memory_row(
    opts: &Opts,
    proxies: &mut [Proxy],
    probes: &Probes,
    rsa_ctx: &Arc<SslContext>,
    cols: &mut [Column],
) {
    for p in proxies.iter_mut() {
        let r: std::result::Result<Memory, String> = async {
            p.start(probes).await?;
            // Warm-up: touch the handshake/proxy paths and the backend pool once.
            closed_loop(
                p.legacy,
                rsa_ctx,
                opts.concurrency,
                Duration::from_millis(300),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let before = p.rss_kib()?;
            let (conns, fail, err) =
                open_many(p.legacy, rsa_ctx, opts.idle, opts.concurrency).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = p.rss_kib()?;
            let open = conns.len();
            drop(conns);
            if open == 0 {
                bail!("no connection opened: {}", err.unwrap_or_default());
            }
            Ok(Memory {
                kib_per_conn: after.saturating_sub(before) as f64 / open as f64,
                before_kib: before,
                after_kib: after,
                open,
                fail,
            })
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        progress(format!("P5 {}: {:?}", p.kind.title(), r));
        col(cols, p.kind).p5 = Some(r);
    }
}

/// P6: the reconnect storm, on a freshly started proxy (stopped afterwards).
pub async fn storm_row(
    opts: &Opts,
    proxies: &mut [Proxy],
    probes: &Probes,
    rsa_ctx: &Arc<SslContext>,
    cols: &mut [Column],
) {
    for p in proxies.iter_mut() {
        let r: std::result::Result<Storm, String> = async {
            p.start(probes).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = storm(p.legacy, rsa_ctx, opts.storm).await;
            if s.ok == 0 {
                bail!("no client served: {}", s.first_error.unwrap_or_default());
            }
            Ok(s)
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        progress(format!("P6 {}: {:?}", p.kind.title(), r));
        col(cols, p.kind).p6 = Some(r);
        p.stop();
    }
}

/// P8 and P9: firmware downloads (16 MiB, a new connection each) by `download_clients` clients,
/// through TLS 1.0 AES128-SHA on the legacy port and through plain HTTP on the plain port.
/// Returns the same downloads straight from the backend (plain HTTP), MB/s.
pub async fn download_rows(
    opts: &Opts,
    backend: SocketAddr,
    proxies: &[Proxy],
    rsa_ctx: &Arc<SslContext>,
    cols: &mut [Column],
) -> Option<f64> {
    let n = opts.download_clients;
    let direct = download_loop(backend, None, n, opts.duration.min(Duration::from_secs(5))).await;
    progress(format!("P8/P9 direct to backend (plain HTTP): {direct:?}"));
    for (row, tls) in [("P8", true), ("P9", false)] {
        for p in proxies {
            let (addr, ctx) = if tls {
                (p.legacy, Some(rsa_ctx.clone()))
            } else {
                (p.plain, None)
            };
            let checked = if tls {
                expect_negotiated(addr, rsa_ctx, "TLSv1", "AES128-SHA")
                    .await
                    .map_err(|e| format!("{e:#}"))
            } else {
                Ok(())
            };
            let r = match checked {
                Err(e) => Err(e),
                Ok(()) => {
                    download_loop(addr, ctx.clone(), n, opts.warmup).await;
                    let cpu = CpuMeter::start(p);
                    let mut d = download_loop(addr, ctx, n, opts.duration).await;
                    d.busy = cpu.stop(p);
                    // A row with bytes but no finished download (a slow proxy, a short
                    // --duration) still counts; nothing finished and failures is an error.
                    if d.done == 0 && (d.fail > 0 || d.mb_s == 0.0) {
                        Err(d
                            .first_error
                            .clone()
                            .unwrap_or_else(|| "no download completed".into()))
                    } else {
                        Ok(d)
                    }
                }
            };
            progress(format!("{row} {}: {:?}", p.kind.title(), r));
            let c = col(cols, p.kind);
            match row {
                "P8" => c.p8 = Some(r),
                _ => c.p9 = Some(r),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    (direct.done > 0).then_some(direct.mb_s)
}

/// P10: keep-alive GETs over `keepalive_conns` plain-HTTP connections on the plain port (P4
/// without TLS), closed loop.
pub async fn plain_keepalive_row(opts: &Opts, proxies: &[Proxy], cols: &mut [Column]) {
    for p in proxies {
        let r = match open_plain_conns(p.plain, opts.keepalive_conns).await {
            Ok(conns) => {
                let cpu = CpuMeter::start(p);
                let (mut ka, _) = keepalive_run(conns, opts.duration, None).await;
                ka.busy = cpu.stop(p);
                Ok(ka)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        progress(format!("P10 {}: {:?}", p.kind.title(), r));
        col(cols, p.kind).p10 = Some(r);
    }
}

#[derive(Clone, Debug)]
pub struct SlowStorm {
    pub storm: Storm,
    /// The most connections the slow backend had open at once during the storm.
    pub backend_max: usize,
    /// The most requests it was answering at once.
    pub requests_max: usize,
}

/// P7: the storm against the 50 ms backend capped at 64 connections, on a freshly started
/// proxy (stopped afterwards); the backend counts its open connections and the requests it is
/// answering.
pub async fn slow_storm_row(
    opts: &Opts,
    proxies: &mut [Proxy],
    probes: &Probes,
    rsa_ctx: &Arc<SslContext>,
    slow: &Backend,
    cols: &mut [Column],
) {
    for p in proxies.iter_mut() {
        let r: std::result::Result<SlowStorm, String> = async {
            p.start(probes).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            slow.reset_max();
            let s = storm(p.slow, rsa_ctx, opts.slow_storm).await;
            let (backend_max, requests_max) = (slow.conns.max(), slow.requests.max());
            if s.ok == 0 {
                bail!("no client served: {}", s.first_error.unwrap_or_default());
            }
            Ok(SlowStorm {
                storm: s,
                backend_max,
                requests_max,
            })
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        progress(format!(
            "P7 {}: {:?} (cap {SLOW_MAX_CONNS})",
            p.kind.title(),
            r
        ));
        col(cols, p.kind).p7 = Some(r);
        p.stop();
    }
}
