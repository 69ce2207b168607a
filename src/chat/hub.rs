//! The chat hub: who is connected, under which name, in which room, and
//! the fan-out of every line to a room's members.
//!
//! A session (a stream connection, a WebSocket) calls [`Hub::join`] and gets a [`Membership`],
//! through which it acts ([`Membership::handle`]), and an [`Inbox`], the
//! lines the hub has for it. The hub never waits: each member's lines go
//! into its own bounded queue, a `VecDeque` kept under the hub's one
//! short-held lock, and the session's writer takes them in batches at
//! whatever pace the member's socket allows. A line into a queue costs a
//! pointer push, and what a member said in one read goes in as one run
//! ([`Lines`], made by [`Membership::speak`]): a burst costs each member
//! one push, one wake-up and one write, whatever its length (the writer
//! is woken only when its queue was empty, and writes the shared text as
//! it is). On a runtime of one thread the session's writer is woken only
//! for a member it is already writing to, or whose socket is full: the
//! others' lines are written by the hub's one writer task, a non-blocking
//! `writev` a member ([`Hub::joins_with_side_writer`]). A member whose queue is full
//! is behind by `--queue` lines; it is dropped on the spot (its
//! [`Inbox::dropped`] fires) and its room is told `* NAME dropped (too
//! slow)`. So a stuck reader costs the room one failed push, then
//! nothing.
//!
//! Why per-member queues and not one `broadcast` channel per room: a
//! lagging `broadcast` receiver only learns that it lagged when it next
//! reads, and a member stuck in a blocked write never reads; a private
//! `/msg` and a member's own notices need a per-member path anyway. Lines
//! are `Arc<str>`, made once and shared by every queue they are put in.
//! A member's `--queue` counts lines, a run as many as it holds.
//!
//! Memory is bounded by the limits: members by `--max-conns`, each queue
//! by `--queue` lines of at most `--max-line` (escaped, four times that),
//! each room's history by `--history`, and rooms by the members in them
//! (a room goes away with its last member, except `lobby`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::cluster::{Event, RemoteMember, Roster};
use super::command::{ClientLine, check_name, name_key};
use super::link::{Claim, Link, RedisConfig};
use super::notice::{HELP, Notice};
use crate::metrics::{ChatFigures, ChatSource};
use crate::net::stream::SideWriter;

/// One line as members receive it, without its line end; shared by every
/// queue it is in and by the room's history.
pub type Line = Arc<str>;

/// What a member's queue holds: one line, or a run of lines one member
/// said one after another (what one read of it brought), joined by `\n`,
/// without the last line end. Made once and shared by every queue it is
/// in, so a burst costs each member one push and one write, as one read
/// forwarded whole would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    text: Arc<str>,
    count: usize,
    /// How many bytes of `text` have been written to the member already
    /// (the hub's writer wrote part of it: [`Member::write_queued`]); 0
    /// everywhere else.
    sent: usize,
}

impl Lines {
    /// The lines as one text, joined by `\n`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is still to be written of the text (all of it, unless the
    /// hub wrote the first part), without the last line end.
    pub fn unsent(&self) -> &[u8] {
        &self.text.as_bytes()[self.sent..]
    }

    /// How many lines: what they count for in a member's `--queue`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Each line, without its line end.
    pub fn iter(&self) -> std::str::Split<'_, char> {
        self.text.split('\n')
    }

    /// Each line as a [`Line`] of its own: the text itself, shared, when
    /// there is one line.
    fn lines(&self) -> impl Iterator<Item = Line> + '_ {
        self.iter().map(|one| {
            if self.count == 1 {
                self.text.clone()
            } else {
                Arc::from(one)
            }
        })
    }
}

impl From<Line> for Lines {
    fn from(text: Line) -> Lines {
        Lines {
            text,
            count: 1,
            sent: 0,
        }
    }
}

impl From<&Line> for Lines {
    fn from(text: &Line) -> Lines {
        Lines::from(text.clone())
    }
}

impl From<&Lines> for Lines {
    fn from(lines: &Lines) -> Lines {
        lines.clone()
    }
}

/// The room every member starts in.
pub const LOBBY: &str = "lobby";

/// Default `--history`: lines replayed to a member joining a room.
pub const DEFAULT_HISTORY: usize = 20;
/// Default `--queue`: lines a member may be behind before it is dropped.
pub const DEFAULT_QUEUE: usize = 1000;
/// Default `--flood-rate`: lines a second a member may send.
pub const DEFAULT_FLOOD_RATE: u32 = 10;
/// Default `--flood-burst`: lines a member may send at once after a pause.
pub const DEFAULT_FLOOD_BURST: u32 = 20;

/// How many other forms of a default name (`NAME-2` ...) a member joining
/// is offered when another server has its address as a name already.
const DEFAULT_NAME_TRIES: u64 = 9;

/// The settings of a chat service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// Lines of each room replayed on join; 0: none kept.
    pub history: usize,
    /// Capacity of each member's queue, in lines (at least 1).
    pub queue: usize,
    /// Lines a second each member may send; 0: no flood control.
    pub flood_rate: u32,
    /// Lines a member may send in a burst (at least 1).
    pub flood_burst: u32,
    /// `--quiet-joins`: rooms of more than this many members get no join,
    /// leave or drop notices; `None`: every room gets them (SPEC 5).
    pub quiet_joins: Option<usize>,
    /// `--redis`: the other servers this one is a chat with.
    pub redis: Option<RedisConfig>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            history: DEFAULT_HISTORY,
            queue: DEFAULT_QUEUE,
            flood_rate: DEFAULT_FLOOD_RATE,
            flood_burst: DEFAULT_FLOOD_BURST,
            quiet_joins: None,
            redis: None,
        }
    }
}

/// What a session does after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on reading.
    Continue,
    /// The member said `/quit`: write what is queued, then close.
    Quit,
}

/// The chat: every member and room of one service, shared by all of its
/// listeners, and with `--redis`, its link to the other servers.
#[derive(Debug)]
pub struct Hub {
    config: ChatConfig,
    /// A std mutex, not tokio's: it is never held across an await, and
    /// every section is short (one fan-out of `try_send`s at most).
    state: Mutex<State>,
    /// `--redis`: where the hub publishes, and asks for names and
    /// history. The hub itself still never waits: [`Hub::join`] and
    /// [`Membership::handle`] ask, then lock.
    link: Option<Arc<Link>>,
}

/// A member's receiving end, owned by its session: the lines the hub
/// has for it, in order ([`recv_many`](Inbox::recv_many)).
#[derive(Debug)]
pub struct Inbox {
    hub: Arc<Hub>,
    id: MemberId,
    /// Woken when a line comes into the empty queue, and when the member
    /// leaves or is dropped.
    ready: Arc<Notify>,
    /// Cancelled by the hub when it drops the member for being too slow:
    /// the session must close the connection now, without draining.
    pub dropped: CancellationToken,
}

/// A queue once bigger than this (512 bytes of pointers) is given back
/// when it empties, so a member costs little once a burst has passed.
const KEPT_QUEUE: usize = 32;

