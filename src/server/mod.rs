//! Runs services on their listeners: binds everything first, announces the
//! `listening on` lines, then drives one task per listener and one per
//! connection until shutdown.
//!
//! ```text
//! ServerConfig ──bind──▶ Server ──run(shutdown)──▶ accept loops (stream.rs)
//!                                               └─▶ datagram loops (datagram.rs)
//! ```

mod datagram;
mod parking;
mod stream;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::config::{FLUSH_DELAY, Limits, ServerConfig};
use crate::net::listener::{self, Bound};
use crate::service::{ConnContext, Service};
use crate::shutdown::{Shutdown, Signals};
use tokio_util::sync::CancellationToken;

/// How long connections closed by the end of the grace period get to
/// notice it before the process exits anyway.
const FORCE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A server with every socket bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    sockets: Vec<BoundService>,
    grace: Duration,
}

#[derive(Debug)]
struct BoundService {
    service: Service,
    limits: Arc<Limits>,
    /// One permit per open connection, shared by all of the service's
    /// listeners (`--max-conns` counts the service, not each listener).
    permits: Arc<Semaphore>,
    socket: Bound,
    name: String,
}

impl Server {
    /// Binds every listener of every service, in order.
    ///
    /// # Errors
    /// The first listener that cannot be bound, named; nothing is served
    /// then (the sockets bound so far are closed).
    pub async fn bind(config: &ServerConfig) -> anyhow::Result<Server> {
        let mut sockets = Vec::new();
        for svc in &config.services {
            let limits = Arc::new(svc.limits.clone());
            let permits = Arc::new(Semaphore::new(limits.max_conns));
            let mut bound = Vec::new();
            if svc.systemd {
                bound.extend(listener::from_systemd().context("systemd socket activation")?);
            }
            for endpoint in &svc.listen {
                bound.push(listener::bind(endpoint).await?);
            }
            for socket in bound {
                if let Bound::Stream(listener::StreamListener::Tcp { tls: true, .. }) = socket {
                    anyhow::bail!("tls:// listeners are not available in this version of sockit");
                }
                let name = socket.local_endpoint()?;
                sockets.push(BoundService {
                    service: svc.service,
                    limits: limits.clone(),
                    permits: permits.clone(),
                    socket,
                    name,
                });
            }
        }
        Ok(Server {
            sockets,
            grace: config.grace,
        })
    }

    /// The bound addresses, in the address syntax (`tcp://127.0.0.1:40123`),
    /// in the order of the configuration.
    pub fn local_endpoints(&self) -> Vec<String> {
        self.sockets.iter().map(|s| s.name.clone()).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open
    /// connections finish for the grace period, and returns.
    ///
    /// # Errors
    /// When a listener's parking lot cannot be set up; failures of single
    /// connections or datagrams are logged, never returned.
    pub async fn run(self, shutdown_trigger: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.run_with_force(shutdown_trigger, std::future::pending())
            .await
    }

    /// Like [`run`](Server::run), with a second trigger that ends the grace
    /// period early (the binary's second Ctrl-C).
    ///
    /// # Errors
    /// As for [`run`](Server::run).
    pub async fn run_with_force(
        self,
        shutdown_trigger: impl Future<Output = ()>,
        force: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let shutdown = Shutdown::default();
        for bound in self.sockets {
            let ctx = Arc::new(ConnContext {
                max_line: bound.limits.max_line,
                idle_timeout: bound.limits.idle_timeout,
                flush_delay: FLUSH_DELAY,
                force_close: shutdown.force_close.clone(),
            });
            tracing::info!(service = bound.service.name(), addr = %bound.name, "listening");
            match bound.socket {
                Bound::Stream(listener) => {
                    let handler = stream::Handler {
                        service: bound.service,
                        ctx,
                        shutdown: shutdown.clone(),
                    };
                    let (acceptor, lot) =
                        stream::Acceptor::new(listener, bound.limits, bound.permits, handler)
                            .context("create the parking lot")?;
                    shutdown.tasks.spawn(acceptor.run());
                    shutdown.tasks.spawn(lot);
                }
                Bound::Datagram(socket) => {
                    let server = datagram::DatagramServer::new(
                        bound.service,
                        socket,
                        bound.limits,
                        &shutdown,
                    );
                    shutdown.tasks.spawn(server.run());
                }
            }
        }

        shutdown_trigger.await;
        shutdown.stop_accepting.cancel();
        shutdown.tasks.close();
        let finished = tokio::select! {
            done = tokio::time::timeout(self.grace, shutdown.tasks.wait()) => done.is_ok(),
            _ = force => false,
        };
        if !finished {
            tracing::info!("closing the connections still open");
            shutdown.force_close.cancel();
            let _ = tokio::time::timeout(FORCE_CLOSE_WAIT, shutdown.tasks.wait()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// What the binary runs for `sockit serve`: a multi-threaded runtime, the
/// listening lines on stdout, and SIGINT/SIGTERM as the shutdown trigger.
///
/// # Errors
/// A listener that cannot be bound, or signal handlers that cannot be set.
pub fn block_on_serve(config: ServerConfig) -> anyhow::Result<()> {
    // On one CPU (`taskset -c 0`, a one-core container) a multi-threaded
    // runtime only adds cross-thread hand-offs: everything runs on one
    // thread anyway. Measured on the pipelined ping benchmark: ~8% less
    // server CPU per request.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("start the runtime")?;
    runtime.block_on(async {
        let server = Server::bind(&config).await?;
        // Install the handlers before announcing readiness, so a signal
        // sent right after the listening lines is never missed.
        let mut signals = Signals::install().context("install signal handlers")?;
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        {
            let (first, second) = (first.clone(), second.clone());
            tokio::spawn(async move {
                let name = signals.next().await;
                tracing::info!("{name}: shutting down (again to close open connections now)");
                first.cancel();
                let name = signals.next().await;
                tracing::info!("{name} again: closing open connections now");
                second.cancel();
            });
        }
        let mut stdout = std::io::stdout().lock();
        for endpoint in server.local_endpoints() {
            writeln!(stdout, "listening on {endpoint}")?;
        }
        stdout.flush()?;
        drop(stdout);
        server
            .run_with_force(first.cancelled(), second.cancelled())
            .await
    })
}
