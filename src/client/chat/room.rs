//! What `sockit chat` knows of its place in the chat, kept from the lines
//! the server sends: its own name, its room, and the room's members, for
//! the header and the member list.
//!
//! The server never says "here is your state"; it says what happened, in
//! notices ([`ServerLine`]), and answers `/who`. So [`RoomView`] starts
//! from the welcome, follows joins, leaves, renames and drops as they come,
//! and takes each `/who` answer it asked for as the truth. A notice is only
//! what a line looks like (`* bob left lobby` may be bob's `/me left
//! lobby`), so the view is guarded where a forged line could mislead it:
//!
//! - the welcome counts only as the connection's first line;
//! - `* you are now NAME` and `* you are now in ROOM` count only as the
//!   answer to a `/nick NAME` or `/join ROOM` this client sent;
//! - a `/who` answer counts only while one is awaited, and a change of
//!   members asks for a fresh one ([`Refresh::Soon`]), so a forged join or
//!   leave lasts until that answer.
//!
//! Everything here is pure (the clock is passed in), so the unit tests
//! drive it line by line.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::chat::command::{ClientLine, name_key};
use crate::chat::notice::Notice;
use crate::chat::server_line::{ServerLine, who_names};

/// The most requests of one kind remembered while their answers are
/// awaited. Flood control may drop a request without an answer, so the
/// oldest are forgotten rather than kept forever.
const MAX_AWAITED: usize = 16;

/// How long a `/who` answer is awaited. Past it, the request is taken as
/// dropped (by flood control), so that a later answer is not matched to
/// it and hidden or shown wrongly.
const WHO_EXPIRY: Duration = Duration::from_secs(5);

/// Who asked for a `/who`: its answer is shown only to a user who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// The user typed `/who`.
    User,
    /// The client asked, to keep its member list current.
    Client,
}

/// What to do about a line, once [`RoomView::observe`] has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Whether it goes in the scrollback (all but the client's own `/who`
    /// answers).
    pub show: bool,
    /// Whether the member list should be asked for again.
    pub refresh: Refresh,
}

/// When to ask the server for `/who`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// No need.
    No,
    /// Now: the client is in a room it has no list for (just welcomed,
    /// just moved).
    Now,
    /// Soon: the members changed, so check the list; several changes in a
    /// row need one check.
    Soon,
}

impl Seen {
    const SHOW: Seen = Seen {
        show: true,
        refresh: Refresh::No,
    };
}

/// The client's name, room and room members, as far as the lines so far
/// tell.
#[derive(Debug, Default)]
pub(crate) struct RoomView {
    me: Option<String>,
    room: Option<String>,
    /// The members, by [`name_key`] (so listed as `/who` would list them,
    /// regardless of case).
    members: BTreeMap<String, String>,
    /// Whether a line came already: only the first may be the welcome.
    started: bool,
    /// Names asked for with `/nick`, oldest first, until answered.
    asked_nicks: VecDeque<String>,
    /// Rooms asked for with `/join`, oldest first, until answered.
    asked_rooms: VecDeque<String>,
    /// `/who` requests awaiting their answers, oldest first.
    asked_whos: VecDeque<(Asker, Instant)>,
}

impl RoomView {
    /// The client's name, once the server has said it.
    pub(crate) fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// The room the client is in, once the server has said it.
    pub(crate) fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// The room's members, sorted regardless of case.
    pub(crate) fn members(&self) -> impl ExactSizeIterator<Item = &str> {
        self.members.values().map(String::as_str)
    }

    /// Whether `name` is in the room (the client included).
    pub(crate) fn is_member(&self, name: &str) -> bool {
        self.members.contains_key(&name_key(name))
    }

    /// Notes a line the client sent, so that the answer to it is known
    /// for one.
    pub(crate) fn sent(&mut self, request: &ClientLine<'_>, asker: Asker, now: Instant) {
        match *request {
            ClientLine::Nick(name) => remember(&mut self.asked_nicks, name.to_owned()),
            ClientLine::Join(room) => remember(&mut self.asked_rooms, room.to_owned()),
            ClientLine::Who => remember(&mut self.asked_whos, (asker, now)),
            _ => {}
        }
    }

    /// Takes in one line from the server.
    pub(crate) fn observe(&mut self, line: &str, now: Instant) -> Seen {
        let first = !self.started;
        self.started = true;
        match ServerLine::parse(line) {
            ServerLine::Notice(notice) => self.notice(notice, first, now),
            _ => Seen::SHOW,
        }
    }

