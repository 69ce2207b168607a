//! Driving the connections of a load run.
//!
//! Each worker thread runs a current-thread runtime with its share of the
//! connections, one task each, so `taskset -c 1 sockit bench` is one thread
//! on one core with no cross-thread wake-ups. A connection is a hand-written
//! `poll` loop ([`StreamConn`], [`DatagramConn`]) over one socket: it writes
//! requests out of a prebuilt buffer, reads replies into a fixed buffer and
//! counts them, so a request costs no allocation and no future, and the
//! requests freed by one read go out in one write. Those buffers, and the
//! stats, are per thread ([`Shared`]), not per connection.
//!
//! A reply is one line on a stream (counted by its `\n`; replies come back
//! in order, so the oldest request in flight is the one answered) or one
//! datagram (matched by the sequence number it carries back, since
//! datagrams can be lost or reordered). That is all sockit's echo, ping,
//! hello and timestamp services and any line-reply server (redis's inline
//! `PING`) have in common.
//!
//! Closed loop keeps `--pipeline` requests in flight on every connection.
//! Open loop (`--rate`) sends each request at its scheduled time and takes
//! its latency from that time, not from when it went out, so a stall of
//! the server (or of this client) shows in the latencies instead of being
//! hidden by sending less (coordinated omission).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::report::Totals;

use crate::net::addr::Endpoint;
use crate::net::connect::{Cause, ClientError, ClientSocket, Connector, Datagram};
use crate::net::stream::Stream;
use crate::service::ping;
use crate::stats::Latency;

/// How long opening one connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a connection's first request is sent before the server
/// is declared silent: a datagram can be lost, and a lossy server must not
/// fail the run before it starts.
const PROBE_ATTEMPTS: u32 = 3;

/// The pause before reopening a broken connection, and before sending again
/// after a datagram socket error, so that a server that refuses or resets
/// costs a few attempts a second rather than a busy loop.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The prebuilt stream write buffer holds about this much: enough copies of
/// the request that a whole pipeline usually goes out in one write.
const WRITE_BUFFER: usize = 64 * 1024;

/// The read buffer of a worker thread: larger than any UDP payload, and a
/// good size for stream reads.
const READ_BUFFER: usize = 64 * 1024;

/// How early an open-loop request may go out. Tokio's timers tick in whole
/// milliseconds, so waking exactly on time is not possible; instead a
/// request goes out up to this early, and its latency counts from the
/// earlier of its scheduled time and the moment it went out: from when it
/// went out if early, from when it should have gone out if held back (by a
/// full pipeline, a slow server or a busy client), so no stall is hidden.
const EARLY: Duration = Duration::from_millis(1);

/// What every connection sends.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// One request, line end included.
    pub(crate) bytes: Vec<u8>,
    /// Where its ten sequence digits are, when it has them.
    pub(crate) seq_at: Option<usize>,
}

impl Request {
    /// A generated request of exactly `size` bytes (at least
    /// [`ping::MIN_REQUEST`]), in the ping service's format, with a
    /// sequence number to match datagram replies by when there is room for
    /// one ([`ping::stamped_request`]).
    pub(crate) fn generated(size: usize) -> Request {
        let (bytes, seq_at) = ping::stamped_request(size);
        Request { bytes, seq_at }
    }

    /// A request given as text (`--request`): the line as it is, with `\n`.
    pub(crate) fn custom(line: &str) -> Request {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        Request {
            bytes,
            seq_at: None,
        }
    }

    /// Writes `seq` into the sequence digits, if there are any.
    fn stamp(&mut self, seq: u32) {
        if let Some(at) = self.seq_at {
            ping::stamp(&mut self.bytes[at..], seq);
        }
    }
}

/// A checked load run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) endpoint: Endpoint,
    /// Opens every connection of the run (for `tls://`, with one session
    /// cache, so reconnections resume).
    pub(crate) connector: Connector,
    /// The endpoint as printed.
    pub(crate) addr: String,
    pub(crate) connections: usize,
    /// Requests in flight per connection (open loop: at most).
    pub(crate) pipeline: usize,
    pub(crate) threads: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Requests per second in all, for open loop.
    pub(crate) rate: Option<f64>,
    /// A new connection per request (`--reconnect`).
    pub(crate) reconnect: bool,
    /// How long a datagram request may wait for its reply (and the first
    /// request on each connection, on any transport).
    pub(crate) timeout: Duration,
    pub(crate) request: Request,
}

