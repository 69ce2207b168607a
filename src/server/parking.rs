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
//! A connection that has spoken comes back here when it has been quiet
//! for `--park-after` (the line services and echo on plain TCP and Unix
//! streams): its task ends and its buffers go with it, so a silent
//! keep-alive client costs what a new one costs. Its socket is registered
//! again here, and the kernel reports a socket that is readable when it
//! is added, so bytes that arrived during the hand-over wake it at once.
//!
//! Parked connections count as open: they keep their `--max-conns` permit
//! and are closed by the idle timeout (counted from their last activity,
//! checked by a once-a-second sweep) and by the end of the shutdown grace
//! period.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::permit::Permit;
use mio::{Events, Interest, Poll, Token};
use prometheus_client::metrics::gauge::Gauge;
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::net::listener::Conn;
use crate::shutdown::Shutdown;

/// How often parked connections are checked against the idle timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// After this many connections have come back since the last sweep, the
/// sweep hands the heap's free pages back to the kernel (see `heap`):
/// fewer are not worth the walk over the allocator's arenas.
const RELEASE_AFTER: usize = 64;

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
    /// The listener's `sockit_connections_parked` gauge.
    parked: Gauge,
    /// Connections that came back from their tasks since the last sweep.
    returned: AtomicUsize,
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
    /// A new, empty lot, and the poller its [`run`](Self::run) task
    /// drives; `parked` follows how many connections wait in it.
    ///
    /// # Errors
    /// When the kernel refuses a new epoll set.
    pub(super) fn new(parked: Gauge) -> io::Result<(Arc<ParkingLot>, Poll)> {
        let poll = Poll::new()?;
        let lot = ParkingLot {
            registry: poll.registry().try_clone()?,
            parked,
            returned: AtomicUsize::new(0),
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
                self.parked.inc();
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot park a connection; serving it directly");
                Err((parked.conn, parked.permit))
            }
        }
    }

    /// Parks a connection that has spoken and gone quiet, as
    /// [`park`](Self::park) does; its task has just freed its buffers.
    #[allow(clippy::result_large_err)]
    pub(super) fn repark(&self, conn: Conn, permit: Permit) -> Result<(), (Conn, Permit)> {
        self.park(conn, permit)?;
        self.returned.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes a connection out of the lot (and out of its epoll set).
    fn unpark(&self, token: Token) -> Option<Parked> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut parked = slots.parked.try_remove(token.0)?;
        let _ = self.registry.deregister(parked.conn.source());
        self.parked.dec();
        Some(parked)
    }

    /// Watches the lot until shutdown: readable connections go to
    /// `on_ready`; idle ones are closed `idle_timeout` after their last
    /// activity. After the
    /// shutdown signal the lot takes no new connections and ends once it
    /// is empty or the grace period is over.
    pub(super) async fn run(
        self: Arc<Self>,
        poll: Poll,
        idle_timeout: Option<Duration>,
        shutdown: Shutdown,
        on_ready: impl Fn(Conn, Permit),
    ) {
        // The crate denies unsafe code (Cargo.toml [lints]); this and
        // `heap::release` are the two places allowed.
        #[allow(unsafe_code)]
        // SAFETY: `PollFd` owns the `Poll`, whose epoll descriptor stays
        // open and unchanged until the `AsyncFd` (and with it the `Poll`)
        // is dropped; nothing else closes or replaces it. Tokio offers no
        // safe way to watch an epoll set.
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
                    if self.returned.swap(0, Ordering::Relaxed) >= RELEASE_AFTER {
                        super::heap::release();
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
        let (registry, gauge) = (&self.registry, &self.parked);
        slots.parked.retain(|_, parked| {
            let keep = now.duration_since(parked.conn.last_active) < timeout;
            if !keep {
                tracing::debug!(peer = %parked.conn.peer, "closing idle connection");
                let _ = registry.deregister(parked.conn.source());
                gauge.dec();
            }
            keep
        });
    }

    /// Refuses new connections and closes the ones still waiting.
    fn close(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.closed = true;
        self.parked.dec_by(slots.parked.len() as i64);
        slots.parked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// What re-parking relies on: bytes that arrived while a socket was
    /// registered elsewhere (or nowhere) are reported as soon as it is
    /// added to the lot's set, though mio registers edge-triggered.
    #[test]
    fn bytes_waiting_before_registration_are_reported_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut server = mio::net::TcpStream::from_std(server);
        // Registered with one set (tokio's, say), then taken out of it.
        let first = Poll::new().unwrap();
        first
            .registry()
            .register(&mut server, Token(1), Interest::READABLE)
            .unwrap();
        first.registry().deregister(&mut server).unwrap();
        // The bytes come while it is in no set at all.
        client.write_all(b"ping\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut lot = Poll::new().unwrap();
        lot.registry()
            .register(&mut server, Token(7), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        lot.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        let tokens: Vec<_> = events
            .iter()
            .map(|e| (e.token(), e.is_readable()))
            .collect();
        assert_eq!(tokens, [(Token(7), true)]);
    }
}
