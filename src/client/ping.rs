//! `sockit ping ADDR`: round-trip times against a ping service, the way
//! ping(8) reports them.
//!
//! Requests go out every `-i` whatever came back, as `ping SEQ PADDING\n`
//! (one datagram each over UDP and unixgram) padded to `-s` bytes; the
//! service answers `pong SEQ PADDING` (the format is
//! [`service::ping`](crate::service::ping)'s), and replies are matched by
//! that sequence number. So a reply can be lost (never comes), duplicated
//! (comes twice), or reordered (comes after a later request's reply), and
//! each is counted rather than waited for: the run ends after `-c`
//! requests plus a linger for the stragglers, at the `-w` deadline, or at
//! Ctrl-C, and then prints the summary. Sender and receiver are two
//! futures of one task sharing a `Tracker`, the pure bookkeeping that the
//! unit tests drive.
//!
//! Output: a header, a line per reply and a summary (ping(8)'s layout), or
//! with `--json` one JSON object per line: `{"type":"reply",...}` per reply
//! and a final `{"type":"summary",...}` (fields in `docs/bench.md`).

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::PingArgs;
use crate::error::UsageError;
use crate::net::addr::{DefaultScheme, Endpoint};
use crate::net::frame::{Frame, LineBuffer};
use crate::service::ping;
use crate::stats::{Latency, LatencySummary, format_ms, millis};

use super::socket::{Cause, ClientError, ClientSocket, Connector, Datagram, RECV_BUFFER};
use crate::net::stream::Stream;

/// The largest request: the most a UDP datagram over IPv4 can carry.
pub const MAX_SIZE: usize = 65_507;

/// The shortest interval between requests; `-i 0s` means this.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How long opening the socket may take (less if `-w` is shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The least time waited for outstanding replies after the last request,
/// when `-W` does not say: twice the slowest round trip, but at least this.
pub const MIN_LINGER: Duration = Duration::from_secs(1);

/// How many recent requests are remembered to match replies to: a reply to
/// an older one is too late to count (at `-i 1ms`, 65 s late).
const WINDOW: usize = 65_536;

