//! Graceful shutdown: what the process waits for, and the handles every
//! task is given.
//!
//! The sequence (SPEC 2): a signal arrives → listeners stop accepting and
//! datagram loops stop → open connections may finish for the grace period
//! → whatever is still open is closed → the process exits 0. The server's
//! `run` takes the trigger as a future, so tests fire it with a oneshot and
//! the binary with [`signal`].

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Installs the SIGINT/SIGTERM handlers now, and returns a future that
/// completes on the first of them.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// The handles that tie every task of a server to its shutdown.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled when the shutdown signal arrives: accept loops and
    /// datagram loops end, dropping their sockets.
    pub stop_accepting: CancellationToken,
    /// Cancelled when the grace period is over: connections still open
    /// close at their next step.
    pub force_close: CancellationToken,
    /// Every accept loop, datagram loop and connection task is spawned on
    /// this; the server waits on it to know when the last one is gone.
    pub tasks: TaskTracker,
}
