//! The accept loop for stream listeners (TCP, Unix): access control at
//! accept, the connection limit, and one task per connection.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::Limits;
use crate::net::listener::{Conn, StreamListener};
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

/// One listener's accept loop.
pub(super) struct Acceptor {
    service: Service,
    listener: StreamListener,
    limits: Arc<Limits>,
    ctx: Arc<ConnContext>,
    /// One permit per open connection, shared by every listener of the
    /// service; a connection task holds its permit until it ends.
    permits: Arc<Semaphore>,
    /// Bounds the tasks that tell over-limit clients why they are closed.
    rejections: Arc<Semaphore>,
    shutdown: Shutdown,
}

impl Acceptor {
    pub(super) fn new(
        service: Service,
        listener: StreamListener,
        limits: Arc<Limits>,
        permits: Arc<Semaphore>,
        ctx: Arc<ConnContext>,
        shutdown: &Shutdown,
    ) -> Self {
        Acceptor {
            service,
            listener,
            permits,
            limits,
            ctx,
            rejections: Arc::new(Semaphore::new(MAX_REJECTIONS_IN_FLIGHT)),
            shutdown: shutdown.clone(),
        }
    }

    /// Accepts until shutdown, then drops the listener (removing a Unix
    /// socket file) so no new connection is queued.
    pub(super) async fn run(self) {
        loop {
            let conn = tokio::select! {
                _ = self.shutdown.stop_accepting.cancelled() => return,
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
        let span =
            tracing::debug_span!("conn", service = self.service.name(), peer = %conn.peer_name());
        let service = self.service;
        let ctx = self.ctx.clone();
        self.shutdown.tasks.spawn(
            async move {
                tracing::debug!("open");
                let result = match conn {
                    Conn::Tcp(s, _) => service.serve_stream(s, &ctx).await,
                    Conn::Unix(s, _) => service.serve_stream(s, &ctx).await,
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

    fn reject(&self, conn: Conn) {
        tracing::warn!(peer = %conn.peer_name(), max = self.limits.max_conns, "too many connections; refusing");
        let Ok(slot) = self.rejections.clone().try_acquire_owned() else {
            return;
        };
        self.shutdown.tasks.spawn(async move {
            let tell = async {
                match conn {
                    Conn::Tcp(mut s, _) => {
                        let _ = s.write_all(TOO_MANY).await;
                        let _ = s.shutdown().await;
                    }
                    Conn::Unix(mut s, _) => {
                        let _ = s.write_all(TOO_MANY).await;
                        let _ = s.shutdown().await;
                    }
                }
            };
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, tell).await;
            drop(slot);
        });
    }
}