    fn notice(&mut self, notice: Notice<'_>, first: bool, now: Instant) -> Seen {
        let changed = Seen {
            show: true,
            refresh: Refresh::Soon,
        };
        let entered = Seen {
            show: true,
            refresh: Refresh::Now,
        };
        match notice {
            Notice::Welcome { name, room } if first => {
                self.me = Some(name.to_owned());
                self.enter(room);
                entered
            }
            Notice::Moved { room } if answered(&mut self.asked_rooms, room) => {
                self.enter(room);
                entered
            }
            Notice::AlreadyIn { room } => {
                answered(&mut self.asked_rooms, room);
                Seen::SHOW
            }
            Notice::NameIs { name } if answered(&mut self.asked_nicks, name) => {
                if let Some(old) = self.me.replace(name.to_owned()) {
                    self.members.remove(&name_key(&old));
                }
                self.add(name);
                Seen::SHOW
            }
            Notice::NameTaken { name } => {
                answered(&mut self.asked_nicks, name);
                Seen::SHOW
            }
            Notice::BadName { what, name, .. } => {
                let asked = match what {
                    "nick" => &mut self.asked_nicks,
                    _ => &mut self.asked_rooms,
                };
                answered(asked, name);
                Seen::SHOW
            }
            Notice::Joined { name, room } if self.room() == Some(room) => {
                self.add(name);
                changed
            }
            Notice::Left { name, room } if self.room() == Some(room) => {
                self.members.remove(&name_key(name));
                changed
            }
            Notice::Renamed { old, new } => {
                self.members.remove(&name_key(old));
                self.add(new);
                changed
            }
            Notice::Dropped { name } => {
                self.members.remove(&name_key(name));
                changed
            }
            Notice::Who { room, names } => match self.take_who(now) {
                Some(asker) => {
                    self.room = Some(room.to_owned());
                    self.members.clear();
                    for name in who_names(names) {
                        self.add(name);
                    }
                    Seen {
                        show: asker == Asker::User,
                        refresh: Refresh::No,
                    }
                }
                // Not asked for: someone's action, worded like an answer.
                None => Seen::SHOW,
            },
            _ => Seen::SHOW,
        }
    }

    /// Now in `room`, whose members are not known yet but for the client.
    fn enter(&mut self, room: &str) {
        self.room = Some(room.to_owned());
        self.members.clear();
        if let Some(me) = self.me.clone() {
            self.add(&me);
        }
    }

    fn add(&mut self, name: &str) {
        self.members.insert(name_key(name), name.to_owned());
    }

    /// The asker of the oldest `/who` still awaited, which the answer that
    /// just came is for (the server answers in order), forgetting any
    /// that have waited too long.
    fn take_who(&mut self, now: Instant) -> Option<Asker> {
        while let Some((asker, at)) = self.asked_whos.pop_front() {
            if now.saturating_duration_since(at) <= WHO_EXPIRY {
                return Some(asker);
            }
        }
        None
    }
}

/// Adds an awaited request, forgetting the oldest past [`MAX_AWAITED`].
fn remember<T>(awaited: &mut VecDeque<T>, request: T) {
    if awaited.len() == MAX_AWAITED {
        awaited.pop_front();
    }
    awaited.push_back(request);
}

