//! The other direction of the line protocol: what a client makes of a
//! line the server sent, [`ServerLine`]. `sockit chat` reads its room and
//! member list out of these, colours the names in them, and writes its
//! own lines with them as the others see them.
//!
//! The notices are read with the wordings [`Notice`]'s `Display` writes,
//! not with copies of them: each notice the parser knows is written once
//! with a NUL for every field (no notice's own words hold a NUL, and no
//! name or room can), and the pieces between the NULs are what a line must
//! be made of. Change a wording in `notice.rs` and the parser follows.
//! The said and private lines are the hub's (`[NAME] text`,
//! `[FROM -> TO] text`); the tests drive a real [`Hub`](super::Hub) to
//! check that this module reads what it writes.
//!
//! Notices and actions share their form (`* bob joined lobby` may be bob's
//! `/me joined lobby`), so a parsed notice is what the line looks like, not
//! proof of who sent it; the client treats it as a hint and checks its
//! member list with `/who`.

use std::sync::LazyLock;

use super::command::NameError;
use super::notice::Notice;

/// One line from the server, without its line end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `[NAME] text`: said in the room by NAME.
    Said {
        /// Who said it.
        name: &'a str,
        /// What they said.
        text: &'a str,
    },
    /// `[FROM -> TO] text`: a private message (`/msg`).
    Private {
        /// Who sent it.
        from: &'a str,
        /// Whom it is for.
        to: &'a str,
        /// What it says.
        text: &'a str,
    },
    /// A line worded as one of the server's notices.
    Notice(Notice<'a>),
    /// Any other `* ` line, after the `* `: an action (`alice waves`), or
    /// a notice this parser does not read (the `/help` lines, flood and
    /// length warnings).
    Star(&'a str),
    /// Anything else: not a line a sockit chat sends.
    Other(&'a str),
}

impl<'a> ServerLine<'a> {
    /// Parses one line (without its line end).
    ///
    /// ```
    /// use sockit::chat::notice::Notice;
    /// use sockit::chat::server_line::ServerLine;
    /// assert_eq!(ServerLine::parse("[bob] hi"), ServerLine::Said { name: "bob", text: "hi" });
    /// assert_eq!(
    ///     ServerLine::parse("* bob joined lobby"),
    ///     ServerLine::Notice(Notice::Joined { name: "bob", room: "lobby" })
    /// );
    /// assert_eq!(ServerLine::parse("* bob waves"), ServerLine::Star("bob waves"));
    /// ```
    pub fn parse(line: &'a str) -> ServerLine<'a> {
        if let Some(said) = parse_bracketed(line) {
            return said;
        }
        match line.strip_prefix("* ") {
            Some(rest) => Notice::parse(line).map_or(ServerLine::Star(rest), ServerLine::Notice),
            None => ServerLine::Other(line),
        }
    }
}

/// Writes the line as the server would: how a client shows its own lines,
/// which the server does not send back to it.
///
/// ```
/// use sockit::chat::server_line::ServerLine;
/// let line = ServerLine::Private { from: "alice", to: "bob", text: "psst" };
/// assert_eq!(line.to_string(), "[alice -> bob] psst");
/// ```
impl std::fmt::Display for ServerLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ServerLine::Said { name, text } => write!(f, "[{name}] {text}"),
            ServerLine::Private { from, to, text } => write!(f, "[{from} -> {to}] {text}"),
            ServerLine::Notice(notice) => notice.fmt(f),
            ServerLine::Star(rest) => write!(f, "* {rest}"),
            ServerLine::Other(line) => f.write_str(line),
        }
    }
}

/// `[NAME] text` or `[FROM -> TO] text`. Names hold no spaces, so a name
/// runs to the first space; one may end in `]` itself (`[a]] hi` is said
/// by `a]`).
fn parse_bracketed(line: &str) -> Option<ServerLine<'_>> {
    let rest = line.strip_prefix('[')?;
    let (head, after) = rest.split_once(' ').unwrap_or((rest, ""));
    if let Some(name) = head.strip_suffix(']') {
        return (!name.is_empty() && rest.len() > head.len())
            .then_some(ServerLine::Said { name, text: after });
    }
    let (to, text) = after.strip_prefix("-> ")?.split_once(' ')?;
    let to = to.strip_suffix(']')?;
    (!head.is_empty() && !to.is_empty()).then_some(ServerLine::Private {
        from: head,
        to,
        text,
    })
}

