//! What a node reads on stdin: lines of text to broadcast, and commands
//! (`/msg`, `/peers`, ...). The same in text and JSON mode.
//!
//! Stdin is read on a plain thread (`crate::stdin`: a blocking read
//! cannot be cancelled, and must not hold up the runtime's shutdown) into
//! a bounded [`LineBuffer`]; lines go to the node through a small bounded
//! channel, so a node that stops taking input (its send queues are full)
//! stops the reader, and the writer on the other end of the pipe waits.

use std::io::Read;

use tokio::sync::mpsc;

use crate::net::frame::{Frame, LineBuffer};

/// The longest line read from stdin: a message less its header (flags,
/// id, sender name) must fit the delivery layer's cap.
pub const MAX_TEXT: usize = super::delivery::MAX_MESSAGE - 64;

/// Lines waiting between the stdin thread and the node.
const INPUT_QUEUE: usize = 64;

/// What the stdin thread hands the node.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line, without its line end (invalid UTF-8 replaced).
    Line(String),
    /// A line longer than [`MAX_TEXT`] was dropped.
    TooLong,
    /// Stdin ended (the node keeps running: it is a server too).
    Eof,
}

/// A parsed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing to do (an empty line).
    Nothing,
    /// Broadcast this text.
    Say(&'a str),
    /// Send this text to one member.
    Msg {
        /// A member's name or address.
        to: &'a str,
        /// The text.
        text: &'a str,
    },
    /// List the members.
    Peers,
    /// Show the counters.
    Stats,
    /// Show the commands.
    Help,
    /// Leave and exit.
    Quit,
    /// A command used wrongly: the message says how to use it.
    Usage(&'static str),
    /// An unknown `/command`.
    Unknown(&'a str),
}

/// Parses one input line.
///
/// ```
/// use sockit::peer::command::{parse, Command};
/// assert_eq!(parse("hello"), Command::Say("hello"));
/// assert_eq!(parse("/msg bob hi there"), Command::Msg { to: "bob", text: "hi there" });
/// assert_eq!(parse("//etc"), Command::Say("/etc"));
/// ```
pub fn parse(line: &str) -> Command<'_> {
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Command::Say(&line[line.len() - escaped.len() - 1..]);
    }
    let Some(cmd) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    let (word, rest) = match cmd.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim_start()),
        None => (cmd, ""),
    };
    match word {
        "msg" | "m" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Command::Msg {
                to,
                text: text.trim_start(),
            },
            _ => Command::Usage("usage: /msg NAME TEXT"),
        },
        "peers" | "who" => Command::Peers,
        "stats" => Command::Stats,
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        _ => Command::Unknown(line.split_whitespace().next().unwrap_or(line)),
    }
}

/// Starts the thread that reads stdin into `Input`s.
///
/// # Errors
/// The thread cannot be started (the process is out of threads or memory).
pub fn spawn_stdin_reader() -> std::io::Result<mpsc::Receiver<Input>> {
    crate::stdin::spawn_reader(INPUT_QUEUE, read_lines)
}

/// Reads `input` to its end, sending each line; stops early when the node
/// is gone.
fn read_lines(mut input: impl Read, tx: &mpsc::Sender<Input>) {
    let mut lines = LineBuffer::new(MAX_TEXT);
    let send = |item: Input| tx.blocking_send(item).is_ok();
    loop {
        let n = match lines.read_from(|spare| crate::stdin::read_retrying(&mut input, spare)) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "stdin");
                0
            }
        };
        while let Some(frame) = lines.next_frame() {
            let item = match frame {
                Frame::Line(line, _) => Input::Line(String::from_utf8_lossy(line).into_owned()),
                Frame::TooLong => Input::TooLong,
            };
            if !send(item) {
                return;
            }
        }
        if n == 0 {
            if let Some(Frame::Line(line, _)) = lines.take_partial() {
                let _ = send(Input::Line(String::from_utf8_lossy(line).into_owned()));
            }
            let _ = send(Input::Eof);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(""), Command::Nothing);
        assert_eq!(parse("   "), Command::Nothing);
        assert_eq!(parse("hi /there"), Command::Say("hi /there"));
        assert_eq!(parse("/peers"), Command::Peers);
        assert_eq!(parse("/stats"), Command::Stats);
        assert_eq!(parse("/quit"), Command::Quit);
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(
            parse("/msg  bob   spaced  out "),
            Command::Msg {
                to: "bob",
                text: "spaced  out "
            }
        );
        assert_eq!(parse("/msg bob"), Command::Usage("usage: /msg NAME TEXT"));
        assert_eq!(parse("/msg"), Command::Usage("usage: /msg NAME TEXT"));
        assert_eq!(parse("/nope x"), Command::Unknown("/nope"));
        assert_eq!(parse("//"), Command::Say("/"));
    }

    #[test]
    fn lines_from_a_reader() {
        let (tx, mut rx) = mpsc::channel(100);
        let long = "x".repeat(MAX_TEXT + 10);
        let input = format!("one\r\ntwo\n{long}\nthree");
        std::thread::spawn(move || read_lines(input.as_bytes(), &tx));
        let mut got = Vec::new();
        while let Some(i) = rx.blocking_recv() {
            got.push(i);
        }
        assert_eq!(
            got,
            vec![
                Input::Line("one".into()),
                Input::Line("two".into()),
                Input::TooLong,
                Input::Line("three".into()),
                Input::Eof
            ]
        );
    }
}