/// Gives back an empty queue's room if a burst grew it past [`KEPT_QUEUE`].
fn give_back_if_grown(queue: &mut VecDeque<Lines>) {
    if queue.capacity() > KEPT_QUEUE {
        *queue = VecDeque::new();
    }
}

impl Inbox {
    /// Waits for lines, then moves up to `limit` entries of them (at
    /// least one) into `lines`; 0 once the member has left and all that was queued
    /// has been taken. An empty `lines` is swapped with the whole queue
    /// when it fits: no line is moved, and the two buffers take turns.
    pub async fn recv_many(&mut self, lines: &mut VecDeque<Lines>, limit: usize) -> usize {
        loop {
            // Made before looking, so a line queued in between leaves its
            // wake-up for this wait.
            let ready = self.ready.notified();
            match self.hub.lock().take(self.id, lines, limit.max(1)) {
                Take::Got(n) => return n,
                Take::Closed => return 0,
                Take::Empty => {}
            }
            ready.await;
        }
    }

    /// The next entry of the queue, if one is queued now.
    pub fn try_recv(&mut self) -> Option<Lines> {
        let mut one = VecDeque::with_capacity(1);
        match self.hub.lock().take(self.id, &mut one, 1) {
            Take::Got(_) => one.pop_front(),
            Take::Empty | Take::Closed => None,
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.hub.lock().departed.remove(&self.id);
    }
}

/// What a writer found in its member's queue.
enum Take {
    /// This many lines, now in its batch.
    Got(usize),
    /// Nothing yet.
    Empty,
    /// Nothing, ever: the member left and everything was taken.
    Closed,
}

/// A member's place in the hub. The session holds it for the life of the
/// connection; dropping it (or [`leave`](Membership::leave)) takes the
/// member out and tells its room.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    id: MemberId,
}

/// What a member said, gathered line by line while its session works
/// through one read, for [`Membership::speak`] to send to its room as
/// one run. Kept by the session and reused, so gathering allocates only
/// while it grows.
#[derive(Debug, Default)]
pub struct Speech {
    /// The texts, one after another.
    texts: String,
    /// Where each text ends in `texts`, and whether it was a `/me`.
    ends: Vec<(usize, bool)>,
}

impl Speech {
    /// Adds a plain line (`me` false) or a `/me` (true).
    pub fn push(&mut self, text: &str, me: bool) {
        self.texts.push_str(text);
        self.ends.push((self.texts.len(), me));
    }

    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many lines are gathered.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each text and whether it is a `/me`, in order.
    fn each(&self) -> impl Iterator<Item = (&str, bool)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(end, _)| end));
        starts
            .zip(&self.ends)
            .map(|(start, &(end, me))| (&self.texts[start..end], me))
    }

    fn clear(&mut self) {
        self.texts.clear();
        self.ends.clear();
        // A flood's worth is given back, as a session's buffers are.
        if self.texts.capacity() > SPEECH_KEPT {
            *self = Speech::default();
        }
    }
}

/// The bytes of texts a [`Speech`] keeps between reads.
const SPEECH_KEPT: usize = 1024;

/// A member's number, unique within the server.
pub type MemberId = u64;

/// Hashes member ids (sequential numbers, never chosen by a client) with
/// one multiplication: the fan-out looks one up per member per line,
/// where SipHash showed in profiles.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive ids over every bit.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<MemberId, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<MemberId, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
struct State {
    next_id: MemberId,
    /// `--queue`: the most lines a member's queue holds.
    capacity: usize,
    /// `--quiet-joins`: rooms bigger than this hear no joins and leaves
    /// (`usize::MAX`: none is that big).
    quiet_above: usize,
    members: IdMap<Member>,
    /// Members who left with lines still queued for them (their `* bye`):
    /// kept until their writer has taken them or their session ends.
    departed: IdMap<VecDeque<Lines>>,
    /// Every member's name, by [`name_key`]: what makes names unique. A
    /// name being claimed in Redis is here already, so no other member
    /// of this server can claim it meanwhile.
    names: HashMap<String, MemberId>,
    /// Sorted, for `/rooms`.
    rooms: BTreeMap<Arc<str>, Room>,
    /// Members dropped for being too slow, since the start (`--metrics`).
    dropped: u64,
    /// The members of the other servers (`--redis`).
    remote: Roster,
    /// Where changes go for the other servers (`--redis`).
    link: Option<Arc<Link>>,
    /// The hub's writer's list ([`Hub::write_for_members`]).
    writer: HubWriter,
}

/// The members the hub's writer is to write to, and how it is woken.
#[derive(Debug, Default)]
struct HubWriter {
    /// On a runtime of one thread: wakes the writer once a member is on
    /// the list. `None`: there is no writer.
    told: Option<Arc<Notify>>,
    /// Members with a [`SideWriter`] whose lines came while their queue
    /// was empty and their writer idle.
    unwritten: Vec<MemberId>,
}

impl HubWriter {
    /// Puts member `id` on the list, waking the writer for the first.
    fn add(&mut self, id: MemberId) {
        if self.unwritten.is_empty()
            && let Some(told) = &self.told
        {
            told.notify_one();
        }
        self.unwritten.push(id);
    }
}

#[derive(Debug)]
struct Member {
    name: Arc<str>,
    room: Arc<str>,
    /// The lines for it not yet taken by its writer.
    queue: VecDeque<Lines>,
    /// How many lines `queue` holds: once `--queue`, no more go in.
    queued: usize,
    /// The hub's copy of [`Inbox::ready`].
    ready: Arc<Notify>,
    /// The hub's copy of [`Inbox::dropped`].
    dropped: CancellationToken,
    /// Where the hub's writer writes the member's lines while its own
    /// writer is idle ([`Member::write_queued`]); `None` for members
    /// written only by their session (TLS, WebSocket, telnet's CRLF,
    /// several threads).
    side: Option<SideWriter>,
    /// Whether the member's writer holds lines it took and has not yet
    /// written all of: the hub must not write past them.
    writing: bool,
}

#[derive(Debug, Default)]
struct Room {
    members: IdSet,
    /// The last `--history` lines said in the room, oldest first.
    history: VecDeque<Line>,
}

/// Makes a line from anything displayable.
fn line(text: impl Display) -> Line {
    Arc::from(text.to_string())
}

impl Hub {
    /// An empty chat, on its own.
    pub fn new(config: ChatConfig) -> Hub {
        let state = State {
            capacity: config.queue.max(1),
            quiet_above: config.quiet_joins.unwrap_or(usize::MAX),
            ..State::default()
        };
        Hub {
            config,
            state: Mutex::new(state),
            link: None,
        }
    }

