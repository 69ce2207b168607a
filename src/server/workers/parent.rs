//! The parent of `serve --workers N`: binds every socket, starts the
//! workers and waits until each serves, prints the `listening on` lines,
//! then supervises: a worker that dies is logged and started again on
//! the same sockets (at most once a second; one that keeps dying before
//! it serves ends the server), SIGUSR1 is passed on, SIGINT and SIGTERM
//! drain every worker, and `--metrics` serves the sum of the workers'.

use std::os::fd::BorrowedFd;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Channel, READY, Setup, SetupSocket, WORKER_ENV, metrics_request, recv_metrics};
use crate::config::ServerConfig;
use crate::metrics::endpoint::Exposition;
use crate::net::listener::SocketKind;
use crate::net::tickets::{SharedTicketer, TicketSecret};
use crate::net::tls::{DevelopmentKey, ServerIdentity};
use crate::server::{
    BoundSocketSet, FORCE_CLOSE_WAIT, TlsMaterial, announce, bind_metrics, bind_sockets, systemd,
    warn_development,
};
use crate::shutdown::Signals;

/// How long a worker may take from its start to serving (a chat's first
/// contact with Redis is waited for).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A worker is started again at most this often.
const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// A worker that dies before it serves this many times in a row is not
/// started again: the server stops, with an error.
const MAX_FAILED_STARTS: u32 = 5;

/// How long a worker has to answer a metrics request.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest metrics text taken from one worker.
const MAX_WORKER_METRICS: usize = 16 << 20;

/// What the parent keeps of one worker.
struct Slot {
    index: usize,
    /// Its process, while it runs.
    pid: Mutex<Option<u32>>,
    /// Its channel, once it serves.
    channel: Mutex<Option<Arc<Channel>>>,
}

impl Slot {
    fn signal(&self, signal: rustix::process::Signal) {
        let pid = *self.pid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// What every start of a worker needs.
struct Spawner {
    /// The sockets, until shutdown begins (then the workers hold the
    /// only copies, and close them as they stop accepting).
    sockets: Mutex<Option<Vec<BoundSocketSet>>>,
    services: Vec<String>,
    development: Option<DevelopmentKey>,
    tickets: Option<Arc<SharedTicketer>>,
    single_thread: bool,
}

impl Spawner {
    /// Starts worker `index` and hands it its setup and sockets.
    fn spawn(&self, index: usize) -> anyhow::Result<(tokio::process::Child, Channel)> {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sockets) = sockets.as_ref() else {
            anyhow::bail!("shutting down");
        };
        let (channel, theirs) = Channel::pair().context("make the worker channel")?;
        // The running binary itself, even if the file was replaced since.
        let exe = std::path::Path::new("/proc/self/exe");
        let program = if exe.exists() {
            exe.to_path_buf()
        } else {
            std::env::current_exe().context("find the sockit binary")?
        };
        let mut args = std::env::args_os();
        let mut command = tokio::process::Command::new(program);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        command
            .args(args)
            .env(WORKER_ENV, index.to_string())
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: a terminal's Ctrl-C reaches the
            // parent only, which then stops the workers in order.
            .process_group(0);
        let child = command.spawn().context("start a worker")?;
        // The command holds the worker's end of the channel until dropped.
        drop(command);
        let setup = Setup {
            index,
            services: self.services.clone(),
            sockets: sockets
                .iter()
                .map(|set| SetupSocket {
                    service: set.service,
                    web: set.web,
                    name: set.name.clone(),
                    kind: set.copy(index).kind(),
                })
                .collect(),
            development: self.development.clone(),
            tickets: self.tickets.as_ref().map(|t| t.secret()),
            single_thread: self.single_thread,
        };
        let text = serde_json::to_vec(&setup).context("write the worker setup")?;
        channel.send(&text).context("send the worker setup")?;
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.copy(index).as_fd()).collect();
        channel
            .send_fds(&fds)
            .context("send the worker its sockets")?;
        Ok((child, channel))
    }
}

/// Runs the parent of `config.workers` workers until SIGINT or SIGTERM
/// has stopped them all.
///
/// # Errors
/// A socket that cannot be bound, a worker that does not start, or one
/// that keeps dying before it serves.
pub fn run(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    runtime.block_on(supervise(config))
}

