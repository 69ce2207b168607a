//! What a member's line asks for: [`ClientLine`], parsed from one line of
//! text (already cleaned by [`text`](super::text)), and the rules for
//! names of members and rooms.
//!
//! A line that starts with `/` is a command (its name in any case); any
//! other line is said to the room. `//text` says `/text`, for a line that
//! must begin with a slash. Parsing is pure and total: every line is some
//! `ClientLine`, so the fuzz target and the unit tests drive it directly.

/// Longest name of a member or a room, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// One line from a member, as the hub acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLine<'a> {
    /// A blank line: nothing happens.
    Empty,
    /// Text for everyone else in the room.
    Say(&'a str),
    /// `/nick NAME`: a new name (checked by the hub: [`check_name`] and
    /// uniqueness).
    Nick(&'a str),
    /// `/join ROOM`: move to another room.
    Join(&'a str),
    /// `/rooms`: list the rooms.
    Rooms,
    /// `/who`: list the members of your room.
    Who,
    /// `/msg NAME text`: a private message.
    Msg {
        /// Whom it is for.
        to: &'a str,
        /// What it says.
        text: &'a str,
    },
    /// `/me text`: an action, shown as `* NAME text`.
    Me(&'a str),
    /// `/help`: the command list.
    Help,
    /// `/quit`: leave.
    Quit,
    /// A known command without the arguments it needs; holds its usage.
    Usage(&'static str),
    /// An unknown command, as typed (with its `/`).
    Unknown(&'a str),
}

/// Usage lines of the commands that take arguments.
const NICK_USAGE: &str = "/nick NAME";
const JOIN_USAGE: &str = "/join ROOM";
const MSG_USAGE: &str = "/msg NAME text";
const ME_USAGE: &str = "/me text";

/// Parses one line (without its line end).
///
/// ```
/// use sockit::chat::command::{ClientLine, parse};
/// assert_eq!(parse("hello"), ClientLine::Say("hello"));
/// assert_eq!(parse("/MSG bob hi there"), ClientLine::Msg { to: "bob", text: "hi there" });
/// assert_eq!(parse("//etc/passwd"), ClientLine::Say("/etc/passwd"));
/// ```
pub fn parse<'a>(line: &'a str) -> ClientLine<'a> {
    if line.trim().is_empty() {
        return ClientLine::Empty;
    }
    let Some(command) = line.strip_prefix('/') else {
        return ClientLine::Say(line);
    };
    if command.starts_with('/') {
        return ClientLine::Say(command);
    }
    let (name, args) = match command.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (command, ""),
    };
    let lower = name.to_ascii_lowercase();
    let needs = |usage: &'static str, line: ClientLine<'a>| {
        if args.is_empty() {
            ClientLine::Usage(usage)
        } else {
            line
        }
    };
    match lower.as_str() {
        "nick" => needs(NICK_USAGE, ClientLine::Nick(args)),
        "join" => needs(JOIN_USAGE, ClientLine::Join(args)),
        "me" => needs(ME_USAGE, ClientLine::Me(args)),
        "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => ClientLine::Msg {
                to,
                text: text.trim_start(),
            },
            _ => ClientLine::Usage(MSG_USAGE),
        },
        "rooms" => ClientLine::Rooms,
        "who" => ClientLine::Who,
        "help" => ClientLine::Help,
        "quit" => ClientLine::Quit,
        _ => ClientLine::Unknown(line.split(char::is_whitespace).next().unwrap_or(line)),
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, too long, or with a space or an unprintable character.
    #[error("1 to 32 printable characters, no spaces")]
    Malformed,
    /// Shaped like an address (`127.0.0.1:4000`, `unix-3`): those are the
    /// default names of members who have not picked one, so taking one
    /// would let a member pass for another.
    #[error("it looks like an address")]
    AddressLike,
}

/// Checks a name for a member (`/nick`) or a room (`/join`).
///
/// ```
/// use sockit::chat::command::{NameError, check_name};
/// assert_eq!(check_name("alice"), Ok(()));
/// assert_eq!(check_name("al ice"), Err(NameError::Malformed));
/// assert_eq!(check_name("10.0.0.1:80"), Err(NameError::AddressLike));
/// ```
///
/// # Errors
/// The [`NameError`] saying what is wrong.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let printable = |c: char| !c.is_control() && !c.is_whitespace();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || !name.chars().all(printable) {
        return Err(NameError::Malformed);
    }
    if is_address_like(name) {
        return Err(NameError::AddressLike);
    }
    Ok(())
}