/// Runs `sockit ping`.
///
/// # Errors
/// A malformed address or size (exit status 2); a socket that cannot be
/// opened; no reply at all (after the summary). Each is one line naming the
/// address.
pub async fn run(args: &PingArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(&args.addr, DefaultScheme::Tcp)?;
    if args.size > MAX_SIZE {
        return Err(UsageError(format!(
            "invalid -s/--size {}: at most {MAX_SIZE} bytes (the largest UDP datagram)",
            args.size
        ))
        .into());
    }
    let addr = endpoint.to_string();
    let started = Instant::now();
    let deadline = args.deadline.map(|d| started + d);
    let connect_timeout = args
        .deadline
        .map_or(CONNECT_TIMEOUT, |d| d.min(CONNECT_TIMEOUT));
    let connection = Connector::new(&endpoint, connect_timeout, &args.tls.options())?
        .open()
        .await?;

    let pinger = Pinger {
        addr: addr.clone(),
        size: args.size,
        count: args.count,
        interval: args.interval.max(MIN_INTERVAL),
        linger: args.timeout,
        json: args.json,
        state: RefCell::new(Tracker::new()),
    };
    pinger.header()?;
    let deadline_passed = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let first_send = Instant::now();
    let end = tokio::select! {
        // Polled first so that the handler is in place before anything is sent.
        biased;
        () = crate::shutdown::interrupted() => End::Stopped,
        () = deadline_passed => End::Stopped,
        end = pinger.exchange(connection) => end?,
    };
    let elapsed = first_send.elapsed();
    pinger.summary(elapsed)?;

    let state = pinger.state.borrow();
    match end {
        End::Closed(reason) if state.received == 0 => Err(anyhow!("{reason}")),
        _ if state.received == 0 => Err(anyhow!(
            "no reply from {addr}: {} sent, 0 received",
            state.sent
        )),
        End::Closed(reason) => {
            // Replies came, so this is a result, not a failure; still, the
            // run was cut short, and the reason belongs on stderr.
            eprintln!("sockit: {reason}");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Why an exchange ended.
enum End {
    /// Every request was sent and answered, the linger ran out, the
    /// deadline passed, or Ctrl-C came.
    Stopped,
    /// The server closed the stream or the socket failed; the reason names
    /// the address.
    Closed(String),
}

/// One ping run: settings, and the shared bookkeeping.
struct Pinger {
    addr: String,
    size: usize,
    count: Option<u64>,
    interval: Duration,
    /// `-W`: the wait for stragglers after the last request.
    linger: Option<Duration>,
    json: bool,
    /// Written by the sender and the receiver, never across an `.await`.
    state: RefCell<Tracker>,
}

impl Pinger {
    /// Sends and receives until every request is answered or the linger
    /// after the last one runs out; `Closed` if the socket gave out first.
    ///
    /// # Errors
    /// A datagram socket refused before any reply (nothing listens there),
    /// an error sending that is not a refusal, or stdout failing.
    async fn exchange(&self, connection: ClientSocket) -> anyhow::Result<End> {
        match connection {
            ClientSocket::Stream(stream) => {
                let (reader, writer) = tokio::io::split(stream);
                tokio::select! {
                    end = self.send_all(Sender::Stream(writer)) => end,
                    end = self.receive_lines(reader) => end,
                }
            }
            ClientSocket::Datagram(socket) => {
                tokio::select! {
                    end = self.send_all(Sender::Datagram(&socket)) => end,
                    end = self.receive_datagrams(&socket) => end,
                }
            }
        }
    }

    /// Sends a request every interval until `-c` are out, then waits out
    /// the linger.
    async fn send_all(&self, mut sender: Sender<'_>) -> anyhow::Result<End> {
        let mut tick = tokio::time::interval(self.interval);
        // A send held up (a full socket buffer) is not made up for with a
        // burst: ping(8) paces requests, it does not catch up.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut request = Vec::with_capacity(self.size.max(32));
        let mut seq: u64 = 1;
        while self.count.is_none_or(|count| seq <= count) {
            tick.tick().await;
            ping::write_request(seq, self.size, &mut request);
            self.state.borrow_mut().sent(seq, Instant::now());
            if let Err(e) = sender.send(&request).await
                && let Some(end) = self.socket_error("send to", e)?
            {
                return Ok(end);
            }
            seq += 1;
        }
        let linger = {
            let mut state = self.state.borrow_mut();
            state.sending_done = true;
            if state.outstanding() == 0 {
                return Ok(End::Stopped);
            }
            self.linger
                .unwrap_or_else(|| (state.max_rtt * 2).max(MIN_LINGER))
        };
        tokio::time::sleep(linger).await;
        Ok(End::Stopped)
    }

    /// What a socket error means: a datagram refusal is counted once
    /// replies have come (the server went away for a while) and fatal
    /// before (nothing listens there); on a stream, any error ends the run.
    fn socket_error(&self, step: &'static str, e: std::io::Error) -> anyhow::Result<Option<End>> {
        let mut state = self.state.borrow_mut();
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            if state.received == 0 {
                return Err(ClientError::Connect {
                    addr: self.addr.clone(),
                    reason: Cause(&e).to_string(),
                }
                .into());
            }
            state.errors += 1;
            drop(state);
            self.print_error(&e)?;
            return Ok(None);
        }
        Ok(Some(End::Closed(
            ClientError::io(step, &self.addr, e).to_string(),
        )))
    }

    async fn receive_lines(&self, mut reader: impl AsyncRead + Unpin) -> anyhow::Result<End> {
        // Replies are as long as requests; anything far longer is not a pong.
        let mut lines = LineBuffer::new(self.size.max(64) * 2);
        loop {
            let n = match reader.read(lines.spare()).await {
                Ok(n) => n,
                Err(e) => return Ok(self.socket_error("read from", e)?.unwrap_or(End::Stopped)),
            };
            lines.filled(n);
            if n == 0 {
                return Ok(End::Closed(format!("connection closed by {}", self.addr)));
            }
            let now = Instant::now();
            while let Some(frame) = lines.next_frame() {
                match frame {
                    Frame::Line(line, end) => {
                        let len = line.len() + end.bytes().len();
                        if self.reply(line, len, now)? {
                            return Ok(End::Stopped);
                        }
                    }
                    Frame::TooLong => self.state.borrow_mut().invalid += 1,
                }
            }
        }
    }

    async fn receive_datagrams(&self, socket: &Datagram) -> anyhow::Result<End> {
        let mut buf = vec![0; RECV_BUFFER];
        loop {
            let n = match socket.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => match self.socket_error("read from", e)? {
                    Some(end) => return Ok(end),
                    None => continue,
                },
            };
            let now = Instant::now();
            let datagram = &buf[..n];
            let text = datagram
                .strip_suffix(b"\n")
                .map(|d| d.strip_suffix(b"\r").unwrap_or(d))
                .unwrap_or(datagram);
            if self.reply(text, n, now)? {
                return Ok(End::Stopped);
            }
        }
    }

    /// Counts and prints one reply of `len` bytes; true once every request
    /// has been sent and answered.
    fn reply(&self, text: &[u8], len: usize, now: Instant) -> anyhow::Result<bool> {
        let Some(seq) = ping::parse_reply(text) else {
            self.state.borrow_mut().invalid += 1;
            return Ok(false);
        };
        let (kind, done) = {
            let mut state = self.state.borrow_mut();
            let kind = state.reply(seq, now);
            (kind, state.sending_done && state.outstanding() == 0)
        };
        let (rtt, duplicate, reordered) = match kind {
            Reply::First { rtt, reordered } => (rtt, false, reordered),
            Reply::Duplicate { rtt } => (rtt, true, false),
            Reply::Unknown => {
                self.state.borrow_mut().invalid += 1;
                return Ok(done);
            }
        };
        let mut out = std::io::stdout().lock();
        if self.json {
            let line = ReplyLine {
                kind: "reply",
                seq,
                bytes: len,
                time_ms: millis(rtt),
                duplicate,
                reordered,
            };
            writeln!(out, "{}", to_json(&line))?;
        } else {
            let mark = if duplicate {
                " (DUP!)"
            } else if reordered {
                " (reordered)"
            } else {
                ""
            };
            writeln!(
                out,
                "{len} bytes from {}: seq={seq} time={} ms{mark}",
                self.addr,
                format_ms(rtt.as_secs_f64() * 1e3)
            )?;
        }
        out.flush()?;
        Ok(done)
    }

    fn print_error(&self, e: &std::io::Error) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            let line = ErrorLine {
                kind: "error",
                error: Cause(e).to_string(),
            };
            writeln!(out, "{}", to_json(&line))?;
        } else {
            writeln!(out, "from {}: {}", self.addr, Cause(e))?;
        }
        out.flush().context("write to stdout")
    }

    fn header(&self) -> anyhow::Result<()> {
        if self.json {
            return Ok(());
        }
        // The first request's size: `-s`, unless that is too small to hold
        // `ping 1\n`.
        let mut first = Vec::new();
        ping::write_request(1, self.size, &mut first);
        let mut out = std::io::stdout().lock();
        writeln!(out, "PING {}: {} bytes", self.addr, first.len())?;
        out.flush().context("write to stdout")
    }

    fn summary(&self, elapsed: Duration) -> anyhow::Result<()> {
        let state = self.state.borrow();
        let rtt = state.rtt_summary();
        let mut out = std::io::stdout().lock();
        if self.json {
            let line = SummaryLine {
                kind: "summary",
                addr: &self.addr,
                size: self.size,
                sent: state.sent,
                received: state.received,
                duplicates: state.duplicates,
                reordered: state.reordered,
                errors: state.errors,
                invalid: state.invalid,
                loss_percent: state.loss_percent(),
                time_ms: millis(elapsed),
                rtt_ms: rtt.map(|r| RttLine {
                    latency: LatencySummary {
                        min: millis(r.min),
                        avg: millis(r.avg),
                        max: millis(r.max),
                        mdev: millis(r.mdev),
                        p50: millis(r.p50),
                        p90: millis(r.p90),
                        p99: millis(r.p99),
                        p99_9: millis(r.p99_9),
                        p99_99: millis(r.p99_99),
                    },
                    jitter: millis(r.jitter),
                }),
            };
            writeln!(out, "{}", to_json(&line))?;
        } else {
            writeln!(out, "--- {} ping statistics ---", self.addr)?;
            write!(
                out,
                "{} sent, {} received, {}% loss, {} duplicates, {} reordered",
                state.sent,
                state.received,
                format_percent(state.loss_percent()),
                state.duplicates,
                state.reordered,
            )?;
            if state.errors > 0 {
                write!(out, ", {} errors", state.errors)?;
            }
            if state.invalid > 0 {
                write!(out, ", {} invalid", state.invalid)?;
            }
            writeln!(out, ", time {}ms", elapsed.as_millis())?;
            if let Some(r) = rtt {
                let ms = |d: Duration| format_ms(d.as_secs_f64() * 1e3);
                writeln!(
                    out,
                    "rtt min/avg/max/mdev = {}/{}/{}/{} ms, jitter = {} ms",
                    ms(r.min),
                    ms(r.avg),
                    ms(r.max),
                    ms(r.mdev),
                    ms(r.jitter)
                )?;
                writeln!(
                    out,
                    "rtt p50/p90/p99/p99.9 = {}/{}/{}/{} ms",
                    ms(r.p50),
                    ms(r.p90),
                    ms(r.p99),
                    ms(r.p99_9)
                )?;
            }
        }
        out.flush().context("write to stdout")
    }
}

