//! `sockit send ADDR MESSAGE...`: the tutorials' one-shot client. Each
//! message goes out as a line (bare with `--raw`; one datagram each over UDP
//! and unixgram), each reply is printed, and it exits once every reply came,
//! the server closed, or `--timeout` passed.
//!
//! Messages go one at a time: send one, print its reply, send the next, so a
//! bare message is never run together with the one after it. A reply is a
//! datagram, or a line on a stream. A stream reply to a `--raw` message may
//! also be bare: the bytes that came before the server paused for
//! [`REPLY_PAUSE`], the way a tutorial server answers a bare message.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use super::input::CHUNK;
use super::output::Output;
use super::socket::{self, ClientError, ClientSocket, Connector, Datagram, RECV_BUFFER};
use crate::cli::SendArgs;
use crate::net::addr::{DefaultScheme, Endpoint};
use crate::net::stream::Stream;
use crate::units::format_duration;

/// How long a server may pause inside a bare reply before the bytes so far
/// count as the whole reply (`--raw` over streams only): several times the
/// delay after which sockit's own servers answer a bare message.
pub const REPLY_PAUSE: Duration = Duration::from_millis(200);

/// Runs `sockit send`.
///
/// # Errors
/// A malformed address (exit status 2); a socket that cannot be opened; the
/// server closing before any reply; `--timeout` passing before every reply
/// came. Each is one line naming the address.
pub async fn run(args: &SendArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(&args.addr, DefaultScheme::Tcp)?;
    let addr = endpoint.to_string();
    let deadline = Instant::now() + args.timeout;
    let connection = Connector::new(&endpoint, args.timeout, &args.tls.options())?
        .open()
        .await?;
    let mut exchange = Exchange {
        addr: &addr,
        raw: args.raw,
        output: Output::new(false),
        replies: 0,
    };
    let finished = match connection {
        ClientSocket::Stream(stream) => {
            timeout_at(deadline, exchange.over_stream(stream, &args.messages)).await
        }
        ClientSocket::Datagram(socket) => {
            let exchanging = exchange.over_datagrams(&socket, &args.messages);
            timeout_at(deadline, socket::until_interrupted(exchanging)).await
        }
    };
    finished.unwrap_or_else(|_| {
        Err(anyhow!(
            "no reply from {addr}: timed out after {} ({} of {} replies)",
            format_duration(args.timeout),
            exchange.replies,
            args.messages.len()
        ))
    })
}

/// One run of messages and their replies.
struct Exchange<'a> {
    addr: &'a str,
    raw: bool,
    output: Output,
    /// Replies printed so far, for the timeout message.
    replies: usize,
}

/// How a stream reply ended.
enum ReplyEnd {
    /// With a line end.
    Line,
    /// With a pause in a bare reply (`--raw`).
    Pause,
    /// With the server closing; what came of the reply, if anything, has
    /// been printed.
    Closed,
}

impl Exchange<'_> {
    async fn over_stream(&mut self, mut stream: Stream, messages: &[String]) -> anyhow::Result<()> {
        let mut replies = Replies::new(self.raw.then_some(REPLY_PAUSE));
        let mut sending = true;
        for message in messages {
            if sending {
                let framed = frame(message, self.raw);
                if let Err(e) = stream.write_all(&framed).await {
                    // The server may have closed after having its say, as
                    // daytime does; what it said is still to be read.
                    tracing::debug!(addr = %self.addr, error = %e, "stopped sending");
                    sending = false;
                }
            }
            match replies
                .next(&mut stream, &mut self.output, self.addr)
                .await?
            {
                ReplyEnd::Line | ReplyEnd::Pause => self.replies += 1,
                ReplyEnd::Closed if replies.received > 0 => return Ok(()),
                ReplyEnd::Closed => bail!("connection closed by {} before any reply", self.addr),
            }
        }
        // Over TLS, say goodbye with close_notify rather than just vanish.
        if let Err(e) = stream.close().await {
            tracing::debug!(addr = %self.addr, error = %e, "could not close cleanly");
        }
        Ok(())
    }

    async fn over_datagrams(
        &mut self,
        socket: &Datagram,
        messages: &[String],
    ) -> anyhow::Result<()> {
        let mut buf = vec![0; RECV_BUFFER];
        for message in messages {
            socket
                .send(&frame(message, self.raw))
                .await
                .map_err(|cause| ClientError::io("send to", self.addr, cause))?;
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|cause| ClientError::io("no reply from", self.addr, cause))?;
            let reply = &buf[..n];
            self.print(reply).await?;
            if !reply.ends_with(b"\n") {
                self.print(b"\n").await?;
            }
            self.replies += 1;
        }
        Ok(())
    }

    async fn print(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.output.write(bytes).await.context("write to stdout")
    }
}

