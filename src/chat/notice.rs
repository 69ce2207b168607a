//! Every line the server itself says, in one place: [`Notice`], written
//! as `* ...` (SPEC 5), and [`HELP`]. docs/chat-protocol.md lists the
//! same wordings; a client that wants to tell notices apart matches on
//! them.

use std::fmt;

use super::command::NameError;

/// A server notice. `Display` writes the line (without its line end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// To a member who just connected.
    Welcome {
        /// Its (default) name.
        name: &'a str,
        /// The room it is in.
        room: &'a str,
    },
    /// To a room: someone came in.
    Joined {
        /// Who.
        name: &'a str,
        /// The room.
        room: &'a str,
    },
    /// To a room: someone left it (quit, closed, or went to another room).
    Left {
        /// Who.
        name: &'a str,
        /// The room.
        room: &'a str,
    },
    /// To the member that moved, once in its new room.
    Moved {
        /// The new room.
        room: &'a str,
    },
    /// To the member's room: a member took a new name.
    Renamed {
        /// The name it had.
        old: &'a str,
        /// The name it has.
        new: &'a str,
    },
    /// To the member that took a new name.
    NameIs {
        /// Its name now.
        name: &'a str,
    },
    /// `/nick` of a name someone else has.
    NameTaken {
        /// The name.
        name: &'a str,
    },
    /// `/nick` or `/join` with a name that breaks the rules.
    BadName {
        /// `nick` or `room`.
        what: &'a str,
        /// The name as given.
        name: &'a str,
        /// Why not.
        why: NameError,
    },
    /// `/join` of the room the member is in.
    AlreadyIn {
        /// The room.
        room: &'a str,
    },
    /// `/msg` to a name nobody has.
    NoSuchName {
        /// The name.
        name: &'a str,
    },
    /// The answer to `/who`: the names, sorted, joined with `, `.
    Who {
        /// The member's room.
        room: &'a str,
        /// The names.
        names: &'a str,
    },
    /// The answer to `/rooms`: `NAME (MEMBERS)` per room, sorted.
    Rooms {
        /// The list.
        list: &'a str,
    },
    /// To a room: a member's queue overflowed and it was disconnected.
    Dropped {
        /// Who.
        name: &'a str,
    },
    /// To a member over the flood limit, once per burst of dropped lines.
    Flood {
        /// The limit, lines per second.
        rate: u32,
    },
    /// To a member whose line was over the limit.
    TooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// An unknown command.
    Unknown {
        /// As typed.
        command: &'a str,
    },
    /// A command without its arguments.
    Usage {
        /// Its usage line.
        usage: &'a str,
    },
    /// The answer to `/quit`, just before the connection closes.
    Bye,
    /// To every member when the server gets SIGTERM.
    ShuttingDown,
    /// To a WebSocket member, the first time it sends a binary frame.
    Binary,
    /// To every member (`--redis`): Redis cannot be reached, so the other
    /// servers cannot either.
    OutOfReach,
    /// To every member (`--redis`): Redis answers again.
    BackInReach,
    /// `/nick` while the other servers are out of reach: a name could
    /// not be made sure to be unique.
    NamesFrozen,
    /// To a member whose name another server gave out while the two were
    /// apart (`--redis`).
    NameClash {
        /// The name.
        name: &'a str,
    },
}

impl fmt::Display for Notice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("* ")?;
        match *self {
            Notice::Welcome { name, room } => {
                write!(f, "welcome, you are {name} in {room} (/help for commands)")
            }
            Notice::Joined { name, room } => write!(f, "{name} joined {room}"),
            Notice::Left { name, room } => write!(f, "{name} left {room}"),
            Notice::Moved { room } => write!(f, "you are now in {room}"),
            Notice::Renamed { old, new } => write!(f, "{old} is now {new}"),
            Notice::NameIs { name } => write!(f, "you are now {name}"),
            Notice::NameTaken { name } => write!(f, "nick {name} is taken"),
            Notice::BadName { what, name, why } => write!(f, "bad {what} {name}: {why}"),
            Notice::AlreadyIn { room } => write!(f, "you are already in {room}"),
            Notice::NoSuchName { name } => write!(f, "no one is called {name}"),
            Notice::Who { room, names } => write!(f, "in {room}: {names}"),
            Notice::Rooms { list } => write!(f, "rooms: {list}"),
            Notice::Dropped { name } => write!(f, "{name} dropped (too slow)"),
            Notice::Flood { rate } => {
                write!(
                    f,
                    "slow down: at most {rate} lines a second, extra lines dropped"
                )
            }
            Notice::TooLong { max } => write!(f, "line too long (max {max} bytes), dropped"),
            Notice::Unknown { command } => write!(f, "unknown command {command}, see /help"),
            Notice::Usage { usage } => write!(f, "usage: {usage}"),
            Notice::Bye => f.write_str("bye"),
            Notice::ShuttingDown => f.write_str("server shutting down"),
            Notice::Binary => f.write_str("binary frames are not lines, ignored: send text frames"),
            Notice::OutOfReach => f.write_str(
                "the other servers are out of reach: lines reach this server's members only",
            ),
            Notice::BackInReach => f.write_str("the other servers are back in reach"),
            Notice::NamesFrozen => {
                f.write_str("names cannot change while the other servers are out of reach")
            }
            Notice::NameClash { name } => write!(
                f,
                "nick {name} was also given out on another server: take another with /nick"
            ),
        }
    }
}

/// The answer to `/help`, one notice per line.
pub const HELP: &[&str] = &[
    "* /nick NAME      take a name (1 to 32 characters, no spaces)",
    "* /join ROOM      go to another room (everyone starts in lobby)",
    "* /rooms          list the rooms",
    "* /who            list who is in your room",
    "* /msg NAME text  say something to NAME alone",
    "* /me text        act: shown as * NAME text",
    "* /quit           leave",
    "* any other line is said to your room; start it with // to say a line beginning with /",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_start_with_a_star() {
        let all = [
            Notice::Welcome {
                name: "a",
                room: "lobby",
            },
            Notice::Dropped { name: "a" },
            Notice::BadName {
                what: "nick",
                name: "a b",
                why: NameError::Malformed,
            },
            Notice::Bye,
        ];
        for notice in all {
            assert!(notice.to_string().starts_with("* "), "{notice}");
        }
        assert_eq!(
            Notice::Dropped { name: "bob" }.to_string(),
            "* bob dropped (too slow)"
        );
        assert!(
            HELP.iter()
                .all(|line| line.starts_with("* /") || line.starts_with("* any"))
        );
    }
}
