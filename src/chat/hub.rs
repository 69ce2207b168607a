//! The chat hub: who is connected, under which name, in which room, and
//! the fan-out of every line to a room's members.
//!
//! A session (a telnet connection today; a WebSocket session or a bridge
//! to other servers later) calls [`Hub::join`] and gets a [`Membership`],
//! through which it acts ([`Membership::handle`]), and an [`Inbox`], the
//! lines the hub has for it. The hub never does I/O and never waits: each
//! member's lines go into its own bounded queue with `try_send`, under
//! one short-held lock, and the session's writer drains that queue at
//! whatever pace the member's socket allows. A member whose queue is full
//! is behind by `--queue` lines; it is dropped on the spot (its
//! [`Inbox::dropped`] fires) and its room is told `* NAME dropped (too
//! slow)`. So a stuck reader costs the room one failed `try_send`, then
//! nothing.
//!
//! Why per-member queues and not one `broadcast` channel per room: a
//! lagging `broadcast` receiver only learns that it lagged when it next
//! reads, and a member stuck in a blocked write never reads; a private
//! `/msg` and a member's own notices need a per-member path anyway. Lines
//! are `Arc<str>`, made once and shared by every queue they are put in.
//!
//! Memory is bounded by the limits: members by `--max-conns`, each queue
//! by `--queue` lines of at most `--max-line` (escaped, four times that),
//! each room's history by `--history`, and rooms by the members in them
//! (a room goes away with its last member, except `lobby`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use super::command::{ClientLine, check_name, name_key};
use super::notice::{HELP, Notice};
use crate::metrics::{ChatFigures, ChatSource};

/// One line as members receive it, without its line end; shared by every
/// queue it is in and by the room's history.
pub type Line = Arc<str>;

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
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            history: DEFAULT_HISTORY,
            queue: DEFAULT_QUEUE,
            flood_rate: DEFAULT_FLOOD_RATE,
            flood_burst: DEFAULT_FLOOD_BURST,
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
/// listeners.
#[derive(Debug)]
pub struct Hub {
    config: ChatConfig,
    /// A std mutex, not tokio's: it is never held across an await, and
    /// every section is short (one fan-out of `try_send`s at most).
    state: Mutex<State>,
}

/// A member's receiving end, owned by its session.
#[derive(Debug)]
pub struct Inbox {
    /// The lines for this member, in order. Closes once the member has
    /// left and everything queued has been taken.
    pub lines: mpsc::Receiver<Line>,
    /// Cancelled by the hub when it drops the member for being too slow:
    /// the session must close the connection now, without draining.
    pub dropped: CancellationToken,
}

/// A member's place in the hub. The session holds it for the life of the
/// connection; dropping it (or [`leave`](Membership::leave)) takes the
/// member out and tells its room.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    id: MemberId,
}

type MemberId = u64;

#[derive(Debug, Default)]
struct State {
    next_id: MemberId,
    members: HashMap<MemberId, Member>,
    /// Every member's name, by [`name_key`]: what makes names unique.
    names: HashMap<String, MemberId>,
    /// Sorted, for `/rooms`.
    rooms: BTreeMap<Arc<str>, Room>,
    /// Members dropped for being too slow, since the start (`--metrics`).
    dropped: u64,
}

#[derive(Debug)]
struct Member {
    name: Arc<str>,
    room: Arc<str>,
    /// The hub's end of the member's queue; dropped when the member leaves,
    /// which lets its writer finish.
    outbox: mpsc::Sender<Line>,
    /// The hub's copy of [`Inbox::dropped`].
    dropped: CancellationToken,
}

#[derive(Debug, Default)]
struct Room {
    members: HashSet<MemberId>,
    /// The last `--history` lines said in the room, oldest first.
    history: VecDeque<Line>,
}

/// Makes a line from anything displayable.
fn line(text: impl Display) -> Line {
    Arc::from(text.to_string())
}