    /// An empty chat, and with `--redis` its link to the other servers,
    /// whose tasks are spawned here (so this runs in the runtime). Redis
    /// need not be up: the link connects when it can.
    ///
    /// # Errors
    /// A malformed `--redis` URL or an unreadable `--redis-ca`.
    pub fn start(config: ChatConfig) -> Result<Arc<Hub>, String> {
        let Some(redis) = &config.redis else {
            let hub = Arc::new(Hub::new(config));
            hub.start_writer();
            return Ok(hub);
        };
        let client = redis.client()?;
        let (link, outbox) = Link::new(redis, config.history);
        let state = State {
            capacity: config.queue.max(1),
            quiet_above: config.quiet_joins.unwrap_or(usize::MAX),
            link: Some(link.clone()),
            ..State::default()
        };
        let hub = Arc::new(Hub {
            config,
            state: Mutex::new(state),
            link: Some(link.clone()),
        });
        hub.start_writer();
        tokio::spawn(link.clone().write(outbox));
        tokio::spawn(link.run(client, hub.clone()));
        Ok(hub)
    }

    /// On a runtime of one thread, starts the hub's writer: one task
    /// that writes the lines of every member whose writer is idle,
    /// straight to its socket ([`SideWriter`], [`Hub::joins_with_side_writer`]).
    /// A line said to 100 members then wakes one task, which makes 100
    /// `writev`s, rather than 100 tasks that make one each (a wake-up, a
    /// poll of the session, a lock). It runs when the members' writers
    /// would have, after the reads that said the lines, so what several
    /// reads said still goes out in one `writev` a member. On several
    /// threads there is none: the members' own writers spread the writes
    /// over the threads, and no write is made under the hub's lock.
    fn start_writer(self: &Arc<Self>) {
        let one_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|rt| rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !one_thread {
            return;
        }
        let told = Arc::new(Notify::new());
        self.lock().writer.told = Some(told.clone());
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                told.notified().await;
                let Some(hub) = hub.upgrade() else { return };
                hub.write_for_members();
            }
        });
    }

    /// Whether a member that joins with a [`SideWriter`] is written to by
    /// the hub's writer: on a runtime of one thread.
    pub fn joins_with_side_writer(&self) -> bool {
        self.lock().writer.told.is_some()
    }

    /// The hub's writer at work: what is queued for each member in
    /// `unwritten`, written to its socket in one `writev`.
    fn write_for_members(&self) {
        let mut state = self.lock();
        let mut unwritten = std::mem::take(&mut state.writer.unwritten);
        for id in &unwritten {
            if let Some(member) = state.members.get_mut(id) {
                member.write_queued();
            }
        }
        // The list's room is kept for the next time, unless a burst made
        // it big.
        unwritten.clear();
        if unwritten.capacity() <= KEPT_QUEUE {
            state.writer.unwritten = unwritten;
        }
    }

    /// With `--redis`, waits until the link is up, for
    /// [`STARTUP_WAIT`](super::link::STARTUP_WAIT) at most: a server that
    /// starts next to a running Redis is in the chat before it says it is
    /// listening; one whose Redis is down starts anyway.
    pub async fn linked(&self) {
        if let Some(link) = &self.link {
            let _ = tokio::time::timeout(super::link::STARTUP_WAIT, link.connected()).await;
        }
    }

    /// The chat's settings.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Adds a member named `name` (its address: unique on this server) to
    /// the lobby: it is welcomed and sent the lobby's history, then the
    /// others are told it joined. With `--redis` the name is first taken
    /// across servers (`NAME-2` and so on if another server has it) and
    /// the history comes from Redis. With `side`, the hub's writer
    /// writes the member's lines while its own writer is idle (see
    /// [`Hub::joins_with_side_writer`]).
    pub async fn join(
        self: &Arc<Self>,
        name: String,
        side: Option<SideWriter>,
    ) -> (Membership, Inbox) {
        let Some(link) = &self.link else {
            let id = self.lock().reserve(&name);
            return self.admit(id, name, None, side);
        };
        // Boxed, as the other Redis requests below: a member's session
        // (the connection's task) would otherwise be sized for these
        // futures for its whole life, with or without --redis.
        let (id, name, history) = Box::pin(async {
            let (id, name) = self.claim_default(link, name).await;
            (id, name, link.history(LOBBY).await)
        })
        .await;
        self.admit(id, name, history, side)
    }

    /// Takes a default name across servers: the address, or the first
    /// free `ADDRESS-N`; each reserved here before it is asked for.
    async fn claim_default(&self, link: &Link, name: String) -> (MemberId, String) {
        let id = self.lock().new_id();
        let tries = std::iter::once(name.clone())
            .chain((2..=DEFAULT_NAME_TRIES + 1).map(|n| format!("{name}-{n}")));
        for tried in tries {
            if !self.lock().try_reserve(&tried, id) {
                continue;
            }
            if link.claim(&name_key(&tried), id).await != Claim::Taken {
                return (id, tried);
            }
            self.lock().unreserve(&tried, id);
        }
        // Unlikely: a name no other member of this server can have.
        let fallback = format!("{name}-{id}");
        self.lock().reserve_as(&fallback, id);
        (id, fallback)
    }

    /// Puts the (named, reserved) member in the lobby.
    fn admit(
        self: &Arc<Self>,
        id: MemberId,
        name: String,
        history: Option<Vec<Line>>,
        side: Option<SideWriter>,
    ) -> (Membership, Inbox) {
        let ready = Arc::new(Notify::new());
        let dropped = CancellationToken::new();
        let mut state = self.lock();
        let name: Arc<str> = Arc::from(name);
        let room: Arc<str> = Arc::from(LOBBY);
        state.members.insert(
            id,
            Member {
                name: name.clone(),
                room: room.clone(),
                queue: VecDeque::new(),
                queued: 0,
                ready: ready.clone(),
                dropped: dropped.clone(),
                side,
                writing: false,
            },
        );
        let mut slow = Vec::new();
        state.tell(
            id,
            line(Notice::Welcome {
                name: &name,
                room: &room,
            }),
            &mut slow,
        );
        if self.link.as_ref().is_some_and(|link| !link.is_up()) {
            state.tell(id, line(Notice::OutOfReach), &mut slow);
        }
        state.enter(id, &room, history, &mut slow);
        state.drop_slow(slow);
        drop(state);
        let membership = Membership {
            hub: self.clone(),
            id,
        };
        let inbox = Inbox {
            hub: self.clone(),
            id,
            ready,
            dropped,
        };
        (membership, inbox)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half
        // updated in a way that matters more than losing the chat.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many members are connected.
    pub fn members(&self) -> usize {
        self.lock().members.len()
    }

    /// This server's members, for the other servers: id, name, room.
    pub(super) fn presence(&self) -> Vec<(MemberId, Line, Line)> {
        self.lock()
            .members
            .iter()
            .map(|(id, m)| (*id, m.name.clone(), m.room.clone()))
            .collect()
    }

    /// An event from another server: its line to the members it is for,
    /// and its presence change into the roster.
    pub(super) fn deliver(&self, event: Event) {
        let mut state = self.lock();
        if let Some(gone) = &event.gone {
            state.remote.remove(&name_key(gone));
        }
        if let Some(here) = event.here {
            state.remote.insert(name_key(&here.name), here);
        }
        let Some(line) = event.line else {
            return;
        };
        let mut slow = Vec::new();
        if let Some(to) = &event.to {
            if let Some(&id) = state.names.get(to) {
                state.tell(id, &line, &mut slow);
            }
        } else if let Some(room) = &event.room {
            // Another server's join or leave is held back from a room too
            // big for them here (`--quiet-joins`, counted on this server).
            if !event.said && is_presence(&line) {
                state.announce(room, &line, None, 0, &mut slow);
            } else {
                state.broadcast(room, &line, None, &mut slow);
            }
            if event.said {
                // Kept here too, for joins while Redis is out of reach.
                state.remember(room, line, self.config.history);
            }
        }
        state.drop_slow(slow);
    }

    /// The other servers' members as Redis has them now: those the roster
    /// got wrong (a server died; events were lost) are corrected, with
    /// the notices their events would have brought. Unless `complete`,
    /// members missing from `roster` are kept: the servers may not all
    /// have written their presence yet (Redis came back empty).
    pub(super) fn reconcile(&self, mut roster: Roster, complete: bool) {
        let mut state = self.lock();
        let old = std::mem::take(&mut state.remote);
        if !complete {
            for (key, was) in &old {
                roster.entry(key.clone()).or_insert_with(|| was.clone());
            }
        }
        let mut slow = Vec::new();
        let same = |a: Option<&RemoteMember>, b: &RemoteMember| a.is_some_and(|a| a.room == b.room);
        for (key, was) in &old {
            if !same(roster.get(key), was) && !state.quiet(&was.room, 0) {
                let left = line(Notice::Left {
                    name: &was.name,
                    room: &was.room,
                });
                state.broadcast(&was.room, &left, None, &mut slow);
            }
        }
        for (key, now) in &roster {
            if !same(old.get(key), now) && !state.quiet(&now.room, 0) {
                let joined = line(Notice::Joined {
                    name: &now.name,
                    room: &now.room,
                });
                state.broadcast(&now.room, &joined, None, &mut slow);
            }
        }
        state.remote = roster;
        state.drop_slow(slow);
    }

    /// Tells every member that the other servers went out of reach, or
    /// came back.
    pub(super) fn reach(&self, up: bool) {
        let notice = line(if up {
            Notice::BackInReach
        } else {
            Notice::OutOfReach
        });
        let mut state = self.lock();
        let ids: Vec<MemberId> = state.members.keys().copied().collect();
        let mut slow = Vec::new();
        for id in ids {
            state.tell(id, &notice, &mut slow);
        }
        state.drop_slow(slow);
    }

    /// Tells member `id` that another server has its name too.
    pub(super) fn clash(&self, id: MemberId, name: &str) {
        let mut state = self.lock();
        let mut slow = Vec::new();
        state.tell(id, line(Notice::NameClash { name }), &mut slow);
        state.drop_slow(slow);
    }
}