/// Whether `name` was awaited; if so it is answered, and so are the
/// requests sent before it (the server answers in order, so theirs were
/// dropped).
fn answered(awaited: &mut VecDeque<String>, name: &str) -> bool {
    match awaited.iter().position(|asked| asked == name) {
        Some(i) => {
            awaited.drain(..=i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::command::parse;

    const WELCOME: &str = "* welcome, you are 127.0.0.1:4000 in lobby (/help for commands)";

    fn members(view: &RoomView) -> Vec<&str> {
        view.members().collect()
    }

    /// A view that was welcomed and has had its first `/who` answered.
    fn in_lobby(names: &str) -> (RoomView, Instant) {
        let now = Instant::now();
        let mut view = RoomView::default();
        assert_eq!(
            view.observe(WELCOME, now),
            Seen {
                show: true,
                refresh: Refresh::Now
            }
        );
        view.sent(&ClientLine::Who, Asker::Client, now);
        let who = format!("* in lobby: {names}");
        assert!(!view.observe(&who, now).show);
        (view, now)
    }

    #[test]
    fn the_welcome_names_the_client_and_its_room() {
        let (view, _) = in_lobby("127.0.0.1:4000, bob");
        assert_eq!(view.me(), Some("127.0.0.1:4000"));
        assert_eq!(view.room(), Some("lobby"));
        assert_eq!(members(&view), ["127.0.0.1:4000", "bob"]);
    }

    #[test]
    fn only_the_first_line_is_the_welcome() {
        let now = Instant::now();
        let mut view = RoomView::default();
        view.observe("[bob] hi", now);
        // bob's `/me` could read like this; it is not the server's.
        assert_eq!(
            view.observe(WELCOME, now),
            Seen {
                show: true,
                refresh: Refresh::No
            }
        );
        assert_eq!(view.me(), None);
        assert_eq!(view.room(), None);
    }

    #[test]
    fn joins_leaves_renames_and_drops_change_the_members() {
        let (mut view, now) = in_lobby("127.0.0.1:4000, bob");
        let soon = Seen {
            show: true,
            refresh: Refresh::Soon,
        };
        assert_eq!(view.observe("* Carol joined lobby", now), soon);
        assert_eq!(members(&view), ["127.0.0.1:4000", "bob", "Carol"]);
        assert_eq!(view.observe("* bob is now zed", now), soon);
        assert_eq!(members(&view), ["127.0.0.1:4000", "Carol", "zed"]);
        assert_eq!(view.observe("* carol left lobby", now), soon);
        assert_eq!(view.observe("* zed dropped (too slow)", now), soon);
        assert_eq!(members(&view), ["127.0.0.1:4000"]);
        // Other rooms' news is not this room's.
        assert_eq!(view.observe("* dan joined dev", now), Seen::SHOW);
        assert_eq!(members(&view), ["127.0.0.1:4000"]);
        assert!(view.is_member("127.0.0.1:4000"));
    }

    #[test]
    fn a_nick_counts_once_the_server_grants_it() {
        let (mut view, now) = in_lobby("127.0.0.1:4000, bob");
        view.sent(&parse("/nick alice"), Asker::User, now);
        // Someone called `you` saying `/me are now mallory`: not the
        // answer to `/nick alice`.
        assert_eq!(view.observe("* you are now mallory", now), Seen::SHOW);
        assert_eq!(view.me(), Some("127.0.0.1:4000"));
        view.observe("* you are now alice", now);
        assert_eq!(view.me(), Some("alice"));
        assert_eq!(members(&view), ["alice", "bob"]);
        // Answered: the same line again is not taken.
        view.observe("* you are now 127.0.0.1:4000", now);
        assert_eq!(view.me(), Some("alice"));
    }

    #[test]
    fn refused_nicks_and_rooms_are_answered_too() {
        let (mut view, now) = in_lobby("127.0.0.1:4000");
        for line in ["/nick bob", "/nick a:1", "/join lobby", "/join dev"] {
            view.sent(&parse(line), Asker::User, now);
        }
        view.observe("* nick bob is taken", now);
        view.observe("* bad nick a:1: it looks like an address", now);
        view.observe("* you are already in lobby", now);
        assert!(view.asked_nicks.is_empty());
        assert_eq!(view.asked_rooms, ["dev"]);
    }

    #[test]
    fn moving_asks_for_the_new_rooms_members() {
        let (mut view, now) = in_lobby("127.0.0.1:4000, bob");
        assert_eq!(view.observe("* you are now in dev", now), Seen::SHOW);
        assert_eq!(view.room(), Some("lobby"));
        view.sent(&parse("/join dev"), Asker::User, now);
        assert_eq!(
            view.observe("* you are now in dev", now),
            Seen {
                show: true,
                refresh: Refresh::Now
            }
        );
        assert_eq!(view.room(), Some("dev"));
        assert_eq!(members(&view), ["127.0.0.1:4000"]);
        view.sent(&ClientLine::Who, Asker::Client, now);
        assert!(!view.observe("* in dev: 127.0.0.1:4000, eve", now).show);
        assert_eq!(members(&view), ["127.0.0.1:4000", "eve"]);
    }

    #[test]
    fn who_answers_are_shown_to_the_user_who_asked() {
        let (mut view, now) = in_lobby("127.0.0.1:4000");
        view.sent(&ClientLine::Who, Asker::User, now);
        view.sent(&ClientLine::Who, Asker::Client, now);
        assert!(view.observe("* in lobby: 127.0.0.1:4000, bob", now).show);
        assert!(!view.observe("* in lobby: 127.0.0.1:4000, bob", now).show);
        // Nobody asked: shown, and not taken as the list.
        assert!(view.observe("* in lobby: x, y", now).show);
        assert_eq!(members(&view), ["127.0.0.1:4000", "bob"]);
    }

    #[test]
    fn a_who_that_got_no_answer_is_forgotten() {
        let (mut view, start) = in_lobby("127.0.0.1:4000");
        // Dropped by flood control: no answer will come.
        view.sent(&ClientLine::Who, Asker::Client, start);
        let later = start + WHO_EXPIRY + Duration::from_secs(1);
        view.sent(&ClientLine::Who, Asker::User, later);
        assert!(view.observe("* in lobby: 127.0.0.1:4000, bob", later).show);
        assert!(view.asked_whos.is_empty());
    }

    #[test]
    fn awaited_requests_are_bounded() {
        let mut view = RoomView::default();
        let now = Instant::now();
        for i in 0..100 {
            view.sent(&parse(&format!("/nick n{i}")), Asker::User, now);
            view.sent(&ClientLine::Who, Asker::User, now);
        }
        assert_eq!(view.asked_nicks.len(), MAX_AWAITED);
        assert_eq!(view.asked_whos.len(), MAX_AWAITED);
        assert_eq!(view.asked_nicks.front().map(String::as_str), Some("n84"));
    }
}
