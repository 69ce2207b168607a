//! Runs services on their listeners: binds everything first, announces the
//! `listening on` lines, then drives one task per listener and one per
//! connection until shutdown.
//!
//! ```text
//! ServerConfig ──bind──▶ Server ──run(shutdown)──▶ accept loops (stream.rs)
//!                                               └─▶ datagram loops (datagram.rs)
//! ```

mod batch;
mod datagram;
mod heap;
mod parking;
mod permit;
mod stream;
mod systemd;
pub mod workers;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::config::{FLUSH_DELAY, Limits, ServerConfig};
use crate::metrics::{DatagramMetrics, ListenerMetrics, Metrics, StreamMetrics};
use crate::net::addr::Endpoint;
use crate::net::listener::{self, Bound, DatagramSocket, StreamListener};
use crate::net::tls::{self, ServerIdentity};
use crate::service::{Classic, ListenerContext, Service, ServiceKind};
use crate::shutdown::{Shutdown, Signals};
use stream::TlsSetup;
use tokio_util::sync::CancellationToken;

/// How long connections closed by the end of the grace period get to
/// notice it before the process exits anyway.
const FORCE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A server with every socket bound, not yet serving.
pub struct Server {
    sockets: Vec<BoundService>,
    grace: Duration,
    /// Every listener's counters.
    metrics: Arc<Metrics>,
    /// The `--metrics` endpoint's socket and its announced name
    /// (`http://127.0.0.1:9100`).
    metrics_endpoint: Option<(StreamListener, String)>,
    /// A worker of `--workers N` (it logs less).
    worker: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.local_endpoints())
            .field("grace", &self.grace)
            .finish()
    }
}

/// One bound socket and what it serves.
struct BoundService {
    kind: ServiceKind,
    limits: Arc<Limits>,
    /// One permit per open connection, shared by all of the service's
    /// listeners (`--max-conns` counts the service, not each listener).
    permits: Arc<Semaphore>,
    /// `--max-conns-per-ip`'s counts, shared the same way.
    per_ip: Option<Arc<permit::PerIp>>,
    socket: BoundSocket,
    name: String,
}

/// A bound socket with the side of the service that answers on it.
enum BoundSocket {
    /// Connections, served by the built service; TLS set up on top for
    /// `tls://` listeners.
    Stream {
        listener: StreamListener,
        service: Service,
        tls: Option<TlsSetup>,
        metrics: (ListenerMetrics, StreamMetrics),
    },
    /// Datagrams, answered by the service's datagram side.
    Datagram {
        socket: DatagramSocket,
        service: Classic,
        metrics: (ListenerMetrics, DatagramMetrics),
    },
}

/// A socket bound for a service, before anything is built on it: what
/// the single process serves, or what the parent of `--workers N` hands
/// out (one copy per worker for TCP and UDP, one shared otherwise).
pub(crate) struct BoundSocketSet {
    /// The index of its service in the configuration.
    pub service: usize,
    /// A chat `--web` listener rather than a `-l` one.
    pub web: bool,
    /// How it is announced: its endpoint, or the web URL.
    pub name: String,
    /// The sockets: one, or one per worker.
    pub copies: Vec<Bound>,
}

impl BoundSocketSet {
    /// The copy worker `index` serves (the only one, when shared).
    pub fn copy(&self, index: usize) -> &Bound {
        &self.copies[index.min(self.copies.len() - 1)]
    }
}

/// Binds every listener of the configuration in order (systemd's, then
/// each `-l`, service by service; then the `--web` ones), `copies`
/// sockets each where the kernel can spread the load over them
/// ([`listener::bind_shared`]). The result is in announcement order.
///
/// # Errors
/// The first listener that cannot be bound, named; a datagram socket
/// for a service without a datagram side.
pub(crate) async fn bind_sockets(
    config: &ServerConfig,
    copies: usize,
) -> anyhow::Result<Vec<BoundSocketSet>> {
    let mut sockets = Vec::new();
    let mut web_sockets = Vec::new();
    for (index, svc) in config.services.iter().enumerate() {
        let mut bound = Vec::new();
        if svc.systemd {
            for socket in listener::from_systemd().context("systemd socket activation")? {
                bound.push(vec![socket]);
            }
        }
        for endpoint in &svc.listen {
            bound.push(listener::bind_shared(endpoint, copies).await?);
        }
        for set in bound {
            let name = set[0].local_endpoint()?;
            if matches!(set[0], Bound::Datagram(_)) && !svc.service.transports().datagram {
                anyhow::bail!("{name}: {} does not serve datagrams", svc.service.name());
            }
            sockets.push(BoundSocketSet {
                service: index,
                web: false,
                name,
                copies: set,
            });
        }
        for endpoint in &svc.web {
            let set = listener::bind_shared(endpoint, copies).await?;
            if !matches!(set[0], Bound::Stream(_)) {
                anyhow::bail!("{endpoint}: --web takes stream addresses");
            }
            web_sockets.push(BoundSocketSet {
                service: index,
                web: true,
                name: web_url(&set[0].local_endpoint()?),
                copies: set,
            });
        }
    }
    sockets.extend(web_sockets);
    Ok(sockets)
}

