//! An async chat member over plain TCP, as nc would be: lines in, lines
//! out, every read bounded; for the tests that drive a browser or a
//! WebSocket beside it.

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A TCP member, as nc: lines in, lines out.
pub struct Tcp {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    out: OwnedWriteHalf,
    /// Its name, from the welcome.
    pub name: String,
    /// How long a line may take.
    step: Duration,
}

impl Tcp {
    /// Connects to `addr` and reads the welcome; reads wait `step` at most.
    pub async fn join(addr: &str, step: Duration) -> Tcp {
        let (read, out) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut tcp = Tcp {
            lines: BufReader::new(read).lines(),
            out,
            name: String::new(),
            step,
        };
        let welcome = tcp.line().await;
        let rest = welcome
            .strip_prefix("* welcome, you are ")
            .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"));
        tcp.name = rest.split_once(" in ").unwrap().0.to_owned();
        tcp
    }

    pub async fn line(&mut self) -> String {
        tokio::time::timeout(self.step, self.lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line, not EOF")
    }

    pub async fn send(&mut self, line: &str) {
        self.out
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
}
