//! A worker of `serve --workers N`: read the `Setup` and the sockets
//! from the parent, build the normal server on them, say ready, and
//! serve until SIGTERM (sent by the parent) or until the parent is gone.
//! It prints no `listening on` lines and serves no `--metrics` endpoint
//! of its own: the parent asks for its counters over the channel.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{Channel, READY, Setup, parse_metrics_request, send_metrics};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::net::listener::{Bound, SocketKind};
use crate::net::tickets::SharedTicketer;
use crate::net::tls::ServerIdentity;
use crate::server::{BoundSocketSet, Server, TlsMaterial, server_runtime, shutdown_on_signals};

/// How long the parent has to send the setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs worker `index` of the server `config` describes.
///
/// # Errors
/// No worker channel on stdin, a setup that does not fit `config`, or
/// whatever building the server fails with.
pub fn run(config: ServerConfig, index: usize) -> anyhow::Result<()> {
    let channel = Channel::from_stdin()?;
    channel.set_timeout(Some(SETUP_TIMEOUT))?;
    let setup = channel
        .recv()
        .context("read the worker setup")?
        .context("the parent closed the worker channel")?;
    let setup: Setup = serde_json::from_slice(&setup).context("read the worker setup")?;
    let names: Vec<&str> = config.services.iter().map(|s| s.service.name()).collect();
    if setup.index != index || setup.services != names {
        anyhow::bail!(
            "worker {index}: the configuration changed since the server started \
             (services {:?}, now {names:?}); restart the whole server",
            setup.services
        );
    }
    let fds = channel
        .recv_fds(setup.sockets.len())
        .context("receive the sockets")?;
    channel.set_timeout(None)?;
    let development = setup
        .development
        .as_ref()
        .map(ServerIdentity::from_development)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let tickets = setup
        .tickets
        .clone()
        .map(|secret| Arc::new(SharedTicketer::new(secret)) as Arc<_>);

    // Every line a worker logs names it: `worker{n=2}: ...`. The span
    // is entered here for the thread that runs the server and by the
    // runtime for its own threads.
    let worker = tracing::info_span!("worker", n = index);
    let _worker = worker.clone().entered();
    let runtime = server_runtime(setup.single_thread, Some(worker))?;
    runtime.block_on(async move {
        let mut bound = Vec::with_capacity(fds.len());
        for (socket, fd) in setup.sockets.into_iter().zip(fds) {
            let path = match socket.kind {
                SocketKind::Unix | SocketKind::UnixGram => socket
                    .name
                    .split_once("://")
                    .map_or("", |(_, path)| path)
                    .to_owned(),
                _ => String::new(),
            };
            bound.push(BoundSocketSet {
                service: socket.service,
                web: socket.web,
                copies: vec![Bound::adopt(socket.kind, Path::new(&path), fd)?],
                name: socket.name,
            });
        }
        let tls = TlsMaterial::inherited(development, tickets);
        let mut server = Server::build(&config, bound, tls, None).await?;
        server.worker = true;
        let (first, second) = shutdown_on_signals(server.metrics())?;
        channel.send(READY).context("tell the parent")?;
        answer_parent(channel, server.metrics(), first.clone());
        server
            .run_with_force(first.cancelled(), second.cancelled())
            .await
    })
}

/// Answers the parent's metrics requests on a thread of its own; when the
/// channel closes (the parent is gone), starts the shutdown.
fn answer_parent(channel: Channel, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let spawned = std::thread::Builder::new()
        .name("worker-channel".into())
        .spawn(move || {
            loop {
                match channel.recv() {
                    Ok(Some(message)) => {
                        if let Some(id) = parse_metrics_request(&message)
                            && let Err(e) = send_metrics(&channel, id, metrics.encode().as_bytes())
                        {
                            tracing::debug!(error = %e, "cannot send metrics to the parent");
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "worker channel failed");
                        break;
                    }
                }
            }
            tracing::info!("the parent is gone: shutting down");
            shutdown.cancel();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the worker channel");
    }
}
