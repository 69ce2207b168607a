//! The receive loops for datagram sockets: a thread of its own for each
//! UDP socket (blocking, batched system calls), a task for each unixgram
//! one; reusable receive and reply buffers, and the anti-abuse rules of
//! SPEC 2 applied before a reply is computed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

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
            rate,
            shutdown,
            metrics,
            datagram_metrics,
        } = self;
        let answer = Answer {
            service,
            limits,
            rate,
            state: DatagramState::default(),
            out: Vec::with_capacity(1024),
            metrics,
            datagram_metrics,
        };
        match socket {
            DatagramSocket::Udp(socket) => run_udp(socket, answer, &shutdown).await,
            DatagramSocket::Unix { socket, file } => {
                run_unix(&socket, answer, &shutdown).await;
                drop(file);
            }
        }
    }
}

/// What a datagram socket's loop answers with: the service, the rules
/// applied before it, and the counters.
struct Answer {
    service: Classic,
    limits: Arc<Limits>,
    rate: RateLimiter,
    state: DatagramState,
    /// The reply being made.
    out: Vec<u8>,
    metrics: ListenerMetrics,
    datagram_metrics: DatagramMetrics,
}

impl Answer {
    /// Counts a datagram and makes its reply in `self.out`: true if there
    /// is one to send. With its source address (UDP), the rules for it
    /// (loop guard, access, rate) come first.
    fn reply(&mut self, data: &[u8], from: Option<SocketAddr>) -> bool {
        self.counts().received(data.len());
        if let Some(from) = from
            && !admit(from, &self.limits, &mut self.rate, &self.datagram_metrics)
        {
            return false;
        }
        self.counts().served()
            && self.service.reply_datagram(
                data,
                self.limits.max_line,
                &mut self.out,
                &mut self.state,
            )
    }

    fn counts(&self) -> Counts<'_> {
        Counts {
            all: &self.metrics,
            datagram: &self.datagram_metrics,
        }
    }
}

/// Serves a UDP socket on a thread of its own, in blocking system calls
/// (batched, [`UdpBatch`]): a datagram then costs what it costs a C
/// server, with no readiness poll and no task wake-up per burst. At
/// shutdown the thread is woken by an empty datagram from the socket to
/// itself, and drops the socket as it ends; this waits for it.
async fn run_udp(socket: tokio::net::UdpSocket, answer: Answer, shutdown: &Shutdown) {
    let socket = match into_blocking(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(error = %e, "datagram socket failed");
            return;
        }
    };
    let waker = socket
        .try_clone()
        .and_then(|waker| Ok((waker, wake_address(socket.local_addr()?))));
    let stop = shutdown.stop_accepting.clone();
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    // What the task logs under (a worker's span), the thread logs under.
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new()
        .name("sockit-udp".into())
        .spawn(move || {
            let _span = span.entered();
            serve_udp(&socket, answer, &stop);
            drop(socket);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the UDP socket's thread");
        return;
    }
    tokio::pin!(ended);
    tokio::select! {
        _ = &mut ended => return,
        () = shutdown.stop_accepting.cancelled() => {}
    }
    match waker {
        Ok((waker, to)) => {
            if let Err(e) = waker.send_to(&[], to) {
                tracing::debug!(error = %e, "cannot wake the UDP thread; it ends at its read timeout");
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "no waker for the UDP thread; it ends at its read timeout")
        }
    }
    let _ = ended.await;
}

/// How long the UDP thread blocks at most before it looks at the stop
/// flag anyway: only if its wake-up datagram was lost.
const UDP_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The socket, taken out of the runtime and made blocking.
fn into_blocking(socket: tokio::net::UdpSocket) -> io::Result<std::net::UdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_READ_TIMEOUT))?;
    Ok(socket)
}

/// Where a datagram reaches a socket bound to `local`: itself, or the
/// loopback address of its family if it is bound to all addresses.
fn wake_address(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// The UDP socket's thread: batches where `recvmmsg` exists, one
/// datagram at a time where it does not, until `stop`.
fn serve_udp(socket: &std::net::UdpSocket, mut answer: Answer, stop: &CancellationToken) {
    let mut batch = UdpBatch::new();
    while !stop.is_cancelled() {
        // The wake-up at shutdown is not a client's: the flag is set before
        // it is sent, so asking once a batch, after the receive, is enough
        // (the token takes a lock to answer).
        let mut stopping = None;
        let received = batch.receive(socket, |data, from, replies| {
            if !*stopping.get_or_insert_with(|| stop.is_cancelled())
                && answer.reply(data, Some(from))
            {
                replies.add(&answer.out, from);
            }
        });
        match received {
            Ok(_) => batch.send(socket, |sent, to| answer.counts().sent_to(sent, to)),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSYS as i32) => {
                tracing::debug!("no recvmmsg here: one datagram at a time");
                serve_udp_one_by_one(socket, answer, stop);
                return;
            }
            Err(e) => receive_failed(&e),
        }
    }
}

/// [`serve_udp`] without `recvmmsg`.
fn serve_udp_one_by_one(
    socket: &std::net::UdpSocket,
    mut answer: Answer,
    stop: &CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.is_cancelled() {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if !stop.is_cancelled() && answer.reply(&buf[..n], Some(from)) {
                    let sent = socket.send_to(&answer.out, from);
                    answer.counts().sent_to(sent, from);
                }
            }
            Err(e) => receive_failed(&e),
        }
    }
}

/// Serves a unixgram socket in the runtime: wait for readiness, then drain
/// what the kernel has queued with direct non-blocking receives, one trip
/// through the runtime per burst instead of one per datagram.
async fn run_unix(socket: &tokio::net::UnixDatagram, mut answer: Answer, shutdown: &Shutdown) {
    // Made once: a fresh `cancelled()` per datagram would join and leave
    // the token's waiter list every time.
    let stop = shutdown.stop_accepting.cancelled();
    tokio::pin!(stop);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let ready = tokio::select! {
            biased;
            r = socket.readable() => r,
            () = &mut stop => return,
        };
        if let Err(e) = ready {
            tracing::warn!(error = %e, "datagram socket failed");
            return;
        }
        for _ in 0..DRAIN_BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    // An unbound client has no address to reply to.
                    let Some(path) = from.as_pathname() else {
                        answer.counts().received(n);
                        tracing::debug!("datagram from an unbound unix socket: no reply possible");
                        continue;
                    };
                    if answer.reply(&buf[..n], None) {
                        match send_unix_nowait(socket, &answer.out, path) {
                            Some(sent) => answer.counts().sent(sent),
                            None => answer.counts().send_failed(),
                        }
                    }
                }
                // The queue is empty: wait for the next datagram.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => receive_failed(&e),
            }
        }
    }
}

/// Datagrams handled per wake-up before the loop yields to other tasks.
const DRAIN_BATCH: usize = 64;

/// A receive that failed: an empty queue or the read timeout is nothing
/// to tell; anything else (an ICMP error surfacing) is logged, and the
/// next datagram tried.
fn receive_failed(e: &io::Error) {
    if !matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        tracing::debug!(error = %e, "recv_from");
    }
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

    /// Counts a reply to `to` sent, or failed and logged.
    fn sent_to(&self, sent: io::Result<usize>, to: SocketAddr) {
        match sent {
            Ok(bytes) => self.sent(bytes),
            Err(e) => {
                self.send_failed();
                tracing::debug!(peer = %to, error = %e, "send_to");
            }
        }
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
