//! The C/S services (SPEC 2): the [`Service`] enum, what each one does with
//! a stream connection ([`Service::serve_stream`]) and with a datagram
//! ([`Service::reply_datagram`]), and the per-connection context they share.

pub mod chargen;
pub mod clock;
pub mod daytime;
pub mod echo;
pub mod hello;
pub mod message;
pub mod ping;
pub mod timestamp;

use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::net::frame::split_datagram;
use message::MessageKind;

/// Bound on one-shot exchanges (daytime, time, the too-many-connections
/// notice) when no idle timeout is set.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A service sockit can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Each message M gets `Hello, M`.
    Hello,
    /// RFC 862: every byte back, unchanged.
    Echo,
    /// Each message M gets `[ctime date] M`.
    Timestamp,
    /// RFC 867: the date as text, then close.
    Daytime,
    /// RFC 868: 4-byte seconds since 1900, then close.
    Time,
    /// RFC 863: read and drop.
    Discard,
    /// RFC 864: rotating character lines.
    Chargen,
    /// Each message gets `pong` (`ping N` gets `pong N`).
    Ping,
}

/// Per-service state kept by a datagram socket's loop between datagrams.
#[derive(Debug, Default)]
pub struct DatagramState {
    clock: clock::Clock,
    chargen_line: usize,
}

/// What every connection of a service is given: its limits, and the
/// signal that the shutdown grace period is over.
#[derive(Debug, Clone)]
pub struct ConnContext {
    /// Longest line a message service accepts.
    pub max_line: usize,
    /// Close connections silent for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// How long a message with no line end waits before it is answered as a
    /// bare message.
    pub flush_delay: Duration,
    /// Cancelled when the grace period after a shutdown signal runs out:
    /// connections still open then are closed. Cloned into every
    /// connection; cancelled once, by the server.
    pub force_close: CancellationToken,
}

impl Service {
    /// The port the service listens on when no `-l` is given.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Hello => 8000,
            Service::Echo => 7007,
            Service::Discard => 9009,
            Service::Daytime => 1313,
            Service::Chargen => 1919,
            Service::Time => 3737,
            Service::Timestamp => 21567,
            Service::Ping => 8888,
        }
    }

    /// The service's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Hello => "hello",
            Service::Echo => "echo",
            Service::Timestamp => "timestamp",
            Service::Daytime => "daytime",
            Service::Time => "time",
            Service::Discard => "discard",
            Service::Chargen => "chargen",
            Service::Ping => "ping",
        }
    }

    /// Whether a connection stays silent on our side until the client
    /// sends (so it may wait in the parking lot); daytime, time and
    /// chargen speak first.
    pub fn waits_for_client(self) -> bool {
        !matches!(self, Service::Daytime | Service::Time | Service::Chargen)
    }

    fn message_kind(self) -> Option<MessageKind> {
        match self {
            Service::Hello => Some(MessageKind::Hello),
            Service::Timestamp => Some(MessageKind::Timestamp),
            Service::Ping => Some(MessageKind::Ping),
            _ => None,
        }
    }

    /// Serves one stream connection (TCP, Unix, or TLS on top of TCP).
    ///
    /// # Errors
    /// I/O errors on the stream; they end only this connection.
    pub async fn serve_stream<S: ServiceStream>(
        self,
        stream: S,
        ctx: &ConnContext,
    ) -> io::Result<()> {
        if let Some(kind) = self.message_kind() {
            return message::serve(kind, stream, ctx).await;
        }
        match self {
            Service::Echo => echo::serve(stream, ctx, true).await,
            Service::Discard => echo::serve(stream, ctx, false).await,
            Service::Chargen => chargen::serve(stream, ctx).await,
            Service::Daytime => daytime::serve(stream, ctx, daytime::daytime_reply).await,
            Service::Time => daytime::serve(stream, ctx, daytime::time_reply).await,
            Service::Hello | Service::Timestamp | Service::Ping => unreachable!("message services"),
        }
    }

    /// Puts the reply to one datagram in `out` (cleared first); `false`
    /// when there is no reply. Replies never exceed 512 bytes unless they
    /// echo the request: no datagram is amplified beyond that.
    pub fn reply_datagram(
        self,
        request: &[u8],
        max_line: usize,
        out: &mut Vec<u8>,
        state: &mut DatagramState,
    ) -> bool {
        out.clear();
        if let Some(kind) = self.message_kind() {
            let (msg, end) = split_datagram(request);
            if msg.len() > max_line {
                message::too_long_reply(max_line, out);
                return true;
            }
            kind.reply(msg, out, &mut state.clock);
            if let Some(end) = end {
                out.extend_from_slice(end.bytes());
            }
            return true;
        }
        match self {
            Service::Echo => out.extend_from_slice(request),
            Service::Discard => return false,
            Service::Daytime => {
                out.extend_from_slice(state.clock.ctime());
                out.extend_from_slice(b"\r\n");
            }
            Service::Time => daytime::time_reply(out),
            Service::Chargen => {
                chargen::lines(state.chargen_line, chargen::UDP_LINES, out);
                state.chargen_line = state.chargen_line.wrapping_add(1);
            }
            Service::Hello | Service::Timestamp | Service::Ping => unreachable!("message services"),
        }
        true
    }
}

