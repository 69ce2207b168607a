//! The accept loop for stream listeners (TCP, Unix): access control at
//! accept, the connection limit, the parking lot where new connections
//! wait for their first bytes, and one task per active connection.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::config::Limits;
use crate::net::listener::{Conn, StreamListener, TokioConn};
use crate::server::parking::ParkingLot;
use crate::service::{ConnContext, HANDSHAKE_TIMEOUT, Service};
use crate::shutdown::Shutdown;

/// What a connection over `--max-conns` is told before it is closed.
const TOO_MANY: &[u8] = b"error: too many connections\n";

/// At most this many over-limit connections are being told so at once;
/// past that they are closed without a word, so a connection flood cannot
/// turn the notices themselves into a resource drain.
const MAX_REJECTIONS_IN_FLIGHT: usize = 256;

/// Numbers Unix connections (`unix-N`) across all listeners.
static UNIX_IDS: AtomicU64 = AtomicU64::new(1);

/// Starts a connection's task: registers the socket with tokio and runs
/// the service on it inside a span naming the peer. Cloned into the
/// acceptor and into its parking lot's task.
#[derive(Clone)]
pub(super) struct Handler {
    pub(super) service: Service,
    pub(super) ctx: Arc<ConnContext>,
    pub(super) shutdown: Shutdown,
}

impl Handler {
    /// Spawns the task serving `conn`; it holds `permit` until it ends.
    pub(super) fn spawn(&self, conn: Conn, permit: OwnedSemaphorePermit) {
        let span =
            tracing::debug_span!("conn", service = self.service.name(), peer = %conn.peer_name());
        let service = self.service;
        let ctx = self.ctx.clone();
        self.shutdown.tasks.spawn(
            async move {
                tracing::debug!("open");
                let result = match conn.into_tokio() {
                    Ok(TokioConn::Tcp(s)) => service.serve_stream(s, &ctx).await,
                    Ok(TokioConn::Unix(s)) => service.serve_stream(s, &ctx).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => tracing::debug!("closed"),
                    Err(e) => tracing::debug!(error = %e, "closed with error"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// One listener's accept loop.
pub(super) struct Acceptor {
    listener: StreamListener,
    limits: Arc<Limits>,
    /// One permit per open connection, shared by every listener of the
    /// service; a connection holds its permit until it closes.
    permits: Arc<Semaphore>,
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
        handler: Handler,
    ) -> std::io::Result<(Self, impl Future<Output = ()>)> {
        let (lot, poll) = ParkingLot::new()?;
        let lot_task = {
            let handler = handler.clone();
            lot.clone().run(
                poll,
                limits.idle_timeout,
                handler.shutdown.clone(),
                move |conn, permit| handler.spawn(conn, permit),
            )
        };
        let acceptor = Acceptor {
            listener,
            limits,
            permits,
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
        if let Some(ip) = conn.peer_ip()
            && !self.limits.access.permits(ip)
        {
            tracing::info!(peer = %conn.peer_name(), "denied by access rules");
            return;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.reject(conn);
            return;
        };
        if !self.handler.service.waits_for_client() {
            self.handler.spawn(conn, permit);
        } else if let Err((conn, permit)) = self.lot.park(conn, permit) {
            self.handler.spawn(conn, permit);
        }
    }

    fn reject(&self, conn: Conn) {
        tracing::warn!(peer = %conn.peer_name(), max = self.limits.max_conns, "too many connections; refusing");
        let Ok(slot) = self.rejections.clone().try_acquire_owned() else {
            return;
        };
        self.handler.shutdown.tasks.spawn(async move {
            let tell = async {
                match conn.into_tokio() {
                    Ok(TokioConn::Tcp(s)) => tell_too_many(s).await,
                    Ok(TokioConn::Unix(s)) => tell_too_many(s).await,
                    Err(_) => {}
                }
            };
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, tell).await;
            drop(slot);
        });
    }
}

/// Says why the connection is refused, then closes our side. Failures are
/// ignored: the client is being turned away either way.
async fn tell_too_many(mut stream: impl AsyncWrite + Unpin) {
    let _ = stream.write_all(TOO_MANY).await;
    let _ = stream.shutdown().await;
}
