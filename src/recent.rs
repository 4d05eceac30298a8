//! The recent past the admin status page shows: handshakes and failures by reason per minute
//! for the last hour, the last [`MAX_FAILURES`] failed handshakes in detail, and the last
//! reload's result.
//!
//! Memory is bounded: [`MINUTES`] per-minute slots (a success count each, and failure counts
//! by reason, whose labels are a fixed set), a ring of at most [`MAX_FAILURES`] entries whose
//! client-controlled fields are escaped and capped ([`crate::diagnose`]), and one reload
//! result. A success costs one atomic update, no lock; a failure takes a mutex for a moment
//! (failures are the rare path and are already logged).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::connection::ConnError;
use crate::diagnose;
use crate::hello::ClientHello;

/// How many failed handshakes are kept in detail.
pub const MAX_FAILURES: usize = 50;
/// How many minutes of counts are kept.
pub const MINUTES: usize = 60;
/// How many offered cipher suites a failure row names (the rest are counted).
pub const MAX_LISTED_CIPHERS: usize = 40;

/// One failed handshake as the status page shows it. Every string is escaped (no control
/// bytes) and capped; the page HTML-escapes them too.
#[derive(Debug, Clone)]
pub struct FailedHandshake {
    pub at: SystemTime,
    pub listener: String,
    /// `-` when the connection failed before a route was chosen.
    pub route: String,
    pub client: SocketAddr,
    /// The metric label (`no_shared_cipher`, `not_tls`, ...).
    pub reason: &'static str,
    /// `legacy`, `modern`, or `-` when no handshake started.
    pub engine: &'static str,
    /// `-` when no hello was read.
    pub versions: String,
    pub ciphers: String,
    pub sni: String,
    pub ja4: String,
    /// The sentence of [`diagnose::explain`], or the error itself when there is no hello.
    pub diagnosis: String,
}

/// One minute's failures: (reason, count), a handful of fixed labels.
#[derive(Debug, Default)]
struct MinuteFailures {
    minute: u64,
    by_reason: Vec<(&'static str, u64)>,
}

#[derive(Debug, Default)]
struct Failures {
    last: VecDeque<FailedHandshake>,
    /// Oldest first, at most [`MINUTES`] minutes, only minutes that had failures.
    minutes: VecDeque<MinuteFailures>,
}

/// The result of the last reload.
#[derive(Debug, Clone)]
pub struct ReloadResult {
    pub at: SystemTime,
    /// `Err` holds the error text (it names files and keys of the config; no key material).
    pub result: Result<(), String>,
}

/// Counts over the last hour, per minute, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Hour {
    /// (minutes ago, successful handshakes, failures), for each of the last [`MINUTES`]
    /// minutes including the current one (0 minutes ago).
    pub per_minute: Vec<(u64, u64, u64)>,
    /// Failures by reason over the hour, most first.
    pub by_reason: Vec<(&'static str, u64)>,
}

impl Hour {
    pub fn successes(&self) -> u64 {
        self.per_minute.iter().map(|m| m.1).sum()
    }

    pub fn failures(&self) -> u64 {
        self.per_minute.iter().map(|m| m.2).sum()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Recent {
    started: SystemTime,
    /// Per minute slot (`minute % MINUTES`): the minute in the high 32 bits, its successful
    /// handshakes in the low 32 (saturating), so one atomic update both counts and rolls over.
    successes: [AtomicU64; MINUTES],
    failures: Mutex<Failures>,
    reload: Mutex<Option<ReloadResult>>,
    /// The certificate-name (DNS) warnings of the last start or reload check.
    names: Mutex<Vec<crate::check::Warning>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            started: SystemTime::now(),
            successes: std::array::from_fn(|_| AtomicU64::new(0)),
            failures: Mutex::default(),
            reload: Mutex::default(),
            names: Mutex::default(),
        }
    }
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

const COUNT_MASK: u64 = 0xffff_ffff;

impl Recent {
    /// When the process started counting.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// A TLS handshake finished. Lock-free.
    pub fn handshake_ok(&self) {
        self.handshake_ok_at(SystemTime::now());
    }

