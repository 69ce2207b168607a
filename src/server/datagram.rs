//! The receive loop for datagram sockets (UDP, unixgram): one task per
//! socket, one reusable receive buffer and one reply buffer, and the
//! anti-abuse rules of SPEC 2 applied before a reply is computed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Limits;
use crate::metrics::{DatagramMetrics, ListenerMetrics};
use crate::net::listener::DatagramSocket;
use crate::net::ratelimit::{RateLimiter, from_classic_port};
use crate::service::{Classic, DatagramState};
use crate::shutdown::Shutdown;

use super::batch::{MAX_DATAGRAM, UdpBatch};

/// One datagram socket's service loop.
pub(super) struct DatagramServer {
    service: Classic,
    socket: DatagramSocket,
    limits: Arc<Limits>,
    rate: RateLimiter,
    shutdown: Shutdown,
    metrics: ListenerMetrics,
    datagram_metrics: DatagramMetrics,
}

impl DatagramServer {
    pub(super) fn new(
        service: Classic,
        socket: DatagramSocket,
        limits: Arc<Limits>,
        shutdown: &Shutdown,
        (metrics, datagram_metrics): (ListenerMetrics, DatagramMetrics),
    ) -> Self {
        DatagramServer {
            service,
            socket,
            rate: RateLimiter::new(limits.udp_rate),
            limits,
            shutdown: shutdown.clone(),
            metrics,
            datagram_metrics,
        }
    }

    /// Answers datagrams until shutdown.
    pub(super) async fn run(self) {
        let DatagramServer {
            service,
            socket,
            limits,
            mut rate,
            shutdown,
            metrics,
            datagram_metrics,
        } = self;
        let counts = Counts {
            all: &metrics,
            datagram: &datagram_metrics,
        };
        // UDP takes datagrams in batches where it can; unixgram, and UDP
        // where it cannot, one at a time into `buf`.
        let mut batch = match &socket {
            DatagramSocket::Udp(_) => Some(UdpBatch::new()),
            DatagramSocket::Unix { .. } => None,
        };
        // Allocated when first needed: UDP only needs it if `recvmmsg`
        // turns out to be missing.
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(1024);
        let mut state = DatagramState::default();
        // Made once: a fresh `cancelled()` per datagram would join and
        // leave the token's waiter list every time.
        let stop = shutdown.stop_accepting.cancelled();
        tokio::pin!(stop);
        loop {
            // Wait for readiness, then drain what the kernel has queued with
            // direct non-blocking receives: one trip through the runtime per
            // burst instead of one per datagram.
            let ready = match &socket {
                DatagramSocket::Udp(s) => tokio::select! {
                    biased;
                    r = s.readable() => r,
                    _ = &mut stop => return,
                },
                DatagramSocket::Unix { socket: s, .. } => tokio::select! {
                    biased;
                    r = s.readable() => r,
                    _ = &mut stop => return,
                },
            };
            if let Err(e) = ready {
                tracing::warn!(error = %e, "datagram socket failed");
                return;
            }
            if let (Some(batching), DatagramSocket::Udp(socket)) = (&mut batch, &socket) {
                let mut unsupported = false;
                for _ in 0..DRAIN_BATCH / super::batch::BATCH {
                    let received = batching.receive(socket, |data, from, replies| {
                        counts.received(data.len());
                        if admit(from, &limits, &mut rate, counts.datagram)
                            && counts.served()
                            && service.reply_datagram(data, limits.max_line, &mut out, &mut state)
                        {
                            replies.add(&out, from);
                        }
                    });
                    match received {
                        Ok(_) => {
                            batching
                                .send(socket, |sent, to| match sent {
                                    Ok(n) => counts.sent(n),
                                    Err(e) => {
                                        counts.send_failed();
                                        tracing::debug!(peer = %to, error = %e, "send_to");
                                    }
                                })
                                .await;
                        }
                        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSYS as i32) => {
                            unsupported = true;
                            break;
                        }
                        Err(e) => {
                            if !received_nothing(e) {
                                break;
                            }
                        }
                    }
                }
                if unsupported {
                    tracing::debug!("no recvmmsg here: one datagram at a time");
                    batch = None;
                }
                continue;
            }
            if buf.is_empty() {
                buf = vec![0u8; MAX_DATAGRAM];
            }
            for _ in 0..DRAIN_BATCH {
                let more = match &socket {
                    DatagramSocket::Udp(socket) => match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            counts.received(n);
                            if admit(from, &limits, &mut rate, counts.datagram)
                                && counts.served()
                                && service.reply_datagram(
                                    &buf[..n],
                                    limits.max_line,
                                    &mut out,
                                    &mut state,
                                )
                            {
                                match socket.send_to(&out, from).await {
                                    Ok(sent) => counts.sent(sent),
                                    Err(e) => {
                                        counts.send_failed();
                                        tracing::debug!(peer = %from, error = %e, "send_to");
                                    }
                                }
                            }
                            true
                        }
                        Err(e) => received_nothing(e),
                    },
                    DatagramSocket::Unix { socket, .. } => match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            counts.received(n);
                            // An unbound client has no address to reply to.
                            if let Some(path) = from.as_pathname() {
                                if counts.served()
                                    && service.reply_datagram(
                                        &buf[..n],
                                        limits.max_line,
                                        &mut out,
                                        &mut state,
                                    )
                                {
                                    match send_unix_nowait(socket, &out, path) {
                                        Some(sent) => counts.sent(sent),
                                        None => counts.send_failed(),
                                    }
                                }
                            } else {
                                tracing::debug!(
                                    "datagram from an unbound unix socket: no reply possible"
                                );
                            }
                            true
                        }
                        Err(e) => received_nothing(e),
                    },
                };
                if !more {
                    break;
                }
            }
        }
    }
}