/// What `--metrics` reports of the chat, read under the hub's lock when
/// asked.
impl ChatSource for Hub {
    fn figures(&self) -> ChatFigures {
        let state = self.lock();
        ChatFigures {
            members: state.members.len(),
            rooms: state.rooms.len(),
            dropped: state.dropped,
            remote: state.remote.len(),
            linked: self.link.as_ref().map(|link| link.is_up()),
        }
    }
}

impl Membership {
    /// Acts on one line from the member. Only `/nick` and `/join` with
    /// `--redis` wait (on Redis, for a name or a room's history); the
    /// member's next line waits with them, so lines keep their order.
    pub async fn handle(&self, request: ClientLine<'_>) -> Flow {
        if let ClientLine::Say(text) | ClientLine::Me(text) = request {
            let mut speech = Speech::default();
            speech.push(text, matches!(request, ClientLine::Me(_)));
            self.speak(&mut speech);
            return Flow::Continue;
        }
        if let Some(link) = &self.hub.link {
            match request {
                ClientLine::Nick(new) => {
                    Box::pin(self.nick_across(link, new)).await;
                    return Flow::Continue;
                }
                ClientLine::Join(to) => {
                    Box::pin(self.join_across(link, to)).await;
                    return Flow::Continue;
                }
                _ => {}
            }
        }
        self.handle_here(request)
    }

    /// `/nick` with `--redis`: checked here, reserved here, then taken in
    /// Redis.
    async fn nick_across(&self, link: &Link, new: &str) {
        let key = name_key(new);
        {
            let mut state = self.hub.lock();
            let mut slow = Vec::new();
            if let Err(problem) = state.nick_problem(self.id, new) {
                state.tell(self.id, &problem, &mut slow);
                state.drop_slow(slow);
                return;
            }
            if state.names.get(&key) == Some(&self.id) {
                // The same name in another case: it is this member's.
                state.rename(self.id, new, &mut slow);
                state.drop_slow(slow);
                return;
            }
            state.reserve_as(&key, self.id);
        }
        let claim = link.claim(&key, self.id).await;
        let mut state = self.hub.lock();
        let mut slow = Vec::new();
        if claim == Claim::Granted && state.members.contains_key(&self.id) {
            state.rename(self.id, new, &mut slow);
        } else {
            state.unreserve(&key, self.id);
            let refused = match claim {
                Claim::Taken => line(Notice::NameTaken { name: new }),
                _ => line(Notice::NamesFrozen),
            };
            state.tell(self.id, &refused, &mut slow);
        }
        state.drop_slow(slow);
    }

    /// `/join` with `--redis`: checked, then the room's history read from
    /// Redis (this server's, if it does not answer), then the move.
    async fn join_across(&self, link: &Link, to: &str) {
        {
            let mut state = self.hub.lock();
            let Some(room) = state.members.get(&self.id).map(|m| m.room.clone()) else {
                return;
            };
            if let Err(problem) = join_problem(&room, to) {
                let mut slow = Vec::new();
                state.tell(self.id, &problem, &mut slow);
                state.drop_slow(slow);
                return;
            }
        }
        let history = link.history(to).await;
        let mut state = self.hub.lock();
        let mut slow = Vec::new();
        state.move_to(self.id, to, history, &mut slow);
        state.drop_slow(slow);
    }

