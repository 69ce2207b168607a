//! Exactly-once, in-order message delivery over lossy datagrams.
//!
//! Each (sender session, receiver session) pair is one stream of numbered
//! frames; a message is one or more frames (the first flagged `first`,
//! all but the last flagged `more`). Broadcasting means sending the message
//! down the stream to every live member, so "in order per sender" is the
//! stream's order and "exactly once" is the receiver's `next` counter:
//! a frame below it is a duplicate, whatever the network did.
//!
//! The sender keeps every frame until it is acknowledged and retransmits on
//! a timeout (RFC 6298's estimator, with Karn's rule and backoff); at most
//! [`WINDOW`] frames are in flight. The receiver buffers frames that arrive
//! early (at most [`WINDOW`] ahead, and at most [`MAX_REORDER_BYTES`] over all
//! streams), delivers in order, and acknowledges cumulatively plus a bitmap
//! of the frames it holds beyond the gap (selective acks), so a loss costs
//! the one frame's retransmission.
//!
//! Every frame also carries the sender's `base` (its oldest unacknowledged
//! frame). Everything below it was acknowledged by this receiver, so a
//! receiver that has no state for the stream (it forgot an idle one) can
//! resume at `base` instead of waiting forever for frames nobody keeps.
//!
//! Pure state machine: no sockets, no clock of its own. The node feeds it
//! frames and the time, and sends what [`Delivery::drain`] returns; the
//! unit tests run it over a simulated lossy network.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::{AckFrame, DataFrame, MAX_CHUNK, SACK_BITS};

/// Frames in flight (sent, not yet acknowledged) per stream.
pub const WINDOW: usize = 256;
/// Frames queued per stream, in flight or waiting for the window; the node
/// stops reading input while a stream is this full.
pub const MAX_QUEUED_FRAMES: usize = 4096;
/// The largest message, in bytes, once reassembled.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Bytes held in reorder buffers, over all receiving streams. Beyond it an
/// early frame is dropped (its sender will send it again).
pub const MAX_REORDER_BYTES: usize = 16 << 20;
/// Receiving streams remembered at once; the one heard from least recently
/// is forgotten first (and resumes at its sender's `base` if heard again).
const MAX_RECV_STREAMS: usize = 1024;
/// A receiving stream with nothing buffered and no traffic for this long
/// is forgotten.
const RECV_IDLE: Duration = Duration::from_secs(600);
/// The retransmission timeout before the first round-trip is measured.
const INITIAL_RTO: Duration = Duration::from_millis(300);
/// The smallest retransmission timeout. Loopback round trips are tens of
/// microseconds, but a busy receiver may not run for a while; a spurious
/// retransmission costs one duplicate, which the receiver drops.
const MIN_RTO: Duration = Duration::from_millis(100);
/// The largest retransmission timeout, after backoff.
const MAX_RTO: Duration = Duration::from_secs(3);
/// A stream whose receiver acknowledges nothing for this long is given up
/// and its queued frames dropped (the receiver is gone; SWIM says so much
/// sooner, but a member falsely declared down gets this long to come back).
const GIVE_UP: Duration = Duration::from_secs(60);

/// A datagram the node must send.
#[derive(Debug, Clone)]
pub enum Transmit {
    /// A data frame to the stream's receiver.
    Data {
        /// The receiver's address.
        to: SocketAddr,
        /// The receiver's session.
        dst: u64,
        /// Our oldest unacknowledged frame.
        base: u64,
        /// This frame's sequence number.
        seq: u64,
        /// The first frame of a message.
        first: bool,
        /// More frames of the message follow.
        more: bool,
        /// The bytes, shared by the copies queued for every receiver.
        chunk: Arc<[u8]>,
    },
    /// An acknowledgement to a sender.
    Ack {
        /// The sender's address.
        to: SocketAddr,
        /// The frame.
        frame: AckFrame,
    },
}

/// A message that arrived whole, in order, for the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The sender's session.
    pub from_session: u64,
    /// Where its last frame came from.
    pub from_addr: SocketAddr,
    /// The reassembled message (an encoded `AppMessage`).
    pub body: Vec<u8>,
}