/// Datagrams handled per wake-up before the loop yields to other tasks.
const DRAIN_BATCH: usize = 64;

/// Whether to keep draining after a failed receive: `WouldBlock` means the
/// queue is empty; anything else (an ICMP error surfacing) is logged and
/// the next datagram tried.
fn received_nothing(e: std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return false;
    }
    tracing::debug!(error = %e, "recv_from");
    true
}

/// Replies on a unixgram socket without waiting. A client that connected
/// to us and never reads fills its queue; waiting for it would stall
/// every other client of the socket, so its replies are dropped instead.
/// (Straight to the syscall: tokio's `try_send_to` trusts a readiness flag
/// that one full peer clears for all.)
/// Returns the bytes sent, `None` when the reply was dropped.
fn send_unix_nowait(
    socket: &tokio::net::UnixDatagram,
    out: &[u8],
    path: &std::path::Path,
) -> Option<usize> {
    socket2::SockAddr::unix(path)
        .and_then(|to| socket2::SockRef::from(socket).send_to(out, &to))
        .inspect_err(|e| tracing::debug!(peer = %path.display(), error = %e, "send_to"))
        .ok()
}

/// The socket's counters, borrowed for the loop.
struct Counts<'a> {
    all: &'a ListenerMetrics,
    datagram: &'a DatagramMetrics,
}

impl Counts<'_> {
    fn received(&self, bytes: usize) {
        self.datagram.received.inc();
        self.all.bytes.received.inc_by(bytes as u64);
    }

    /// Counts a datagram let through to the service; always `true`.
    fn served(&self) -> bool {
        self.all.messages.inc();
        true
    }

    fn send_failed(&self) {
        self.datagram.send_errors.inc();
    }

    fn sent(&self, bytes: usize) {
        self.datagram.sent.inc();
        self.all.bytes.sent.inc_by(bytes as u64);
    }
}

/// The loop guard, access rules and the rate limit, in that order; a
/// drop is counted under its reason.
fn admit(
    from: SocketAddr,
    limits: &Limits,
    rate: &mut RateLimiter,
    metrics: &DatagramMetrics,
) -> bool {
    if from_classic_port(from) {
        metrics.dropped_loop.inc();
        tracing::debug!(peer = %from, "dropped: from a classic service port");
        return false;
    }
    if !limits.access.permits(from.ip()) {
        metrics.dropped_access.inc();
        tracing::debug!(peer = %from, "dropped: denied by access rules");
        return false;
    }
    // The clock is read only for a source that is limited.
    if !rate.exempt(from.ip()) && !rate.allow(from.ip(), Instant::now()) {
        metrics.dropped_rate.inc();
        tracing::debug!(peer = %from, "dropped: over the rate limit");
        return false;
    }
    true
}