    fn handshake_ok_at(&self, now: SystemTime) {
        let minute = minute_of(now);
        let stamp = (minute & COUNT_MASK) << 32;
        let slot = &self.successes[(minute % MINUTES as u64) as usize];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(if v & !COUNT_MASK == stamp {
                if v & COUNT_MASK == COUNT_MASK {
                    v
                } else {
                    v + 1
                }
            } else {
                stamp | 1
            })
        });
    }

    fn successes_in(&self, minute: u64) -> u64 {
        let v = self.successes[(minute % MINUTES as u64) as usize].load(Ordering::Relaxed);
        if v >> 32 == minute & COUNT_MASK {
            v & COUNT_MASK
        } else {
            0
        }
    }

    /// A connection ended before HTTP (not a refusal): count it, and keep it in the ring.
    pub(crate) fn failed(
        &self,
        listener: &str,
        client: SocketAddr,
        e: &ConnError,
        hello: Option<&(ClientHello, String)>,
        route: Option<&crate::route::Route>,
    ) {
        let entry = failure_entry(SystemTime::now(), listener, client, e, hello, route);
        self.record(entry);
    }

    fn record(&self, entry: FailedHandshake) {
        let minute = minute_of(entry.at);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.minutes.back().is_none_or(|m| m.minute != minute) {
            f.minutes.push_back(MinuteFailures {
                minute,
                by_reason: Vec::new(),
            });
        }
        while f.minutes.len() > MINUTES
            || f.minutes
                .front()
                .is_some_and(|m| m.minute + (MINUTES as u64) <= minute)
        {
            f.minutes.pop_front();
        }
        if let Some(m) = f.minutes.back_mut() {
            match m.by_reason.iter_mut().find(|(r, _)| *r == entry.reason) {
                Some((_, n)) => *n += 1,
                None => m.by_reason.push((entry.reason, 1)),
            }
        }
        if f.last.len() == MAX_FAILURES {
            f.last.pop_front();
        }
        f.last.push_back(entry);
    }

