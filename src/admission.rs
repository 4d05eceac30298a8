//! Admission: how many connections may be open and how many TLS handshakes may run at once.
//!
//! - **Open connections** count per listener and in total ([`Admission::try_acquire`] /
//!   [`Admission::acquire`]); a [`Permit`] holds one place until dropped, and its drop wakes
//!   the accept loops waiting for room ([`Admission::wait_for_room`]). At the limit an accept
//!   loop stops accepting (`limits.on_limit: wait`, the default) and the kernel's listen queue
//!   holds the rest, as HAProxy's `maxconn` does; or it accepts and closes (`close`).
//! - **The total limit follows the descriptors**: each proxied connection needs two (client and
//!   backend), so the process allows at most (open-file soft limit - reserve) / 2, the reserve
//!   being [`DESCRIPTOR_RESERVE`] plus the admin listener's cap. `limits.max_connections`
//!   absent means exactly that; a configured value above it is lowered, with a warning.
//! - **Handshakes** run at most `limits.max_handshakes` at once, first come first served (a
//!   fair semaphore), so after a power cut the CPU finishes the earliest devices first instead
//!   of all of them slowly. The wait for a slot comes before the handshake timeout starts and
//!   is bounded by the same duration again. The admin listener never waits for one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntGauge};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::config::{Config, Limits};
use crate::metrics::Metrics;

/// Descriptors kept back from connections: listening sockets, the epoll and signal
/// descriptors, log and config files, certificate reloads.
pub const DESCRIPTOR_RESERVE: u64 = 64;

/// Raise the soft open-file limit to the hard one (systemd and shells often start services at
/// 1024); returns the soft limit in effect afterwards.
pub fn raise_descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(limit, "open-file limit");
            Some(limit)
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit");
            open_file_limit()
        }
    }
}

/// The soft open-file limit now.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Descriptors `config` keeps back from connections: [`DESCRIPTOR_RESERVE`], the idle backend
/// pool (`limits.backend_idle_pool`), and the admin listener's cap when there is one.
pub fn descriptor_reserve(config: &Config) -> u64 {
    let admin = match config.admin {
        Some(_) => config.admin_options.max_connections as u64,
        None => 0,
    };
    DESCRIPTOR_RESERVE + config.limits.backend_idle_pool as u64 + admin
}

/// Open connections `open_files` descriptors can carry: (open_files - reserve) / 2, at least 1.
pub fn descriptor_cap(open_files: u64, reserve: u64) -> usize {
    let cap = open_files.saturating_sub(reserve) / 2;
    usize::try_from(cap).unwrap_or(usize::MAX).max(1)
}

/// The total connection limit in effect: the configured one, else what the descriptors allow,
/// never above that. `cap` `None`: the open-file limit is unknown (no cap).
pub fn effective_max_connections(limits: &Limits, cap: Option<usize>) -> usize {
    match (limits.max_connections, cap) {
        (Some(n), Some(c)) => n.min(c),
        (Some(n), None) => n,
        (None, Some(c)) => c,
        (None, None) => 10_000,
    }
}

/// Open-connection counters (per listener name and in total) that outlive reloads, and the
/// process-wide handshake slots.
#[derive(Debug)]
pub struct Admission {
    total: Arc<AtomicUsize>,
    per_listener: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Woken whenever a [`Permit`] is dropped.
    freed: Arc<Notify>,
    /// What the descriptors allow; `None` when the open-file limit is unknown.
    cap: Option<usize>,
    /// The configured `limits.max_connections` last warned about (0: none).
    warned: AtomicUsize,
    handshakes: Arc<Semaphore>,
    in_progress: IntGauge,
    queue_seconds: Histogram,
}

/// Holds one connection's place under both limits until dropped.
#[derive(Debug)]
pub struct Permit {
    counters: [Arc<AtomicUsize>; 2],
    freed: Arc<Notify>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        for c in &self.counters {
            c.fetch_sub(1, Ordering::AcqRel);
        }
        self.freed.notify_waiters();
    }
}