    /// Acts on a line that needs no one but this server.
    fn handle_here(&self, request: ClientLine<'_>) -> Flow {
        let mut state = self.hub.lock();
        let Some(me) = state.members.get(&self.id) else {
            // Dropped already; the session is about to notice.
            return Flow::Quit;
        };
        let (name, room) = (me.name.clone(), me.room.clone());
        let mut slow = Vec::new();
        let reply = |state: &mut State, text: &dyn Display, slow: &mut Vec<MemberId>| {
            state.tell(self.id, line(text), slow);
        };
        let mut flow = Flow::Continue;
        match request {
            // Said lines go through `speak`, from `handle`.
            ClientLine::Empty | ClientLine::Say(_) | ClientLine::Me(_) => {}
            ClientLine::Msg { to, text } => {
                let key = name_key(to);
                if let Some(them) = state.names.get(&key).copied() {
                    let their_name = state
                        .members
                        .get(&them)
                        .map_or(to.into(), |m| m.name.clone());
                    let private = line(format_args!("[{name} -> {their_name}] {text}"));
                    state.tell(them, &private, &mut slow);
                } else if let Some(them) = state.remote.get(&key) {
                    let private = line(format_args!("[{name} -> {}] {text}", them.name));
                    state.publish(self.id, || Event {
                        line: Some(private),
                        to: Some(key),
                        ..Event::default()
                    });
                } else {
                    reply(&mut state, &Notice::NoSuchName { name: to }, &mut slow);
                }
            }
            ClientLine::Nick(new) => match state.nick_problem(self.id, new) {
                Err(problem) => state.tell(self.id, &problem, &mut slow),
                Ok(()) => state.rename(self.id, new, &mut slow),
            },
            ClientLine::Join(to) => match join_problem(&room, to) {
                Err(problem) => state.tell(self.id, &problem, &mut slow),
                Ok(()) => state.move_to(self.id, to, None, &mut slow),
            },
            ClientLine::Who => {
                let mut names: Vec<&str> = state
                    .rooms
                    .get(&room)
                    .into_iter()
                    .flat_map(|room| &room.members)
                    .filter_map(|id| state.members.get(id).map(|m| &*m.name))
                    .chain(
                        state
                            .remote
                            .values()
                            .filter(|m| m.room == room)
                            .map(|m| &*m.name),
                    )
                    .collect();
                names.sort_unstable();
                let who = line(Notice::Who {
                    room: &room,
                    names: &names.join(", "),
                });
                state.tell(self.id, &who, &mut slow);
            }
            ClientLine::Rooms => {
                let mut counts: BTreeMap<&str, usize> = state
                    .rooms
                    .iter()
                    .map(|(name, room)| (&**name, room.members.len()))
                    .collect();
                for member in state.remote.values() {
                    *counts.entry(&member.room).or_default() += 1;
                }
                let list: Vec<String> = counts
                    .iter()
                    .map(|(name, count)| format!("{name} ({count})"))
                    .collect();
                let rooms = line(Notice::Rooms {
                    list: &list.join(", "),
                });
                state.tell(self.id, &rooms, &mut slow);
            }
            ClientLine::Help => {
                for help in HELP {
                    state.tell(self.id, line(help), &mut slow);
                }
            }
            ClientLine::Quit => {
                reply(&mut state, &Notice::Bye, &mut slow);
                flow = Flow::Quit;
            }
            ClientLine::Usage(usage) => reply(&mut state, &Notice::Usage { usage }, &mut slow),
            ClientLine::Unknown(command) => {
                reply(&mut state, &Notice::Unknown { command }, &mut slow);
            }
        }
        state.drop_slow(slow);
        flow
    }

    /// Sends what the member said (and [`Speech`] gathered) to its room
    /// as one run, under its name now, and empties `speech`.
    pub fn speak(&self, speech: &mut Speech) {
        if speech.is_empty() {
            return;
        }
        let mut state = self.hub.lock();
        if let Some(me) = state.members.get(&self.id) {
            let (name, room) = (me.name.clone(), me.room.clone());
            let mut run =
                String::with_capacity(speech.texts.len() + speech.ends.len() * (name.len() + 4));
            for (i, (text, me)) in speech.each().enumerate() {
                if i > 0 {
                    run.push('\n');
                }
                let (open, close) = if me { ("* ", " ") } else { ("[", "] ") };
                for part in [open, &name, close, text] {
                    run.push_str(part);
                }
            }
            let said = Lines {
                text: Arc::from(run),
                count: speech.ends.len(),
                sent: 0,
            };
            let mut slow = Vec::new();
            state.say(&room, &said, self.id, self.hub.config.history, &mut slow);
            state.drop_slow(slow);
        }
        drop(state);
        speech.clear();
    }

    /// Sends the member a notice of its own (flood, line too long,
    /// shutdown).
    pub fn notice(&self, notice: Notice<'_>) {
        let mut state = self.hub.lock();
        let mut slow = Vec::new();
        state.tell(self.id, line(notice), &mut slow);
        state.drop_slow(slow);
    }

    /// The member's lines go out with CRLF from now on (a telnet
    /// client): only its session's writer makes those, so the hub's
    /// writer no longer writes to it.
    pub fn wants_crlf(&self) {
        if let Some(member) = self.hub.lock().members.get_mut(&self.id) {
            member.side = None;
        }
    }

