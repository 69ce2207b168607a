//! One mesh node: the loop that owns the UDP socket and drives everything
//! else from it.
//!
//! Membership and failure detection are foca's (SWIM with suspicion), run
//! sans-IO: foca is handed received bytes and timer events, and answers
//! through an [`AccumulatingRuntime`] with datagrams to send, timers to
//! arm and membership notifications, which the loop drains after every
//! call. foca's timers live in an ordered map here (foca wants them
//! delivered in order), next to the delivery layer's retransmission timer
//! and the simulated-delay queue; the loop sleeps until the earliest one.
//!
//! Each received datagram is classified by its header (`message.rs`):
//! plain (shown, acknowledged), sealed (decrypted first, `crypto.rs`),
//! membership (to foca), data or ack (to `delivery.rs`). Anything that
//! fails is counted and dropped; `/stats` shows the counters.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::rc::Rc;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, State, Timer};
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::mpsc;

use super::command::{Command, Input, MAX_TEXT, parse};
use super::crypto::{Crypto, OpenError};
use super::delivery::{Delivered, Delivery, Transmit};
use super::message::{
    AppMessage, CodecState, DataFrame, Envelope, Frame, Kind, MAX_DATAGRAM, MAX_SWIM_PAYLOAD,
    PeerId, WireCodec, open_envelope, write_header,
};
use super::output::{Event, Output, PeerLine};
use super::transport::Transport;
use crate::net::frame::split_datagram;
use crate::net::ratelimit::{RateLimiter, TokenBucket, from_classic_port};

/// How often a live member is probed: the heart of failure detection.
/// With [`SUSPECT_TO_DOWN`] this puts a dead member down on every node in
/// about 5 s on loopback (SPEC: within 10 s).
const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// How long a probe waits for a direct answer before asking others to
/// probe indirectly. Far above a LAN round trip; a node that is merely
/// busy for this long gets indirect probes, not suspicion.
const PROBE_RTT: Duration = Duration::from_millis(300);
/// How many messages each membership update rides on (see
/// `swim_config`).
const MAX_TRANSMISSIONS: u8 = 16;
/// How long a suspect member has to refute the suspicion.
const SUSPECT_TO_DOWN: Duration = Duration::from_secs(3);
/// How long foca remembers a down member (stopping a stale identity from
/// coming back); restarts and renewals carry a newer identity and are not
/// held up by it.
const FORGET_DOWN_AFTER: Duration = Duration::from_secs(600);
/// How long `/peers` keeps showing a member that is down.
const SHOW_DOWN_FOR: Duration = Duration::from_secs(60);
/// Members (foca's table, down ones included) at most; a full table
/// refuses strangers rather than grow (see `CodecState`).
pub const MAX_MEMBERS: usize = 1024;
/// How often membership is compared with what was last reported (to catch
/// alive/suspect changes, which foca does not notify).
const TICK: Duration = Duration::from_millis(250);
/// First retry of an unanswered join; doubled up to [`JOIN_RETRY_MAX`].
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// Slowest join retry, kept up while the node knows no live member, so a
/// node whose seed was down joins when the seed comes back.
const JOIN_RETRY_MAX: Duration = Duration::from_secs(5);
/// On exit (Ctrl-C, `/quit`), how long to wait for unacknowledged messages
/// before leaving anyway.
const EXIT_FLUSH: Duration = Duration::from_secs(2);
/// Datagrams handled per wake-up before timers and output get a turn; a
/// batch's acks go out as one per stream.
const RECV_BATCH: usize = 64;
/// Receive buffer: the largest UDP payload, so a plain datagram is never
/// cut short (ours are at most [`MAX_DATAGRAM`]).
const RECV_BUFFER: usize = 65_535;
/// Replies to plain datagrams, per second over all sources. Loopback
/// sources are exempt from the per-source limiter, and two programs that
/// answer every datagram (this node and a ping service, say) would
/// otherwise answer each other forever.
const PLAIN_REPLIES_PER_SEC: f64 = 50.0;
/// Per-source budget for plain replies to non-loopback sources.
const PLAIN_REPLIES_PER_SOURCE: u32 = 10;