/// The measured part of a run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// When load starts (warm-up included); open-loop schedules count from here.
    start: Instant,
    /// Requests sent before this are warm-up and not counted.
    pub(super) measure: Instant,
    /// Replies after this are not counted.
    end: Instant,
}

impl Window {
    pub(super) fn contains(&self, t: Instant) -> bool {
        self.measure <= t && t <= self.end
    }
}

/// Live counts for the progress display, one per worker: written by that
/// worker's thread alone, read by the main thread.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Replies received (warm-up included).
    pub(crate) replies: AtomicU64,
    /// Errors (warm-up included).
    pub(crate) errors: AtomicU64,
}

/// What a finished run measured.
pub(crate) struct Outcome {
    /// How long the measured window lasted: `-d`, or less after Ctrl-C.
    pub(crate) elapsed: Duration,
    pub(crate) totals: Totals,
    pub(crate) latency: Latency,
}

/// How the main thread follows a run (the progress display).
pub(crate) trait Watch {
    /// Called every [`TICK`] with the time since load started and the live
    /// counts of all workers, warm-up included.
    fn tick(&mut self, elapsed: Duration, replies: u64, errors: u64);
}

/// How often [`Watch::tick`] is called.
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// Runs the load: opens every connection (each must answer one request),
/// then loads for warm-up plus duration, or until `interrupted` resolves.
///
/// # Errors
/// The first connection that cannot be opened or does not answer its first
/// request, as one line naming the address; or a worker that failed.
pub(crate) fn run(
    plan: &Plan,
    watch: &mut dyn Watch,
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let plan = Arc::new(plan.clone());
    let threads = plan.threads.clamp(1, plan.connections);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(threads);
    let mut progress = Vec::with_capacity(threads);
    let token = CancellationToken::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..plan.connections).step_by(threads).collect();
        let (go_tx, go_rx) = mpsc::channel();
        let counts = Arc::new(Progress::default());
        progress.push(counts.clone());
        let worker = Worker {
            plan: plan.clone(),
            ids,
            progress: counts,
            token: token.clone(),
        };
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || worker.run(&ready, &go_rx))
            .context("start a worker thread")?;
        workers.push((handle, go_tx));
    }
    drop(ready_tx);

    // Every connection must be open and answering before the clock starts.
    let mut failure = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| anyhow::anyhow!("a worker thread died"));
            }
        }
        if failure.is_some() {
            break;
        }
    }
    if let Some(e) = failure {
        for (handle, go) in workers {
            drop(go);
            let _ = handle.join();
        }
        return Err(e);
    }

    let start = Instant::now();
    let window = Window {
        start,
        measure: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    for (_, go) in &workers {
        let _ = go.send(window);
    }
    let stopped = watch_run(window, &progress, &token, watch, interrupted)?;

    let mut totals = Totals::default();
    let mut latency = Latency::new();
    for (handle, _) in workers {
        let (t, l) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        totals.add(&t);
        latency.merge(&l);
    }
    let end = stopped.map_or(window.end, |at| at.min(window.end));
    Ok(Outcome {
        elapsed: end.saturating_duration_since(window.measure),
        totals,
        latency,
    })
}

/// Waits for the run to end on the main thread, ticking `watch`; returns
/// when it was interrupted, if it was.
fn watch_run(
    window: Window,
    progress: &[Arc<Progress>],
    token: &CancellationToken,
    watch: &mut dyn Watch,
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<Option<Instant>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    Ok(runtime.block_on(async {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let end = tokio::time::Instant::from_std(window.end);
        tokio::pin!(interrupted);
        loop {
            tokio::select! {
                () = &mut interrupted => {
                    token.cancel();
                    return Some(Instant::now());
                }
                () = tokio::time::sleep_until(end) => return None,
                _ = tick.tick() => {
                    let replies = progress.iter().map(|p| p.replies.load(Ordering::Relaxed)).sum();
                    let errors = progress.iter().map(|p| p.errors.load(Ordering::Relaxed)).sum();
                    watch.tick(window.start.elapsed(), replies, errors);
                }
            }
        }
    }))
}