/// `--json`: one reply.
#[derive(Serialize)]
struct ReplyLine {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    /// The reply's size, line end included.
    bytes: usize,
    time_ms: f64,
    duplicate: bool,
    reordered: bool,
}

/// `--json`: a socket error that did not end the run.
#[derive(Serialize)]
struct ErrorLine {
    #[serde(rename = "type")]
    kind: &'static str,
    error: String,
}

/// `--json`: the summary, always the last line.
#[derive(Serialize)]
struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    addr: &'a str,
    size: usize,
    sent: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    errors: u64,
    invalid: u64,
    loss_percent: f64,
    time_ms: f64,
    /// `null` when no reply came.
    rtt_ms: Option<RttLine>,
}

/// `--json`: round-trip figures in milliseconds, in the shape `bench
/// --json` gives its latencies, plus the jitter.
#[derive(Serialize)]
struct RttLine {
    #[serde(flatten)]
    latency: LatencySummary,
    jitter: f64,
}

fn to_json(line: &impl Serialize) -> String {
    serde_json::to_string(line).expect("plain structs always serialise")
}

/// Where requests go: the write half of a stream, or a datagram socket.
enum Sender<'a> {
    Stream(tokio::io::WriteHalf<Stream>),
    Datagram(&'a Datagram),
}