/// Counters for `/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryStats {
    /// Messages queued for sending (once per receiver).
    pub messages_sent: u64,
    /// Messages delivered to us.
    pub messages_delivered: u64,
    /// Data frames sent the first time.
    pub frames_sent: u64,
    /// Data frames sent again after a timeout.
    pub retransmits: u64,
    /// Data frames that arrived a second time (or later) and were dropped.
    pub duplicates: u64,
    /// Data frames too far ahead of the gap to buffer.
    pub out_of_window: u64,
    /// Early frames dropped because the reorder buffers were full.
    pub reorder_overflow: u64,
    /// Frames or acks for a session that is not (or no longer) the one
    /// they name.
    pub stale: u64,
    /// Receiving streams resumed at the sender's base after we had
    /// forgotten them.
    pub resyncs: u64,
    /// Messages dropped half-received: too long, or cut by a resync.
    pub incomplete: u64,
    /// Frames dropped unacknowledged when a stream was closed or given up.
    pub abandoned: u64,
}

#[derive(Debug)]
struct Slot {
    chunk: Arc<[u8]>,
    first: bool,
    more: bool,
    /// When it was last sent; `None` while it waits for the window.
    sent: Option<Instant>,
    retransmitted: bool,
    acked: bool,
}

/// Our side of a stream we send.
#[derive(Debug)]
struct SendStream {
    to: SocketAddr,
    /// Sequence number of `queue[0]`.
    base: u64,
    queue: VecDeque<Slot>,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// When to look for frames to retransmit; `None` with nothing in flight.
    timer: Option<Instant>,
    last_progress: Instant,
    /// False while membership says the receiver is down.
    reachable: bool,
}

/// Our side of a stream we receive.
#[derive(Debug)]
struct RecvStream {
    from: SocketAddr,
    /// Every frame below this has been delivered (or skipped by a resync).
    next: u64,
    /// Frames that arrived ahead of `next`.
    early: BTreeMap<u64, (Vec<u8>, bool, bool)>,
    /// The message being reassembled.
    partial: Vec<u8>,
    /// Dropping frames up to the next `first` (a message too long, or one
    /// whose start we skipped).
    discarding: bool,
    ack_due: bool,
    last_seen: Instant,
}

/// All streams of one node.
#[derive(Debug)]
pub struct Delivery {
    me: u64,
    send: HashMap<u64, SendStream>,
    recv: HashMap<u64, RecvStream>,
    reorder_bytes: usize,
    out: Vec<Transmit>,
    /// Counters for `/stats`.
    pub stats: DeliveryStats,
}

impl Delivery {
    /// The streams of the node whose session is `me`.
    pub fn new(me: u64) -> Delivery {
        Delivery {
            me,
            send: HashMap::new(),
            recv: HashMap::new(),
            reorder_bytes: 0,
            out: Vec::new(),
            stats: DeliveryStats::default(),
        }
    }

    /// Queues `body` for each `(session, address)` target. The caller
    /// checks [`Delivery::has_room`] first and keeps bodies within
    /// [`MAX_MESSAGE`].
    pub fn send(&mut self, targets: &[(u64, SocketAddr)], body: &[u8], now: Instant) {
        let chunks: Vec<Arc<[u8]>> = body.chunks(MAX_CHUNK).map(Arc::from).collect();
        let last = chunks.len().saturating_sub(1);
        for &(session, to) in targets {
            let stream = self.send.entry(session).or_insert_with(|| SendStream {
                to,
                base: 0,
                queue: VecDeque::new(),
                srtt: None,
                rttvar: Duration::ZERO,
                rto: INITIAL_RTO,
                timer: None,
                last_progress: now,
                reachable: true,
            });
            if stream.queue.is_empty() {
                // Idle time is not silence from the receiver.
                stream.last_progress = now;
            }
            stream.to = to;
            stream.reachable = true;
            for (i, chunk) in chunks.iter().enumerate() {
                stream.queue.push_back(Slot {
                    chunk: chunk.clone(),
                    first: i == 0,
                    more: i != last,
                    sent: None,
                    retransmitted: false,
                    acked: false,
                });
            }
            self.stats.messages_sent += 1;
            pump(session, stream, now, &mut self.out, &mut self.stats);
        }
    }