/// The names of a `/who` answer ([`Notice::Who`]'s `names`), in the order
/// given: the hub joins them with `, `, and no name holds a space.
pub fn who_names(names: &str) -> impl Iterator<Item = &str> {
    names.split(", ").filter(|name| !name.is_empty())
}

impl<'a> Notice<'a> {
    /// The notice a line is worded as, if any: the inverse of `Display`
    /// for every notice whose fields are text. `Flood` and `TooLong`
    /// (numbers) are not read.
    ///
    /// ```
    /// use sockit::chat::notice::Notice;
    /// let line = Notice::Renamed { old: "a", new: "b" }.to_string();
    /// assert_eq!(Notice::parse(&line), Some(Notice::Renamed { old: "a", new: "b" }));
    /// assert_eq!(Notice::parse("* alice waves"), None);
    /// ```
    pub fn parse(line: &'a str) -> Option<Notice<'a>> {
        SHAPES.iter().find_map(|shape| {
            let fields = shape.fields(line)?;
            (shape.build)(&fields)
        })
    }
}

/// A notice's wording cut at its fields, and how to make the notice from
/// the fields a line has there.
struct Shape {
    /// The text before, between and after the fields.
    pieces: Vec<String>,
    /// Checks the fields (a name is one word) and makes the notice.
    build: for<'a> fn(&[&'a str]) -> Option<Notice<'a>>,
}

/// What stands for a field while a wording is cut into pieces.
const FIELD: &str = "\0";

impl Shape {
    fn new(template: Notice<'_>, build: for<'a> fn(&[&'a str]) -> Option<Notice<'a>>) -> Shape {
        Shape {
            pieces: template
                .to_string()
                .split(FIELD)
                .map(String::from)
                .collect(),
            build,
        }
    }

    /// The fields of `line` if it has this shape. Each field but the last
    /// runs to the first occurrence of the piece after it, which is right
    /// for names and rooms (one word each) and leaves the last field (a
    /// list, a usage line) whole.
    fn fields<'a>(&self, line: &'a str) -> Option<Vec<&'a str>> {
        let (first, rest_pieces) = self.pieces.split_first()?;
        let mut rest = line.strip_prefix(first.as_str())?;
        let mut fields = Vec::with_capacity(rest_pieces.len());
        for (i, piece) in rest_pieces.iter().enumerate() {
            if i + 1 == rest_pieces.len() {
                fields.push(rest.strip_suffix(piece.as_str())?);
                rest = "";
            } else {
                let at = rest.find(piece.as_str())?;
                fields.push(&rest[..at]);
                rest = &rest[at + piece.len()..];
            }
        }
        rest.is_empty().then_some(fields)
    }
}

/// A name or a room: one word, not empty.
fn word(field: &str) -> Option<&str> {
    (!field.is_empty() && !field.contains(char::is_whitespace)).then_some(field)
}

/// Free text, not empty.
fn text(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// `nick` or `room`, as [`Notice::BadName`] names what was refused.
fn what(field: &str) -> Option<&'static str> {
    ["nick", "room"].into_iter().find(|w| *w == field)
}