impl Sender<'_> {
    async fn send(&mut self, request: &[u8]) -> std::io::Result<()> {
        match self {
            Sender::Stream(writer) => writer.write_all(request).await,
            Sender::Datagram(socket) => socket.send(request).await,
        }
    }
}

/// A loss percentage as ping(8) shows it: whole when it is whole.
fn format_percent(p: f64) -> String {
    let text = format!("{p:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// What one reply was.
#[derive(Debug, PartialEq)]
enum Reply {
    /// The first reply to its request; `reordered` if a later request's
    /// reply came before it.
    First { rtt: Duration, reordered: bool },
    /// Another reply to a request already answered.
    Duplicate { rtt: Duration },
    /// A sequence number never sent, or too old to remember.
    Unknown,
}

/// One remembered request.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// 0 while unused (sequence numbers start at 1).
    seq: u64,
    sent_at: Instant,
    answered: bool,
}

/// The bookkeeping of a run: what was sent when, what came back, and the
/// round-trip statistics of first replies.
struct Tracker {
    /// The last [`WINDOW`] requests, indexed by `seq % WINDOW`; grown on
    /// demand, so a short run stays small.
    slots: Vec<Slot>,
    sent: u64,
    /// Requests answered at least once.
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Socket errors (a datagram refused after replies had come).
    errors: u64,
    /// Replies that were not `pong SEQ` for a request sent.
    invalid: u64,
    /// The highest sequence number answered so far.
    highest: u64,
    /// Set once the last request has gone out.
    sending_done: bool,
    latency: Latency,
    min_rtt: Duration,
    max_rtt: Duration,
    /// Sums in seconds for the mean and mdev.
    sum: f64,
    sum_sq: f64,
    /// The previous first reply's RTT, and the sum of the absolute changes
    /// between consecutive ones, for the jitter.
    last_rtt: Option<Duration>,
    jitter_sum: f64,
}

/// The round-trip figures of a run.
struct RttSummary {
    min: Duration,
    avg: Duration,
    max: Duration,
    mdev: Duration,
    jitter: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    p99_9: Duration,
    p99_99: Duration,
}

impl Tracker {
    fn new() -> Tracker {
        Tracker {
            slots: Vec::new(),
            sent: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            errors: 0,
            invalid: 0,
            highest: 0,
            sending_done: false,
            latency: Latency::new(),
            min_rtt: Duration::MAX,
            max_rtt: Duration::ZERO,
            sum: 0.0,
            sum_sq: 0.0,
            last_rtt: None,
            jitter_sum: 0.0,
        }
    }

    /// Records that request `seq` (1, 2, 3, ...) went out at `at`.
    fn sent(&mut self, seq: u64, at: Instant) {
        let slot = Slot {
            seq,
            sent_at: at,
            answered: false,
        };
        let i = (seq % WINDOW as u64) as usize;
        if i >= self.slots.len() {
            // Sequence numbers come in order, so this grows by one slot
            // (two for the very first, as slot 0 waits for seq WINDOW).
            let unused = Slot { seq: 0, ..slot };
            self.slots.resize(i + 1, unused);
        }
        self.slots[i] = slot;
        self.sent += 1;
    }

    /// Records a reply for `seq` that arrived at `now`.
    fn reply(&mut self, seq: u64, now: Instant) -> Reply {
        let i = (seq % WINDOW as u64) as usize;
        let Some(slot) = self.slots.get_mut(i).filter(|s| s.seq == seq && seq != 0) else {
            return Reply::Unknown;
        };
        let rtt = now.saturating_duration_since(slot.sent_at);
        if slot.answered {
            self.duplicates += 1;
            return Reply::Duplicate { rtt };
        }
        slot.answered = true;
        self.received += 1;
        let reordered = seq < self.highest;
        if reordered {
            self.reordered += 1;
        }
        self.highest = self.highest.max(seq);
        self.latency.record(rtt);
        self.min_rtt = self.min_rtt.min(rtt);
        self.max_rtt = self.max_rtt.max(rtt);
        let secs = rtt.as_secs_f64();
        self.sum += secs;
        self.sum_sq += secs * secs;
        if let Some(last) = self.last_rtt {
            self.jitter_sum += (secs - last.as_secs_f64()).abs();
        }
        self.last_rtt = Some(rtt);
        Reply::First { rtt, reordered }
    }

    /// Requests neither answered nor given up on.
    fn outstanding(&self) -> u64 {
        self.sent - self.received
    }

    fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        let lost = self.sent.saturating_sub(self.received) as f64;
        (lost / self.sent as f64 * 1000.0).round() / 10.0
    }

    /// A percentile from the histogram, which rounds up to its bucket's
    /// top: never more than the exact maximum.
    fn percentile(&self, percentile: f64) -> Duration {
        self.latency.percentile(percentile).min(self.max_rtt)
    }

    /// min/avg/max/mdev as ping(8) computes them (mdev is the standard
    /// deviation), jitter as the mean change between consecutive round
    /// trips, and percentiles from the histogram; `None` with no reply.
    fn rtt_summary(&self) -> Option<RttSummary> {
        if self.received == 0 {
            return None;
        }
        let n = self.received as f64;
        let mean = self.sum / n;
        let variance = (self.sum_sq / n - mean * mean).max(0.0);
        let jitter = if self.received > 1 {
            self.jitter_sum / (n - 1.0)
        } else {
            0.0
        };
        Some(RttSummary {
            min: self.min_rtt,
            avg: Duration::from_secs_f64(mean),
            max: self.max_rtt,
            mdev: Duration::from_secs_f64(variance.sqrt()),
            jitter: Duration::from_secs_f64(jitter),
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            p99_9: self.percentile(99.9),
            p99_99: self.percentile(99.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_duplicates_and_reordering_are_counted() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Tracker::new();
        for seq in 1..=5 {
            t.sent(seq, t0 + ms(seq * 10));
        }
        assert_eq!(
            t.reply(1, t0 + ms(11)),
            Reply::First {
                rtt: ms(1),
                reordered: false
            }
        );
        assert_eq!(t.reply(1, t0 + ms(12)), Reply::Duplicate { rtt: ms(2) });
        assert!(matches!(
            t.reply(3, t0 + ms(33)),
            Reply::First {
                reordered: false,
                ..
            }
        ));
        assert!(matches!(
            t.reply(2, t0 + ms(34)),
            Reply::First {
                reordered: true,
                ..
            }
        ));
        assert_eq!(t.reply(9, t0 + ms(40)), Reply::Unknown);
        assert_eq!(t.reply(0, t0 + ms(40)), Reply::Unknown);
        assert_eq!(
            (t.sent, t.received, t.duplicates, t.reordered),
            (5, 3, 1, 1)
        );
        assert_eq!(t.outstanding(), 2);
        assert_eq!(t.loss_percent(), 40.0);
        let r = t.rtt_summary().unwrap();
        assert_eq!((r.min, r.max), (ms(1), ms(14)));
        assert_eq!(r.avg, ms(6));
        // RTTs 1, 3, 14: changes 2 and 11.
        assert_eq!(r.jitter, Duration::from_micros(6500));
    }

    #[test]
    fn old_requests_fall_out_of_the_window() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        for seq in 1..=(WINDOW as u64 + 1) {
            t.sent(seq, t0);
        }
        assert_eq!(t.slots.len(), WINDOW);
        assert_eq!(t.reply(1, t0), Reply::Unknown);
        assert!(matches!(
            t.reply(WINDOW as u64 + 1, t0),
            Reply::First { .. }
        ));
    }

    #[test]
    fn percentages_read_like_ping() {
        assert_eq!(format_percent(0.0), "0");
        assert_eq!(format_percent(10.0), "10");
        assert_eq!(format_percent(33.3), "33.3");
    }
}