/// A stream the services can serve: tokio's I/O traits, plus a way to
/// wait for the peer's next bytes without lending a heap buffer while
/// waiting. That is what keeps an idle connection small: its own buffer is
/// allocated only once the peer has sent something.
pub trait ServiceStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Waits for data, reads at most `limit` bytes (and at most 4 KiB) into
    /// a short-lived stack buffer and hands them to `take`; returns the
    /// bytes read, 0 at EOF.
    fn read_unbuffered<F>(
        &mut self,
        limit: usize,
        take: F,
    ) -> impl Future<Output = io::Result<usize>> + Send
    where
        F: FnOnce(&[u8]) + Send;
}

/// Size of the stack buffer behind [`ServiceStream::read_unbuffered`].
const UNBUFFERED_READ: usize = 4096;

macro_rules! impl_service_stream {
    ($stream:ty) => {
        impl ServiceStream for $stream {
            async fn read_unbuffered<F>(&mut self, limit: usize, take: F) -> io::Result<usize>
            where
                F: FnOnce(&[u8]) + Send,
            {
                loop {
                    // Readiness can be a false positive (tokio reports a
                    // fresh socket as readable): `try_read` settles it.
                    self.readable().await?;
                    let mut stack = [0u8; UNBUFFERED_READ];
                    let limit = limit.clamp(1, UNBUFFERED_READ);
                    match self.try_read(&mut stack[..limit]) {
                        Ok(n) => {
                            take(&stack[..n]);
                            return Ok(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    };
}

impl_service_stream!(tokio::net::TcpStream);
impl_service_stream!(tokio::net::UnixStream);

/// Closes a connection after a stretch of silence, cheaply: activity only
/// records an `Instant`; the timer is re-armed when it fires early, not on
/// every read.
#[derive(Debug)]
pub struct IdleTimer {
    timeout: Option<Duration>,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    /// A timer for `timeout` of silence; `None` never fires.
    pub fn new(timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        let first = timeout.unwrap_or(Duration::from_secs(86_400 * 365));
        IdleTimer {
            timeout,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + first)),
        }
    }

    /// Records activity.
    pub fn touch(&mut self) {
        if self.timeout.is_some() {
            self.last = Instant::now();
        }
    }

    /// Completes once the connection has been silent for the timeout.
    pub async fn expired(&mut self) {
        let Some(timeout) = self.timeout else {
            return std::future::pending().await;
        };
        loop {
            self.sleep.as_mut().await;
            let deadline = self.last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// Writes and clears `out`, giving up (quietly) if the grace period ends or
/// the client stops reading for the idle timeout.
///
/// # Errors
/// I/O errors on the stream, or `TimedOut` for a client that stopped reading.
pub async fn write_bounded<S>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ConnContext,
    idle: &mut IdleTimer,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if out.is_empty() {
        return Ok(());
    }
    let result = tokio::select! {
        biased;
        r = stream.write_all(out) => r,
        _ = ctx.force_close.cancelled() => Ok(()),
        _ = idle.expired() => Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")),
    };
    // No `idle.touch()` here: the read that produced these replies just
    // did, and a clock read per write is measurable on the hot path.
    out.clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(service: Service, req: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut state = DatagramState::default();
        service
            .reply_datagram(req, 64, &mut out, &mut state)
            .then_some(out)
    }

    #[test]
    fn datagram_line_ends_follow_the_request() {
        assert_eq!(reply(Service::Hello, b"World").unwrap(), b"Hello, World");
        assert_eq!(
            reply(Service::Hello, b"World\n").unwrap(),
            b"Hello, World\n"
        );
        assert_eq!(reply(Service::Ping, b"ping 7\r\n").unwrap(), b"pong 7\r\n");
    }

    #[test]
    fn datagram_replies_are_small() {
        assert_eq!(reply(Service::Discard, b"x"), None);
        assert_eq!(reply(Service::Time, b"").unwrap().len(), 4);
        assert!(reply(Service::Daytime, b"").unwrap().ends_with(b"\r\n"));
        assert!(reply(Service::Chargen, b"").unwrap().len() <= 512);
        assert_eq!(reply(Service::Echo, b"abc").unwrap(), b"abc");
        let long = reply(Service::Hello, &[b'x'; 100]).unwrap();
        assert_eq!(long, b"error: line too long (max 64 bytes)\n");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timer_rearms_after_activity() {
        let mut idle = IdleTimer::new(Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(6)).await;
        idle.touch();
        let start = Instant::now();
        idle.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