/// One worker thread and the connections it drives.
struct Worker {
    plan: Arc<Plan>,
    /// The indexes of its connections among all of them (for open-loop
    /// schedule offsets).
    ids: Vec<usize>,
    progress: Arc<Progress>,
    /// Cancelled on Ctrl-C.
    token: CancellationToken,
}

impl Worker {
    /// Opens the connections, reports on `ready`, waits for the window on
    /// `go` (a dropped `go` means the run was called off), and drives them.
    fn run(
        self,
        ready: &mpsc::Sender<anyhow::Result<()>>,
        go: &mpsc::Receiver<Window>,
    ) -> (Totals, Latency) {
        let empty = (Totals::default(), Latency::new());
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(anyhow::Error::new(e).context("start the runtime")));
                return empty;
            }
        };
        let sockets = match runtime.block_on(self.open_all()) {
            Ok(sockets) => {
                let _ = ready.send(Ok(()));
                sockets
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return empty;
            }
        };
        let Ok(window) = go.recv() else {
            return empty;
        };
        let mut request = self.plan.request.clone();
        request.stamp(1);
        // At least two copies, so a write that starts mid-request still has
        // a whole request after it.
        let batch = (self.plan.pipeline + 1)
            .min(WRITE_BUFFER / request.bytes.len())
            .max(2);
        let shared = Rc::new(Shared {
            plan: self.plan.clone(),
            window,
            progress: self.progress.clone(),
            stats: RefCell::new(empty),
            requests: request.bytes.repeat(batch).into(),
            read_buf: RefCell::new(vec![0; READ_BUFFER].into_boxed_slice()),
        });
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            for (id, socket) in self.ids.iter().zip(sockets) {
                let schedule = self.plan.rate.map(|rate| {
                    // Connection i's requests go out at start + i/rate +
                    // k*connections/rate: evenly spread over the connections.
                    let offset = Duration::from_secs_f64(*id as f64 / rate);
                    let interval = Duration::from_secs_f64(self.plan.connections as f64 / rate);
                    Schedule::new(window.start + offset, interval)
                });
                match socket {
                    // The proven connection has done its job: from here on
                    // every request opens its own.
                    Opened::Stream(_) if self.plan.reconnect => {
                        tokio::task::spawn_local(super::reconnect::drive(shared.clone()));
                    }
                    Opened::Stream(stream) => {
                        let conn = StreamConn::new(stream, &shared, schedule);
                        tokio::task::spawn_local(conn.drive());
                    }
                    Opened::Datagram(socket, seq) => {
                        let conn = DatagramConn::new(socket, &shared, schedule, seq);
                        tokio::task::spawn_local(conn.drive());
                    }
                }
            }
            let end = tokio::time::Instant::from_std(window.end);
            tokio::select! {
                () = self.token.cancelled() => {}
                () = tokio::time::sleep_until(end) => {}
            }
        });
        // Dropping the set drops every connection task and its socket.
        drop(local);
        std::mem::take(&mut *shared.stats.borrow_mut())
    }

    /// Opens this worker's connections one after another, each proven by
    /// one request and its reply; the first failure ends the run.
    async fn open_all(&self) -> anyhow::Result<Vec<Opened>> {
        let mut sockets = Vec::with_capacity(self.ids.len());
        for _ in &self.ids {
            sockets.push(open(&self.plan).await?);
        }
        Ok(sockets)
    }
}

/// A connection that has answered its first request; a datagram socket
/// with the next sequence number to use.
enum Opened {
    Stream(Stream),
    Datagram(Datagram, u32),
}