/// Binds the `--metrics` endpoint, if any: its listener and the name it
/// is announced by (`http://127.0.0.1:9100`, or its `unix://` address).
pub(crate) async fn bind_metrics(
    config: &ServerConfig,
) -> anyhow::Result<Option<(StreamListener, String)>> {
    let Some(endpoint) = &config.metrics else {
        return Ok(None);
    };
    let bound = listener::bind(endpoint).await?;
    // A TCP endpoint is announced as the URL a scraper is given.
    let name = bound.local_endpoint()?.replacen("tcp://", "http://", 1);
    let Bound::Stream(listener) = bound else {
        anyhow::bail!("--metrics {endpoint}: must be a tcp:// or unix:// address");
    };
    Ok(Some((listener, name)))
}

impl Server {
    /// Binds every listener of every service, in order. Services without
    /// a certificate of their own share one self-signed development
    /// certificate on their `tls://` listeners, announced in the log with
    /// its fingerprint.
    ///
    /// # Errors
    /// The first listener that cannot be bound, named; nothing is served
    /// then (the sockets bound so far are closed).
    pub async fn bind(config: &ServerConfig) -> anyhow::Result<Server> {
        let sockets = bind_sockets(config, 1).await?;
        let metrics_endpoint = bind_metrics(config).await?;
        Self::build(
            config,
            sockets,
            TlsMaterial::for_config(config),
            metrics_endpoint,
        )
        .await
    }

    /// Builds the services on sockets bound already (by [`bind_sockets`],
    /// here or in a worker's parent), the first copy of each.
    async fn build(
        config: &ServerConfig,
        bound: Vec<BoundSocketSet>,
        mut tls: TlsMaterial,
        metrics_endpoint: Option<(StreamListener, String)>,
    ) -> anyhow::Result<Server> {
        let metrics = Arc::new(Metrics::new());
        struct Shared {
            limits: Arc<Limits>,
            permits: Arc<Semaphore>,
            per_ip: Option<Arc<permit::PerIp>>,
            service: Service,
            /// The chat hub, until its figures are tied to the service's
            /// first listener.
            chat: Option<Arc<crate::chat::Hub>>,
        }
        let mut shared = Vec::new();
        for svc in &config.services {
            let limits = Arc::new(svc.limits.clone());
            let service = svc
                .service
                .build(&svc.site, &svc.chat, svc.command.as_ref())
                .map_err(anyhow::Error::msg)?;
            let chat = match &service {
                Service::Chat(hub) => Some(hub.clone()),
                _ => None,
            };
            if let Some(hub) = &chat {
                // Members who come at once then find the other servers.
                hub.linked().await;
            }
            shared.push(Shared {
                permits: Arc::new(Semaphore::new(limits.max_conns)),
                per_ip: limits.max_conns_per_ip.map(permit::PerIp::new),
                limits,
                service,
                chat,
            });
        }
        let mut sockets = Vec::new();
        for set in bound {
            let svc = &config.services[set.service];
            let own = &mut shared[set.service];
            let service_name = svc.service.name();
            let name = set.name;
            let Some(socket) = set.copies.into_iter().next() else {
                continue;
            };
            let socket = match socket {
                Bound::Stream(listener) => {
                    let service = if set.web {
                        own.service.web().context("--web is for chat")?
                    } else {
                        own.service.clone()
                    };
                    let tls = match &listener {
                        StreamListener::Tcp { tls: true, .. } => Some(TlsSetup {
                            acceptor: tls.acceptor(svc.tls.as_ref(), &service)?,
                            handshake_timeout: own.limits.handshake_timeout,
                        }),
                        _ => None,
                    };
                    // The web side's requests are members' lines: no
                    // HTTP status counters for it.
                    let http = svc.service == ServiceKind::Http && !set.web;
                    let handles = metrics.stream_listener(service_name, &name, http);
                    if !set.web
                        && let Some(hub) = own.chat.take()
                    {
                        metrics.chat(hub, &handles.0);
                    }
                    BoundSocket::Stream {
                        listener,
                        service,
                        tls,
                        metrics: handles,
                    }
                }
                Bound::Datagram(socket) => {
                    let Some(datagrams) = own.service.datagram() else {
                        anyhow::bail!("{name}: {service_name} does not serve datagrams");
                    };
                    BoundSocket::Datagram {
                        socket,
                        service: datagrams,
                        metrics: metrics.datagram_socket(service_name, &name),
                    }
                }
            };
            sockets.push(BoundService {
                kind: svc.service,
                limits: own.limits.clone(),
                permits: own.permits.clone(),
                per_ip: own.per_ip.clone(),
                socket,
                name,
            });
        }
        Ok(Server {
            sockets,
            grace: config.grace,
            metrics,
            metrics_endpoint,
            worker: false,
        })
    }