type Swim = Foca<PeerId, WireCodec, StdRng, NoCustomBroadcast>;

/// foca's settings for this mesh.
fn swim_config() -> foca::Config {
    let mut c = foca::Config::simple();
    c.probe_period = PROBE_PERIOD;
    c.probe_rtt = PROBE_RTT;
    c.num_indirect_probes = NonZeroUsize::new(3).expect("3");
    // Each membership update rides on this many messages, each to a
    // member picked at random, so a given member misses it with
    // probability about e^-k, and after n members join at once about
    // n² e^-k (member, update) pairs are missing. Nothing repairs those
    // quickly: gossip stops once every update is spent, probes go round
    // the members one a second, and the periodic announce's answer holds
    // ~30 random members. With
    // memberlist's 4·log10(n+1) (8 at 100 members), 100 nodes started
    // together converged in 1 s save 1-5 pairs that took 15-30 s
    // (benchmarks/mesh.py); 16 leaves ~0.001 pairs at 100 and ~0.1 at
    // MAX_MEMBERS, for 16 copies of a ~40-byte update per change.
    c.max_transmissions = NonZeroU8::new(MAX_TRANSMISSIONS).expect("nonzero");
    c.suspect_to_down_after = SUSPECT_TO_DOWN;
    c.remove_down_after = Some(FORGET_DOWN_AFTER);
    c.max_packet_size = NonZeroUsize::new(MAX_SWIM_PAYLOAD).expect("nonzero");
    // Tell a member we consider down, so it renews its identity and
    // rejoins instead of talking into the void.
    c.notify_down_members = true;
    // Ask a random member for its member list now and then: a joiner
    // learns everyone even if an update was lost.
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("1"),
    });
    // Knock on down members' doors: heals partitions and notices a
    // restarted member that was not told to --join.
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(2).expect("2"),
    });
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: Duration::from_millis(200),
        num_members: NonZeroUsize::new(3).expect("3"),
    });
    c
}

/// Drop and event counters, shown by `/stats`.
#[derive(Debug, Clone, Default, Serialize)]
struct Counters {
    datagrams_in: u64,
    plain_messages: u64,
    plain_replies: u64,
    dropped: Drops,
}

/// Why received datagrams were dropped.
#[derive(Debug, Clone, Default, Serialize)]
struct Drops {
    /// Plain datagrams while `--secret` is set.
    plain_with_secret: u64,
    /// Our protocol unencrypted while `--secret` is set.
    unsealed_with_secret: u64,
    /// Encrypted datagrams without `--secret`.
    sealed_without_secret: u64,
    /// Encrypted datagrams whose tag did not verify (wrong key, tampering).
    auth_failed: u64,
    /// Authentic datagrams seen before.
    replayed: u64,
    /// Ours, but malformed (including unknown kinds).
    malformed: u64,
    /// Ours, but another protocol version.
    other_version: u64,
    /// Membership messages foca refused (stale, from ourselves, table full).
    swim_refused: u64,
    /// Plain datagrams not answered (loop guard, rate limit, classic port).
    plain_not_answered: u64,
}

/// What we last reported about a member.
#[derive(Debug)]
struct Seen {
    id: PeerId,
    state: State,
    down_since: Option<Instant>,
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Input(Option<Input>),
    Timer,
}

/// A running node.
pub struct Node {
    transport: Transport,
    /// The one receive buffer, reused for every datagram.
    buf: Vec<u8>,
    /// The one send buffer (plaintext before sealing).
    plain: Vec<u8>,
    /// The sealed datagram.
    sealed: Vec<u8>,
    me: PeerId,
    swim: Swim,
    runtime: AccumulatingRuntime<PeerId>,
    codec: Rc<RefCell<CodecState>>,
    /// foca's timers, in the order foca must see them.
    timers: BTreeMap<(Instant, u64), Timer<PeerId>>,
    timer_seq: u64,
    delivery: Delivery,
    crypto: Option<Crypto>,
    output: Output,
    view: BTreeMap<SocketAddr, Seen>,
    joins: Vec<SocketAddr>,
    next_join: Instant,
    join_retry: Duration,
    next_tick: Instant,
    next_msg_id: u64,
    /// Plain replies over all sources: [`PLAIN_REPLIES_PER_SEC`].
    reply_budget: TokenBucket,
    rate: RateLimiter,
    counters: Counters,
}