    /// Whether every stream can take another message of the largest size.
    /// Streams to members that are down are left out: they get no new
    /// messages, and must not hold up input while they are given up on.
    pub fn has_room(&self) -> bool {
        let largest = MAX_MESSAGE.div_ceil(MAX_CHUNK) + 1;
        self.send
            .values()
            .all(|s| !s.reachable || s.queue.len() + largest <= MAX_QUEUED_FRAMES)
    }

    /// Whether everything sent to live members has been acknowledged.
    pub fn idle(&self) -> bool {
        self.send
            .values()
            .all(|s| !s.reachable || s.queue.is_empty())
    }

    /// Records whether the member behind `session` is up (membership says
    /// so). A down member's stream keeps retrying, in case the verdict was
    /// wrong, until it has been silent for 60 s.
    pub fn set_reachable(&mut self, session: u64, reachable: bool) {
        if let Some(s) = self.send.get_mut(&session) {
            s.reachable = reachable;
        }
    }

    /// Handles a data frame from `from`; returns the messages it completed.
    pub fn on_data(&mut self, from: SocketAddr, f: &DataFrame<'_>, now: Instant) -> Vec<Delivered> {
        let mut done = Vec::new();
        if f.dst != self.me {
            self.stats.stale += 1;
            return done;
        }
        if !self.recv.contains_key(&f.src) && self.recv.len() >= MAX_RECV_STREAMS {
            self.evict_recv();
        }
        let stream = self.recv.entry(f.src).or_insert_with(|| RecvStream {
            from,
            next: 0,
            early: BTreeMap::new(),
            partial: Vec::new(),
            discarding: false,
            ack_due: false,
            last_seen: now,
        });
        stream.from = from;
        stream.last_seen = now;
        stream.ack_due = true;
        if stream.next < f.base {
            // Frames below `base` were acknowledged by this session, yet
            // we lack them: we had forgotten the stream. Resume at `base`,
            // skipping any message whose start we no longer have.
            stream.next = f.base;
            let kept = stream.early.split_off(&f.base);
            let dropped: usize = stream.early.values().map(|(c, ..)| c.len()).sum();
            self.reorder_bytes -= dropped;
            stream.early = kept;
            if !stream.partial.is_empty() {
                self.stats.incomplete += 1;
            }
            stream.partial.clear();
            stream.discarding = true;
            self.stats.resyncs += 1;
        }
        if f.seq < stream.next {
            self.stats.duplicates += 1;
            return done;
        }
        if f.seq - stream.next >= WINDOW as u64 {
            self.stats.out_of_window += 1;
            return done;
        }
        if f.seq > stream.next {
            match stream.early.entry(f.seq) {
                Entry::Occupied(_) => self.stats.duplicates += 1,
                Entry::Vacant(_) if self.reorder_bytes + f.chunk.len() > MAX_REORDER_BYTES => {
                    self.stats.reorder_overflow += 1;
                }
                Entry::Vacant(slot) => {
                    self.reorder_bytes += f.chunk.len();
                    slot.insert((f.chunk.to_vec(), f.first, f.more));
                }
            }
            return done;
        }
        let mut frame = Some((f.chunk.to_vec(), f.first, f.more));
        while let Some((chunk, first, more)) = frame {
            if first {
                if !stream.partial.is_empty() {
                    self.stats.incomplete += 1;
                }
                stream.partial.clear();
                stream.discarding = false;
            }
            if !stream.discarding {
                if stream.partial.len() + chunk.len() > MAX_MESSAGE {
                    stream.partial = Vec::new();
                    stream.discarding = true;
                    self.stats.incomplete += 1;
                } else {
                    stream.partial.extend_from_slice(&chunk);
                }
            }
            if !more {
                if !stream.discarding {
                    self.stats.messages_delivered += 1;
                    done.push(Delivered {
                        from_session: f.src,
                        from_addr: from,
                        body: std::mem::take(&mut stream.partial),
                    });
                }
                stream.discarding = false;
            }
            stream.next += 1;
            frame = stream.early.remove(&stream.next);
            if let Some((c, ..)) = &frame {
                self.reorder_bytes -= c.len();
            }
        }
        done
    }