/// Every notice [`Notice::parse`] reads, in the order tried. The order
/// matters little: `* you are now in dev` fits `NameIs` too, but `in dev`
/// is not a name.
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    let f = FIELD;
    let mut shapes = vec![
        Shape::new(Notice::Welcome { name: f, room: f }, |x| {
            Some(Notice::Welcome {
                name: word(x[0])?,
                room: word(x[1])?,
            })
        }),
        Shape::new(Notice::Joined { name: f, room: f }, |x| {
            Some(Notice::Joined {
                name: word(x[0])?,
                room: word(x[1])?,
            })
        }),
        Shape::new(Notice::Left { name: f, room: f }, |x| {
            Some(Notice::Left {
                name: word(x[0])?,
                room: word(x[1])?,
            })
        }),
        Shape::new(Notice::Moved { room: f }, |x| {
            Some(Notice::Moved { room: word(x[0])? })
        }),
        Shape::new(Notice::Renamed { old: f, new: f }, |x| {
            Some(Notice::Renamed {
                old: word(x[0])?,
                new: word(x[1])?,
            })
        }),
        Shape::new(Notice::NameIs { name: f }, |x| {
            Some(Notice::NameIs { name: word(x[0])? })
        }),
        Shape::new(Notice::NameTaken { name: f }, |x| {
            Some(Notice::NameTaken { name: word(x[0])? })
        }),
        Shape::new(Notice::AlreadyIn { room: f }, |x| {
            Some(Notice::AlreadyIn { room: word(x[0])? })
        }),
        Shape::new(Notice::NoSuchName { name: f }, |x| {
            Some(Notice::NoSuchName { name: word(x[0])? })
        }),
        Shape::new(Notice::Who { room: f, names: f }, |x| {
            let names = x[1];
            who_names(names).all(|n| word(n).is_some()).then_some(())?;
            Some(Notice::Who {
                room: word(x[0])?,
                names,
            })
        }),
        Shape::new(Notice::Rooms { list: f }, |x| {
            Some(Notice::Rooms { list: text(x[0])? })
        }),
        Shape::new(Notice::Dropped { name: f }, |x| {
            Some(Notice::Dropped { name: word(x[0])? })
        }),
        Shape::new(Notice::Unknown { command: f }, |x| {
            Some(Notice::Unknown {
                command: word(x[0])?,
            })
        }),
        Shape::new(Notice::Usage { usage: f }, |x| {
            Some(Notice::Usage { usage: text(x[0])? })
        }),
        Shape::new(Notice::Bye, |_| Some(Notice::Bye)),
        Shape::new(Notice::ShuttingDown, |_| Some(Notice::ShuttingDown)),
        Shape::new(Notice::Binary, |_| Some(Notice::Binary)),
        Shape::new(Notice::OutOfReach, |_| Some(Notice::OutOfReach)),
        Shape::new(Notice::BackInReach, |_| Some(Notice::BackInReach)),
        Shape::new(Notice::NamesFrozen, |_| Some(Notice::NamesFrozen)),
        Shape::new(Notice::NameClash { name: f }, |x| {
            Some(Notice::NameClash { name: word(x[0])? })
        }),
    ];
    // `why` is not text but a `NameError`: one shape per error.
    shapes.push(Shape::new(
        Notice::BadName {
            what: f,
            name: f,
            why: NameError::Malformed,
        },
        |x| {
            Some(Notice::BadName {
                what: what(x[0])?,
                name: x[1],
                why: NameError::Malformed,
            })
        },
    ));
    shapes.push(Shape::new(
        Notice::BadName {
            what: f,
            name: f,
            why: NameError::AddressLike,
        },
        |x| {
            Some(Notice::BadName {
                what: what(x[0])?,
                name: x[1],
                why: NameError::AddressLike,
            })
        },
    ));
    shapes
});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chat::command::parse;
    use crate::chat::hub::{ChatConfig, Hub, Inbox};

    fn drain(inbox: &mut Inbox) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(lines) = inbox.try_recv() {
            got.extend(lines.iter().map(String::from));
        }
        got
    }

    /// Every notice with text fields, as the server writes it, parses
    /// back to itself.
    #[test]
    fn notices_round_trip() {
        let all = [
            Notice::Welcome {
                name: "127.0.0.1:4000",
                room: "lobby",
            },
            Notice::Joined {
                name: "bob",
                room: "dev",
            },
            Notice::Left {
                name: "[::1]:9",
                room: "lobby",
            },
            Notice::Moved { room: "dev" },
            Notice::Renamed {
                old: "unix-3",
                new: "carol",
            },
            Notice::NameIs { name: "alice" },
            Notice::NameTaken { name: "Alice" },
            Notice::BadName {
                what: "nick",
                name: "a b",
                why: NameError::Malformed,
            },
            Notice::BadName {
                what: "room",
                name: "10.0.0.1:80",
                why: NameError::AddressLike,
            },
            Notice::AlreadyIn { room: "lobby" },
            Notice::NoSuchName { name: "zed" },
            Notice::Who {
                room: "lobby",
                names: "alice, bob, 127.0.0.1:40112",
            },
            Notice::Rooms {
                list: "dev (2), lobby (5)",
            },
            Notice::Dropped { name: "slow" },
            Notice::Unknown { command: "/dance" },
            Notice::Usage {
                usage: "/nick NAME",
            },
            Notice::Bye,
            Notice::ShuttingDown,
            Notice::Binary,
            Notice::OutOfReach,
            Notice::BackInReach,
            Notice::NamesFrozen,
            Notice::NameClash { name: "bob" },
        ];
        for notice in all {
            let line = notice.to_string();
            assert_eq!(Notice::parse(&line), Some(notice), "{line:?}");
            assert_eq!(ServerLine::parse(&line), ServerLine::Notice(notice));
        }
    }

    #[test]
    fn actions_and_other_star_lines_are_not_notices() {
        for line in [
            "* alice waves",
            "* bob left the building",
            "* you are now in the kitchen",
            "* in lobby: a,  b",
            "* bad mood x: 1 to 32 printable characters, no spaces",
            "* slow down: at most 10 lines a second, extra lines dropped",
            "* /nick NAME      take a name (1 to 32 characters, no spaces)",
            "* byebye",
        ] {
            assert_eq!(Notice::parse(line), None, "{line:?}");
            assert_eq!(ServerLine::parse(line), ServerLine::Star(&line[2..]));
        }
        // What does not fit one notice may fit another.
        assert_eq!(
            Notice::parse("* you are now in"),
            Some(Notice::NameIs { name: "in" })
        );
    }

    #[test]
    fn said_and_private_lines() {
        assert_eq!(
            ServerLine::parse("[alice] hi there "),
            ServerLine::Said {
                name: "alice",
                text: "hi there "
            }
        );
        assert_eq!(
            ServerLine::parse("[a]] [b] c"),
            ServerLine::Said {
                name: "a]",
                text: "[b] c"
            }
        );
        assert_eq!(
            ServerLine::parse("[127.0.0.1:4000 -> bob] psst"),
            ServerLine::Private {
                from: "127.0.0.1:4000",
                to: "bob",
                text: "psst"
            }
        );
        for other in [
            "[] x",
            "[nobody",
            "[a -> ] x",
            "[a ->b] x",
            "plain",
            "*x",
            "",
        ] {
            assert_eq!(
                ServerLine::parse(other),
                ServerLine::Other(other),
                "{other:?}"
            );
        }
    }

    /// What the hub writes, read back: the formats live in hub.rs and
    /// notice.rs, so this is the check that both sides agree.
    #[tokio::test]
    async fn reads_what_the_hub_writes() {
        let hub = Arc::new(Hub::new(ChatConfig::default()));
        let (alice, mut ai) = hub.join("127.0.0.1:1".into(), None).await;
        let (bob, mut bi) = hub.join("127.0.0.1:2".into(), None).await;
        alice.handle(parse("/nick alice")).await;
        bob.handle(parse("/nick bob")).await;
        alice.handle(parse("hello")).await;
        alice.handle(parse("/msg bob psst")).await;
        alice.handle(parse("/me waves")).await;
        bob.handle(parse("/who")).await;
        let lines = drain(&mut bi);
        let parsed: Vec<ServerLine<'_>> = lines.iter().map(|l| ServerLine::parse(l)).collect();
        assert_eq!(
            parsed,
            [
                ServerLine::Notice(Notice::Welcome {
                    name: "127.0.0.1:2",
                    room: "lobby"
                }),
                ServerLine::Notice(Notice::Renamed {
                    old: "127.0.0.1:1",
                    new: "alice"
                }),
                ServerLine::Notice(Notice::NameIs { name: "bob" }),
                ServerLine::Said {
                    name: "alice",
                    text: "hello"
                },
                ServerLine::Private {
                    from: "alice",
                    to: "bob",
                    text: "psst"
                },
                ServerLine::Star("alice waves"),
                ServerLine::Notice(Notice::Who {
                    room: "lobby",
                    names: "alice, bob"
                }),
            ]
        );
        for (line, parsed) in lines.iter().zip(&parsed) {
            assert_eq!(parsed.to_string(), *line);
        }
        let ServerLine::Notice(Notice::Who { names, .. }) = parsed[6] else {
            unreachable!()
        };
        assert_eq!(who_names(names).collect::<Vec<_>>(), ["alice", "bob"]);
        drain(&mut ai);
        bob.handle(parse("/join dev")).await;
        assert_eq!(
            drain(&mut ai)
                .iter()
                .map(|l| ServerLine::parse(l))
                .collect::<Vec<_>>(),
            [ServerLine::Notice(Notice::Left {
                name: "bob",
                room: "lobby"
            })]
        );
        assert_eq!(
            ServerLine::parse(&drain(&mut bi)[0]),
            ServerLine::Notice(Notice::Moved { room: "dev" })
        );
    }
}
