//! Listeners: bind every configured address, accept in a loop, one task per connection.
//! No single connection's error ends the loop; running out of file descriptors backs off.
//! At the listener's or the process's connection limit ([`crate::admission`]) the loop stops
//! accepting until a connection ends (`limits.on_limit: wait`), so the kernel's listen queue
//! holds the rest; with `on_limit: close` it accepts and closes at once, counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::server::ShutdownWatch;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::admission::{Admission, Permit};
use crate::config::{OnLimit, DEFAULT_LISTEN_BACKLOG};
use crate::connection;
use crate::metrics::Telemetry;
use crate::proxy::ProxyApp;
use crate::snapshot::Snapshot;

/// Bind a listening socket: SO_REUSEADDR, IPv6 sockets IPv6-only (so `[::]:p` and
/// `0.0.0.0:p` can both be configured), a deep backlog for reconnect storms (the accept loop
/// sets the listener's `listen_backlog`).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(DEFAULT_LISTEN_BACKLOG as i32)?;
    TcpListener::from_std(socket.into())
}

/// `net.core.somaxconn`: the kernel silently caps every listen backlog at it.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Set a listening socket's backlog (Linux lets listen(2) on a listening socket change it).
fn set_backlog(tcp: &TcpListener, listener: &str, backlog: u32) {
    if let Some(max) = somaxconn().filter(|&max| max < backlog) {
        warn!(
            %listener,
            listen_backlog = backlog,
            somaxconn = max,
            "listen_backlog is above net.core.somaxconn, which caps it; raise the sysctl for \
             the queue to hold a storm"
        );
    }
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    if let Err(e) = SockRef::from(tcp).listen(backlog) {
        warn!(%listener, error = %e, "cannot set the listen backlog");
    }
}

/// Counts one paused accept loop in `provgate_accept_paused` while it lives.
struct Paused(prometheus::IntGauge);

impl Paused {
    fn new(g: prometheus::IntGauge) -> Paused {
        g.inc();
        Paused(g)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What every accept loop shares.
pub struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub app: Arc<ProxyApp>,
    pub telemetry: Arc<Telemetry>,
    pub limits: Arc<Admission>,
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
    let paused = shared.telemetry.metrics.accept_paused(&listener);
    // 0: not yet set from the config (the first pass sets it, and checks somaxconn).
    let mut backlog = 0;
    loop {
        // Limits as they are now (a reload may change them between connections).
        let Some((_, rt, listener_max, total_max)) = current(&shared, &listener) else {
            debug!(%listener, "listener no longer configured; not accepting");
            break;
        };
        if rt.config.listen_backlog != backlog {
            backlog = rt.config.listen_backlog;
            set_backlog(&tcp, &listener, backlog);
        }
        let wait = shared.snapshot.load().config.limits.on_limit == OnLimit::Wait;
        if wait && !shared.limits.has_room(&listener, listener_max, total_max) {
            // At the limit: stop accepting; the kernel queues new connections meanwhile.
            let _paused = Paused::new(paused.clone());
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = stop.cancelled() => break,
                _ = shared.limits.wait_for_room(&listener, listener_max, total_max) => {}
            }
            // Limits may have changed (a reload) while waiting: look again.
            continue;
        }
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = stop.cancelled() => break,
            r = tcp.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                // The snapshot current at accept time serves the whole connection.
                let Some((snapshot, rt, listener_max, total_max)) = current(&shared, &listener)
                else {
                    debug!(%listener, "listener no longer configured; closing connection");
                    continue;
                };
                let limits = &snapshot.config.limits;
                let wait = limits.on_limit == OnLimit::Wait;
                let permit = if wait {
                    // Another loop may have taken the last place since the check above: this
                    // one connection waits for a place, and the loop with it.
                    match shared
                        .limits
                        .try_acquire(&listener, listener_max, total_max)
                    {
                        Ok(p) => p,
                        Err(_) => {
                            let _paused = Paused::new(paused.clone());
                            tokio::select! {
                                biased;
                                _ = shutdown.changed() => break,
                                _ = stop.cancelled() => break,
                                p = shared.limits.acquire(&listener, listener_max, total_max) => p,
                            }
                        }
                    }
                } else {
                    match shared
                        .limits
                        .try_acquire(&listener, listener_max, total_max)
                    {
                        Ok(p) => p,
                        Err(which) => {
                            refused(&shared.telemetry, &listener, peer, which);
                            drop(stream);
                            continue;
                        }
                    }
                };
                spawn(&shared, stream, peer, rt, limits.clone(), permit);
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

/// The current snapshot, `listener`'s runtime form in it, and its listener and total
/// connection limits; `None` when the listener is no longer configured.
fn current(
    shared: &Shared,
    listener: &str,
) -> Option<(Arc<Snapshot>, Arc<crate::route::Listener>, usize, usize)> {
    let snapshot = shared.snapshot.load_full();
    let rt = snapshot.listeners.get(listener)?.clone();
    let total = shared.limits.max_connections(&snapshot.config.limits);
    let per_listener = rt.config.max_connections;
    Some((snapshot, rt, per_listener, total))
}

/// Count (always) and log (at most once a second) a connection closed at a limit.
fn refused(t: &Telemetry, listener: &str, peer: SocketAddr, which: &'static str) {
    t.metrics.refused(listener, which);
    t.metrics.device_retry_caused(listener, "refused");
    if t.refusal_log.allow() {
        warn!(%listener, %peer, reason = which, "connection refused: limit reached");
    }
}

/// Serve one accepted connection in its own task, holding its place until it ends.
fn spawn(
    shared: &Shared,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    rt: Arc<crate::route::Listener>,
    limits: crate::config::Limits,
    permit: Permit,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "TCP_NODELAY failed");
    }
    let (app, telemetry, watch, admission) = (
        shared.app.clone(),
        shared.telemetry.clone(),
        shared.shutdown.clone(),
        shared.limits.clone(),
    );
    shared.tasks.spawn(async move {
        let _permit = permit;
        connection::serve(stream, peer, rt, app, telemetry, limits, admission, watch).await;
    });
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux; ENOBUFS/ENOMEM are treated the same.
    matches!(e.raw_os_error(), Some(23) | Some(24) | Some(105) | Some(12))
}
