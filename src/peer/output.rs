//! What a node prints on stdout: messages, membership changes, command
//! replies. Text for people, or one JSON object per line for scripts
//! (`--json`); both renderings of every event live here, so they cannot
//! drift apart. The schema is in docs/peer-protocol.md.
//!
//! Text mode prints received text with control characters escaped, so a
//! member cannot forge lines (`\n[bob] ...`) or send terminal escapes.

use std::io::Write;
use std::net::SocketAddr;

use serde_json::{Value, json};

/// One member as `/peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLine {
    /// Its name.
    pub name: String,
    /// Where it receives datagrams.
    pub addr: SocketAddr,
    /// `alive`, `suspect` or `down`.
    pub state: &'static str,
    /// This node itself.
    pub me: bool,
}

/// Something to tell the user.
#[derive(Debug)]
pub enum Event<'a> {
    /// A message from a member, or a plain datagram.
    Message {
        /// The sender's name (a plain datagram's: its address).
        from: &'a str,
        /// Where it came from.
        addr: SocketAddr,
        /// `Some(our name)` for a `/msg` to us.
        to: Option<&'a str>,
        /// The text, as received.
        text: &'a [u8],
        /// The mesh-wide message id (`SESSION-N`); `None` for plain.
        id: Option<String>,
    },
    /// A member came up (joined, or came back).
    Join {
        /// Its name.
        name: &'a str,
        /// Its address.
        addr: SocketAddr,
    },
    /// A member left or was declared down.
    Leave {
        /// Its name.
        name: &'a str,
        /// Its address.
        addr: SocketAddr,
    },
    /// The member list: the reply to `/peers` (and, in JSON mode, sent
    /// again whenever a member's state changes).
    State(&'a [PeerLine]),
    /// A command failed, or input was refused.
    Error(&'a str),
    /// Counters: the reply to `/stats`.
    Stats(&'a Value),
    /// The reply to `/help`.
    Help,
}

/// The command summary `/help` prints.
pub const HELP: &[&str] = &[
    "TEXT             send TEXT to every member",
    "/msg NAME TEXT   send TEXT to one member (NAME or its address)",
    "/peers           list the members: NAME ADDR alive|suspect|down",
    "/stats           datagram and delivery counters",
    "/quit            leave the mesh and exit (so does Ctrl-C)",
    "//TEXT           send TEXT starting with one /",
];

/// Buffers rendered events until [`Output::flush`].
#[derive(Debug)]
pub struct Output {
    json: bool,
    buf: Vec<u8>,
}

impl Output {
    /// Text output, or JSON lines when `json`.
    pub fn new(json: bool) -> Output {
        Output {
            json,
            buf: Vec::new(),
        }
    }

    /// Whether this is script mode.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Renders `event` as one or more lines.
    pub fn emit(&mut self, event: &Event<'_>) {
        if self.json {
            let value = to_json(event);
            serde_json::to_writer(&mut self.buf, &value).expect("writing to a Vec");
            self.buf.push(b'\n');
        } else {
            write_text(&mut self.buf, event);
        }
    }

    /// Writes what was rendered to stdout.
    ///
    /// # Errors
    /// Writing to stdout failed (a closed pipe is the caller's cue to stop).
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()?;
        self.buf.clear();
        Ok(())
    }
}

fn udp(addr: &SocketAddr) -> String {
    format!("udp://{addr}")
}

fn to_json(event: &Event<'_>) -> Value {
    match event {
        Event::Message {
            from,
            addr,
            to,
            text,
            id,
        } => json!({
            "type": "message",
            "from": from,
            "addr": udp(addr),
            "to": to,
            "text": String::from_utf8_lossy(text),
            "id": id,
            "plain": id.is_none(),
        }),
        Event::Join { name, addr } => json!({"type": "join", "name": name, "addr": udp(addr)}),
        Event::Leave { name, addr } => json!({"type": "leave", "name": name, "addr": udp(addr)}),
        Event::State(members) => json!({
            "type": "state",
            "members": members.iter().map(|m| json!({
                "name": m.name,
                "addr": udp(&m.addr),
                "state": m.state,
                "self": m.me,
            })).collect::<Vec<_>>(),
        }),
        Event::Error(e) => json!({"type": "error", "error": e}),
        Event::Stats(v) => {
            let mut v = (*v).clone();
            if let Value::Object(map) = &mut v {
                map.insert("type".into(), "stats".into());
            }
            v
        }
        Event::Help => json!({"type": "help", "commands": HELP}),
    }
}

fn write_text(out: &mut Vec<u8>, event: &Event<'_>) {
    let line = match event {
        Event::Message { from, to, text, .. } => match to {
            Some(to) => format!("[{from} -> {to}] {}", printable(text)),
            None => format!("[{from}] {}", printable(text)),
        },
        Event::Join { name, addr } => format!("* {name} joined ({})", udp(addr)),
        Event::Leave { name, addr } => format!("* {name} is down ({})", udp(addr)),
        Event::State(members) => members
            .iter()
            .map(|m| format!("{} {} {}", m.name, udp(&m.addr), m.state))
            .collect::<Vec<_>>()
            .join("\n"),
        Event::Error(e) => format!("* error: {e}"),
        Event::Stats(v) => {
            let mut parts = Vec::new();
            flatten("", v, &mut parts);
            format!("* stats: {}", parts.join(" "))
        }
        Event::Help => HELP
            .iter()
            .map(|l| format!("* {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if !line.is_empty() {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

/// `{"a": {"b": 1}}` as `a.b=1`.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push(format!("{prefix}={other}")),
    }
}

/// Received bytes made safe to print on one line: invalid UTF-8 becomes
/// U+FFFD, control characters (newlines, escapes) are shown escaped.
pub fn printable(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(event: &Event<'_>) -> String {
        let mut o = Output::new(false);
        o.emit(event);
        String::from_utf8(o.buf).unwrap()
    }

    fn json_of(event: &Event<'_>) -> Value {
        let mut o = Output::new(true);
        o.emit(event);
        let s = String::from_utf8(o.buf).unwrap();
        assert_eq!(s.matches('\n').count(), 1, "one line: {s:?}");
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn messages_in_both_modes() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let m = Event::Message {
            from: "alice",
            addr,
            to: None,
            text: b"hi\n[bob] fake\x1b[2J",
            id: Some("00ab-1".into()),
        };
        assert_eq!(text(&m), "[alice] hi\\n[bob] fake\\u{1b}[2J\n");
        let v = json_of(&m);
        assert_eq!(v["type"], "message");
        assert_eq!(v["text"], "hi\n[bob] fake\x1b[2J");
        assert_eq!(v["plain"], false);
        let d = Event::Message {
            from: "alice",
            addr,
            to: Some("bob"),
            text: b"psst",
            id: Some("x".into()),
        };
        assert_eq!(text(&d), "[alice -> bob] psst\n");
        assert_eq!(json_of(&d)["to"], "bob");
    }

    #[test]
    fn state_and_stats() {
        let members = [
            PeerLine {
                name: "a".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                state: "alive",
                me: true,
            },
            PeerLine {
                name: "b".into(),
                addr: "[::1]:2".parse().unwrap(),
                state: "suspect",
                me: false,
            },
        ];
        assert_eq!(
            text(&Event::State(&members)),
            "a udp://127.0.0.1:1 alive\nb udp://[::1]:2 suspect\n"
        );
        let v = json_of(&Event::State(&members));
        assert_eq!(v["members"][1]["state"], "suspect");
        let stats = json!({"datagrams_in": 3, "dropped": {"auth_failed": 2}});
        assert_eq!(
            text(&Event::Stats(&stats)),
            "* stats: datagrams_in=3 dropped.auth_failed=2\n"
        );
        assert_eq!(json_of(&Event::Stats(&stats))["type"], "stats");
        assert_eq!(json_of(&Event::Error("x"))["error"], "x");
    }
}