/// One handshake in progress (nothing for plain listeners); the slot frees when dropped.
#[derive(Debug)]
pub struct HandshakeSlot {
    held: Option<(OwnedSemaphorePermit, IntGauge)>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if let Some((_, gauge)) = &self.held {
            gauge.dec();
        }
    }
}

impl Admission {
    /// Limits for a process serving `config` with `open_files` descriptors (`None`: unknown),
    /// reporting into `metrics`. Warns when the configured total is above what the
    /// descriptors allow. `limits.max_handshakes` is read here only (a reload keeps it).
    pub fn new(config: &Config, open_files: Option<u64>, metrics: &Metrics) -> Admission {
        Admission::with_reserve(
            &config.limits,
            descriptor_reserve(config),
            open_files,
            metrics,
        )
    }

    /// As [`Admission::new`], for `limits` and a descriptor reserve of `reserve`.
    pub fn with_reserve(
        limits: &Limits,
        reserve: u64,
        open_files: Option<u64>,
        metrics: &Metrics,
    ) -> Admission {
        let cap = open_files.map(|n| descriptor_cap(n, reserve));
        let a = Admission {
            total: Arc::default(),
            per_listener: Mutex::default(),
            freed: Arc::new(Notify::new()),
            cap,
            warned: AtomicUsize::new(0),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            in_progress: metrics
                .handshakes_in_progress
                .with_label_values::<&str>(&[]),
            queue_seconds: metrics.handshake_queue.with_label_values::<&str>(&[]),
        };
        let max = a.max_connections(limits);
        info!(
            max_connections = max,
            open_files,
            max_handshakes = limits.max_handshakes,
            on_limit = ?limits.on_limit,
            "connection limits"
        );
        a
    }

    /// No descriptor cap and `max_handshakes` slots (tests).
    #[cfg(test)]
    pub fn unlimited(max_handshakes: usize, metrics: &Metrics) -> Admission {
        let limits = Limits {
            max_handshakes,
            ..Limits::default()
        };
        Admission::with_reserve(&limits, DESCRIPTOR_RESERVE, None, metrics)
    }

    /// The total connection limit in effect for `limits` (warns once per configured value
    /// that the descriptors cannot carry).
    pub fn max_connections(&self, limits: &Limits) -> usize {
        let max = effective_max_connections(limits, self.cap);
        if let (Some(configured), Some(cap)) = (limits.max_connections, self.cap) {
            if configured > cap && self.warned.swap(configured, Ordering::Relaxed) != configured {
                warn!(
                    configured,
                    lowered_to = cap,
                    "limits.max_connections is above what the open-file limit allows (two \
                     descriptors per proxied connection); lowered (raise LimitNOFILE / \
                     `ulimit -n` to allow more)"
                );
            }
        }
        max
    }

    fn counter(&self, listener: &str) -> Arc<AtomicUsize> {
        let mut map = self.per_listener.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(listener.to_string()).or_default().clone()
    }