    /// The last failed handshakes, newest first.
    pub fn last_failures(&self) -> Vec<FailedHandshake> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.last.iter().rev().cloned().collect()
    }

    /// Counts over the last hour.
    pub fn hour(&self) -> Hour {
        self.hour_at(SystemTime::now())
    }

    fn hour_at(&self, now: SystemTime) -> Hour {
        let current = minute_of(now);
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
        let mut per_minute = Vec::with_capacity(MINUTES);
        for ago in (0..MINUTES as u64).rev() {
            let Some(minute) = current.checked_sub(ago) else {
                continue;
            };
            let failures = f
                .minutes
                .iter()
                .find(|m| m.minute == minute)
                .map_or(0, |m| {
                    for (reason, n) in &m.by_reason {
                        match by_reason.iter_mut().find(|(r, _)| r == reason) {
                            Some((_, total)) => *total += n,
                            None => by_reason.push((reason, *n)),
                        }
                    }
                    m.by_reason.iter().map(|(_, n)| n).sum()
                });
            per_minute.push((ago, self.successes_in(minute), failures));
        }
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Hour {
            per_minute,
            by_reason,
        }
    }

    /// A reload finished.
    pub fn reloaded(&self, result: Result<(), String>) {
        let mut r = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        *r = Some(ReloadResult {
            at: SystemTime::now(),
            result: result.map_err(|e| diagnose::escape(&e, 2 * diagnose::TEXT_MAX)),
        });
    }

    /// The certificate-name warnings the background DNS check found (start or last reload).
    pub fn names_checked(&self, warnings: Vec<crate::check::Warning>) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = warnings;
    }

    /// What [`Self::names_checked`] stored last.
    pub fn name_warnings(&self) -> Vec<crate::check::Warning> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last reload's result; `None` when there was none since start.
    pub fn last_reload(&self) -> Option<ReloadResult> {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The offered suites by name, up to [`MAX_LISTED_CIPHERS`], then how many more.
fn listed_ciphers(h: &ClientHello) -> String {
    let names = diagnose::offered_cipher_names(h);
    if names.is_empty() {
        return "-".to_string();
    }
    let mut out: Vec<String> = names
        .iter()
        .take(MAX_LISTED_CIPHERS)
        .map(|n| diagnose::escape(n, 48))
        .collect();
    if names.len() > MAX_LISTED_CIPHERS {
        out.push(format!("(+{} more)", names.len() - MAX_LISTED_CIPHERS));
    }
    out.join(", ")
}

fn failure_entry(
    at: SystemTime,
    listener: &str,
    client: SocketAddr,
    e: &ConnError,
    hello: Option<&(ClientHello, String)>,
    route: Option<&crate::route::Route>,
) -> FailedHandshake {
    let error = e.to_string();
    let (engine, diagnosis) = match (e, hello, route) {
        (ConnError::Handshake(h), Some((hello, _)), Some(r)) => (
            h.engine.name(),
            diagnose::explain(h.reason, h.engine, hello, &r.profile, &h.detail),
        ),
        (ConnError::Handshake(h), _, _) => (h.engine.name(), error),
        _ => ("-", error),
    };
    let (versions, ciphers, sni, ja4) = match hello {
        Some((h, ja4)) => (
            diagnose::offered_versions(h),
            listed_ciphers(h),
            diagnose::sni_field(h).to_string(),
            ja4.clone(),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    FailedHandshake {
        at,
        listener: diagnose::escape(listener, 128),
        route: route.map_or_else(|| "-".to_string(), |r| diagnose::escape(&r.name, 128)),
        client,
        reason: e.label(),
        engine,
        versions,
        ciphers,
        sni,
        ja4: diagnose::escape(&ja4, 64),
        diagnosis: diagnose::escape(&diagnosis, diagnose::TEXT_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(at: SystemTime, reason: &'static str) -> FailedHandshake {
        FailedHandshake {
            at,
            listener: "l".into(),
            route: "-".into(),
            client: SocketAddr::from(([127, 0, 0, 1], 1)),
            reason,
            engine: "-",
            versions: "-".into(),
            ciphers: "-".into(),
            sni: "-".into(),
            ja4: "-".into(),
            diagnosis: String::new(),
        }
    }

    #[test]
    fn ring_keeps_the_last_fifty_newest_first() {
        let r = Recent::default();
        let now = SystemTime::now();
        for i in 0..120u64 {
            let mut e = entry(now, "timeout");
            e.listener = format!("l{i}");
            r.record(e);
        }
        let last = r.last_failures();
        assert_eq!(last.len(), MAX_FAILURES);
        assert_eq!(last[0].listener, "l119");
        assert_eq!(last[MAX_FAILURES - 1].listener, "l70");
        assert_eq!(r.hour_at(now).by_reason, vec![("timeout", 120)]);
    }

    #[test]
    fn counts_cover_one_hour_and_roll_over() {
        let r = Recent::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000 * 60);
        let min = |m: u64| t0 + Duration::from_secs(m * 60 + 5);
        r.handshake_ok_at(min(0));
        r.handshake_ok_at(min(0));
        r.record(entry(min(0), "no_shared_cipher"));
        r.handshake_ok_at(min(30));
        r.record(entry(min(30), "not_tls"));
        r.record(entry(min(30), "no_shared_cipher"));

        let h = r.hour_at(min(30));
        assert_eq!(h.per_minute.len(), MINUTES);
        assert_eq!((h.successes(), h.failures()), (3, 3));
        assert_eq!(h.by_reason, vec![("no_shared_cipher", 2), ("not_tls", 1)]);
        assert_eq!(h.per_minute[MINUTES - 1], (0, 1, 2));
        assert_eq!(h.per_minute[MINUTES - 31], (30, 2, 1));

        // An hour after minute 0, its counts are gone; minute 30's remain.
        let h = r.hour_at(min(60));
        assert_eq!((h.successes(), h.failures()), (1, 2));
        // The slot of minute 0 is reused by minute 60: counting starts again from one.
        r.handshake_ok_at(min(60));
        assert_eq!(r.hour_at(min(60)).successes(), 2);
        // Failure minutes older than an hour are dropped as new ones arrive.
        r.record(entry(min(200), "timeout"));
        let f = r.failures.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(f.minutes.len(), 1);
    }

    #[test]
    fn reload_errors_are_kept_escaped() {
        let r = Recent::default();
        assert!(r.last_reload().is_none());
        r.reloaded(Err("bad\nline".into()));
        let last = r.last_reload().map(|l| l.result);
        assert_eq!(last, Some(Err("bad\\nline".to_string())));
        r.reloaded(Ok(()));
        assert_eq!(r.last_reload().map(|l| l.result), Some(Ok(())));
    }
}