/// A message as it goes out: a line, or bare with `--raw`.
fn frame(message: &str, raw: bool) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 1);
    framed.extend_from_slice(message.as_bytes());
    if !raw {
        framed.push(b'\n');
    }
    framed
}

/// Reads stream replies and prints each as its bytes arrive, so a reply of
/// any length costs one buffer of memory.
struct Replies {
    buf: Vec<u8>,
    /// The bytes read but not yet printed: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Set for `--raw`: a pause this long ends a bare reply.
    pause: Option<Duration>,
    /// Bytes received in all, to tell a server that closed after saying
    /// something from one that closed on us.
    received: u64,
}

impl Replies {
    fn new(pause: Option<Duration>) -> Replies {
        Replies {
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            pause,
            received: 0,
        }
    }

    /// Prints the next reply.
    async fn next(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
        output: &mut Output<impl AsyncWrite + Unpin>,
        addr: &str,
    ) -> anyhow::Result<ReplyEnd> {
        let mut partial = false;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(i) = memchr::memchr(b'\n', pending) {
                output
                    .write(&pending[..=i])
                    .await
                    .context("write to stdout")?;
                self.start += i + 1;
                return Ok(ReplyEnd::Line);
            }
            if !pending.is_empty() {
                output.write(pending).await.context("write to stdout")?;
                self.start = self.end;
                partial = true;
            }
            let read = stream.read(&mut self.buf);
            let read = match self.pause.filter(|_| partial) {
                None => read.await,
                Some(pause) => match timeout(pause, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        // Like a datagram reply, a bare one gets a line end
                        // on the terminal.
                        output.write(b"\n").await.context("write to stdout")?;
                        return Ok(ReplyEnd::Pause);
                    }
                },
            };
            let n = match read {
                Ok(n) => n,
                // A server that closes with our message unread resets the
                // connection rather than closing it: a close all the same.
                Err(e) if is_disconnect(&e) => 0,
                Err(cause) => return Err(ClientError::io("read from", addr, cause).into()),
            };
            if n == 0 {
                return Ok(ReplyEnd::Closed);
            }
            (self.start, self.end) = (0, n);
            self.received += n as u64;
        }
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far apart the test server sends its chunks: well over the pause
    /// the tests give bare replies, so that every gap counts as a pause.
    const GAP: Duration = Duration::from_millis(100);
    const PAUSE: Duration = Duration::from_millis(10);

    /// Feeds `chunks` to [`Replies`] over an in-memory pipe, [`GAP`] apart,
    /// reads `count` replies, and returns what was printed and how each
    /// reply ended.
    async fn read_replies(
        pause: Option<Duration>,
        chunks: &[&[u8]],
        count: usize,
    ) -> (String, Vec<&'static str>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            for chunk in chunks {
                server.write_all(&chunk).await.unwrap();
                tokio::time::sleep(GAP).await;
            }
        });
        let mut replies = Replies::new(pause);
        let mut output = Output::to(Vec::new(), false);
        let mut ends = Vec::new();
        for _ in 0..count {
            let end = replies
                .next(&mut client, &mut output, "test")
                .await
                .unwrap();
            ends.push(match end {
                ReplyEnd::Line => "line",
                ReplyEnd::Pause => "pause",
                ReplyEnd::Closed => "closed",
            });
        }
        let printed = String::from_utf8(output.written().clone()).unwrap();
        (printed, ends)
    }

    #[tokio::test]
    async fn lines_end_replies_and_the_rest_is_printed_at_close() {
        let (printed, ends) = read_replies(None, &[b"a\nb", b"\n", b"tail"], 3).await;
        assert_eq!(printed, "a\nb\ntail");
        assert_eq!(ends, ["line", "line", "closed"]);
    }

    #[tokio::test]
    async fn with_raw_a_pause_ends_a_bare_reply() {
        let (printed, ends) = read_replies(Some(PAUSE), &[b"bare", b"two\n"], 3).await;
        assert_eq!(printed, "bare\ntwo\n");
        assert_eq!(ends, ["pause", "line", "closed"]);
    }

    #[tokio::test]
    async fn without_raw_a_pause_does_not_end_a_line() {
        let (printed, ends) = read_replies(None, &[b"slo", b"w\n"], 1).await;
        assert_eq!(printed, "slow\n");
        assert_eq!(ends, ["line"]);
    }

    #[test]
    fn frames_lines_or_bare_messages() {
        assert_eq!(frame("hi", false), b"hi\n");
        assert_eq!(frame("hi", true), b"hi");
    }
}