    /// A place for one more connection, or `Err` naming the limit that was hit.
    pub fn try_acquire(
        &self,
        listener: &str,
        listener_max: usize,
        total_max: usize,
    ) -> Result<Permit, &'static str> {
        let mine = self.counter(listener);
        if mine.fetch_add(1, Ordering::AcqRel) >= listener_max {
            mine.fetch_sub(1, Ordering::AcqRel);
            return Err("listener_limit");
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= total_max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            mine.fetch_sub(1, Ordering::AcqRel);
            // Another loop may have been waiting for the place this attempt held briefly.
            self.freed.notify_waiters();
            return Err("total_limit");
        }
        Ok(Permit {
            counters: [mine, self.total.clone()],
            freed: self.freed.clone(),
        })
    }

    /// Whether one more connection fits now (without taking its place).
    pub fn has_room(&self, listener: &str, listener_max: usize, total_max: usize) -> bool {
        self.counter(listener).load(Ordering::Acquire) < listener_max
            && self.total.load(Ordering::Acquire) < total_max
    }

    /// Wait until one more connection fits (a [`Permit`] drop wakes this; no polling).
    pub async fn wait_for_room(&self, listener: &str, listener_max: usize, total_max: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a drop between check and await still wakes us.
            freed.as_mut().enable();
            if self.has_room(listener, listener_max, total_max) {
                return;
            }
            freed.await;
        }
    }

    /// A place for one more connection, waiting for one to end when there is none.
    pub async fn acquire(&self, listener: &str, listener_max: usize, total_max: usize) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Ok(p) = self.try_acquire(listener, listener_max, total_max) {
                return p;
            }
            freed.await;
        }
    }

    /// Open connections now, in total.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// A handshake slot, first come first served, waiting at most `within`; `None` when the
    /// wait ran out. Plain listeners (`plain`) have no handshake and get an empty slot at once.
    pub async fn handshake_slot(&self, plain: bool, within: Duration) -> Option<HandshakeSlot> {
        if plain {
            return Some(HandshakeSlot { held: None });
        }
        let started = Instant::now();
        let wait = self.handshakes.clone().acquire_owned();
        let permit = tokio::time::timeout(within, wait).await;
        self.queue_seconds.observe(started.elapsed().as_secs_f64());
        let permit = permit.ok()?.ok()?;
        self.in_progress.inc();
        Some(HandshakeSlot {
            held: Some((permit, self.in_progress.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Registry;

    fn admission(max_handshakes: usize) -> Admission {
        Admission::unlimited(max_handshakes, &Metrics::new(Registry::new()))
    }

    #[test]
    fn limits_count_per_listener_and_in_total() {
        let l = admission(1);
        let a1 = l.try_acquire("a", 2, 3).unwrap();
        let _a2 = l.try_acquire("a", 2, 3).unwrap();
        assert_eq!(l.try_acquire("a", 2, 3).unwrap_err(), "listener_limit");
        let _b1 = l.try_acquire("b", 2, 3).unwrap();
        assert_eq!(l.try_acquire("b", 2, 3).unwrap_err(), "total_limit");
        assert!(!l.has_room("b", 2, 3));
        drop(a1);
        assert!(l.has_room("b", 2, 3));
        assert!(l.try_acquire("b", 2, 3).is_ok());
    }

    #[test]
    fn the_descriptor_cap_keeps_two_per_connection_and_a_reserve() {
        assert_eq!(descriptor_cap(512, 64 + 64), 192);
        assert_eq!(descriptor_cap(1024, 64), 480);
        assert_eq!(descriptor_cap(10, 64), 1);
        let mut limits = Limits::default();
        assert_eq!(effective_max_connections(&limits, Some(192)), 192);
        limits.max_connections = Some(100);
        assert_eq!(effective_max_connections(&limits, Some(192)), 100);
        limits.max_connections = Some(10_000);
        assert_eq!(effective_max_connections(&limits, Some(192)), 192);
        assert_eq!(effective_max_connections(&limits, None), 10_000);
    }

    #[tokio::test]
    async fn a_waiting_loop_resumes_when_a_connection_ends() {
        let l = Arc::new(admission(1));
        let held = l.try_acquire("a", 1, 10).unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire("a", 1, 10).await })
        };
        let room = {
            let l = l.clone();
            tokio::spawn(async move { l.wait_for_room("a", 1, 10).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished() && !room.is_finished());
        drop(held);
        let p = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.open(), 1);
        drop(p);
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn handshake_slots_are_first_come_first_served_and_bounded() {
        let l = Arc::new(admission(1));
        let first = l
            .handshake_slot(false, Duration::from_secs(1))
            .await
            .unwrap();
        // Plain listeners never wait.
        assert!(l.handshake_slot(true, Duration::ZERO).await.is_some());
        // A full queue ends the wait after `within`.
        assert!(l
            .handshake_slot(false, Duration::from_millis(20))
            .await
            .is_none());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (l, tx) = (l.clone(), tx.clone());
            waiters.push(tokio::spawn(async move {
                let slot = l.handshake_slot(false, Duration::from_secs(5)).await;
                tx.send(i).unwrap();
                drop(slot);
            }));
            // On the current-thread runtime one yield lets the new task queue up before the
            // next one starts.
            tokio::task::yield_now().await;
        }
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        let order: Vec<i32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(order, [0, 1, 2]);
    }
}