    /// Takes the member out of the chat and tells its room; its queue
    /// closes once drained. Leaving twice does nothing.
    pub fn leave(&self) {
        let mut state = self.hub.lock();
        if let Some(mut member) = state.remove(self.id) {
            // Its writer takes what is left, then sees it closed.
            if !member.queue.is_empty() {
                let queue = std::mem::take(&mut member.queue);
                state.departed.insert(self.id, queue);
            }
            member.ready.notify_one();
            let mut slow = Vec::new();
            let left = line(Notice::Left {
                name: &member.name,
                room: &member.room,
            });
            // Counted with the member, as its join was.
            state.announce(&member.room, &left, None, 1, &mut slow);
            state.publish(self.id, || Event {
                room: Some(member.room.clone()),
                line: Some(left),
                gone: Some(member.name.clone()),
                ..Event::default()
            });
            state.drop_slow(slow);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Whether a line from another server is a join, leave or drop notice
/// (what `--quiet-joins` keeps from big rooms); said lines are not asked.
fn is_presence(line: &str) -> bool {
    matches!(
        Notice::parse(line),
        Some(Notice::Joined { .. } | Notice::Left { .. } | Notice::Dropped { .. })
    )
}

/// Why a member in `room` cannot `/join to`, as the notice it gets.
fn join_problem(room: &str, to: &str) -> Result<(), Line> {
    if let Err(why) = check_name(to) {
        return Err(line(Notice::BadName {
            what: "room",
            name: to,
            why,
        }));
    }
    if room == to {
        return Err(line(Notice::AlreadyIn { room: to }));
    }
    Ok(())
}

impl Member {
    /// Queues `lines` for the member, and says who must write them; a
    /// run goes in whole while there is room for one line, so a queue
    /// holds at most `capacity` lines plus one read's worth.
    fn push(&mut self, lines: &Lines, capacity: usize) -> Pushed {
        if self.queued >= capacity {
            return Pushed::Full;
        }
        let was_empty = self.queue.is_empty();
        self.queue.push_back(lines.clone());
        self.queued += lines.count;
        if !was_empty {
            return Pushed::Queued;
        }
        if self.side.is_some() && !self.writing {
            return Pushed::ForTheHub;
        }
        self.ready.notify_one();
        Pushed::Queued
    }

    /// Writes what is queued (up to [`HUB_WRITES`] entries) to the socket
    /// now, without waiting, unless the member's writer has lines of its
    /// own in hand; wakes the writer for whatever is left: the rest of a
    /// part-written line (the bytes sent are marked on it), what the
    /// socket did not take, lines that came meanwhile.
    fn write_queued(&mut self) {
        // A writer woken meanwhile (a wake-up left from before) may have
        // taken the queue, and may be waiting on a full socket with it:
        // what came after must wait for it, not go out first.
        if self.writing || self.queue.is_empty() {
            return;
        }
        if let Some(side) = &self.side {
            let n = self.queue.len().min(HUB_WRITES);
            let mut slices = [IoSlice::new(&[]); 2 * HUB_WRITES];
            for (pair, lines) in slices.chunks_mut(2).zip(&self.queue) {
                pair[0] = IoSlice::new(lines.unsent());
                pair[1] = IoSlice::new(b"\n");
            }
            match side.try_write_vectored(&slices[..2 * n]) {
                Ok(written) => self.written(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer is gone: the writer finds out too, and ends
                // the session.
                Err(_) => self.side = None,
            }
        }
        if self.queue.is_empty() {
            give_back_if_grown(&mut self.queue);
        } else {
            self.ready.notify_one();
        }
    }

    /// Takes `written` bytes off the front of the queue: the entries sent
    /// whole (with their line end), and of the next, what was sent of it.
    fn written(&mut self, mut written: usize) {
        while let Some(front) = self.queue.front_mut() {
            let whole = front.unsent().len() + 1;
            if written < whole {
                front.sent += written;
                return;
            }
            written -= whole;
            self.queued -= front.count;
            self.queue.pop_front();
        }
    }
}

/// The most queue entries the hub's writer writes to a member at once
/// (`writev` slices on the stack, two an entry); a member with more is
/// behind, and its own writer takes the rest.
const HUB_WRITES: usize = 32;

/// Who writes the lines [`Member::push`] queued.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    /// The queue is full: the member is too slow. Nothing was queued.
    Full,
    /// The member's writer: it had lines queued already, or is woken.
    Queued,
    /// The hub's writer: the member was idle and has a [`SideWriter`].
    ForTheHub,
}

impl State {
    /// A new member id, with `name` reserved for it (a connecting
    /// member's address: unique on this server already).
    fn reserve(&mut self, name: &str) -> MemberId {
        let id = self.new_id();
        self.reserve_as(name, id);
        id
    }

    fn new_id(&mut self) -> MemberId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Reserves `name` for `id` if no one here or on another server has
    /// it.
    fn try_reserve(&mut self, name: &str, id: MemberId) -> bool {
        let key = name_key(name);
        if self.names.contains_key(&key) || self.remote.contains_key(&key) {
            return false;
        }
        self.names.insert(key, id);
        true
    }

    /// Reserves `name` for `id`, whoever had it here.
    fn reserve_as(&mut self, name: &str, id: MemberId) {
        self.names.insert(name_key(name), id);
    }

    /// Frees `name` if `id` still has it reserved.
    fn unreserve(&mut self, name: &str, id: MemberId) {
        let key = name_key(name);
        if self.names.get(&key) == Some(&id) {
            self.names.remove(&key);
        }
    }

    /// Why member `id` cannot take the name `new`, as the notice it gets.
    fn nick_problem(&self, id: MemberId, new: &str) -> Result<(), Line> {
        if let Err(why) = check_name(new) {
            return Err(line(Notice::BadName {
                what: "nick",
                name: new,
                why,
            }));
        }
        let key = name_key(new);
        let here = self.names.get(&key).is_some_and(|&other| other != id);
        if here || self.remote.contains_key(&key) {
            return Err(line(Notice::NameTaken { name: new }));
        }
        Ok(())
    }

    /// Hands an event to the other servers, with `--redis`; made only
    /// then, so a chat on its own pays nothing for it.
    fn publish(&self, id: MemberId, event: impl FnOnce() -> Event) {
        if let Some(link) = &self.link {
            link.publish(id, event());
        }
    }

    /// Puts `lines` in member `id`'s queue; a full queue marks it `slow`.
    fn tell(&mut self, id: MemberId, lines: impl Into<Lines>, slow: &mut Vec<MemberId>) {
        let capacity = self.capacity;
        if let Some(member) = self.members.get_mut(&id) {
            match member.push(&lines.into(), capacity) {
                Pushed::Full => slow.push(id),
                Pushed::Queued => {}
                Pushed::ForTheHub => self.writer.add(id),
            }
        }
    }

    /// Whether `room`, with `gone` members who just left it counted in, is
    /// too big for join and leave notices (`--quiet-joins`): each costs
    /// a line to every member, and a room of 10,000 filling up would be
    /// sent 50 million of them.
    fn quiet(&self, room: &str, gone: usize) -> bool {
        let here = self.rooms.get(room).map_or(0, |room| room.members.len());
        here.saturating_add(gone) > self.quiet_above
    }

    /// Sends a join, leave or drop notice as [`broadcast`](Self::broadcast)
    /// does, unless the room is too big for them ([`quiet`](Self::quiet),
    /// with `gone` members who just left counted in).
    fn announce(
        &mut self,
        room: &str,
        lines: impl Into<Lines>,
        except: Option<MemberId>,
        gone: usize,
        slow: &mut Vec<MemberId>,
    ) {
        if !self.quiet(room, gone) {
            self.broadcast(room, lines, except, slow);
        }
    }

    /// Sends `lines` to every member of `room` but `except`.
    fn broadcast(
        &mut self,
        room: &str,
        lines: impl Into<Lines>,
        except: Option<MemberId>,
        slow: &mut Vec<MemberId>,
    ) {
        let lines = lines.into();
        let State {
            rooms,
            members,
            capacity,
            writer,
            ..
        } = self;
        let Some(room) = rooms.get(room) else {
            return;
        };
        for id in &room.members {
            if Some(*id) == except {
                continue;
            }
            let Some(member) = members.get_mut(id) else {
                continue;
            };
            match member.push(&lines, *capacity) {
                Pushed::Full => slow.push(*id),
                Pushed::Queued => {}
                Pushed::ForTheHub => writer.add(*id),
            }
        }
    }

    /// Moves up to `limit` of member `id`'s queued entries into `out`.
    fn take(&mut self, id: MemberId, out: &mut VecDeque<Lines>, limit: usize) -> Take {
        let (queue, queued, writing) = match self.members.get_mut(&id) {
            Some(member) => (
                &mut member.queue,
                Some(&mut member.queued),
                Some(&mut member.writing),
            ),
            None => match self.departed.get_mut(&id) {
                Some(queue) => (queue, None, None),
                None => return Take::Closed,
            },
        };
        let departed = queued.is_none();
        if queue.is_empty() {
            if departed {
                self.departed.remove(&id);
                return Take::Closed;
            }
            // Asking again: all it took has been written.
            if let Some(writing) = writing {
                *writing = false;
            }
            return Take::Empty;
        }
        let n = queue.len().min(limit);
        let before = out.len();
        if out.is_empty() && n == queue.len() {
            std::mem::swap(queue, out);
        } else {
            out.extend(queue.drain(..n));
        }
        if let Some(queued) = queued {
            let taken: usize = out.range(before..).map(Lines::count).sum();
            *queued -= taken;
        }
        if let Some(writing) = writing {
            *writing = true;
        }
        if queue.is_empty() {
            give_back_if_grown(queue);
        }
        Take::Got(n)
    }

    /// Lines said in `room` by `from`: to everyone else, here and on the
    /// other servers, and into the history, each on its own there.
    fn say(
        &mut self,
        room: &Arc<str>,
        said: &Lines,
        from: MemberId,
        history: usize,
        slow: &mut Vec<MemberId>,
    ) {
        self.broadcast(room, said, Some(from), slow);
        // Made only with --redis: a chat on its own pays nothing for it.
        if self.link.is_some() {
            for one in said.lines() {
                self.publish(from, || Event {
                    room: Some(room.clone()),
                    line: Some(one),
                    said: true,
                    ..Event::default()
                });
            }
        }
        // Only the last `--history` of a run could stay there.
        for one in said.lines().skip(said.count.saturating_sub(history)) {
            self.remember(room, one, history);
        }
    }

    /// Keeps `said` in `room`'s history, if the room is here.
    fn remember(&mut self, room: &str, said: Line, history: usize) {
        if history == 0 {
            return;
        }
        if let Some(room) = self.rooms.get_mut(room) {
            if room.history.len() == history {
                room.history.pop_front();
            }
            room.history.push_back(said);
        }
    }

    /// Puts member `id` in `room` (made if new): it gets the history (the
    /// one given, from Redis, or the room's here), the others the join
    /// notice.
    fn enter(
        &mut self,
        id: MemberId,
        room_name: &Arc<str>,
        history: Option<Vec<Line>>,
        slow: &mut Vec<MemberId>,
    ) {
        let room = self.rooms.entry(room_name.clone()).or_default();
        room.members.insert(id);
        let history = history.unwrap_or_else(|| room.history.iter().cloned().collect());
        for said in &history {
            self.tell(id, said, slow);
        }
        let Some(name) = self.members.get(&id).map(|m| m.name.clone()) else {
            return;
        };
        let joined = line(Notice::Joined {
            name: &name,
            room: room_name,
        });
        self.announce(room_name, &joined, Some(id), 0, slow);
        self.publish(id, || Event {
            room: Some(room_name.clone()),
            line: Some(joined),
            here: Some(RemoteMember {
                name,
                room: room_name.clone(),
            }),
            ..Event::default()
        });
    }

    /// Moves member `id` to room `to` (checked): out of its room, told,
    /// into the new one.
    fn move_to(
        &mut self,
        id: MemberId,
        to: &str,
        history: Option<Vec<Line>>,
        slow: &mut Vec<MemberId>,
    ) {
        self.exit(id, slow);
        let to: Arc<str> = Arc::from(to);
        let Some(me) = self.members.get_mut(&id) else {
            return;
        };
        me.room = to.clone();
        self.tell(id, line(Notice::Moved { room: &to }), slow);
        self.enter(id, &to, history, slow);
    }

    /// Takes member `id` out of its room, telling those left; the room
    /// goes away when empty (not the lobby).
    fn exit(&mut self, id: MemberId, slow: &mut Vec<MemberId>) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let (name, room) = (member.name.clone(), member.room.clone());
        self.leave_room(id, &room);
        let left = line(Notice::Left {
            name: &name,
            room: &room,
        });
        self.announce(&room, &left, None, 1, slow);
        self.publish(id, || Event {
            room: Some(room),
            line: Some(left),
            ..Event::default()
        });
    }

    fn leave_room(&mut self, id: MemberId, room_name: &str) {
        if let Some(room) = self.rooms.get_mut(room_name) {
            room.members.remove(&id);
            if room.members.is_empty() && room_name != LOBBY {
                self.rooms.remove(room_name);
            }
        }
    }

    /// Gives member `id` the (checked, free) name `new`.
    fn rename(&mut self, id: MemberId, new: &str, slow: &mut Vec<MemberId>) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut member.name, Arc::from(new));
        let room = member.room.clone();
        self.unreserve(&old, id);
        self.names.insert(name_key(new), id);
        let renamed = line(Notice::Renamed { old: &old, new });
        self.broadcast(&room, &renamed, Some(id), slow);
        self.tell(id, line(Notice::NameIs { name: new }), slow);
        self.publish(id, || Event {
            room: Some(room.clone()),
            line: Some(renamed),
            gone: Some(old),
            here: Some(RemoteMember {
                name: Arc::from(new),
                room,
            }),
            ..Event::default()
        });
    }