    /// The server's counters, for SIGUSR1's log lines.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Where `--metrics` is served (`http://127.0.0.1:9100`, or the
    /// `unix://` address), announced after the listeners.
    pub fn metrics_endpoint(&self) -> Option<&str> {
        self.metrics_endpoint
            .as_ref()
            .map(|(_, name)| name.as_str())
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
        let log_at_end = self.metrics_endpoint.is_some();
        if let Some((listener, name)) = self.metrics_endpoint {
            tracing::info!(addr = %name, "serving metrics");
            shutdown.tasks.spawn(crate::metrics::endpoint::serve(
                listener,
                crate::metrics::endpoint::Exposition::Process(self.metrics.clone()),
                shutdown.stop_accepting.clone(),
            ));
        }
        for bound in self.sockets {
            if self.worker {
                // The parent announced it; N copies of the line say nothing more.
                tracing::debug!(service = bound.kind.name(), addr = %bound.name, "listening");
            } else {
                tracing::info!(service = bound.kind.name(), addr = %bound.name, "listening");
            }
            match bound.socket {
                BoundSocket::Stream {
                    listener,
                    service,
                    tls,
                    metrics: (common, stream_metrics),
                } => {
                    let handler = stream::Handler {
                        service,
                        ctx: Arc::new(ListenerContext {
                            max_line: bound.limits.max_line,
                            idle_timeout: bound.limits.idle_timeout,
                            // A TLS session's state lives in its task.
                            park_after: if tls.is_none() {
                                bound.limits.park_after
                            } else {
                                None
                            },
                            flush_delay: FLUSH_DELAY,
                            stop_accepting: shutdown.stop_accepting.clone(),
                            force_close: shutdown.force_close.clone(),
                            metrics: common,
                        }),
                        tls,
                        shutdown: shutdown.clone(),
                        metrics: stream_metrics,
                    };
                    let (acceptor, lot) = stream::Acceptor::new(
                        listener,
                        bound.limits,
                        bound.permits,
                        bound.per_ip,
                        handler,
                    )
                    .context("create the parking lot")?;
                    shutdown.tasks.spawn(acceptor.run());
                    shutdown.tasks.spawn(lot);
                }
                BoundSocket::Datagram {
                    socket,
                    service,
                    metrics,
                } => {
                    let server = datagram::DatagramServer::new(
                        service,
                        socket,
                        bound.limits,
                        &shutdown,
                        metrics,
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
        if log_at_end {
            self.metrics.log("shutdown");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How a web listener is announced: `http://HOST:PORT`, `https://` for
/// TLS, `http+unix://PATH` for a Unix socket.
fn web_url(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("tcp", endpoint));
    let scheme = match scheme {
        "tls" => "https",
        "unix" => "http+unix",
        _ => "http",
    };
    format!("{scheme}://{rest}")
}

/// The certificates and ticket keys of one server: made once, shared by
/// every TLS listener.
struct TlsMaterial {
    /// The hosts of the `tls://` listeners that have no certificate of
    /// their own: the development certificate names them all.
    hosts: Vec<String>,
    /// The self-signed certificate for services that bring none; made
    /// when the first such listener is bound.
    development: Option<ServerIdentity>,
    /// Session-ticket keys, made with the first TLS listener.
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

impl TlsMaterial {
    fn for_config(config: &ServerConfig) -> TlsMaterial {
        let hosts = config
            .services
            .iter()
            .filter(|svc| svc.tls.is_none())
            .flat_map(|svc| svc.listen.iter().chain(&svc.web))
            .filter_map(|endpoint| match endpoint {
                Endpoint::Tls(hp) => Some(hp.host_text()),
                _ => None,
            })
            .collect();
        TlsMaterial {
            hosts,
            development: None,
            tickets: None,
        }
    }

    /// A TLS listener's acceptor: the service's own certificate, or the
    /// development one.
    fn acceptor(
        &mut self,
        own: Option<&ServerIdentity>,
        service: &Service,
    ) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let identity = match own {
            Some(identity) => identity.clone(),
            None => self.development()?,
        };
        let tickets = match &self.tickets {
            Some(tickets) => tickets.clone(),
            None => {
                let tickets = tls::ticketer().context("make TLS session-ticket keys")?;
                self.tickets.insert(tickets).clone()
            }
        };
        tls::acceptor(&identity, service.alpn(), tickets).context("set up TLS")
    }

    fn development(&mut self) -> anyhow::Result<ServerIdentity> {
        if let Some(identity) = &self.development {
            return Ok(identity.clone());
        }
        let identity = ServerIdentity::development(&self.hosts).map_err(anyhow::Error::msg)?;
        warn_development(&identity);
        Ok(self.development.insert(identity).clone())
    }

    /// A worker's: what its parent made and handed it.
    fn inherited(
        development: Option<ServerIdentity>,
        tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
    ) -> TlsMaterial {
        TlsMaterial {
            hosts: Vec::new(),
            development,
            tickets,
        }
    }
}

/// The one log line that says a development certificate is in use.
fn warn_development(identity: &ServerIdentity) {
    tracing::warn!(
        "no --tls-cert: tls:// listeners use a self-signed development certificate \
         (SHA-256 fingerprint {}); clients must be told to trust it (--insecure, or \
         check the fingerprint)",
        identity.fingerprint
    );
}

/// What the binary runs for `sockit serve`: a multi-threaded runtime, the
/// listening lines on stdout, and SIGINT/SIGTERM as the shutdown trigger.
/// With `--workers N` (N > 1) this process is the parent of N workers
/// ([`workers`]); a worker, started by such a parent, serves the sockets
/// it is handed.
///
/// # Errors
/// A listener that cannot be bound, or signal handlers that cannot be set.
pub fn block_on_serve(config: ServerConfig) -> anyhow::Result<()> {
    if let Some(index) = workers::worker_index() {
        return workers::child::run(config, index);
    }
    if config.workers > 1 {
        return workers::parent::run(config);
    }
    let runtime = server_runtime(false, None)?;
    runtime.block_on(async {
        let server = Server::bind(&config).await?;
        // Install the handlers before announcing readiness, so a signal
        // sent right after the listening lines is never missed.
        let (first, second) = shutdown_on_signals(server.metrics())?;
        let mut endpoints = server.local_endpoints();
        endpoints.extend(server.metrics_endpoint().map(str::to_owned));
        announce(&endpoints)?;
        systemd::ready(server.local_endpoints().len());
        server
            .run_with_force(first.cancelled(), second.cancelled())
            .await
    })
}

/// The server's runtime. On one CPU (`taskset -c 0`, a one-core
/// container) a multi-threaded runtime only adds cross-thread hand-offs:
/// everything runs on one thread anyway. Measured on the pipelined ping
/// benchmark: ~8% less server CPU per request. `single` asks for one
/// thread whatever the CPUs (workers that have a CPU each, or fewer).
fn server_runtime(
    single: bool,
    context: Option<tracing::Span>,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 || single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(span) = context {
        // Entered for good on each of the runtime's threads: every log
        // line from them, and every span made there, is under it.
        builder.on_thread_start(move || std::mem::forget(span.clone().entered()));
    }
    builder.enable_all().build().context("start the runtime")
}

/// Installs SIGINT/SIGTERM and SIGUSR1 now: the first tokens is
/// cancelled at the first SIGINT or SIGTERM (shut down), the second at
/// the next (close open connections now); each SIGUSR1 logs `metrics`.
fn shutdown_on_signals(
    metrics: Arc<Metrics>,
) -> anyhow::Result<(CancellationToken, CancellationToken)> {
    let mut signals = Signals::install().context("install signal handlers")?;
    let mut usr1 = crate::shutdown::figures_requested().context("install signal handlers")?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            metrics.log("SIGUSR1");
        }
    });
    let (first, second) = (CancellationToken::new(), CancellationToken::new());
    {
        let (first, second) = (first.clone(), second.clone());
        tokio::spawn(async move {
            let name = signals.next().await;
            tracing::info!("{name}: shutting down (again to close open connections now)");
            systemd::stopping();
            first.cancel();
            let name = signals.next().await;
            tracing::info!("{name} again: closing open connections now");
            second.cancel();
        });
    }
    Ok((first, second))
}

/// Prints the `listening on` lines, flushed at once.
fn announce(endpoints: &[String]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for endpoint in endpoints {
        writeln!(stdout, "listening on {endpoint}")?;
    }
    stdout.flush()?;
    Ok(())
}
