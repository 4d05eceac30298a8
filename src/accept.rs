//! Listeners: bind every configured address, accept in a loop, one task per connection.
//! No single connection's error ends the loop; running out of file descriptors backs off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::server::ShutdownWatch;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

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

/// Accept connections for `listener` (by name) until `shutdown` turns true.
pub async fn accept_loop(
    tcp: TcpListener,
    listener: Arc<str>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    app: Arc<ProxyApp>,
    telemetry: Arc<Telemetry>,
    tasks: TaskTracker,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = tcp.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%peer, error = %e, "TCP_NODELAY failed");
                }
                // The snapshot current at accept time serves the whole connection.
                let Some(rt) = snapshot.load().listeners.get(&*listener).cloned() else {
                    debug!(%listener, "listener no longer configured; closing connection");
                    continue;
                };
                tasks.spawn(connection::serve(
                    stream,
                    peer,
                    rt,
                    app.clone(),
                    telemetry.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) if is_fd_exhaustion(&e) => {
                error!(%listener, error = %e, "out of file descriptors; pausing accept for 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => warn!(%listener, error = %e, "accept failed"),
        }
    }
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux; ENOBUFS/ENOMEM are treated the same.
    matches!(e.raw_os_error(), Some(23) | Some(24) | Some(105) | Some(12))
}