    /// Removes member `id` from every table; what was left of it.
    fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(&id)?;
        self.unreserve(&member.name, id);
        self.leave_room(id, &member.room.clone());
        Some(member)
    }

    /// Drops the members whose queues overflowed, telling their rooms;
    /// those notices may overflow more queues, which are dropped in turn
    /// (each member once, so this ends).
    fn drop_slow(&mut self, mut slow: Vec<MemberId>) {
        while let Some(id) = slow.pop() {
            let Some(member) = self.remove(id) else {
                continue;
            };
            member.dropped.cancel();
            member.ready.notify_one();
            self.dropped += 1;
            tracing::info!(name = %member.name, "dropped: too slow");
            let dropped = line(Notice::Dropped { name: &member.name });
            self.announce(&member.room, &dropped, None, 1, &mut slow);
            self.publish(id, || Event {
                room: Some(member.room.clone()),
                line: Some(dropped),
                gone: Some(member.name.clone()),
                ..Event::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::command::parse;

    fn hub(config: ChatConfig) -> Arc<Hub> {
        Arc::new(Hub::new(config))
    }

    fn drain(inbox: &mut Inbox) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(lines) = inbox.try_recv() {
            got.extend(lines.iter().map(String::from));
        }
        got
    }

    #[tokio::test]
    async fn lines_go_to_the_others_only() {
        let hub = hub(ChatConfig::default());
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        let (b, mut bi) = hub.join("b:1".into(), None).await;
        assert_eq!(
            drain(&mut ai),
            [
                "* welcome, you are a:1 in lobby (/help for commands)",
                "* b:1 joined lobby"
            ]
        );
        drain(&mut bi);
        a.handle(parse("hello")).await;
        assert_eq!(drain(&mut ai), Vec::<String>::new());
        assert_eq!(drain(&mut bi), ["[a:1] hello"]);
        drop(b);
        assert_eq!(drain(&mut ai), ["* b:1 left lobby"]);
    }

    #[tokio::test]
    async fn history_is_replayed_and_bounded() {
        let hub = hub(ChatConfig {
            history: 2,
            ..ChatConfig::default()
        });
        let (a, _ai) = hub.join("a:1".into(), None).await;
        for text in ["one", "two", "three"] {
            a.handle(parse(text)).await;
        }
        let (_b, mut bi) = hub.join("b:1".into(), None).await;
        assert_eq!(&drain(&mut bi)[1..], ["[a:1] two", "[a:1] three"]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_member() {
        let hub = hub(ChatConfig {
            queue: 3,
            ..ChatConfig::default()
        });
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        let (_stuck, stuck_inbox) = hub.join("s:1".into(), None).await;
        drain(&mut ai);
        // The stuck one's queue holds its welcome; two lines fill it.
        for i in 0..3 {
            a.handle(parse(&format!("line {i}"))).await;
        }
        assert!(stuck_inbox.dropped.is_cancelled());
        assert_eq!(drain(&mut ai), ["* s:1 dropped (too slow)"]);
        assert_eq!(hub.members(), 1);
        // Its name is free again, and its late leave changes nothing.
        drop(_stuck);
        assert_eq!(drain(&mut ai), Vec::<String>::new());
    }

    #[tokio::test]
    async fn rooms_over_quiet_joins_hear_no_joins_or_leaves() {
        let hub = hub(ChatConfig {
            quiet_joins: Some(2),
            queue: 4,
            history: 0,
            ..ChatConfig::default()
        });
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        let (b, mut bi) = hub.join("b:1".into(), None).await;
        assert_eq!(drain(&mut ai)[1..], ["* b:1 joined lobby"]);
        // A third member makes the room bigger than 2: no notice, either
        // way, nor when it is dropped.
        let (c, mut ci) = hub.join("c:1".into(), None).await;
        assert_eq!(drain(&mut ci).len(), 1);
        drop(c);
        let (_stuck, stuck_inbox) = hub.join("s:1".into(), None).await;
        assert_eq!(
            drain(&mut bi),
            ["* welcome, you are b:1 in lobby (/help for commands)"]
        );
        drain(&mut ai);
        for i in 0..4 {
            a.handle(parse(&format!("line {i}"))).await;
        }
        assert!(stuck_inbox.dropped.is_cancelled());
        let lines: Vec<String> = (0..4).map(|i| format!("[a:1] line {i}")).collect();
        assert_eq!(drain(&mut bi), lines);
        assert_eq!(drain(&mut ai), Vec::<String>::new());
        // Renames are still told, and so is a leave from a room of 2.
        a.handle(parse("/nick alice")).await;
        assert_eq!(drain(&mut bi), ["* a:1 is now alice"]);
        drop(b);
        assert_eq!(drain(&mut ai), ["* you are now alice", "* b:1 left lobby"]);
        // Moving into a room of 2 or fewer is told there.
        let (d, mut di) = hub.join("d:1".into(), None).await;
        drain(&mut di);
        drain(&mut ai);
        d.handle(parse("/join dev")).await;
        a.handle(parse("/join dev")).await;
        assert_eq!(drain(&mut di)[1..], ["* alice joined dev"]);
    }

    #[tokio::test]
    async fn a_queue_grown_by_a_burst_is_given_back_and_no_line_is_lost() {
        let hub = hub(ChatConfig::default());
        let (a, _ai) = hub.join("a:1".into(), None).await;
        let (_b, mut bi) = hub.join("b:1".into(), None).await;
        for i in 0..500 {
            a.handle(parse(&format!("line {i}"))).await;
        }
        let id = bi.id;
        let capacity = |hub: &Hub| hub.lock().members[&id].queue.capacity();
        assert!(capacity(&hub) >= 500);
        // Taken in pieces (a writer's batch), as a slow socket would.
        let mut got = Vec::new();
        let mut batch = VecDeque::new();
        while got.len() < 501 {
            assert!(bi.recv_many(&mut batch, 64).await > 0);
            got.extend(
                batch
                    .drain(..)
                    .flat_map(|lines| lines.iter().map(String::from).collect::<Vec<_>>()),
            );
        }
        assert_eq!(
            got[0],
            "* welcome, you are b:1 in lobby (/help for commands)"
        );
        let said: Vec<String> = (0..500).map(|i| format!("[a:1] line {i}")).collect();
        assert_eq!(got[1..], said);
        assert!(capacity(&hub) <= KEPT_QUEUE, "{}", capacity(&hub));
        assert_eq!(bi.try_recv(), None);
    }

    #[tokio::test]
    async fn a_speech_is_one_entry_of_its_lines_and_history_keeps_each() {
        let hub = hub(ChatConfig {
            history: 2,
            ..ChatConfig::default()
        });
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        let (_b, mut bi) = hub.join("b:1".into(), None).await;
        drain(&mut ai);
        drain(&mut bi);
        let mut speech = Speech::default();
        speech.push("one", false);
        speech.push("waves", true);
        speech.push("three", false);
        a.speak(&mut speech);
        assert!(speech.is_empty());
        let run = bi.try_recv().unwrap();
        assert_eq!(run.count(), 3);
        assert_eq!(run.text(), "[a:1] one\n* a:1 waves\n[a:1] three");
        assert_eq!(bi.try_recv(), None);
        assert_eq!(drain(&mut ai), Vec::<String>::new());
        // Nothing gathered: nothing sent.
        a.speak(&mut speech);
        assert_eq!(bi.try_recv(), None);
        let (_c, mut ci) = hub.join("c:1".into(), None).await;
        assert_eq!(&drain(&mut ci)[1..], ["* a:1 waves", "[a:1] three"]);
    }

    #[tokio::test]
    async fn a_run_counts_its_lines_in_the_queue() {
        let hub = hub(ChatConfig {
            queue: 4,
            ..ChatConfig::default()
        });
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        let (_stuck, stuck_inbox) = hub.join("s:1".into(), None).await;
        drain(&mut ai);
        // Its welcome and a run of 5: over 4, but in whole, as there was
        // room for a line; the next finds the queue full.
        let mut speech = Speech::default();
        for i in 0..5 {
            speech.push(&format!("line {i}"), false);
        }
        a.speak(&mut speech);
        assert!(!stuck_inbox.dropped.is_cancelled());
        a.handle(parse("more")).await;
        assert!(stuck_inbox.dropped.is_cancelled());
        assert_eq!(drain(&mut ai), ["* s:1 dropped (too slow)"]);
    }

    #[tokio::test]
    async fn taking_a_run_frees_its_lines_in_the_queue() {
        let hub = hub(ChatConfig {
            queue: 3,
            ..ChatConfig::default()
        });
        let (a, _ai) = hub.join("a:1".into(), None).await;
        let (_b, mut bi) = hub.join("b:1".into(), None).await;
        for _ in 0..10 {
            let mut speech = Speech::default();
            speech.push("x", false);
            speech.push("y", false);
            a.speak(&mut speech);
            let mut batch = VecDeque::new();
            assert!(bi.recv_many(&mut batch, 64).await > 0);
        }
        assert!(!bi.dropped.is_cancelled());
    }

    #[tokio::test]
    async fn empty_rooms_go_away_but_the_lobby_stays() {
        let hub = hub(ChatConfig::default());
        let (a, mut ai) = hub.join("a:1".into(), None).await;
        a.handle(parse("/join dev")).await;
        a.handle(parse("/rooms")).await;
        assert_eq!(
            drain(&mut ai)[1..],
            ["* you are now in dev", "* rooms: dev (1), lobby (0)"]
        );
        a.handle(parse("/join lobby")).await;
        a.handle(parse("/rooms")).await;
        assert_eq!(drain(&mut ai).last().unwrap(), "* rooms: lobby (1)");
    }
}