async fn supervise(config: ServerConfig) -> anyhow::Result<()> {
    let n = config.workers;
    let sockets = bind_sockets(&config, n).await?;
    for set in &sockets {
        for copy in &set.copies {
            // systemd's sockets come without close-on-exec; each worker
            // is to get only its own.
            rustix::io::fcntl_setfd(copy.as_fd(), rustix::io::FdFlags::CLOEXEC)?;
        }
    }
    let metrics_endpoint = bind_metrics(&config).await?;
    let tls_listener = |set: &&BoundSocketSet| set.copies[0].kind() == SocketKind::Tls;
    let development = if sockets
        .iter()
        .filter(tls_listener)
        .any(|set| config.services[set.service].tls.is_none())
    {
        let hosts = TlsMaterial::for_config(&config).hosts;
        let (identity, key) =
            ServerIdentity::development_with_key(&hosts).map_err(anyhow::Error::msg)?;
        warn_development(&identity);
        Some(key)
    } else {
        None
    };
    let tickets = if sockets.iter().any(|set| tls_listener(&set)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let secret = TicketSecret::random(now).context("make TLS session-ticket keys")?;
        Some(Arc::new(SharedTicketer::new(secret)))
    } else {
        None
    };
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut names: Vec<String> = sockets.iter().map(|s| s.name.clone()).collect();
    let listeners = names.len();
    let spawner = Arc::new(Spawner {
        sockets: Mutex::new(Some(sockets)),
        services: config
            .services
            .iter()
            .map(|s| s.service.name().to_owned())
            .collect(),
        development,
        tickets,
        single_thread: n >= cpus,
    });

    let mut signals = Signals::install().context("install signal handlers")?;
    let mut usr1 = crate::shutdown::figures_requested().context("install signal handlers")?;
    let slots: Arc<Vec<Slot>> = Arc::new(
        (0..n)
            .map(|index| Slot {
                index,
                pid: Mutex::new(None),
                channel: Mutex::new(None),
            })
            .collect(),
    );
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = Vec::new();
    for index in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel();
        started.push(rx);
        tasks.spawn(keep_running(
            slots.clone(),
            index,
            spawner.clone(),
            stop.clone(),
            config.grace,
            tx,
        ));
    }
    for rx in started {
        let outcome = tokio::select! {
            outcome = rx => outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("a worker did not start"))),
            name = signals.next() => {
                tracing::info!("{name}: stopping the workers before they all serve");
                Ok(false)
            }
        };
        if !matches!(outcome, Ok(true)) {
            stop.cancel();
            while tasks.join_next().await.is_some() {}
            return outcome.map(|_| ());
        }
    }

    let metrics_stop = CancellationToken::new();
    if let Some((listener, name)) = metrics_endpoint {
        tracing::info!(addr = %name, "serving the workers' metrics");
        names.push(name);
        let slots = slots.clone();
        tokio::spawn(crate::metrics::endpoint::serve(
            listener,
            Exposition::Gathered(Arc::new(move || gather(&slots))),
            metrics_stop.clone(),
        ));
    }
    announce(&names)?;
    systemd::ready(listeners);
    tracing::info!(workers = n, "serving");

    let mut failure = None;
    loop {
        tokio::select! {
            name = signals.next() => {
                tracing::info!("{name}: stopping the workers (again to close open connections now)");
                break;
            }
            Some(()) = usr1.recv() => {
                for slot in slots.iter() {
                    slot.signal(rustix::process::Signal::USR1);
                }
            }
            Some(done) = tasks.join_next() => {
                if let Ok(Err(e)) = done {
                    failure = Some(e);
                }
                break;
            }
        }
    }
    systemd::stopping();
    metrics_stop.cancel();
    // The workers hold the only copies of the sockets now: each closes
    // its own when it stops accepting, as a single process does.
    drop(
        spawner
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
    stop.cancel();
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(Err(e))) => { failure.get_or_insert(e); }
                Some(_) => {}
                None => break,
            },
            name = signals.next() => {
                tracing::info!("{name} again: closing open connections now");
                for slot in slots.iter() {
                    slot.signal(rustix::process::Signal::TERM);
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Keeps worker `index` running until `stop`: starts it, waits until it
/// serves (reporting the first time on `started`), and starts it again
/// when it dies. At `stop`, sends it SIGTERM and waits for it: the grace
/// period, the forced close, and a margin; then SIGKILL.
async fn keep_running(
    slots: Arc<Vec<Slot>>,
    index: usize,
    spawner: Arc<Spawner>,
    stop: CancellationToken,
    grace: Duration,
    started: tokio::sync::oneshot::Sender<anyhow::Result<bool>>,
) -> anyhow::Result<()> {
    let slot = &slots[index];
    let mut started = Some(started);
    let mut failed_starts = 0;
    loop {
        let began = Instant::now();
        let (mut child, channel) = match spawner.spawn(index) {
            Ok(spawned) => spawned,
            Err(_) if stop.is_cancelled() => return Ok(()),
            Err(e) => {
                let e = e.context(format!("worker {index}"));
                if let Some(tx) = started.take() {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        *slot.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        let channel = Arc::new(channel);
        let ready = {
            let channel = channel.clone();
            tokio::task::spawn_blocking(move || {
                channel.set_timeout(Some(READY_TIMEOUT))?;
                let said = channel.recv()?;
                channel.set_timeout(Some(SCRAPE_TIMEOUT))?;
                Ok::<_, std::io::Error>(said.as_deref() == Some(READY))
            })
        };
        let ready = tokio::select! {
            ready = ready => matches!(ready, Ok(Ok(true))),
            _ = stop.cancelled() => false,
        };
        if ready {
            failed_starts = 0;
            *slot.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(channel);
            tracing::debug!(worker = index, pid, "worker serving");
            if let Some(tx) = started.take() {
                let _ = tx.send(Ok(true));
            }
        } else if !stop.is_cancelled() {
            failed_starts += 1;
            // It died, or hangs: make sure it is gone.
            let _ = child.start_kill();
            let status = child.wait().await;
            *slot.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let why = describe(status);
            if let Some(tx) = started.take() {
                let _ = tx.send(Err(anyhow::anyhow!(
                    "worker {index} (pid {pid}) {why} before it served"
                )));
                return Ok(());
            }
            if failed_starts >= MAX_FAILED_STARTS {
                anyhow::bail!(
                    "worker {index} (pid {pid}) {why} before it served, \
                     {failed_starts} times in a row; giving up"
                );
            }
            tracing::warn!("worker {index} (pid {pid}) {why} before it served; restarting");
            if pause_until(began + RESTART_INTERVAL, &stop).await {
                continue;
            }
            return Ok(());
        }
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stop.cancelled() => {
                slot.signal(rustix::process::Signal::TERM);
                let limit = grace + FORCE_CLOSE_WAIT + Duration::from_secs(1);
                let status = match tokio::time::timeout(limit, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!("worker {index} (pid {pid}) did not stop in time; killing it");
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                *slot.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
                match status {
                    Ok(s) if s.success() => {}
                    other => tracing::warn!("worker {index} (pid {pid}) {}", describe(other)),
                }
                return Ok(());
            }
        };
        *slot.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *slot.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::warn!(
            "worker {index} (pid {pid}) {}; restarting",
            describe(status)
        );
        if !pause_until(began + RESTART_INTERVAL, &stop).await {
            return Ok(());
        }
    }
}

/// Sleeps until `deadline`; false if `stop` came first.
async fn pause_until(deadline: Instant, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => true,
        _ = stop.cancelled() => false,
    }
}

/// How a worker ended, as the log says it: `exited with status 1`,
/// `was killed by signal 9`.
fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => format!("ended ({s})"),
        },
        Err(e) => format!("could not be waited for ({e})"),
    }
}

/// Every serving worker's exposition, merged (a blocking call: each
/// worker is asked in turn, and one that does not answer in time is left
/// out, with a warning).
fn gather(slots: &[Slot]) -> String {
    static IDS: AtomicU64 = AtomicU64::new(1);
    let mut texts = Vec::with_capacity(slots.len());
    for slot in slots {
        let channel = slot
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(channel) = channel else {
            continue;
        };
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        // One scrape at a time per worker: replies are read in order.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let reply = channel
            .send(&metrics_request(id))
            .and_then(|()| recv_metrics(&channel, id, MAX_WORKER_METRICS));
        match reply {
            Ok(text) => texts.push(text),
            Err(e) => tracing::warn!(worker = slot.index, error = %e, "no metrics from worker"),
        }
    }
    crate::metrics::merge::merge(&texts)
}
