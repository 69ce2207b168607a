//! A chat member for the integration tests: a socket (plain or TLS)
//! driven line by line, every read bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use crate::common::{Duplex, IO_TIMEOUT, QUIET, connect};

/// A socket a member talks over: a plain one, or TLS.
pub trait ChatSocket: Read + Write + Send {
    fn set_timeout(&self, limit: Duration);
}

impl ChatSocket for Box<dyn Duplex> {
    fn set_timeout(&self, limit: Duration) {
        self.read_timeout(limit);
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl ChatSocket for TlsStream {
    fn set_timeout(&self, limit: Duration) {
        self.sock.set_read_timeout(Some(limit)).unwrap();
    }
}

/// One chat member, driven line by line, every read bounded.
pub struct Member {
    pub io: BufReader<Box<dyn ChatSocket>>,
    pub name: String,
}

pub const WELCOME: &str = "* welcome, you are ";

impl Member {
    /// Connects to `addr` (as the server printed it) and reads the welcome.
    pub fn join(addr: &str) -> Member {
        Member::over(Box::new(connect(addr)))
    }

    pub fn over(socket: Box<dyn ChatSocket>) -> Member {
        let mut member = Member {
            io: BufReader::new(socket),
            name: String::new(),
        };
        let welcome = member.line();
        let rest = welcome
            .strip_prefix(WELCOME)
            .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"));
        let (name, room) = rest.split_once(" in ").unwrap();
        assert_eq!(room, "lobby (/help for commands)");
        member.name = name.to_owned();
        member
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).unwrap();
        self.io.get_mut().flush().unwrap();
    }

    /// The next line, with its line end as sent.
    pub fn raw_line(&mut self) -> String {
        let mut line = String::new();
        match self.io.read_line(&mut line) {
            Ok(0) => panic!("{}: EOF waiting for a line", self.name),
            Ok(_) => line,
            Err(e) => panic!("{}: no line in time ({e}); had {line:?}", self.name),
        }
    }

    /// The next line, without its line end.
    pub fn line(&mut self) -> String {
        self.raw_line().trim_end_matches(['\r', '\n']).to_owned()
    }

    /// The next line (without its line end) if one comes within `limit`.
    pub fn try_line(&mut self, limit: Duration) -> Option<String> {
        self.io.get_ref().set_timeout(limit);
        let mut line = String::new();
        let got = match self.io.read_line(&mut line) {
            Ok(0) => panic!("{}: EOF waiting for a line", self.name),
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(line.is_empty(), "{}: part of a line {line:?}", self.name);
                None
            }
            Err(e) => panic!("{}: {e}", self.name),
        };
        self.io.get_ref().set_timeout(IO_TIMEOUT);
        got
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "{} got the wrong line", self.name);
    }

    /// Asserts that nothing arrives for a while.
    pub fn quiet(&mut self) {
        self.io.get_ref().set_timeout(QUIET);
        let mut line = String::new();
        match self.io.read_line(&mut line) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("{}: expected silence, got {other:?} {line:?}", self.name),
        }
        assert!(
            line.is_empty(),
            "{}: got part of a line {line:?}",
            self.name
        );
        self.io.get_ref().set_timeout(IO_TIMEOUT);
    }

    /// Reads until the server closes; what came before.
    pub fn until_closed(&mut self) -> String {
        let mut rest = String::new();
        match self.io.read_to_string(&mut rest) {
            Ok(_) => rest,
            Err(e) => panic!("{}: not closed ({e}); had {rest:?}", self.name),
        }
    }
}
