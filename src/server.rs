//! Starting, reloading and stopping the process.
//!
//! - start: bind every listener address (and the admin port), spawn the accept loops.
//! - reload (SIGHUP, or file changes with `reload.watch`): build the complete new snapshot
//!   first; only then bind the addresses it adds, swap it in (one `ArcSwap::store`), and stop
//!   accepting on the addresses it removes. Addresses present before and after keep their
//!   sockets. Connections in flight keep the snapshot they started with. Any failure leaves
//!   the running snapshot untouched.
//! - shutdown (SIGTERM/SIGINT): stop accepting, /readyz turns 503, idle keep-alive connections
//!   close, in-flight requests get `limits.shutdown_grace`, then exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use pingora_core::apps::ServerApp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::access_log::AccessLog;
use crate::admission::Admission;
use crate::metrics::Telemetry;
use crate::snapshot::Snapshot;
use crate::{accept, admin, proxy, tls};

#[derive(Debug, thiserror::Error)]
#[error("cannot bind {addr} ({what}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub what: String,
    pub source: std::io::Error,
}

/// Why the process could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot open access_log.target {target}: {source}")]
    AccessLog {
        target: String,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A bound listening socket (its actual address) and the token that stops its accept loop.
struct Socket {
    bound: SocketAddr,
    stop: CancellationToken,
}

/// A started provgate: its bound addresses and the handles to reload and stop it.
pub struct Running {
    inner: Arc<Inner>,
}

struct Inner {
    config_file: PathBuf,
    admin: Option<SocketAddr>,
    /// Stops the admin listener; cancelled only after the drain.
    admin_stop: CancellationToken,
    shutdown: watch::Sender<bool>,
    tasks: TaskTracker,
    snapshot: Arc<ArcSwap<Snapshot>>,
    app: Arc<proxy::ProxyApp>,
    telemetry: Arc<Telemetry>,
    access_log: AccessLog,
    limits: Arc<Admission>,
    /// (listener, configured address) -> socket. Reloads serialise on this lock.
    sockets: Mutex<Vec<((String, SocketAddr), Socket)>>,
}

/// Expiry gauges for every certificate of a snapshot.
fn record_certificates(m: &crate::metrics::Metrics, snapshot: &Snapshot) {
    for (name, cert) in &snapshot.certificates {
        m.certificate_expiry(name, cert.info.not_after_unix);
    }
}

/// Bind everything in the snapshot and start serving. Either every address binds or nothing
/// is left listening.
pub async fn start(snapshot: Snapshot) -> Result<Running, StartError> {
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
    m.set_build_info(env!("CARGO_PKG_VERSION"), openssl::version::version());
    for (feature, on) in caps.as_pairs() {
        m.set_capability(feature, on);
    }
    record_certificates(m, &snapshot);

    let wanted = wanted_binds(&snapshot);
    let mut fresh = Vec::new();
    for (key, what) in &wanted {
        fresh.push((key.clone(), bind(key.1, what)?));
    }
    let admin_socket = match snapshot.config.admin {
        Some(addr) => Some(bind(addr, "admin.listen")?),
        None => None,
    };
    // Read once, before any connection: User-Agents are masked (or not) as they are stored.
    let admin_options = snapshot.config.admin_options.clone();
    telemetry
        .fingerprints
        .set_show_device_ids(admin_options.show_device_ids);

    let log_cfg = &snapshot.config.access_log;
    let access_log = AccessLog::start(log_cfg).map_err(|source| StartError::AccessLog {
        target: log_cfg.target.to_string(),
        source,
    })?;

    let (shutdown, watch) = watch::channel(false);
    let admin_stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let app = proxy::app(
        telemetry.clone(),
        access_log.clone(),
        snapshot.config.limits.backend_idle_pool,
    );
    let config_file = snapshot.config.file.clone();
    // The open-file limit now (the binary raised it before starting), before the snapshot is
    // shared with the admin port.
    let open_files = crate::admission::open_file_limit();
    let admission = Admission::new(&snapshot.config, open_files, &telemetry.metrics);
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let admin = match admin_socket {
        Some(tcp) => {
            let addr = tcp.local_addr().ok();
            if let Some(a) = addr {
                info!(
                    addr = %a,
                    allow = ?admin_options.allow,
                    max_connections = admin_options.max_connections,
                    show_device_ids = admin_options.show_device_ids,
                    "admin listening (/ status page, /healthz, /readyz, /metrics, /fingerprints)"
                );
            }
            // Outside `tasks`: the drain waits for those, and the admin port must outlive it.
            tokio::spawn(admin::serve(
                tcp,
                admin_options,
                telemetry.clone(),
                snapshot.clone(),
                watch,
                admin_stop.clone(),
            ));
            addr
        }
        None => None,
    };
    let inner = Arc::new(Inner {
        config_file,
        admin,
        admin_stop,
        shutdown,
        tasks,
        snapshot,
        app,
        telemetry,
        access_log,
        limits: Arc::new(admission),
        sockets: Mutex::new(Vec::new()),
    });
    let mut sockets = inner.sockets.lock().unwrap_or_else(|e| e.into_inner());
    for (key, tcp) in fresh {
        let socket = inner.spawn_accept(&key.0, tcp);
        sockets.push((key, socket));
    }
    drop(sockets);
    // The device's own name check (CN looked up, compared with the bound address), logged
    // from a thread once serving: never waits on DNS.
    let recent = inner.telemetry.clone();
    crate::check::log_in_background(inner.snapshot.load_full(), "start", move |w| {
        recent.recent.names_checked(w)
    });
    Ok(Running { inner })
}

/// Every (listener, configured address) a snapshot wants, with a description for errors.
fn wanted_binds(s: &Snapshot) -> Vec<((String, SocketAddr), String)> {
    s.config
        .listeners
        .iter()
        .flat_map(|l| {
            l.bind.iter().enumerate().map(move |(j, addr)| {
                (
                    (l.name.clone(), *addr),
                    format!("listener '{}' bind[{j}]", l.name),
                )
            })
        })
        .collect()
}

fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, BindError> {
    accept::bind(addr).map_err(|source| BindError {
        addr,
        what: what.to_string(),
        source,
    })
}

impl Inner {
    fn spawn_accept(&self, listener: &str, tcp: tokio::net::TcpListener) -> Socket {
        let bound = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        info!(%listener, addr = %bound, "listening");
        let stop = CancellationToken::new();
        self.tasks.spawn(accept::accept_loop(
            tcp,
            Arc::from(listener),
            accept::Shared {
                snapshot: self.snapshot.clone(),
                app: self.app.clone(),
                telemetry: self.telemetry.clone(),
                limits: self.limits.clone(),
                tasks: self.tasks.clone(),
                shutdown: self.shutdown.subscribe(),
            },
            stop.clone(),
        ));
        Socket { bound, stop }
    }

    /// Apply a new snapshot: bind what it adds, swap, stop what it removes.
    fn apply(&self, next: Snapshot) -> Result<(), BindError> {
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = wanted_binds(&next);
        let mut fresh = Vec::new();
        for (key, what) in &wanted {
            if !sockets.iter().any(|(k, _)| k == key) {
                // Dropping `fresh` on error closes anything bound so far.
                fresh.push((key.clone(), bind(key.1, what)?));
            }
        }
        let current = self.snapshot.load();
        if next.config.admin != current.config.admin
            || next.config.admin_options != current.config.admin_options
        {
            warn!("admin settings changed; they take effect on restart");
        }
        if next.config.limits.backend_idle_pool != current.config.limits.backend_idle_pool {
            warn!("limits.backend_idle_pool changed; it takes effect on restart");
        }
        if next.config.access_log != current.config.access_log {
            warn!("access_log changed; it takes effect on restart");
        }
        record_certificates(&self.telemetry.metrics, &next);
        self.snapshot.store(Arc::new(next));
        sockets.retain(|(key, socket)| {
            let keep = wanted.iter().any(|(k, _)| k == key);
            if !keep {
                info!(listener = %key.0, addr = %socket.bound, "stopped listening (removed by reload)");
                socket.stop.cancel();
            }
            keep
        });
        for (key, tcp) in fresh {
            let socket = self.spawn_accept(&key.0, tcp);
            sockets.push((key, socket));
        }
        let recent = self.telemetry.clone();
        crate::check::log_in_background(self.snapshot.load_full(), "reload", move |w| {
            recent.recent.names_checked(w)
        });
        Ok(())
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let result = Snapshot::load(&self.config_file)
            .map_err(ReloadError::from)
            .and_then(|next| self.apply(next).map_err(ReloadError::from));
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.telemetry.metrics.reload(outcome);
        self.telemetry
            .recent
            .reloaded(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        match &result {
            Ok(()) => info!(file = %self.config_file.display(), "configuration reloaded"),
            Err(e) => error!("reload failed, still serving the previous configuration: {e}"),
        }
        result
    }
}

impl Running {
    /// Addresses bound for `listener`, in config order.
    pub fn addrs(&self, listener: &str) -> Vec<SocketAddr> {
        let sockets = self.inner.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets
            .iter()
            .filter(|((n, _), _)| n == listener)
            .map(|(_, s)| s.bound)
            .collect()
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Re-read the config file and apply it (what SIGHUP does).
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.inner.reload()
    }

    /// Stop accepting, turn unready, close idle keep-alive connections, let requests in
    /// flight finish for up to `grace`. Returns whether everything finished in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let inner = &self.inner;
        inner.telemetry.metrics.draining.set(1);
        let _ = inner.shutdown.send(true);
        // Wakes keep-alive connections idling between requests so they close now.
        inner.app.cleanup().await;
        inner.tasks.close();
        let done = tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_ok();
        if !done {
            warn!(?grace, "shutdown grace ran out with connections still open");
        }
        inner.admin_stop.cancel();
        inner.access_log.flush_blocking(Duration::from_secs(2));
        done
    }

    /// The access log (for SIGUSR1 reopening and tests).
    pub fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    /// Poll the config and every file it references; reload when they change (debounced:
    /// a change must hold still for one interval).
    fn spawn_watcher(&self) {
        let inner = self.inner.clone();
        let mut shutdown = inner.shutdown.subscribe();
        self.inner.tasks.spawn(async move {
            let mut last = fingerprint_files(&inner.snapshot.load());
            let mut pending: Option<Vec<Stamp>> = None;
            loop {
                let interval = inner.snapshot.load().config.reload.interval;
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                if !inner.snapshot.load().config.reload.watch {
                    continue;
                }
                let now = fingerprint_files(&inner.snapshot.load());
                match pending.take() {
                    Some(p) if p == now && now != last => {
                        info!("configuration or certificate files changed; reloading");
                        let _ = inner.reload();
                        last = fingerprint_files(&inner.snapshot.load());
                    }
                    _ if now != last => pending = Some(now),
                    _ => {}
                }
            }
        });
    }
}

type Stamp = (PathBuf, Option<(SystemTime, u64)>);

/// Modification time and size of the config and every certificate, key and CA file it uses.
fn fingerprint_files(s: &Snapshot) -> Vec<Stamp> {
    let c = &s.config;
    let mut paths = vec![c.file.clone()];
    for cert in c.certificates.values() {
        paths.push(cert.chain.clone());
        paths.push(cert.key.clone());
    }
    for l in &c.listeners {
        for t in std::iter::once(&l.defaults).chain(l.routes.iter().map(|r| &r.target)) {
            paths.extend(t.client_auth.ca.iter().cloned());
        }
    }
    for p in c.profiles.values() {
        paths.extend(p.dh_params.as_ref().map(|d| d.path.clone()));
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let stamp = meta.and_then(|m| m.modified().ok().map(|t| (t, m.len())));
            (p, stamp)
        })
        .collect()
}

/// Run until SIGINT or SIGTERM (reloading on SIGHUP), then drain.
pub async fn run_until_signal(snapshot: Snapshot) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    crate::admission::raise_descriptor_limit();
    let running = start(snapshot).await?;
    running.spawn_watcher();
    tokio::spawn(crate::access_log::reopen_on_sigusr1(
        running.access_log().clone(),
    ));
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                let _ = running.reload();
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // The grace in effect now: a reload may have changed it.
    let grace = running.snapshot().config.limits.shutdown_grace;
    info!(
        ?grace,
        "shutting down: no new connections, draining open ones"
    );
    running.shutdown(grace).await;
    info!("stopped");
    Ok(())
}

/// Wait for SIGINT or SIGTERM.
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