    fn evict_recv(&mut self) {
        if let Some(oldest) = self
            .recv
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| *k)
            && let Some(s) = self.recv.remove(&oldest)
        {
            self.reorder_bytes -= s.early.values().map(|(c, ..)| c.len()).sum::<usize>();
        }
    }

    /// Handles an acknowledgement.
    pub fn on_ack(&mut self, a: &AckFrame, now: Instant) {
        let Some(stream) = self.send.get_mut(&a.src).filter(|_| a.dst == self.me) else {
            self.stats.stale += 1;
            return;
        };
        let end = stream.base + stream.queue.len() as u64;
        if a.next > end {
            // Acknowledges frames we never sent: not from this stream's
            // receiver, whatever it claims.
            self.stats.stale += 1;
            return;
        }
        let mut sample = None;
        let mut ack = |slot: &mut Slot| {
            if !slot.acked {
                slot.acked = true;
                if !slot.retransmitted
                    && let Some(sent) = slot.sent
                {
                    sample = Some(now.saturating_duration_since(sent));
                }
            }
        };
        for slot in stream
            .queue
            .iter_mut()
            .take(a.next.saturating_sub(stream.base) as usize)
        {
            ack(slot);
        }
        for i in 0..SACK_BITS {
            if a.sack[i / 64] & (1 << (i % 64)) != 0 {
                let seq = a.next + 1 + i as u64;
                if seq >= stream.base && seq < end {
                    ack(&mut stream.queue[(seq - stream.base) as usize]);
                }
            }
        }
        if let Some(r) = sample {
            stream.observe_rtt(r);
        }
        let mut progress = false;
        while stream.queue.front().is_some_and(|s| s.acked) {
            stream.queue.pop_front();
            stream.base += 1;
            progress = true;
        }
        if progress {
            stream.last_progress = now;
            stream.rto = stream.computed_rto();
            stream.timer = stream.in_flight().then_some(now + stream.rto);
            pump(a.src, stream, now, &mut self.out, &mut self.stats);
        }
    }

    /// Retransmits what timed out and gives up on silent receivers.
    pub fn on_timer(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (&session, stream) in &mut self.send {
            let Some(at) = stream.timer else { continue };
            if at > now {
                continue;
            }
            if now.saturating_duration_since(stream.last_progress) >= GIVE_UP {
                gone.push(session);
                continue;
            }
            let due = now.checked_sub(stream.rto).unwrap_or(now);
            let mut resent = false;
            let mut oldest: Option<Instant> = None;
            for (i, slot) in stream.queue.iter_mut().take(WINDOW).enumerate() {
                let Some(sent) = slot.sent.filter(|_| !slot.acked) else {
                    continue;
                };
                if sent > due {
                    oldest = Some(oldest.map_or(sent, |o| o.min(sent)));
                } else {
                    resent = true;
                    slot.sent = Some(now);
                    slot.retransmitted = true;
                    self.stats.retransmits += 1;
                    self.out
                        .push(data_transmit(session, stream.to, stream.base, i, slot));
                }
            }
            if resent {
                // Karn: back off until an ack of a fresh frame measures
                // the path again.
                stream.rto = (stream.rto * 2).min(MAX_RTO);
                stream.timer = Some(now + stream.rto);
            } else {
                stream.timer = oldest.map(|o| o + stream.rto);
            }
        }
        for session in gone {
            tracing::debug!(
                session = format_args!("{session:016x}"),
                "giving up on a silent receiver"
            );
            self.close(session);
        }
        let before = self.recv.len();
        self.recv.retain(|_, s| {
            !s.early.is_empty() || now.saturating_duration_since(s.last_seen) < RECV_IDLE
        });
        if self.recv.len() != before {
            tracing::debug!(
                forgotten = before - self.recv.len(),
                "idle receiving streams"
            );
        }
    }

    /// Drops the stream to `session` (its process is gone) and whatever it
    /// still held.
    pub fn close(&mut self, session: u64) {
        if let Some(s) = self.send.remove(&session) {
            self.stats.abandoned += s.queue.iter().filter(|s| !s.acked).count() as u64;
        }
    }

    /// When [`Delivery::on_timer`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.send.values().filter_map(|s| s.timer).min()
    }

    /// Takes what must be sent now: data frames, then one ack per stream
    /// that received anything since the last call (so a burst of frames
    /// costs one ack).
    pub fn drain(&mut self) -> Vec<Transmit> {
        for (&session, stream) in &mut self.recv {
            if !std::mem::take(&mut stream.ack_due) {
                continue;
            }
            let mut sack = [0u64; SACK_BITS / 64];
            for (&seq, _) in stream
                .early
                .range(stream.next + 1..stream.next + 1 + SACK_BITS as u64)
            {
                let i = (seq - stream.next - 1) as usize;
                sack[i / 64] |= 1 << (i % 64);
            }
            self.out.push(Transmit::Ack {
                to: stream.from,
                frame: AckFrame {
                    src: self.me,
                    dst: session,
                    next: stream.next,
                    sack,
                },
            });
        }
        std::mem::take(&mut self.out)
    }
}