/// Opens one connection and proves it with one request and its reply.
async fn open(plan: &Plan) -> anyhow::Result<Opened> {
    let connection = plan.connector.open().await?;
    let silent = || ClientError::TimedOut {
        step: "wait for a reply from",
        target: plan.addr.clone(),
        after: plan.timeout,
    };
    let mut request = plan.request.clone();
    match connection {
        ClientSocket::Stream(mut stream) => {
            request.stamp(0);
            let probe = async {
                stream
                    .write_all(&request.bytes)
                    .await
                    .map_err(|e| ClientError::io("send to", &plan.addr, e))?;
                read_line(&mut stream, &plan.addr).await
            };
            tokio::time::timeout(plan.timeout, probe)
                .await
                .map_err(|_| silent())??;
            Ok(Opened::Stream(stream))
        }
        ClientSocket::Datagram(socket) => {
            let mut buf = vec![0; READ_BUFFER];
            for attempt in 0..PROBE_ATTEMPTS {
                request.stamp(attempt);
                socket
                    .send(&request.bytes)
                    .await
                    .map_err(|e| refused_or("send to", &plan.addr, e))?;
                match tokio::time::timeout(plan.timeout, socket.recv(&mut buf)).await {
                    Ok(Ok(_)) => return Ok(Opened::Datagram(socket, PROBE_ATTEMPTS)),
                    Ok(Err(e)) => return Err(refused_or("receive from", &plan.addr, e).into()),
                    Err(_) => {}
                }
            }
            Err(silent().into())
        }
    }
}

/// A refused datagram means nothing listens there: say it the way a
/// refused stream connection is said.
fn refused_or(step: &'static str, addr: &str, e: io::Error) -> ClientError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        ClientError::Connect {
            addr: addr.to_owned(),
            reason: Cause(&e).to_string(),
        }
    } else {
        ClientError::io(step, addr, e)
    }
}

/// Reads until a `\n` comes: the probe's reply, the only one in flight.
async fn read_line(stream: &mut Stream, addr: &str) -> Result<(), ClientError> {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => {
                return Err(ClientError::io(
                    "read from",
                    addr,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                ));
            }
            Ok(n) if memchr::memchr(b'\n', &buf[..n]).is_some() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(ClientError::io("read from", addr, e)),
        }
    }
}

/// What a worker's connections share: the plan, the window, the stats
/// they all record into, and their buffers. Held in an `Rc` by every
/// connection task of one thread; the worker takes the stats out once the
/// tasks are dropped.
pub(super) struct Shared {
    pub(super) plan: Arc<Plan>,
    pub(super) window: Window,
    pub(super) progress: Arc<Progress>,
    pub(super) stats: RefCell<(Totals, Latency)>,
    /// Copies of the stream request, so that a batch of requests goes out
    /// in one write from one buffer that never changes (streams need no
    /// sequence numbers, so every connection sends the same bytes).
    requests: Box<[u8]>,
    /// The one read buffer of all the thread's connections: a connection
    /// counts what it read before it yields, so nothing stays in it between
    /// polls, and 10,000 connections cost 64 KiB, not 640 MiB.
    read_buf: RefCell<Box<[u8]>>,
}

impl Shared {
    /// Counts `n` failed requests (or failed reconnects) seen at `now`.
    pub(super) fn errors(&self, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        self.progress.errors.fetch_add(n, Ordering::Relaxed);
        if self.window.contains(now) {
            self.stats.borrow_mut().0.errors += n;
        }
    }
}

/// An open-loop send schedule: the intended time of the next request.
struct Schedule {
    next: Instant,
    interval: Duration,
}

impl Schedule {
    fn new(first: Instant, interval: Duration) -> Schedule {
        Schedule {
            next: first,
            interval,
        }
    }

    /// When to wake for the next request: [`EARLY`] before it is due.
    fn early(&self) -> Instant {
        self.next.checked_sub(EARLY).unwrap_or(self.next)
    }
}

