//! The accept loop for stream listeners (TCP, TLS, Unix): access control
//! at accept, the connection limit, the parking lot where new connections
//! wait for their first bytes (and quiet ones for their next), the TLS
//! handshake, and one task per active connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::permit::{PerIp, Permit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::Limits;
use crate::metrics::StreamMetrics;
use crate::net::listener::{Conn, StreamListener};
use crate::net::stream::{Stream, TlsStream};
use crate::server::parking::ParkingLot;
use crate::service::{ConnContext, Ended, HANDSHAKE_TIMEOUT, ListenerContext, Service};
use crate::shutdown::Shutdown;

/// What a connection over `--max-conns` is told before it is closed.
const TOO_MANY: &[u8] = b"error: too many connections\n";

/// What a client over `--max-conns-per-ip` is told.
const TOO_MANY_FROM_ADDRESS: &[u8] = b"error: too many connections from your address\n";

/// At most this many over-limit connections are being told so at once;
/// past that they are closed without a word, so a connection flood cannot
/// turn the notices themselves into a resource drain.
const MAX_REJECTIONS_IN_FLIGHT: usize = 256;

/// Numbers Unix connections (`unix-N`) across all listeners.
static UNIX_IDS: AtomicU64 = AtomicU64::new(1);

/// A TLS listener's side of the handshake.
#[derive(Clone)]
pub(super) struct TlsSetup {
    /// The listener's acceptor: its certificate, ALPN list and ticket keys.
    pub(super) acceptor: TlsAcceptor,
    /// A connection whose handshake has not finished this long after it
    /// was accepted is closed (`--handshake-timeout`).
    pub(super) handshake_timeout: Duration,
}

/// Starts a connection's task: registers the socket with tokio, runs the
/// TLS handshake where the listener wants one, and serves the connection
/// inside a span naming the peer. Cloned into the acceptor and into its
/// parking lot's task.
#[derive(Clone)]
pub(super) struct Handler {
    pub(super) service: Service,
    pub(super) ctx: Arc<ListenerContext>,
    pub(super) tls: Option<TlsSetup>,
    pub(super) shutdown: Shutdown,
    /// The listener's connection counters (its byte and message
    /// counters are in `ctx`).
    pub(super) metrics: StreamMetrics,
}

impl Handler {
    /// Spawns the task serving `conn`; it holds `permit` until it ends,
    /// or hands both back to `lot` when the connection goes quiet.
    pub(super) fn spawn(&self, conn: Conn, permit: Permit, lot: &Arc<ParkingLot>) {
        let span =
            tracing::debug_span!("conn", service = self.service.kind().name(), peer = %conn.peer);
        let service = self.service.clone();
        let mut tls = self.tls.clone();
        let metrics = self.metrics.clone();
        let lot = lot.clone();
        let ctx = ConnContext {
            peer: conn.peer,
            listener: self.ctx.clone(),
        };
        self.shutdown.tasks.spawn(
            async move {
                tracing::debug!("open");
                let (mut conn, mut permit) = (conn, permit);
                loop {
                    // The handshake, if any, happens on the first turn only.
                    match serve(&service, conn, tls.take(), &ctx, &metrics).await {
                        Ok(None) => tracing::debug!("closed"),
                        Ok(Some(quiet)) => match lot.repark(quiet, permit) {
                            Ok(()) => {
                                tracing::debug!("parked");
                                return;
                            }
                            // The lot has closed (the server is shutting
                            // down): serve on from here.
                            Err((quiet, back)) => {
                                (conn, permit) = (quiet, back);
                                continue;
                            }
                        },
                        Err(e) => tracing::debug!(error = %e, "closed with error"),
                    }
                    break;
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// One connection, from registration to close, or until it goes quiet:
/// then it comes back unregistered, to be parked. A failed handshake
/// counts as a TLS failure, any other error under its kind.
async fn serve(
    service: &Service,
    conn: Conn,
    tls: Option<TlsSetup>,
    ctx: &ConnContext,
    metrics: &StreamMetrics,
) -> io::Result<Option<Conn>> {
    let (peer, accepted) = (conn.peer, conn.accepted);
    let mut stream = conn
        .into_stream()
        .inspect_err(|e| metrics.errors.count(e))?;
    if let Some(tls) = &tls {
        let deadline = accepted + tls.handshake_timeout;
        stream = tokio::select! {
            biased;
            // Boxed: the handshake's state would otherwise size the task
            // of every connection, TLS or not, for its whole life.
            done = Box::pin(accept_tls(&tls.acceptor, stream, deadline)) => {
                match &done {
                    Ok(_) => metrics.tls_ok.inc(),
                    Err(_) => metrics.tls_failed.inc(),
                };
                done?
            }
            _ = ctx.force_close.cancelled() => return Ok(None),
        };
    }
    let stream = stream.metered(ctx.metrics.bytes.clone());
    match service.serve_stream(stream, ctx).await {
        Ok(Ended::Closed) => Ok(None),
        Ok(Ended::Quiet {
            stream,
            last_active,
        }) => {
            let socket = stream
                .into_plain()
                .inspect_err(|e| metrics.errors.count(e))?;
            Ok(Some(Conn::from_plain(socket, peer, accepted, last_active)))
        }
        Err(e) => {
            metrics.errors.count(&e);
            Err(e)
        }
    }
}

/// The server side of a TLS handshake, given until `deadline`. A client
/// that speaks anything else, or too slowly, is an error for this
/// connection alone.
async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: Stream,
    deadline: Instant,
) -> io::Result<Stream> {
    let Ok(tcp) = stream.into_tcp() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS is served over TCP only",
        ));
    };
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(Stream::from(TlsStream::from(tls))),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("TLS handshake failed: {e}"),
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not finished in time",
        )),
    }
}

