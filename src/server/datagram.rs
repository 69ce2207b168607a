//! The receive loop for datagram sockets (UDP, unixgram): one task per
//! socket, one reusable receive buffer and one reply buffer, and the
//! anti-abuse rules of SPEC 2 applied before a reply is computed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Limits;
use crate::net::listener::DatagramSocket;
use crate::net::ratelimit::RateLimiter;
use crate::service::{DatagramState, Service};
use crate::shutdown::Shutdown;

/// The largest datagram we read; anything longer is truncated by the kernel
/// (and then is still at most this long in memory).
const MAX_DATAGRAM: usize = 65_535;

/// Source ports of the classic small services. A datagram from one is
/// dropped: answering it is how two UDP services (echo and chargen, say)
/// get tricked into replying to each other forever.
const CLASSIC_PORTS: [u16; 5] = [7, 9, 13, 19, 37];

/// One datagram socket's service loop.
pub(super) struct DatagramServer {
    service: Service,
    socket: DatagramSocket,
    limits: Arc<Limits>,
    rate: RateLimiter,
    shutdown: Shutdown,
}

impl DatagramServer {
    pub(super) fn new(
        service: Service,
        socket: DatagramSocket,
        limits: Arc<Limits>,
        shutdown: &Shutdown,
    ) -> Self {
        DatagramServer {
            service,
            socket,
            rate: RateLimiter::new(limits.udp_rate),
            limits,
            shutdown: shutdown.clone(),
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
        } = self;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(1024);
        let mut state = DatagramState::default();
        loop {
            match &socket {
                DatagramSocket::Udp(socket) => {
                    let (n, from) = tokio::select! {
                        _ = shutdown.stop_accepting.cancelled() => return,
                        r = socket.recv_from(&mut buf) => match r {
                            Ok(r) => r,
                            Err(e) => { tracing::debug!(error = %e, "recv_from"); continue; }
                        },
                    };
                    if !admit(from, &limits, &mut rate) {
                        continue;
                    }
                    if service.reply_datagram(&buf[..n], limits.max_line, &mut out, &mut state)
                        && let Err(e) = socket.send_to(&out, from).await
                    {
                        tracing::debug!(peer = %from, error = %e, "send_to");
                    }
                }
                DatagramSocket::Unix { socket, .. } => {
                    let (n, from) = tokio::select! {
                        _ = shutdown.stop_accepting.cancelled() => return,
                        r = socket.recv_from(&mut buf) => match r {
                            Ok(r) => r,
                            Err(e) => { tracing::debug!(error = %e, "recv_from"); continue; }
                        },
                    };
                    // An unbound client has no address to reply to.
                    let Some(path) = from.as_pathname() else {
                        tracing::debug!("datagram from an unbound unix socket: no reply possible");
                        continue;
                    };
                    // Never wait for a client's full receive queue: that
                    // would stall every other client of the socket. The
                    // socket is non-blocking; a full queue drops the reply.
                    // (Straight to the syscall: tokio's try_send_to trusts
                    // a readiness flag that one full peer clears for all.)
                    if service.reply_datagram(&buf[..n], limits.max_line, &mut out, &mut state)
                        && let Err(e) = socket2::SockAddr::unix(path)
                            .and_then(|to| socket2::SockRef::from(socket).send_to(&out, &to))
                    {
                        tracing::debug!(peer = %path.display(), error = %e, "send_to");
                    }
                }
            }
        }
    }
}

/// Access rules, the loop guard and the rate limit, in that order.
fn admit(from: SocketAddr, limits: &Limits, rate: &mut RateLimiter) -> bool {
    if CLASSIC_PORTS.contains(&from.port()) || from.port() == 0 {
        tracing::debug!(peer = %from, "dropped: from a classic service port");
        return false;
    }
    if !limits.access.permits(from.ip()) {
        tracing::debug!(peer = %from, "dropped: denied by access rules");
        return false;
    }
    if !rate.allow(from.ip(), Instant::now()) {
        tracing::debug!(peer = %from, "dropped: over the rate limit");
        return false;
    }
    true
}