impl Hub {
    /// An empty chat.
    pub fn new(config: ChatConfig) -> Hub {
        Hub {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The chat's settings.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Adds a member named `name` (its address: unique already) to the
    /// lobby: it is welcomed and sent the lobby's history, then the others
    /// are told it joined.
    pub fn join(self: &Arc<Self>, name: String) -> (Membership, Inbox) {
        let (outbox, lines) = mpsc::channel(self.config.queue.max(1));
        let dropped = CancellationToken::new();
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let name: Arc<str> = Arc::from(name);
        let room: Arc<str> = Arc::from(LOBBY);
        state.names.insert(name_key(&name), id);
        state.members.insert(
            id,
            Member {
                name: name.clone(),
                room: room.clone(),
                outbox,
                dropped: dropped.clone(),
            },
        );
        let mut slow = Vec::new();
        state.tell(
            id,
            &line(Notice::Welcome {
                name: &name,
                room: &room,
            }),
            &mut slow,
        );
        state.enter(id, &room, &mut slow);
        state.drop_slow(slow);
        drop(state);
        let membership = Membership {
            hub: self.clone(),
            id,
        };
        (membership, Inbox { lines, dropped })
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
        }
    }
}

impl Membership {
    /// Acts on one line from the member.
    pub fn handle(&self, request: ClientLine<'_>) -> Flow {
        let mut state = self.hub.lock();
        let Some(me) = state.members.get(&self.id) else {
            // Dropped already; the session is about to notice.
            return Flow::Quit;
        };
        let (name, room) = (me.name.clone(), me.room.clone());
        let mut slow = Vec::new();
        let reply = |state: &mut State, text: &dyn Display, slow: &mut Vec<MemberId>| {
            state.tell(self.id, &line(text), slow);
        };
        let mut flow = Flow::Continue;
        match request {
            ClientLine::Empty => {}
            ClientLine::Say(text) => {
                let said = line(format_args!("[{name}] {text}"));
                state.say(&room, said, self.id, self.hub.config.history, &mut slow);
            }
            ClientLine::Me(text) => {
                let said = line(format_args!("* {name} {text}"));
                state.say(&room, said, self.id, self.hub.config.history, &mut slow);
            }
            ClientLine::Msg { to, text } => match state.names.get(&name_key(to)).copied() {
                Some(them) => {
                    let their_name = state
                        .members
                        .get(&them)
                        .map_or(to.into(), |m| m.name.clone());
                    let private = line(format_args!("[{name} -> {their_name}] {text}"));
                    state.tell(them, &private, &mut slow);
                }
                None => reply(&mut state, &Notice::NoSuchName { name: to }, &mut slow),
            },
            ClientLine::Nick(new) => match check_name(new) {
                Err(why) => {
                    let notice = Notice::BadName {
                        what: "nick",
                        name: new,
                        why,
                    };
                    reply(&mut state, &notice, &mut slow);
                }
                Ok(()) => match state.names.get(&name_key(new)) {
                    Some(&other) if other != self.id => {
                        reply(&mut state, &Notice::NameTaken { name: new }, &mut slow);
                    }
                    _ => state.rename(self.id, new, &mut slow),
                },
            },
            ClientLine::Join(to) => match check_name(to) {
                Err(why) => {
                    let notice = Notice::BadName {
                        what: "room",
                        name: to,
                        why,
                    };
                    reply(&mut state, &notice, &mut slow);
                }
                Ok(()) if *room == *to => {
                    reply(&mut state, &Notice::AlreadyIn { room: to }, &mut slow);
                }
                Ok(()) => {
                    state.exit(self.id, &mut slow);
                    let to: Arc<str> = Arc::from(to);
                    if let Some(me) = state.members.get_mut(&self.id) {
                        me.room = to.clone();
                    }
                    reply(&mut state, &Notice::Moved { room: &to }, &mut slow);
                    state.enter(self.id, &to, &mut slow);
                }
            },
            ClientLine::Who => {
                let mut names: Vec<&str> = state
                    .rooms
                    .get(&room)
                    .into_iter()
                    .flat_map(|room| &room.members)
                    .filter_map(|id| state.members.get(id).map(|m| &*m.name))
                    .collect();
                names.sort_unstable();
                let who = line(Notice::Who {
                    room: &room,
                    names: &names.join(", "),
                });
                state.tell(self.id, &who, &mut slow);
            }
            ClientLine::Rooms => {
                let list: Vec<String> = state
                    .rooms
                    .iter()
                    .map(|(name, room)| format!("{name} ({})", room.members.len()))
                    .collect();
                let rooms = line(Notice::Rooms {
                    list: &list.join(", "),
                });
                state.tell(self.id, &rooms, &mut slow);
            }
            ClientLine::Help => {
                for help in HELP {
                    state.tell(self.id, &line(help), &mut slow);
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

    /// Sends the member a notice of its own (flood, line too long,
    /// shutdown).
    pub fn notice(&self, notice: Notice<'_>) {
        let mut state = self.hub.lock();
        let mut slow = Vec::new();
        state.tell(self.id, &line(notice), &mut slow);
        state.drop_slow(slow);
    }

    /// Takes the member out of the chat and tells its room; its queue
    /// closes once drained. Leaving twice does nothing.
    pub fn leave(&self) {
        let mut state = self.hub.lock();
        if let Some(member) = state.remove(self.id) {
            let mut slow = Vec::new();
            let left = line(Notice::Left {
                name: &member.name,
                room: &member.room,
            });
            state.broadcast(&member.room, &left, None, &mut slow);
            state.drop_slow(slow);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}

impl State {
    /// Puts `line` in member `id`'s queue; a full queue marks it `slow`.
    fn tell(&mut self, id: MemberId, line: &Line, slow: &mut Vec<MemberId>) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        match member.outbox.try_send(line.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => slow.push(id),
            // The session is ending and will leave on its own.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Sends `line` to every member of `room` but `except`.
    fn broadcast(
        &mut self,
        room: &str,
        line: &Line,
        except: Option<MemberId>,
        slow: &mut Vec<MemberId>,
    ) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        for id in &room.members {
            if Some(*id) == except {
                continue;
            }
            let Some(member) = self.members.get(id) else {
                continue;
            };
            if let Err(TrySendError::Full(_)) = member.outbox.try_send(line.clone()) {
                slow.push(*id);
            }
        }
    }

    /// A line said in `room` by `from`: to everyone else, and into the
    /// history.
    fn say(
        &mut self,
        room: &str,
        said: Line,
        from: MemberId,
        history: usize,
        slow: &mut Vec<MemberId>,
    ) {
        self.broadcast(room, &said, Some(from), slow);
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

    /// Puts member `id` in `room` (made if new): it gets the history, the
    /// others the join notice.
    fn enter(&mut self, id: MemberId, room_name: &Arc<str>, slow: &mut Vec<MemberId>) {
        let room = self.rooms.entry(room_name.clone()).or_default();
        room.members.insert(id);
        let history: Vec<Line> = room.history.iter().cloned().collect();
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
        self.broadcast(room_name, &joined, Some(id), slow);
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
        self.broadcast(&room, &left, None, slow);
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
        self.names.remove(&name_key(&old));
        self.names.insert(name_key(new), id);
        let renamed = line(Notice::Renamed { old: &old, new });
        self.broadcast(&room, &renamed, Some(id), slow);
        self.tell(id, &line(Notice::NameIs { name: new }), slow);
    }

    /// Removes member `id` from every table; what was left of it.
    fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(&id)?;
        let key = name_key(&member.name);
        if self.names.get(&key) == Some(&id) {
            self.names.remove(&key);
        }
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
            self.dropped += 1;
            tracing::info!(name = %member.name, "dropped: too slow");
            let dropped = line(Notice::Dropped { name: &member.name });
            self.broadcast(&member.room, &dropped, None, &mut slow);
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
        while let Ok(line) = inbox.lines.try_recv() {
            got.push(line.to_string());
        }
        got
    }

    #[test]
    fn lines_go_to_the_others_only() {
        let hub = hub(ChatConfig::default());
        let (a, mut ai) = hub.join("a:1".into());
        let (b, mut bi) = hub.join("b:1".into());
        assert_eq!(
            drain(&mut ai),
            [
                "* welcome, you are a:1 in lobby (/help for commands)",
                "* b:1 joined lobby"
            ]
        );
        drain(&mut bi);
        a.handle(parse("hello"));
        assert_eq!(drain(&mut ai), Vec::<String>::new());
        assert_eq!(drain(&mut bi), ["[a:1] hello"]);
        drop(b);
        assert_eq!(drain(&mut ai), ["* b:1 left lobby"]);
    }

    #[test]
    fn history_is_replayed_and_bounded() {
        let hub = hub(ChatConfig {
            history: 2,
            ..ChatConfig::default()
        });
        let (a, _ai) = hub.join("a:1".into());
        for text in ["one", "two", "three"] {
            a.handle(parse(text));
        }
        let (_b, mut bi) = hub.join("b:1".into());
        assert_eq!(&drain(&mut bi)[1..], ["[a:1] two", "[a:1] three"]);
    }

    #[test]
    fn a_full_queue_drops_its_member() {
        let hub = hub(ChatConfig {
            queue: 3,
            ..ChatConfig::default()
        });
        let (a, mut ai) = hub.join("a:1".into());
        let (_stuck, stuck_inbox) = hub.join("s:1".into());
        drain(&mut ai);
        // The stuck one's queue holds its welcome; two lines fill it.
        for i in 0..3 {
            a.handle(parse(&format!("line {i}")));
        }
        assert!(stuck_inbox.dropped.is_cancelled());
        assert_eq!(drain(&mut ai), ["* s:1 dropped (too slow)"]);
        assert_eq!(hub.members(), 1);
        // Its name is free again, and its late leave changes nothing.
        drop(_stuck);
        assert_eq!(drain(&mut ai), Vec::<String>::new());
    }

    #[test]
    fn empty_rooms_go_away_but_the_lobby_stays() {
        let hub = hub(ChatConfig::default());
        let (a, mut ai) = hub.join("a:1".into());
        a.handle(parse("/join dev"));
        a.handle(parse("/rooms"));
        assert_eq!(
            drain(&mut ai)[1..],
            ["* you are now in dev", "* rooms: dev (1), lobby (0)"]
        );
        a.handle(parse("/join lobby"));
        a.handle(parse("/rooms"));
        assert_eq!(drain(&mut ai).last().unwrap(), "* rooms: lobby (1)");
    }
}