impl Node {
    /// A node with identity `me` on `transport`, joining through `joins`.
    pub fn new(
        me: PeerId,
        transport: Transport,
        joins: Vec<SocketAddr>,
        secret: Option<&[u8]>,
        json: bool,
    ) -> Node {
        let codec = Rc::new(RefCell::new(CodecState {
            me: me.clone(),
            full: None,
        }));
        let swim = Foca::new(
            me.clone(),
            swim_config(),
            rand::make_rng(),
            WireCodec(codec.clone()),
        );
        let now = Instant::now();
        Node {
            transport,
            buf: vec![0; RECV_BUFFER],
            plain: Vec::with_capacity(MAX_DATAGRAM),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            swim,
            runtime: AccumulatingRuntime::new(),
            codec,
            timers: BTreeMap::new(),
            timer_seq: 0,
            delivery: Delivery::new(me.session),
            crypto: secret.map(|s| Crypto::new(s, super::crypto::os_random())),
            output: Output::new(json),
            view: BTreeMap::new(),
            joins: joins.into_iter().filter(|a| *a != me.addr).collect(),
            next_join: now,
            join_retry: JOIN_RETRY,
            next_tick: now + TICK,
            next_msg_id: 0,
            reply_budget: TokenBucket::new(PLAIN_REPLIES_PER_SEC, now),
            rate: RateLimiter::new(PLAIN_REPLIES_PER_SOURCE),
            counters: Counters::default(),
            me,
        }
    }

    /// Runs until `shutdown` completes or `/quit`; then waits (briefly)
    /// for unacknowledged messages and leaves the mesh.
    ///
    /// # Errors
    /// Only writing to stdout can fail (a closed pipe ends the node).
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        let mut closing: Option<Instant> = None;
        let mut input_open = true;
        loop {
            let now = Instant::now();
            if let Some(deadline) = closing
                && (self.delivery.idle() || now >= deadline)
            {
                break;
            }
            let wake_at = self.next_deadline();
            let take_input = input_open && closing.is_none() && self.delivery.has_room();
            let wake = {
                let socket = &self.transport.socket;
                let buf = &mut self.buf;
                tokio::select! {
                    () = &mut shutdown, if closing.is_none() => Wake::Shutdown,
                    r = socket.recv_from(buf) => Wake::Datagram(r),
                    i = input.recv(), if take_input => Wake::Input(i),
                    () = tokio::time::sleep_until(wake_at.into()) => Wake::Timer,
                }
            };
            let now = Instant::now();
            match wake {
                Wake::Shutdown => closing = Some(now + EXIT_FLUSH),
                Wake::Datagram(Ok((n, from))) => {
                    self.on_datagram(n, from, now);
                    for _ in 1..RECV_BATCH {
                        match self.transport.socket.try_recv_from(&mut self.buf) {
                            Ok((n, from)) => self.on_datagram(n, from, now),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Datagram(Err(e)) => tracing::debug!(error = %e, "recv_from"),
                Wake::Input(Some(Input::Line(line))) => {
                    if self.on_line(&line, now) {
                        closing = Some(now + EXIT_FLUSH);
                    }
                }
                Wake::Input(Some(Input::TooLong)) => self.output.emit(&Event::Error(&format!(
                    "line too long (max {MAX_TEXT} bytes); dropped"
                ))),
                Wake::Input(Some(Input::Eof) | None) => input_open = false,
                Wake::Timer => {}
            }
            self.on_timers(now);
            self.send_transmits(now);
            self.output.flush()?;
        }
        let now = Instant::now();
        if let Err(e) = self.swim.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "leave");
        }
        self.after_swim(now);
        self.send_transmits(now);
        self.transport.release(now + Duration::from_secs(60));
        tracing::info!("left the mesh");
        self.output.flush()
    }