/// Whether a name has the shape of a default name: a socket address or
/// `unix-N`.
fn is_address_like(name: &str) -> bool {
    let unix = name
        .strip_prefix("unix-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    unix || name.parse::<std::net::SocketAddr>().is_ok()
}

/// The key names are unique under: `Alice` and `alice` are one name, so
/// nobody can pass for someone by changing case.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_said() {
        assert_eq!(parse("hi"), ClientLine::Say("hi"));
        assert_eq!(parse("  indented"), ClientLine::Say("  indented"));
        assert_eq!(parse("a / b"), ClientLine::Say("a / b"));
        assert_eq!(parse("//me"), ClientLine::Say("/me"));
        assert_eq!(parse(""), ClientLine::Empty);
        assert_eq!(parse("   "), ClientLine::Empty);
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse("/nick alice"), ClientLine::Nick("alice"));
        assert_eq!(parse("/Nick  alice "), ClientLine::Nick("alice"));
        assert_eq!(parse("/nick a b"), ClientLine::Nick("a b"));
        assert_eq!(parse("/join dev"), ClientLine::Join("dev"));
        assert_eq!(parse("/rooms"), ClientLine::Rooms);
        assert_eq!(parse("/who extra"), ClientLine::Who);
        assert_eq!(parse("/help"), ClientLine::Help);
        assert_eq!(parse("/QUIT"), ClientLine::Quit);
        assert_eq!(parse("/me waves"), ClientLine::Me("waves"));
        assert_eq!(
            parse("/msg bob  hi  there"),
            ClientLine::Msg {
                to: "bob",
                text: "hi  there"
            }
        );
    }

    #[test]
    fn missing_arguments_get_the_usage() {
        assert_eq!(parse("/nick"), ClientLine::Usage("/nick NAME"));
        assert_eq!(parse("/join  "), ClientLine::Usage("/join ROOM"));
        assert_eq!(parse("/msg bob"), ClientLine::Usage("/msg NAME text"));
        assert_eq!(parse("/msg bob   "), ClientLine::Usage("/msg NAME text"));
        assert_eq!(parse("/me"), ClientLine::Usage("/me text"));
    }

    #[test]
    fn unknown_commands_are_named() {
        assert_eq!(parse("/dance now"), ClientLine::Unknown("/dance"));
        assert_eq!(parse("/"), ClientLine::Unknown("/"));
        assert_eq!(parse("/ x"), ClientLine::Unknown("/"));
        assert_eq!(parse("/nickname x"), ClientLine::Unknown("/nickname"));
    }

    #[test]
    fn names() {
        assert_eq!(check_name("bob"), Ok(()));
        assert_eq!(check_name("Ünïcødé_ñame"), Ok(()));
        assert_eq!(check_name(&"x".repeat(32)), Ok(()));
        assert_eq!(check_name(&"é".repeat(32)), Ok(()));
        assert_eq!(check_name(&"x".repeat(33)), Err(NameError::Malformed));
        assert_eq!(check_name(""), Err(NameError::Malformed));
        assert_eq!(check_name("a\u{85}b"), Err(NameError::Malformed));
        assert_eq!(check_name("a\u{3000}b"), Err(NameError::Malformed));
        assert_eq!(check_name("unix-12"), Err(NameError::AddressLike));
        assert_eq!(check_name("[::1]:9"), Err(NameError::AddressLike));
        assert_eq!(check_name("unix-"), Ok(()));
        assert_eq!(check_name("unix-x1"), Ok(()));
        assert_eq!(name_key("ALice"), "alice");
    }
}
