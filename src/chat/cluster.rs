//! What chat servers joined by `--redis` tell each other, and what one of
//! them knows of the others' members. Pure data and its encoding as the
//! fields of a Redis Stream entry; the Redis side is
//! [`link`](super::link), the use of it [`hub`](super::hub).
//!
//! An [`Event`] is one change a server made: a line for a room's members
//! (said, or a notice such as `* bob joined dev`), a private line for one
//! member, and the presence change that goes with it (a name gone, a name
//! now in a room). Every server reads every other server's events, shows
//! their lines to its own members and keeps its [`Roster`] of remote
//! members current from the presence changes. Lines are sent ready-made,
//! so a remote notice reads exactly as a local one.

use std::collections::HashMap;
use std::sync::Arc;

use super::hub::Line;

/// A member of another server, as this one knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    /// Its name as shown.
    pub name: Arc<str>,
    /// The room it is in.
    pub room: Arc<str>,
}

/// The members of the other servers, by [`name_key`](super::command::name_key).
pub type Roster = HashMap<String, RemoteMember>;

/// One change to the chat, as the other servers must see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The room whose members get `line`; `None` for a private line.
    pub room: Option<Arc<str>>,
    /// The line, as the members see it.
    pub line: Option<Line>,
    /// Whether `line` was said (or `/me`): it goes in the room's history.
    pub said: bool,
    /// The recipient of a private line, by name key.
    pub to: Option<String>,
    /// A name that is no longer here: left, dropped, or renamed from.
    pub gone: Option<Arc<str>>,
    /// A member now in a room: joined, moved, or renamed to.
    pub here: Option<RemoteMember>,
}

/// The stream fields of an event: short, as every line carries them.
const SERVER: &str = "s";
const ROOM: &str = "r";
const LINE: &str = "l";
const SAID: &str = "h";
const TO: &str = "t";
const GONE: &str = "g";
const HERE_NAME: &str = "n";
const HERE_ROOM: &str = "m";

impl Event {
    /// The fields of the stream entry that carries this event from
    /// `server`.
    pub fn fields<'a>(&'a self, server: &'a str) -> Vec<(&'static str, &'a str)> {
        let mut fields = vec![(SERVER, server)];
        if let Some(room) = &self.room {
            fields.push((ROOM, room));
        }
        if let Some(line) = &self.line {
            fields.push((LINE, line));
        }
        if self.said {
            fields.push((SAID, "1"));
        }
        if let Some(to) = &self.to {
            fields.push((TO, to));
        }
        if let Some(gone) = &self.gone {
            fields.push((GONE, gone));
        }
        if let Some(here) = &self.here {
            fields.push((HERE_NAME, &here.name));
            fields.push((HERE_ROOM, &here.room));
        }
        fields
    }

    /// The event of a stream entry and the server that sent it, given a
    /// way to read a field as text; `None` for an entry without a server
    /// (not one of ours).
    pub fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<(&'a str, Event)> {
        let server = field(SERVER)?;
        let text = |name| field(name).map(Arc::<str>::from);
        let here = match (field(HERE_NAME), field(HERE_ROOM)) {
            (Some(name), Some(room)) => Some(RemoteMember {
                name: name.into(),
                room: room.into(),
            }),
            _ => None,
        };
        let event = Event {
            room: text(ROOM),
            line: text(LINE),
            said: field(SAID) == Some("1"),
            to: field(TO).map(str::to_owned),
            gone: text(GONE),
            here,
        };
        Some((server, event))
    }
}

/// A member's entry in its server's presence hash: `ROOM<TAB>NAME` (names
/// and rooms have no control characters, so the tab is unambiguous).
pub fn presence_value(name: &str, room: &str) -> String {
    format!("{room}\t{name}")
}

/// The member of a presence hash entry; `None` for a malformed one.
pub fn parse_presence(value: &str) -> Option<RemoteMember> {
    let (room, name) = value.split_once('\t')?;
    if room.is_empty() || name.is_empty() {
        return None;
    }
    Some(RemoteMember {
        name: name.into(),
        room: room.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: &Event) -> Event {
        let fields: HashMap<&str, &str> = event.fields("srv1").into_iter().collect();
        let (server, back) = Event::from_fields(|name| fields.get(name).copied()).unwrap();
        assert_eq!(server, "srv1");
        back
    }

    #[test]
    fn events_survive_their_fields() {
        let said = Event {
            room: Some("dev".into()),
            line: Some("[bob] hi\tthere".into()),
            said: true,
            ..Event::default()
        };
        assert_eq!(round_trip(&said), said);
        let renamed = Event {
            room: Some("lobby".into()),
            line: Some("* a is now b".into()),
            gone: Some("a".into()),
            here: Some(RemoteMember {
                name: "b".into(),
                room: "lobby".into(),
            }),
            ..Event::default()
        };
        assert_eq!(round_trip(&renamed), renamed);
        let private = Event {
            line: Some("[a -> b] psst".into()),
            to: Some("b".into()),
            ..Event::default()
        };
        assert_eq!(round_trip(&private), private);
    }

    #[test]
    fn entries_of_others_are_ignored() {
        assert_eq!(Event::from_fields(|_| None), None);
    }

    #[test]
    fn presence_values_parse_back() {
        let value = presence_value("[::1]:4000", "dev");
        assert_eq!(
            parse_presence(&value),
            Some(RemoteMember {
                name: "[::1]:4000".into(),
                room: "dev".into()
            })
        );
        assert_eq!(parse_presence("no tab"), None);
        assert_eq!(parse_presence("\tname"), None);
    }
}
