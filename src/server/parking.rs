//! The parking lot: accepted connections wait here, without a task or a
//! buffer, until their first bytes arrive.
//!
//! A task per connection costs about 1.8 KiB even before it reads (its
//! future, its timers, its tokio registration). Most of that buys nothing
//! while the client is silent, and a server holding thousands of idle
//! connections pays it for each. Here a waiting connection costs a slab
//! entry and a registration in the lot's own epoll set (kernel memory, not
//! ours). One task watches that set through tokio; when a connection turns
//! readable it is taken out, registered with tokio, and handed to
//! `on_ready`, which spawns its task.
//!
//! Parked connections count as open: they keep their `--max-conns` permit
//! and are closed by the idle timeout (checked by a once-a-second sweep)
//! and by the end of the shutdown grace period.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::permit::Permit;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::net::listener::Conn;
use crate::shutdown::Shutdown;

/// How often parked connections are checked against the idle timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Events taken from the lot's epoll set per wake-up.
const EVENTS_PER_WAKE: usize = 256;

/// A connection waiting in the lot.
struct Parked {
    conn: Conn,
    /// The connection's `--max-conns` slot, held while it waits.
    permit: Permit,
}

/// The shared side of the lot: acceptors park connections through it.
pub(super) struct ParkingLot {
    registry: mio::Registry,
    /// Locked only for slab edits and epoll_ctl calls, never across an
    /// await, so a std mutex is the right tool.
    slots: Mutex<Lot>,
}

struct Lot {
    parked: Slab<Parked>,
    /// Set when the lot's task has ended: nothing can be parked then.
    closed: bool,
}

/// The lot's epoll set as tokio sees it: one file descriptor to watch.
struct PollFd(Poll);

impl AsRawFd for PollFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl ParkingLot {
    /// A new, empty lot, and the poller its [`run`](Self::run) task drives.
    ///
    /// # Errors
    /// When the kernel refuses a new epoll set.
    pub(super) fn new() -> io::Result<(Arc<ParkingLot>, Poll)> {
        let poll = Poll::new()?;
        let lot = ParkingLot {
            registry: poll.registry().try_clone()?,
            slots: Mutex::new(Lot {
                parked: Slab::new(),
                closed: false,
            }),
        };
        Ok((Arc::new(lot), poll))
    }

    /// Parks a connection until it is readable. If it cannot be parked
    /// (the lot has closed, or the registration failed) it is handed back
    /// so the caller can serve it directly.
    // The error hands the connection back by value: it is the rare path
    // (a closed lot, a failed epoll_ctl), and boxing it would cost an
    // allocation for nothing.
    #[allow(clippy::result_large_err)]
    pub(super) fn park(&self, conn: Conn, permit: Permit) -> Result<(), (Conn, Permit)> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.closed {
            return Err((conn, permit));
        }
        let entry = slots.parked.vacant_entry();
        let token = Token(entry.key());
        let mut parked = Parked { conn, permit };
        match self
            .registry
            .register(parked.conn.source(), token, Interest::READABLE)
        {
            Ok(()) => {
                entry.insert(parked);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot park a connection; serving it directly");
                Err((parked.conn, parked.permit))
            }
        }
    }

    /// Takes a connection out of the lot (and out of its epoll set).
    fn unpark(&self, token: Token) -> Option<Parked> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut parked = slots.parked.try_remove(token.0)?;
        let _ = self.registry.deregister(parked.conn.source());
        Some(parked)
    }

    /// Watches the lot until shutdown: readable connections go to
    /// `on_ready`; idle ones are closed after `idle_timeout`. After the
    /// shutdown signal the lot takes no new connections and ends once it
    /// is empty or the grace period is over.
    pub(super) async fn run(
        self: Arc<Self>,
        poll: Poll,
        idle_timeout: Option<Duration>,
        shutdown: Shutdown,
        on_ready: impl Fn(Conn, Permit),
    ) {
        // The crate denies unsafe code (Cargo.toml [lints]); this is the
        // one place allowed.
        #[allow(unsafe_code)]
        // SAFETY: `PollFd` owns the `Poll`, whose epoll descriptor stays
        // open and unchanged until the `AsyncFd` (and with it the `Poll`)
        // is dropped; nothing else closes or replaces it. This is sockit's
        // only unsafe block: tokio offers no safe way to watch an epoll set.
        let registered = unsafe { AsyncFd::register(PollFd(poll)) };
        let mut poll = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(error = %e, "parking lot cannot watch its epoll set");
                self.close();
                return;
            }
        };
        let mut events = Events::with_capacity(EVENTS_PER_WAKE);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut draining = false;
        loop {
            tokio::select! {
                _ = shutdown.force_close.cancelled() => break,
                _ = shutdown.stop_accepting.cancelled(), if !draining => {
                    draining = true;
                }
                ready = poll.readable_mut() => {
                    let Ok(mut guard) = ready else { break };
                    match guard.get_inner_mut().0.poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) if events.is_empty() => guard.clear_ready(),
                        Ok(()) => {
                            for event in events.iter() {
                                if let Some(parked) = self.unpark(event.token()) {
                                    on_ready(parked.conn, parked.permit);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::error!(error = %e, "parking lot poll failed");
                            break;
                        }
                    }
                }
                _ = sweep.tick() => {
                    if let Some(timeout) = idle_timeout {
                        self.close_idle(timeout);
                    }
                }
            }
            if draining && self.is_empty() {
                break;
            }
        }
        self.close();
    }

    fn is_empty(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.parked.is_empty()
    }

    fn close_idle(&self, timeout: Duration) {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let registry = &self.registry;
        slots.parked.retain(|_, parked| {
            let keep = now.duration_since(parked.conn.accepted) < timeout;
            if !keep {
                tracing::debug!(peer = %parked.conn.peer, "closing idle connection");
                let _ = registry.deregister(parked.conn.source());
            }
            keep
        });
    }

    /// Refuses new connections and closes the ones still waiting.
    fn close(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.closed = true;
        slots.parked.clear();
    }
}