    fn next_deadline(&self) -> Instant {
        [
            self.timers.keys().next().map(|k| k.0),
            self.delivery.next_deadline(),
            self.transport.next_deadline(),
            Some(self.next_join),
            Some(self.next_tick),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the tick is always there")
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if let Err(e) = self.swim.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(error = %e, "foca timer");
            }
            self.after_swim(now);
        }
        self.delivery.on_timer(now);
        self.transport.release(now);
        if now >= self.next_join {
            if self.swim.num_members() == 0 && !self.joins.is_empty() {
                for i in 0..self.joins.len() {
                    let target = PeerId::placeholder(self.joins[i]);
                    if let Err(e) = self.swim.announce(target, &mut self.runtime) {
                        tracing::debug!(error = %e, "announce");
                    }
                }
                self.after_swim(now);
                tracing::debug!(retry_in = ?self.join_retry, "joining");
                self.next_join = now + self.join_retry;
                self.join_retry = (self.join_retry * 2).min(JOIN_RETRY_MAX);
            } else {
                self.next_join = now + JOIN_RETRY_MAX;
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.reconcile(now);
        }
    }

    /// Sends what foca asked for, arms its timers, and reacts to its
    /// notifications.
    fn after_swim(&mut self, now: Instant) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send_frame(to.addr, &Frame::Swim(&data), now);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        let mut changed = false;
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(_) | OwnedNotification::MemberDown(_) => changed = true,
                OwnedNotification::Rename(old, new) => {
                    if old.session != new.session {
                        // The process behind `old` is gone: so is its stream.
                        self.delivery.close(old.session);
                    }
                    changed = true;
                }
                OwnedNotification::Active => tracing::info!("joined the mesh"),
                OwnedNotification::Idle => {
                    tracing::info!("no live members left");
                    self.next_join = now;
                    self.join_retry = JOIN_RETRY;
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(epoch = id.epoch, "declared down by the mesh; rejoined");
                    self.me = id.clone();
                    self.codec.borrow_mut().me = id;
                }
                OwnedNotification::Defunct => tracing::warn!("declared down by the mesh"),
                // Further notifications (behind foca features we do not
                // enable) carry nothing we act on.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if changed {
            self.reconcile(now);
        }
    }

    /// Compares foca's member table with what we last reported, and
    /// reports the differences: joins, downs, suspicions.
    fn reconcile(&mut self, now: Instant) {
        let mut changed = false;
        let mut present = HashSet::new();
        let members: Vec<(PeerId, State)> = self
            .swim
            .iter_membership_state()
            .map(|m| (m.id().clone(), m.state()))
            .collect();
        for (id, state) in members {
            present.insert(id.addr);
            let up = state != State::Down;
            match self.view.get_mut(&id.addr) {
                None => {
                    if up {
                        self.output.emit(&Event::Join {
                            name: &id.name,
                            addr: id.addr,
                        });
                        changed = true;
                    }
                    let down_since = (!up).then_some(now);
                    self.view.insert(
                        id.addr,
                        Seen {
                            id,
                            state,
                            down_since,
                        },
                    );
                }
                Some(seen) => {
                    let was_up = seen.state != State::Down;
                    let restarted = seen.id.session != id.session;
                    if was_up && (!up || restarted) {
                        self.delivery.set_reachable(seen.id.session, false);
                        tracing::info!(member = %seen.id.name, addr = %id.addr, "down");
                        self.output.emit(&Event::Leave {
                            name: &seen.id.name,
                            addr: seen.id.addr,
                        });
                        changed = true;
                    }
                    if up && (!was_up || restarted) {
                        self.delivery.set_reachable(id.session, true);
                        tracing::info!(member = %id.name, addr = %id.addr, "up");
                        self.output.emit(&Event::Join {
                            name: &id.name,
                            addr: id.addr,
                        });
                        changed = true;
                    }
                    if up && was_up && !restarted && seen.state != state {
                        tracing::info!(member = %id.name, state = state_name(state), "state");
                        changed = true;
                    }
                    if !up && (was_up || restarted) {
                        seen.down_since = Some(now);
                    } else if up {
                        seen.down_since = None;
                    }
                    seen.id = id;
                    seen.state = state;
                }
            }
        }
        self.view.retain(|addr, _| present.contains(addr));
        if changed && self.output.is_json() {
            let peers = self.peer_lines(now);
            self.output.emit(&Event::State(&peers));
        }
        let mut codec = self.codec.borrow_mut();
        if present.len() >= MAX_MEMBERS {
            codec.full.get_or_insert(present);
        } else {
            codec.full = None;
        }
    }

    fn peer_lines(&self, now: Instant) -> Vec<PeerLine> {
        let mut lines = vec![PeerLine {
            name: self.me.name.clone(),
            addr: self.me.addr,
            state: "alive",
            me: true,
        }];
        let mut others: Vec<PeerLine> = self
            .view
            .values()
            .filter(|s| {
                s.down_since
                    .is_none_or(|t| now.saturating_duration_since(t) < SHOW_DOWN_FOR)
            })
            .map(|s| PeerLine {
                name: s.id.name.clone(),
                addr: s.id.addr,
                state: state_name(s.state),
                me: false,
            })
            .collect();
        others.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        lines.extend(others);
        lines
    }

    fn on_datagram(&mut self, n: usize, from: SocketAddr, now: Instant) {
        self.counters.datagrams_in += 1;
        // Taken out so it can be decrypted in place while `self` is busy.
        let mut buf = std::mem::take(&mut self.buf);
        self.classify(&mut buf[..n], from, now);
        self.buf = buf;
    }

    fn classify(&mut self, datagram: &mut [u8], from: SocketAddr, now: Instant) {
        let kind = match open_envelope(datagram) {
            Envelope::Plain => return self.on_plain(datagram, from, now),
            Envelope::OtherVersion(v) => {
                tracing::debug!(peer = %from, version = v, "dropped: other protocol version");
                self.counters.dropped.other_version += 1;
                return;
            }
            Envelope::UnknownKind(_) => {
                self.counters.dropped.malformed += 1;
                return;
            }
            Envelope::Ours(kind, _) => kind,
        };
        if datagram.len() > MAX_DATAGRAM {
            self.counters.dropped.malformed += 1;
            return;
        }
        let (kind, body): (Kind, &[u8]) = match (&mut self.crypto, kind) {
            (Some(crypto), Kind::Sealed) => match crypto.open(datagram, now) {
                Ok(plain) => {
                    let inner = plain.first().and_then(|k| match *k {
                        1 => Some(Kind::Swim),
                        2 => Some(Kind::Data),
                        3 => Some(Kind::Ack),
                        _ => None,
                    });
                    match inner {
                        Some(k) => (k, &plain[1..]),
                        None => {
                            self.counters.dropped.malformed += 1;
                            return;
                        }
                    }
                }
                Err(e) => {
                    let d = &mut self.counters.dropped;
                    match e {
                        OpenError::Malformed => d.malformed += 1,
                        OpenError::Auth => d.auth_failed += 1,
                        OpenError::Replay => d.replayed += 1,
                    }
                    tracing::debug!(peer = %from, reason = ?e, "dropped sealed datagram");
                    return;
                }
            },
            (None, Kind::Sealed) => {
                tracing::debug!(peer = %from, "dropped: encrypted, and we have no --secret");
                self.counters.dropped.sealed_without_secret += 1;
                return;
            }
            (Some(_), _) => {
                tracing::debug!(peer = %from, "dropped: unencrypted, and we use --secret");
                self.counters.dropped.unsealed_with_secret += 1;
                return;
            }
            (None, kind) => (kind, &datagram[super::message::HEADER_LEN..]),
        };
        match Frame::decode(kind, body) {
            Ok(frame) => self.on_frame(frame, from, now),
            Err(e) => {
                tracing::debug!(peer = %from, error = %e, "dropped: malformed");
                self.counters.dropped.malformed += 1;
            }
        }
    }

    fn on_frame(&mut self, frame: Frame<'_>, from: SocketAddr, now: Instant) {
        match frame {
            Frame::Swim(payload) => {
                if let Err(e) = self.swim.handle_data(payload, &mut self.runtime) {
                    tracing::trace!(peer = %from, error = %e, "foca refused a datagram");
                    self.counters.dropped.swim_refused += 1;
                }
                self.after_swim(now);
            }
            Frame::Data(f) => {
                for d in self.delivery.on_data(from, &f, now) {
                    self.show(&d);
                }
            }
            Frame::Ack(a) => self.delivery.on_ack(&a, now),
        }
    }

    fn show(&mut self, d: &Delivered) {
        let Ok(m) = AppMessage::decode(&d.body) else {
            self.counters.dropped.malformed += 1;
            return;
        };
        let to = m.direct.then_some(self.me.name.as_str());
        self.output.emit(&Event::Message {
            from: m.from,
            addr: d.from_addr,
            to,
            text: m.text,
            id: Some(format!("{:016x}-{}", d.from_session, m.id)),
        });
    }

    /// A datagram that is not ours: shown as a message from its address,
    /// and answered so a plain socket can talk to a node (SPEC 6).
    fn on_plain(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        if self.crypto.is_some() {
            tracing::debug!(peer = %from, "dropped: plain datagram, and we use --secret");
            self.counters.dropped.plain_with_secret += 1;
            return;
        }
        if from_classic_port(from) {
            self.counters.dropped.plain_not_answered += 1;
            return;
        }
        self.counters.plain_messages += 1;
        let (text, _) = split_datagram(datagram);
        let label = from.to_string();
        self.output.emit(&Event::Message {
            from: &label,
            addr: from,
            to: None,
            text,
            id: None,
        });
        if self.may_reply(text, from, now) {
            let reply = format!("{}{}\n", REPLY_PREFIX, self.me.name);
            self.transport.send(from, reply.as_bytes(), now);
            self.counters.plain_replies += 1;
        } else {
            self.counters.dropped.plain_not_answered += 1;
        }
    }

    /// The loop guards: never answer an answer, a member or a join address
    /// (they speak the protocol: plain text from there is some other
    /// service answering us), or beyond the rate limits.
    fn may_reply(&mut self, text: &[u8], from: SocketAddr, now: Instant) -> bool {
        if text.starts_with(REPLY_PREFIX.as_bytes())
            || self.view.contains_key(&from)
            || self.joins.contains(&from)
        {
            return false;
        }
        self.reply_budget
            .refill(PLAIN_REPLIES_PER_SEC, PLAIN_REPLIES_PER_SEC * 2.0, now);
        // The shared budget is taken only once the source's own allows it.
        if !self.reply_budget.has_token() || !self.rate.allow(from.ip(), now) {
            return false;
        }
        self.reply_budget.take()
    }

    /// Handles a line of input; true when it asks to quit.
    fn on_line(&mut self, line: &str, now: Instant) -> bool {
        match parse(line) {
            Command::Nothing => {}
            Command::Say(text) => {
                let targets: Vec<(u64, SocketAddr)> = self
                    .swim
                    .iter_members()
                    .map(|m| (m.id().session, m.id().addr))
                    .collect();
                if targets.is_empty() {
                    self.output
                        .emit(&Event::Error("no other members yet: nobody got that"));
                }
                self.send_message(&targets, text, false, now);
            }
            Command::Msg { to, text } => {
                let matches: Vec<PeerId> = self
                    .swim
                    .iter_members()
                    .map(|m| m.id().clone())
                    .filter(|id| {
                        id.name == to
                            || id.addr.to_string() == to
                            || format!("udp://{}", id.addr) == to
                    })
                    .collect();
                match matches.as_slice() {
                    [id] => self.send_message(&[(id.session, id.addr)], text, true, now),
                    [] if to == self.me.name => {
                        self.output.emit(&Event::Error("that is this node"));
                    }
                    [] => self
                        .output
                        .emit(&Event::Error(&format!("no live member named {to}"))),
                    several => {
                        let addrs: Vec<String> = several
                            .iter()
                            .map(|id| format!("udp://{}", id.addr))
                            .collect();
                        self.output.emit(&Event::Error(&format!(
                            "{to} names {} members; use an address: {}",
                            several.len(),
                            addrs.join(" ")
                        )));
                    }
                }
            }
            Command::Peers => {
                let peers = self.peer_lines(now);
                self.output.emit(&Event::State(&peers));
            }
            Command::Stats => {
                let stats = self.stats();
                self.output.emit(&Event::Stats(&stats));
            }
            Command::Help => self.output.emit(&Event::Help),
            Command::Quit => return true,
            Command::Usage(u) => self.output.emit(&Event::Error(u)),
            Command::Unknown(c) => self
                .output
                .emit(&Event::Error(&format!("unknown command {c}; try /help"))),
        }
        false
    }

    fn send_message(
        &mut self,
        targets: &[(u64, SocketAddr)],
        text: &str,
        direct: bool,
        now: Instant,
    ) {
        let mut body = Vec::with_capacity(text.len() + 64);
        AppMessage {
            direct,
            id: self.next_msg_id,
            from: &self.me.name,
            text: text.as_bytes(),
        }
        .encode(&mut body);
        self.next_msg_id += 1;
        self.delivery.send(targets, &body, now);
    }

    fn send_transmits(&mut self, now: Instant) {
        for t in self.delivery.drain() {
            match t {
                Transmit::Data {
                    to,
                    dst,
                    base,
                    seq,
                    first,
                    more,
                    chunk,
                } => {
                    let frame = Frame::Data(DataFrame {
                        src: self.me.session,
                        dst,
                        base,
                        seq,
                        first,
                        more,
                        chunk: &chunk,
                    });
                    self.send_frame(to, &frame, now);
                }
                Transmit::Ack { to, frame } => self.send_frame(to, &Frame::Ack(frame), now),
            }
        }
    }

    /// Encodes (and seals, with `--secret`) one frame and sends it.
    fn send_frame(&mut self, to: SocketAddr, frame: &Frame<'_>, now: Instant) {
        self.plain.clear();
        match &mut self.crypto {
            Some(crypto) => {
                self.plain.push(frame.kind() as u8);
                frame.encode_body(&mut self.plain);
                self.sealed.clear();
                crypto.seal(&self.plain, &mut self.sealed);
                self.transport.send(to, &self.sealed, now);
            }
            None => {
                write_header(&mut self.plain, frame.kind());
                frame.encode_body(&mut self.plain);
                self.transport.send(to, &self.plain, now);
            }
        }
    }

    fn stats(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.counters).expect("plain counters");
        let map = v.as_object_mut().expect("an object");
        map.insert(
            "members".into(),
            self.swim.iter_membership_state().len().into(),
        );
        map.insert(
            "transport".into(),
            serde_json::to_value(&self.transport.stats).expect("plain counters"),
        );
        map.insert(
            "delivery".into(),
            serde_json::to_value(&self.delivery.stats).expect("plain counters"),
        );
        v
    }
}

