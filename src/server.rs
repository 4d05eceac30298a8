//! Starting and stopping the process: bind every listener (and the admin port), spawn the
//! accept loops, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::apps::ServerApp;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics::Telemetry;
use crate::snapshot::Snapshot;
use crate::{accept, admin, proxy, tls};

/// How long in-flight connections get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("cannot bind {addr} ({what}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub what: String,
    pub source: std::io::Error,
}

/// A started provgate: its bound addresses and the handle to stop it.
pub struct Running {
    bound: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: TaskTracker,
    snapshot: Arc<ArcSwap<Snapshot>>,
    app: Arc<proxy::ProxyApp>,
    telemetry: Arc<Telemetry>,
}

/// Expiry gauges for every certificate of a snapshot.
fn record_certificates(m: &crate::metrics::Metrics, snapshot: &Snapshot) {
    for (name, cert) in &snapshot.certificates {
        m.certificate_not_after
            .with_label_values(&[name])
            .set(cert.info.not_after_unix);
    }
}

/// Bind everything in the snapshot and start serving. Either every address binds or nothing
/// is left listening.
pub async fn start(snapshot: Snapshot) -> Result<Running, BindError> {
    let caps = tls::legacy::init();
    info!(
        openssl = openssl::version::version(),
        ssl3 = caps.ssl3,
        tls1_0 = caps.tls1_0,
        des3 = caps.des3,
        rc4 = caps.rc4,
        dhe = caps.dhe,
        legacy_provider = caps.legacy_provider,
        "TLS engines ready; legacy engine capabilities"
    );
    let telemetry = Arc::new(Telemetry::new(prometheus::Registry::new()));
    let m = &telemetry.metrics;
    m.build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), openssl::version::version()])
        .set(1);
    for (feature, on) in caps.as_pairs() {
        m.openssl_capability
            .with_label_values(&[feature])
            .set(i64::from(on));
    }
    record_certificates(m, &snapshot);
    let mut sockets = Vec::new();
    for l in &snapshot.config.listeners {
        for (j, addr) in l.bind.iter().enumerate() {
            let tcp = accept::bind(*addr).map_err(|source| BindError {
                addr: *addr,
                what: format!("listener '{}' bind[{j}]", l.name),
                source,
            })?;
            sockets.push((l.name.clone(), tcp));
        }
    }
    let admin_socket = match snapshot.config.admin {
        Some(addr) => Some(accept::bind(addr).map_err(|source| BindError {
            addr,
            what: "admin.listen".into(),
            source,
        })?),
        None => None,
    };

    let (shutdown, watch) = watch::channel(false);
    let tasks = TaskTracker::new();
    let app = proxy::app(telemetry.clone());
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let mut bound = Vec::new();
    for (name, tcp) in sockets {
        let addr = tcp.local_addr().map_err(|source| BindError {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            what: format!("listener '{name}'"),
            source,
        })?;
        info!(listener = %name, %addr, "listening");
        bound.push((name.clone(), addr));
        tasks.spawn(accept::accept_loop(
            tcp,
            Arc::from(name.as_str()),
            snapshot.clone(),
            app.clone(),
            telemetry.clone(),
            tasks.clone(),
            watch.clone(),
        ));
    }
    let admin = match admin_socket {
        Some(tcp) => {
            let addr = tcp.local_addr().ok();
            if let Some(a) = addr {
                info!(addr = %a, "admin listening (/healthz, /readyz)");
            }
            tasks.spawn(admin::serve(
                tcp,
                telemetry.clone(),
                tasks.clone(),
                watch.clone(),
            ));
            addr
        }
        None => None,
    };
    Ok(Running {
        bound,
        admin,
        shutdown,
        tasks,
        snapshot,
        app,
        telemetry,
    })
}

impl Running {
    /// Addresses bound for `listener`, in config order.
    pub fn addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter(|(n, _)| n == listener)
            .map(|(_, a)| *a)
            .collect()
    }

    /// Every (listener, address) pair bound.
    pub fn bound(&self) -> &[(String, SocketAddr)] {
        &self.bound
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Stop accepting, let connections finish for up to `grace`, then return. Returns whether
    /// everything finished in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.shutdown.send(true);
        self.telemetry.metrics.draining.set(1);
        // Wakes keep-alive connections idling between requests so they close now.
        self.app.cleanup().await;
        self.tasks.close();
        let done = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !done {
            warn!(?grace, "shutdown grace ran out with connections still open");
        }
        done
    }
}

/// Run until SIGINT or SIGTERM, then drain.
pub async fn run_until_signal(snapshot: Snapshot) -> anyhow::Result<()> {
    let running = start(snapshot).await?;
    wait_for_signal().await;
    info!("shutting down: no new connections, draining open ones");
    running.shutdown(DEFAULT_SHUTDOWN_GRACE).await;
    info!("stopped");
    Ok(())
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C will stop the process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
