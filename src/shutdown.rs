//! Graceful shutdown: what the process waits for, and the handles every
//! task is given.
//!
//! The sequence (SPEC 2): a signal arrives → listeners stop accepting and
//! datagram loops stop → open connections may finish for the grace period
//! → whatever is still open is closed → the process exits 0. A second
//! signal cuts the grace period short. The server's `run` takes both
//! triggers as futures, so tests fire them however they like and the
//! binary with [`Signals`].
//!
//! The clients (`connect`, `send`, `ping`, `bench`) stop at Ctrl-C
//! instead: [`interrupted`].

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// SIGINT and SIGTERM, installed when made: a signal that arrives before
/// anyone waits is kept, not lost.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers now.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the next SIGINT or SIGTERM, naming it.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// SIGUSR1, installed now: each one asks the server to log its figures
/// (`--metrics`' counters), as SPEC 8 says.
///
/// # Errors
/// When the handler cannot be installed.
pub fn figures_requested() -> std::io::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::user_defined1())
}

/// Completes at Ctrl-C (SIGINT), the handler being installed when first
/// polled. When no handler can be installed it never completes, and
/// SIGINT does what it always does.
pub async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
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