/// How the reply to a plain datagram starts: `ack NAME`. Never answered
/// itself, so two nodes cannot be made to acknowledge each other forever.
pub const REPLY_PREFIX: &str = "ack ";

fn state_name(s: State) -> &'static str {
    match s {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn a_renewed_or_restarted_identity_wins() {
        let id = PeerId {
            addr: "127.0.0.1:1".parse().unwrap(),
            name: "a".into(),
            epoch: 10,
            session: 5,
        };
        let renewed = id.renew().unwrap();
        assert!(renewed.win_addr_conflict(&id));
        assert_eq!(renewed.session, id.session, "same process, same streams");
        let restarted = PeerId {
            epoch: 20,
            session: 1,
            ..id.clone()
        };
        assert!(restarted.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&restarted));
    }

    #[test]
    fn swim_settings_are_accepted_by_foca() {
        let me = PeerId {
            addr: "127.0.0.1:1".parse().unwrap(),
            name: "a".into(),
            epoch: 1,
            session: 1,
        };
        let codec = Rc::new(RefCell::new(CodecState {
            me: me.clone(),
            full: None,
        }));
        let mut foca: Swim = Foca::new(me, swim_config(), rand::make_rng(), WireCodec(codec));
        assert!(foca.set_config(swim_config()).is_ok());
        assert!(SUSPECT_TO_DOWN + PROBE_PERIOD * 3 < Duration::from_secs(10));
    }
}