impl SendStream {
    fn in_flight(&self) -> bool {
        self.queue.iter().any(|s| s.sent.is_some() && !s.acked)
    }

    /// RFC 6298, section 2.
    fn observe_rtt(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
    }

    fn computed_rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => {
                (srtt + (self.rttvar * 4).max(Duration::from_millis(10))).clamp(MIN_RTO, MAX_RTO)
            }
        }
    }
}

/// The datagram carrying `slot`, the `i`th frame of a send stream whose
/// first queued frame is `base` (for first sends and retransmissions alike).
fn data_transmit(session: u64, to: SocketAddr, base: u64, i: usize, slot: &Slot) -> Transmit {
    Transmit::Data {
        to,
        dst: session,
        base,
        seq: base + i as u64,
        first: slot.first,
        more: slot.more,
        chunk: slot.chunk.clone(),
    }
}

/// Sends the frames that fit in the window and have not been sent.
fn pump(
    session: u64,
    stream: &mut SendStream,
    now: Instant,
    out: &mut Vec<Transmit>,
    stats: &mut DeliveryStats,
) {
    let mut sent_any = false;
    for (i, slot) in stream.queue.iter_mut().take(WINDOW).enumerate() {
        if slot.sent.is_some() {
            continue;
        }
        slot.sent = Some(now);
        sent_any = true;
        stats.frames_sent += 1;
        out.push(data_transmit(session, stream.to, stream.base, i, slot));
    }
    if sent_any && stream.timer.is_none() {
        stream.timer = Some(now + stream.rto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::message::DataFrame;

    /// A deterministic xorshift generator: tests must not be flaky.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self, p: f64) -> bool {
            (self.next() % 10_000) as f64 / 10_000.0 < p
        }
    }

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    /// Nodes `0..n` (session `i + 1`, port `i + 1`) over a network that
    /// drops, duplicates and reorders; virtual time in 1 ms steps.
    struct Net {
        nodes: Vec<Delivery>,
        wire: Vec<(u64, usize, Transmit)>,
        rng: Rng,
        loss: f64,
        dup: f64,
        reorder: f64,
        t0: Instant,
        now_ms: u64,
        got: Vec<Vec<(u64, Vec<u8>)>>,
    }

    impl Net {
        fn new(n: usize, loss: f64, dup: f64, reorder: f64, seed: u64) -> Net {
            Net {
                nodes: (0..n).map(|i| Delivery::new(i as u64 + 1)).collect(),
                wire: Vec::new(),
                rng: Rng(seed),
                loss,
                dup,
                reorder,
                t0: Instant::now(),
                now_ms: 0,
                got: vec![Vec::new(); n],
            }
        }

        fn now(&self) -> Instant {
            self.t0 + Duration::from_millis(self.now_ms)
        }

        fn targets(&self, from: usize) -> Vec<(u64, SocketAddr)> {
            (0..self.nodes.len())
                .filter(|&i| i != from)
                .map(|i| (i as u64 + 1, addr(i as u16 + 1)))
                .collect()
        }

        fn post(&mut self, from: usize) {
            for t in self.nodes[from].drain() {
                let to = match &t {
                    Transmit::Data { to, .. } | Transmit::Ack { to, .. } => to.port() as usize - 1,
                };
                if self.rng.chance(self.loss) {
                    continue;
                }
                let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let delay = if self.rng.chance(self.reorder) {
                        1 + self.rng.next() % 30
                    } else {
                        1
                    };
                    self.wire.push((self.now_ms + delay, to, t.clone()));
                }
            }
            let _ = from;
        }

        fn step(&mut self) {
            self.now_ms += 1;
            let now = self.now();
            let (due, later): (Vec<_>, Vec<_>) =
                self.wire.drain(..).partition(|(at, ..)| *at <= self.now_ms);
            self.wire = later;
            for (_, to, t) in due {
                match t {
                    Transmit::Data {
                        dst,
                        base,
                        seq,
                        first,
                        more,
                        chunk,
                        ..
                    } => {
                        // The sender's session is its port.
                        let src = self.sender_of(dst, seq, &chunk);
                        let f = DataFrame {
                            src,
                            dst,
                            base,
                            seq,
                            first,
                            more,
                            chunk: &chunk,
                        };
                        let from = addr(src as u16);
                        for d in self.nodes[to].on_data(from, &f, now) {
                            self.got[to].push((d.from_session, d.body));
                        }
                    }
                    Transmit::Ack { frame, .. } => self.nodes[to].on_ack(&frame, now),
                }
            }
            for i in 0..self.nodes.len() {
                self.nodes[i].on_timer(now);
                self.post(i);
            }
        }

        /// Which node sent a frame: in these tests the first byte of every
        /// chunk names the sender (session), so the wire needs no source.
        fn sender_of(&self, _dst: u64, _seq: u64, chunk: &[u8]) -> u64 {
            u64::from(chunk[0])
        }

        fn send(&mut self, from: usize, body: Vec<u8>) {
            let targets = self.targets(from);
            let now = self.now();
            self.nodes[from].send(&targets, &body, now);
            self.post(from);
        }

        fn run_until_idle(&mut self, limit_ms: u64) {
            while self.now_ms < limit_ms {
                self.step();
                if self.wire.is_empty() && self.nodes.iter().all(Delivery::idle) {
                    return;
                }
            }
            panic!("not idle after {limit_ms} ms of virtual time");
        }
    }

    /// A message body whose first byte names the sender and whose chunks
    /// all start with it too (so [`Net::sender_of`] works for big ones).
    fn body(sender: usize, n: u32, len: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(len);
        let tag = format!("{n:08}");
        while b.len() < len {
            if b.len() % MAX_CHUNK == 0 {
                b.push(sender as u8 + 1);
            } else {
                b.push(tag.as_bytes()[b.len() % 8]);
            }
        }
        b
    }

    fn check_exactly_once_in_order(net: &Net, senders: &[usize], count: u32, len: usize) {
        for (to, got) in net.got.iter().enumerate() {
            for &from in senders.iter().filter(|&&s| s != to) {
                let bodies: Vec<&Vec<u8>> = got
                    .iter()
                    .filter(|(s, _)| *s == from as u64 + 1)
                    .map(|(_, b)| b)
                    .collect();
                assert_eq!(bodies.len(), count as usize, "node {to} from {from}");
                for (n, b) in bodies.iter().enumerate() {
                    assert_eq!(**b, body(from, n as u32, len), "node {to} from {from} #{n}");
                }
            }
        }
    }

    #[test]
    fn a_thousand_messages_survive_loss_duplication_and_reordering() {
        let mut net = Net::new(3, 0.10, 0.05, 0.10, 0x5eed);
        for n in 0..1000 {
            for from in 0..3 {
                net.send(from, body(from, n, 20));
            }
        }
        net.run_until_idle(120_000);
        check_exactly_once_in_order(&net, &[0, 1, 2], 1000, 20);
        let s = &net.nodes[0].stats;
        assert!(s.retransmits > 0 && s.duplicates > 0, "{s:?}");
    }

    #[test]
    fn long_messages_are_split_and_reassembled_under_loss() {
        let mut net = Net::new(2, 0.2, 0.1, 0.2, 7);
        let len = MAX_CHUNK * 5 + 17;
        for n in 0..30 {
            net.send(0, body(0, n, len));
        }
        net.run_until_idle(120_000);
        check_exactly_once_in_order(&net, &[0], 30, len);
    }

    #[test]
    fn a_receiver_that_forgot_the_stream_resumes_at_base() {
        let mut net = Net::new(2, 0.0, 0.0, 0.0, 1);
        for n in 0..5 {
            net.send(0, body(0, n, 10));
        }
        net.run_until_idle(10_000);
        net.nodes[1].recv.clear();
        for n in 5..8 {
            net.send(0, body(0, n, 10));
        }
        net.run_until_idle(10_000);
        assert_eq!(net.got[1].len(), 8, "nothing lost, nothing twice");
        assert_eq!(net.nodes[1].stats.resyncs, 1);
    }

    #[test]
    fn frames_for_another_session_or_from_nowhere_are_stale() {
        let mut d = Delivery::new(9);
        let now = Instant::now();
        let f = DataFrame {
            src: 1,
            dst: 8,
            base: 0,
            seq: 0,
            first: true,
            more: false,
            chunk: b"x",
        };
        assert!(d.on_data(addr(1), &f, now).is_empty());
        d.on_ack(
            &AckFrame {
                src: 5,
                dst: 9,
                next: 3,
                sack: [0; 4],
            },
            now,
        );
        assert_eq!(d.stats.stale, 2);
        assert!(d.drain().is_empty());
    }

    #[test]
    fn early_frames_are_bounded_and_far_ones_refused() {
        let mut d = Delivery::new(9);
        let now = Instant::now();
        let chunk = vec![1u8; MAX_CHUNK];
        for seq in 1..(WINDOW as u64 + 10) {
            let f = DataFrame {
                src: 1,
                dst: 9,
                base: 0,
                seq,
                first: true,
                more: false,
                chunk: &chunk,
            };
            assert!(d.on_data(addr(1), &f, now).is_empty());
        }
        assert_eq!(d.stats.out_of_window, 10);
        assert!(d.reorder_bytes <= WINDOW * MAX_CHUNK);
        // The gap fills: everything buffered comes out in order.
        let f = DataFrame {
            src: 1,
            dst: 9,
            base: 0,
            seq: 0,
            first: true,
            more: false,
            chunk: b"x",
        };
        assert_eq!(d.on_data(addr(1), &f, now).len(), WINDOW);
        assert_eq!(d.reorder_bytes, 0);
    }

    #[test]
    fn an_over_long_message_is_dropped_and_the_next_arrives() {
        let mut d = Delivery::new(9);
        let now = Instant::now();
        let chunk = vec![1u8; MAX_CHUNK];
        let frames = MAX_MESSAGE / MAX_CHUNK + 2;
        let mut got = Vec::new();
        for seq in 0..frames as u64 {
            let f = DataFrame {
                src: 1,
                dst: 9,
                base: seq,
                seq,
                first: seq == 0,
                more: seq + 1 < frames as u64,
                chunk: &chunk,
            };
            got.extend(d.on_data(addr(1), &f, now));
        }
        assert!(got.is_empty());
        let f = DataFrame {
            src: 1,
            dst: 9,
            base: frames as u64,
            seq: frames as u64,
            first: true,
            more: false,
            chunk: b"ok",
        };
        assert_eq!(d.on_data(addr(1), &f, now)[0].body, b"ok");
        assert_eq!(d.stats.incomplete, 1);
    }

    #[test]
    fn a_silent_receiver_is_given_up_and_the_queue_freed() {
        let mut d = Delivery::new(1);
        let t0 = Instant::now();
        d.send(&[(2, addr(2))], b"hello", t0);
        assert_eq!(d.drain().len(), 1);
        assert!(!d.idle());
        let mut t = t0;
        let mut retransmits = 0;
        while t < t0 + GIVE_UP + MAX_RTO * 2 {
            t += Duration::from_millis(50);
            d.on_timer(t);
            retransmits += d.drain().len();
        }
        assert!(d.idle(), "given up");
        assert!(
            retransmits >= 5,
            "backed off but kept trying: {retransmits}"
        );
        assert!(retransmits < 60, "backoff: {retransmits}");
        assert_eq!(d.stats.abandoned, 1);
    }
}