/// One listener's accept loop.
pub(super) struct Acceptor {
    listener: StreamListener,
    limits: Arc<Limits>,
    /// One permit per open connection, shared by every listener of the
    /// service; a connection holds its permit until it closes.
    permits: Arc<Semaphore>,
    /// Open connections per address, with `--max-conns-per-ip`; shared
    /// like `permits`.
    per_ip: Option<Arc<PerIp>>,
    /// Bounds the tasks that tell over-limit clients why they are closed.
    rejections: Arc<Semaphore>,
    /// Where new connections wait for their first bytes.
    lot: Arc<ParkingLot>,
    handler: Handler,
}

impl Acceptor {
    /// An acceptor for `listener`, and its parking lot's task (to be
    /// spawned next to the acceptor's own).
    ///
    /// # Errors
    /// When the parking lot's epoll set cannot be created.
    pub(super) fn new(
        listener: StreamListener,
        limits: Arc<Limits>,
        permits: Arc<Semaphore>,
        per_ip: Option<Arc<PerIp>>,
        handler: Handler,
    ) -> std::io::Result<(Self, impl Future<Output = ()>)> {
        let (lot, poll) = ParkingLot::new(handler.metrics.parked.clone())?;
        // A connection still silent when its first words are due is
        // closed while parked: a TLS client without its ClientHello by
        // the handshake deadline, an HTTP client without a request head
        // by the header timeout.
        let lot_timeout = [
            limits.idle_timeout,
            handler.tls.as_ref().map(|tls| tls.handshake_timeout),
            handler.service.first_words_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        let lot_task = {
            let (handler, lot) = (handler.clone(), lot.clone());
            lot.clone().run(
                poll,
                lot_timeout,
                handler.shutdown.clone(),
                move |conn, permit| handler.spawn(conn, permit, &lot),
            )
        };
        let acceptor = Acceptor {
            listener,
            limits,
            permits,
            per_ip,
            rejections: Arc::new(Semaphore::new(MAX_REJECTIONS_IN_FLIGHT)),
            lot,
            handler,
        };
        Ok((acceptor, lot_task))
    }

    /// Accepts until shutdown, then drops the listener (removing a Unix
    /// socket file) so no new connection is queued.
    pub(super) async fn run(self) {
        loop {
            let conn = tokio::select! {
                _ = self.handler.shutdown.stop_accepting.cancelled() => return,
                conn = self.listener.accept(&UNIX_IDS) => conn,
            };
            self.dispatch(conn);
        }
    }

    fn dispatch(&self, conn: Conn) {
        let metrics = &self.handler.metrics;
        metrics.accepted.inc();
        if let Some(ip) = conn.peer.ip()
            && !self.limits.access.permits(ip)
        {
            metrics.refused_access.inc();
            tracing::info!(peer = %conn.peer, "denied by access rules");
            return;
        }
        let ip_slot = match (&self.per_ip, conn.peer.ip()) {
            (Some(table), Some(ip)) => match table.take(ip) {
                Some(slot) => Some(slot),
                None => {
                    metrics.refused_per_ip.inc();
                    tracing::warn!(peer = %conn.peer, max = table.max(), "too many connections from one address; refusing");
                    self.reject(conn, TOO_MANY_FROM_ADDRESS);
                    return;
                }
            },
            _ => None,
        };
        let Ok(conns) = self.permits.clone().try_acquire_owned() else {
            metrics.refused_limit.inc();
            tracing::warn!(peer = %conn.peer, max = self.limits.max_conns, "too many connections; refusing");
            self.reject(conn, TOO_MANY);
            return;
        };
        let permit = Permit::new(conns, ip_slot, metrics.active.clone());
        // Over TLS the client always speaks first (its ClientHello).
        let client_first = self.handler.service.waits_for_client() || self.handler.tls.is_some();
        if !client_first {
            self.handler.spawn(conn, permit, &self.lot);
        } else if let Err((conn, permit)) = self.lot.park(conn, permit) {
            self.handler.spawn(conn, permit, &self.lot);
        }
    }

    /// Tells an over-limit client `why` and closes it, in a task of its
    /// own (bounded in number and time).
    fn reject(&self, conn: Conn, why: &'static [u8]) {
        let Ok(slot) = self.rejections.clone().try_acquire_owned() else {
            return;
        };
        let tls = self.handler.tls.clone();
        self.handler.shutdown.tasks.spawn(async move {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            let _ =
                tokio::time::timeout_at(deadline, tell_too_many(conn, tls, why, deadline)).await;
            drop(slot);
        });
    }
}

/// Says why the connection is refused (over TLS, after the handshake, so
/// the client can read it), then closes our side. Failures are ignored:
/// the client is being turned away either way.
async fn tell_too_many(conn: Conn, tls: Option<TlsSetup>, why: &[u8], deadline: Instant) {
    let Ok(mut stream) = conn.into_stream() else {
        return;
    };
    if let Some(tls) = tls {
        match accept_tls(&tls.acceptor, stream, deadline).await {
            Ok(s) => stream = s,
            Err(_) => return,
        }
    }
    let _ = stream.write_all(why).await;
    let _ = stream.shutdown().await;
}
