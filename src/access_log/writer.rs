//! The access log's writer: one thread fed by a bounded channel, buffered writes to stdout,
//! stderr or a file, reopen on request (SIGUSR1, logrotate) and rate-limited drop reports.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AccessLog, Target};

/// Lines the writer thread may fall behind before lines are dropped.
const CHANNEL_CAPACITY: usize = 8192;
/// Size of the writer's `BufWriter`.
const WRITE_BUFFER: usize = 64 * 1024;
/// Minimum interval between two "lines dropped" warnings.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

enum Msg {
    Line(String),
    /// Wake-up for a pending reopen (the request itself is the `reopen` flag, so it survives
    /// a full channel).
    Reopen,
    /// Flush, then acknowledge.
    Flush(SyncSender<()>),
}

/// State shared between the handles and the writer thread (which must not hold the sender, or
/// it would never see the channel close).
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    reopen: AtomicBool,
}

/// The handles' side of the writer: the channel into the thread and the shared counters.
#[derive(Debug)]
pub(super) struct Inner {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    is_file: bool,
}

impl Inner {
    /// Opens the target and spawns the writer thread; `None` (and no thread) for `off`.
    pub(super) fn start(target: &Target) -> io::Result<Option<Inner>> {
        let (sink, path) = match target {
            Target::Off => return Ok(None),
            Target::Stdout => (Sink::Stdout(io::stdout()), None),
            Target::Stderr => (Sink::Stderr(io::stderr()), None),
            Target::File(p) => (Sink::File(open_file(p)?), Some(p.clone())),
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            out: BufWriter::with_capacity(WRITE_BUFFER, sink),
            path,
            shared: Arc::clone(&shared),
            warned: false,
            reported_dropped: 0,
            last_drop_report: None,
        };
        let is_file = writer.path.is_some();
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(Some(Inner {
            tx,
            shared,
            is_file,
        }))
    }

    /// Hands a finished line to the writer without blocking; false (and counted) when the
    /// channel is full or the writer is gone.
    pub(super) fn send(&self, line: String) -> bool {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Flags a reopen and wakes the writer; a no-op unless the target is a file.
    pub(super) fn reopen(&self) {
        if !self.is_file {
            return;
        }
        self.shared.reopen.store(true, Ordering::Release);
        // Only a wake-up; when the channel is full the writer sees the flag with the next line.
        let _ = self.tx.try_send(Msg::Reopen);
    }

    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) for the writer to acknowledge a flush.
    pub(super) fn flush_blocking(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

enum Sink {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::Stderr(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::Stderr(w) => w.write_all(buf),
            Sink::File(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Stderr(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

struct Writer {
    out: BufWriter<Sink>,
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    /// A write error was reported and not yet cleared by a successful reopen.
    warned: bool,
    reported_dropped: u64,
    last_drop_report: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    self.flush();
                    self.report_dropped();
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if self.shared.reopen.load(Ordering::Relaxed)
                && self.shared.reopen.swap(false, Ordering::AcqRel)
            {
                self.reopen();
            }
            match msg {
                Msg::Line(line) => {
                    if let Err(e) = self.out.write_all(line.as_bytes()) {
                        self.write_error(&e);
                    }
                }
                Msg::Reopen => {}
                Msg::Flush(ack) => {
                    self.flush();
                    let _ = ack.try_send(());
                }
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.write_error(&e);
        }
    }

    fn write_error(&mut self, e: &io::Error) {
        if !self.warned {
            self.warned = true;
            let target = self
                .path
                .as_ref()
                .map_or_else(|| "standard stream".to_owned(), |p| p.display().to_string());
            tracing::warn!(
                "access log: writing to {target} failed: {e}; further errors are not reported"
            );
        }
    }

    fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(f) => {
                // The old writer was just flushed; dropping it closes the old file.
                self.out = BufWriter::with_capacity(WRITE_BUFFER, Sink::File(f));
                self.warned = false;
                tracing::debug!(path = %path.display(), "access log reopened");
            }
            Err(e) => {
                tracing::warn!("cannot reopen {e}; still writing to the previous file");
            }
        }
    }

    fn report_dropped(&mut self) {
        let now = self.shared.dropped.load(Ordering::Relaxed);
        if now <= self.reported_dropped {
            return;
        }
        if self
            .last_drop_report
            .is_some_and(|t| t.elapsed() < DROP_REPORT_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            dropped_total = now,
            "access log writer fell behind: {} lines dropped",
            now - self.reported_dropped
        );
        self.reported_dropped = now;
        self.last_drop_report = Some(Instant::now());
    }
}

/// Reopen the log on every SIGUSR1 (logrotate's postrotate). Spawn on a tokio runtime.
///
/// The handler is installed whatever the target, so a stray SIGUSR1 never kills the process
/// (for stdout/stderr/off the reopen is a no-op). The task holds a clone of `log`, which keeps
/// the writer thread alive until the task is dropped.
pub async fn reopen_on_sigusr1(log: AccessLog) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("access log: cannot listen for SIGUSR1: {e}");
            return;
        }
    };
    while sig.recv().await.is_some() {
        tracing::debug!("SIGUSR1: reopening the access log");
        log.reopen();
    }
}