/// A timer that is re-armed only when its deadline changes.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Polls for `deadline`; ready once it, or an earlier deadline still
    /// armed, has passed. The callers' deadlines (the oldest request's
    /// timeout, the next scheduled send) only move later, so an armed
    /// timer that would fire early is left alone: the caller wakes, finds
    /// nothing due, and re-arms then. That is one timer reset per timeout
    /// period, not one per request.
    fn poll_at(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let keep = self
            .armed
            .is_some_and(|armed| armed <= deadline && !self.sleep.is_elapsed());
        if !keep {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            self.armed = Some(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// A TCP or Unix stream connection under load.
struct StreamConn {
    stream: Stream,
    shared: Rc<Shared>,
    /// The size of one request.
    size: usize,
    depth: usize,
    /// When each request in flight was sent (open loop: the earlier of its
    /// scheduled time and that), oldest first; replies come back in order.
    in_flight: VecDeque<Instant>,
    /// Bytes of queued requests not yet written.
    unwritten: usize,
    /// How far into a request the next unwritten byte is.
    phase: usize,
    schedule: Option<Schedule>,
    timer: Timer,
    /// The last clock reading, for counting bytes written in the window.
    clock: Instant,
}

impl StreamConn {
    fn new(stream: Stream, shared: &Rc<Shared>, schedule: Option<Schedule>) -> StreamConn {
        let plan = &shared.plan;
        StreamConn {
            stream,
            shared: shared.clone(),
            size: plan.request.bytes.len(),
            depth: plan.pipeline,
            in_flight: VecDeque::with_capacity(plan.pipeline),
            unwritten: 0,
            phase: 0,
            schedule,
            timer: Timer::new(),
            clock: Instant::now(),
        }
    }

    /// Loads the connection until the task is dropped, reopening it when
    /// the server closes or resets it.
    async fn drive(mut self) {
        loop {
            let failure = std::future::poll_fn(|cx| self.poll_load(cx)).await;
            let now = Instant::now();
            tracing::debug!(addr = %self.shared.plan.addr, error = %failure, "connection lost");
            // The requests in flight went down with the connection.
            self.shared.errors(self.in_flight.len() as u64, now);
            self.in_flight.clear();
            self.unwritten = 0;
            self.phase = 0;
            self.stream = loop {
                tokio::time::sleep(RETRY_PAUSE).await;
                match self.shared.plan.connector.open().await {
                    Ok(ClientSocket::Stream(stream)) => break stream,
                    Ok(ClientSocket::Datagram(_)) => {
                        // A stream endpoint never opens a datagram socket;
                        // were it to, count it as a failed reopen.
                        self.shared.errors(1, Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reconnect failed");
                        self.shared.errors(1, Instant::now());
                    }
                }
            };
        }
    }

    /// Sends what is due, writes, reads and counts replies, until the
    /// socket fails; never returns otherwise.
    fn poll_load(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let mut progress = false;
            // The clock is read once per batch of replies, and that reading
            // stamps both the replies and the requests they make room for
            // (written right after): one clock read per wake-up, not four.
            let mut now = None;

            // Counted at once, so the thread's read buffer is free again
            // before the next connection runs.
            let read = {
                let mut read_buf = self.shared.read_buf.borrow_mut();
                let mut buf = ReadBuf::new(&mut read_buf);
                Pin::new(&mut self.stream)
                    .poll_read(cx, &mut buf)
                    .map_ok(|()| {
                        let read = buf.filled();
                        (memchr::memchr_iter(b'\n', read).count(), read.len())
                    })
            };
            match read {
                Poll::Ready(Ok((_, 0))) => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ));
                }
                Poll::Ready(Ok((replies, n))) => {
                    let at = *now.insert(Instant::now());
                    self.replies(replies, n, at);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => {}
            }

            if self.schedule.is_some() || self.in_flight.len() < self.depth {
                let at = *now.get_or_insert_with(Instant::now);
                self.queue_due(at);
            }
            if let Some(at) = now {
                self.clock = at;
            }

            while self.unwritten > 0 {
                let requests = &self.shared.requests;
                let end = (self.phase + self.unwritten).min(requests.len());
                let chunk = &requests[self.phase..end];
                match Pin::new(&mut self.stream).poll_write(cx, chunk) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.unwritten -= n;
                        self.phase = (self.phase + n) % self.size;
                        if self.shared.window.contains(self.clock) {
                            self.shared.stats.borrow_mut().0.bytes_sent += n as u64;
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(e),
                    Poll::Pending => break,
                }
            }

            if progress {
                continue;
            }
            // Nothing to do until the socket is ready, or the next
            // open-loop request is due.
            if let Some(schedule) = &self.schedule
                && self.in_flight.len() < self.depth
                && self.timer.poll_at(cx, schedule.early()).is_ready()
            {
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Queues every request that may go now: all free pipeline slots in
    /// closed loop, the due ones in open loop.
    fn queue_due(&mut self, now: Instant) {
        let free = self.depth - self.in_flight.len();
        match &mut self.schedule {
            None => {
                for _ in 0..free {
                    self.in_flight.push_back(now);
                }
                self.unwritten += free * self.size;
            }
            Some(schedule) => {
                for _ in 0..free {
                    if schedule.next > now + EARLY {
                        break;
                    }
                    self.in_flight.push_back(schedule.next.min(now));
                    schedule.next += schedule.interval;
                    self.unwritten += self.size;
                }
            }
        }
    }

    /// Counts `replies` complete replies in `bytes` bytes read at `now`.
    fn replies(&mut self, replies: usize, bytes: usize, now: Instant) {
        let window = self.shared.window;
        let counting = window.contains(now);
        let mut stats = self.shared.stats.borrow_mut();
        let (totals, latency) = &mut *stats;
        // Requests queued together share their send time, so their
        // latencies go into the histogram together: one record per batch.
        let mut batch: Option<(Instant, u64)> = None;
        for _ in 0..replies {
            match self.in_flight.pop_front() {
                Some(sent) if counting && sent >= window.measure => match &mut batch {
                    Some((at, n)) if *at == sent => *n += 1,
                    _ => {
                        if let Some((at, n)) = batch.replace((sent, 1)) {
                            latency.record_n(now - at, n);
                            totals.requests += n;
                        }
                    }
                },
                Some(_) => {}
                None if counting => totals.unexpected += 1,
                None => {}
            }
        }
        if let Some((at, n)) = batch {
            latency.record_n(now - at, n);
            totals.requests += n;
        }
        if counting {
            totals.bytes_received += bytes as u64;
        }
        self.shared
            .progress
            .replies
            .fetch_add(replies as u64, Ordering::Relaxed);
    }
}

/// A UDP or unixgram socket under load.
struct DatagramConn {
    socket: Datagram,
    shared: Rc<Shared>,
    request: Request,
    next_seq: u32,
    depth: usize,
    timeout: Duration,
    /// Sequence number and send time (open loop: the earlier of scheduled
    /// and sent) of each request in flight, oldest first.
    in_flight: VecDeque<(u32, Instant)>,
    schedule: Option<Schedule>,
    /// No sending before this, after a socket error.
    paused_until: Option<Instant>,
    timer: Timer,
}

impl DatagramConn {
    fn new(
        socket: Datagram,
        shared: &Rc<Shared>,
        schedule: Option<Schedule>,
        next_seq: u32,
    ) -> DatagramConn {
        let plan = &shared.plan;
        DatagramConn {
            socket,
            shared: shared.clone(),
            request: plan.request.clone(),
            next_seq,
            depth: plan.pipeline,
            timeout: plan.timeout,
            in_flight: VecDeque::with_capacity(plan.pipeline),
            schedule,
            paused_until: None,
            timer: Timer::new(),
        }
    }

    /// Loads the socket until the task is dropped.
    async fn drive(mut self) {
        std::future::poll_fn(|cx| self.poll_load(cx)).await;
    }

    /// Expires, sends, receives; pending whenever nothing can be done.
    fn poll_load(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Set when the timer woke us: a timeout, the end of a pause, or an
        // open-loop send may be due.
        let mut timer_fired = false;
        loop {
            let mut progress = false;
            // Read lazily, and at most once per turn: the time a reply
            // arrived also stamps the request sent in its place.
            let mut now = None;

            let received = {
                let mut read_buf = self.shared.read_buf.borrow_mut();
                let mut buf = ReadBuf::new(&mut read_buf);
                self.socket.poll_recv(cx, &mut buf).map_ok(|()| {
                    let datagram = buf.filled();
                    let seq = self.request.seq_at.and_then(|_| ping::find_stamp(datagram));
                    (seq, datagram.len())
                })
            };
            match received {
                Poll::Ready(Ok((seq, len))) => {
                    let at = *now.insert(Instant::now());
                    self.reply(seq, len, at);
                    if self.in_flight.is_empty() {
                        // Every request is answered, so nothing should be
                        // queued: skip the `recv` that would only say so.
                        // With one request per socket that is a third of
                        // the system calls.
                        self.socket.forget_readable();
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    // An ICMP error for an earlier datagram: the requests it
                    // hit will time out and be counted then.
                    tracing::debug!(error = %e, "receive failed");
                    let at = *now.get_or_insert_with(Instant::now);
                    self.paused_until = Some(at + RETRY_PAUSE);
                    progress = true;
                }
                Poll::Pending => {}
            }

            if timer_fired {
                now.get_or_insert_with(Instant::now);
            }
            if let Some(at) = now {
                self.expire(at);
                if self.paused_until.is_some_and(|until| until <= at) {
                    self.paused_until = None;
                }
            }

            while self.paused_until.is_none() && self.in_flight.len() < self.depth {
                let at = *now.get_or_insert_with(Instant::now);
                let due = match &self.schedule {
                    None => at,
                    Some(schedule) if schedule.next <= at + EARLY => schedule.next.min(at),
                    Some(_) => break,
                };
                self.request.stamp(self.next_seq);
                match self.socket.poll_send(cx, &self.request.bytes) {
                    Poll::Ready(Ok(n)) => {
                        self.in_flight.push_back((self.next_seq, due));
                        self.next_seq = self.next_seq.wrapping_add(1);
                        if let Some(schedule) = &mut self.schedule {
                            schedule.next += schedule.interval;
                        }
                        if self.shared.window.contains(at) {
                            self.shared.stats.borrow_mut().0.bytes_sent += n as u64;
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        // Refused (nothing listening for now) or out of
                        // buffer space: that request is lost; try again soon.
                        tracing::debug!(error = %e, "send failed");
                        if let Some(schedule) = &mut self.schedule {
                            schedule.next += schedule.interval;
                        }
                        self.shared.errors(1, at);
                        self.paused_until = Some(at + RETRY_PAUSE);
                        progress = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }

            timer_fired = false;
            if progress {
                continue;
            }
            if let Some(wake) = self.next_wake()
                && self.timer.poll_at(cx, wake).is_ready()
            {
                timer_fired = true;
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Counts the requests whose reply is overdue as timed out.
    fn expire(&mut self, now: Instant) {
        let mut expired = 0;
        while let Some(&(_, sent)) = self.in_flight.front() {
            if now < sent + self.timeout {
                break;
            }
            self.in_flight.pop_front();
            expired += 1;
        }
        if expired > 0 {
            self.shared.errors(expired, now);
            if self.shared.window.contains(now) {
                self.shared.stats.borrow_mut().0.timeouts += expired;
            }
        }
    }

    /// The next time something is due without the socket waking us: a
    /// timeout, the end of a pause, or the next open-loop send.
    fn next_wake(&self) -> Option<Instant> {
        let timeout = self.in_flight.front().map(|&(_, sent)| sent + self.timeout);
        let send = match (&self.schedule, self.paused_until) {
            (_, Some(until)) => Some(until),
            (Some(schedule), None) if self.in_flight.len() < self.depth => Some(schedule.early()),
            _ => None,
        };
        match (timeout, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts one reply datagram of `len` bytes carrying `seq` (if the
    /// requests carry one).
    fn reply(&mut self, seq: Option<u32>, len: usize, now: Instant) {
        let window = self.shared.window;
        let counting = window.contains(now);
        let position = match seq {
            Some(seq) => self.in_flight.iter().position(|&(s, _)| s == seq),
            // Requests without a sequence number: the oldest is answered.
            None => (!self.in_flight.is_empty()).then_some(0),
        };
        let mut stats = self.shared.stats.borrow_mut();
        let (totals, latency) = &mut *stats;
        if counting {
            totals.bytes_received += len as u64;
        }
        match position.and_then(|i| self.in_flight.remove(i)) {
            Some((_, sent)) => {
                self.shared.progress.replies.fetch_add(1, Ordering::Relaxed);
                if counting && sent >= window.measure {
                    totals.requests += 1;
                    latency.record(now - sent);
                }
            }
            // Late (its request timed out), duplicated, or not ours.
            None if counting => totals.unexpected += 1,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_generated_or_given() {
        let mut r = Request::generated(20);
        assert_eq!(r.bytes, b"ping 0000000000 abc\n");
        r.stamp(42);
        assert_eq!(r.bytes, b"ping 0000000042 abc\n");
        let mut short = Request::generated(7);
        short.stamp(42);
        assert_eq!(short.bytes, b"ping a\n");
        assert_eq!(Request::custom("PING").bytes, b"PING\n");
        assert_eq!(Request::custom("PING").seq_at, None);
    }
}
