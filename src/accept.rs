//! Listeners: bind every configured address, accept in a loop, one task per connection.
//! No single connection's error ends the loop; running out of file descriptors backs off;
//! connections over the listener's or the process's limit are closed at once and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::server::ShutdownWatch;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::connection;
use crate::metrics::Telemetry;
use crate::proxy::ProxyApp;
use crate::snapshot::Snapshot;

/// Bind a listening socket: SO_REUSEADDR, IPv6 sockets IPv6-only (so `[::]:p` and
/// `0.0.0.0:p` can both be configured), a deep backlog for reconnect storms.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Open-connection counters that outlive reloads: per listener name and in total.
#[derive(Debug, Default)]
pub struct ConnLimits {
    total: Arc<AtomicUsize>,
    per_listener: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// Holds one connection's place under both limits until dropped.
#[derive(Debug)]
pub struct Permit {
    counters: [Arc<AtomicUsize>; 2],
}

impl Drop for Permit {
    fn drop(&mut self) {
        for c in &self.counters {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ConnLimits {
    /// A place for one more connection, or `Err` naming the limit that was hit.
    pub fn try_acquire(
        &self,
        listener: &str,
        listener_max: usize,
        total_max: usize,
    ) -> Result<Permit, &'static str> {
        let mine = {
            let mut map = self.per_listener.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(listener.to_string()).or_default().clone()
        };
        if mine.fetch_add(1, Ordering::AcqRel) >= listener_max {
            mine.fetch_sub(1, Ordering::AcqRel);
            return Err("listener_limit");
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= total_max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            mine.fetch_sub(1, Ordering::AcqRel);
            return Err("total_limit");
        }
        Ok(Permit {
            counters: [mine, self.total.clone()],
        })
    }
}

/// What every accept loop shares.
pub struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub app: Arc<ProxyApp>,
    pub telemetry: Arc<Telemetry>,
    pub limits: Arc<ConnLimits>,
    pub tasks: TaskTracker,
    pub shutdown: ShutdownWatch,
}

/// Accept connections for `listener` (by name) until shutdown or `stop` (a reload removed
/// this address). Connections already accepted are unaffected by either.
pub async fn accept_loop(
    tcp: TcpListener,
    listener: Arc<str>,
    shared: Shared,
    stop: CancellationToken,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = stop.cancelled() => break,
            r = tcp.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                // The snapshot current at accept time serves the whole connection.
                let snapshot = shared.snapshot.load();
                let Some(rt) = snapshot.listeners.get(&*listener).cloned() else {
                    debug!(%listener, "listener no longer configured; closing connection");
                    continue;
                };
                let permit = match shared.limits.try_acquire(
                    &listener,
                    rt.config.max_connections,
                    snapshot.config.limits.max_connections,
                ) {
                    Ok(p) => p,
                    Err(which) => {
                        let t = &shared.telemetry;
                        t.metrics.refused(&listener, which);
                        if t.refusal_log.allow() {
                            warn!(%listener, %peer, reason = which, "connection refused: limit reached");
                        }
                        drop(stream);
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%peer, error = %e, "TCP_NODELAY failed");
                }
                let (app, telemetry, watch) = (
                    shared.app.clone(),
                    shared.telemetry.clone(),
                    shared.shutdown.clone(),
                );
                let limits = snapshot.config.limits.clone();
                shared.tasks.spawn(async move {
                    let _permit = permit;
                    connection::serve(stream, peer, rt, app, telemetry, limits, watch).await;
                });
            }
            Err(e) if is_fd_exhaustion(&e) => {
                error!(%listener, error = %e, "out of file descriptors; pausing accept for 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => warn!(%listener, error = %e, "accept failed"),
        }
    }
    let bound = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    drop(tcp);
    info!(%listener, addr = %bound, "stopped accepting");
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux; ENOBUFS/ENOMEM are treated the same.
    matches!(e.raw_os_error(), Some(23) | Some(24) | Some(105) | Some(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_listener_and_in_total() {
        let l = ConnLimits::default();
        let a1 = l.try_acquire("a", 2, 3).unwrap();
        let _a2 = l.try_acquire("a", 2, 3).unwrap();
        assert_eq!(l.try_acquire("a", 2, 3).unwrap_err(), "listener_limit");
        let _b1 = l.try_acquire("b", 2, 3).unwrap();
        assert_eq!(l.try_acquire("b", 2, 3).unwrap_err(), "total_limit");
        drop(a1);
        assert!(l.try_acquire("b", 2, 3).is_ok());
    }
}
