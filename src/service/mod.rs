//! The C/S services (SPEC 2): what a service *is* ([`ServiceKind`]: the
//! name the CLI and TOML use, its default port, its transports), the
//! service *built* for a server ([`Service`]: what serves its connections
//! and datagrams, able to carry state), and the per-connection context
//! ([`ConnContext`]) every connection is served with.

pub mod chargen;
pub mod clock;
pub mod daytime;
pub mod echo;
pub mod exec;
pub mod hello;
pub mod message;
pub mod ping;
pub mod timestamp;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatConfig, Hub};
use crate::http::{Site, SiteConfig};
use crate::metrics::ListenerMetrics;
use crate::net::frame::split_datagram;
use crate::net::stream::{PeerAddr, Stream};
use exec::ExecCommand;
use message::MessageKind;

/// How long a TLS connection that is done gets to exchange close_notify
/// before it is dropped anyway.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// Bound on one-shot exchanges (daytime, time, the too-many-connections
/// notice) when no idle timeout is set.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A service sockit can run, as the command line and the config file name
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
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
    /// HTTP/1.1 and HTTP/2: a hello page, or the files under `--root`.
    Http,
    /// A chat room for telnet and nc (SPEC 5).
    Chat,
    /// A command per connection, the connection as its stdin and stdout.
    Exec,
}

/// Which kinds of socket a service can be served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// TCP, Unix stream and TLS.
    pub stream: bool,
    /// UDP and unixgram.
    pub datagram: bool,
}

impl ServiceKind {
    /// Every service, in the order `--help` lists them.
    pub const ALL: [ServiceKind; 11] = [
        ServiceKind::Hello,
        ServiceKind::Echo,
        ServiceKind::Timestamp,
        ServiceKind::Daytime,
        ServiceKind::Time,
        ServiceKind::Discard,
        ServiceKind::Chargen,
        ServiceKind::Ping,
        ServiceKind::Http,
        ServiceKind::Chat,
        ServiceKind::Exec,
    ];

    /// The port the service listens on when no `-l` is given; `None` for
    /// `exec`, which must be told where (what it runs is the operator's).
    pub fn default_port(self) -> Option<u16> {
        Some(match self {
            ServiceKind::Exec => return None,
            other => other.classic_port(),
        })
    }

    fn classic_port(self) -> u16 {
        match self {
            ServiceKind::Hello => 8000,
            ServiceKind::Echo => 7007,
            ServiceKind::Discard => 9009,
            ServiceKind::Daytime => 1313,
            ServiceKind::Chargen => 1919,
            ServiceKind::Time => 3737,
            ServiceKind::Timestamp => 21567,
            ServiceKind::Ping => 8888,
            ServiceKind::Http => 8080,
            ServiceKind::Chat => 5000,
            ServiceKind::Exec => 0,
        }
    }

    /// The service's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Hello => "hello",
            ServiceKind::Echo => "echo",
            ServiceKind::Timestamp => "timestamp",
            ServiceKind::Daytime => "daytime",
            ServiceKind::Time => "time",
            ServiceKind::Discard => "discard",
            ServiceKind::Chargen => "chargen",
            ServiceKind::Ping => "ping",
            ServiceKind::Http => "http",
            ServiceKind::Chat => "chat",
            ServiceKind::Exec => "exec",
        }
    }

    /// One line on what the service does, for `--help`.
    pub fn summary(self) -> &'static str {
        match self {
            ServiceKind::Hello => "each message M gets `Hello, M`",
            ServiceKind::Echo => "RFC 862: every byte back, unchanged",
            ServiceKind::Timestamp => "each message M gets `[ctime date] M`",
            ServiceKind::Daytime => "RFC 867: the date as text, then close",
            ServiceKind::Time => "RFC 868: 4-byte seconds since 1900, then close",
            ServiceKind::Discard => "RFC 863: read and drop",
            ServiceKind::Chargen => "RFC 864: rotating character lines",
            ServiceKind::Ping => "each message gets `pong` (`ping N` gets `pong N`)",
            ServiceKind::Http => "HTTP/1.1 and HTTP/2: a hello page, or static files with --root",
            ServiceKind::Chat => "a chat room for telnet and nc: rooms, /nick, /msg, history",
            ServiceKind::Exec => "a command per connection, as inetd and ncat -e: -- CMD [ARG...]",
        }
    }

    /// The sockets the service can be served on. Every classic service
    /// answers both streams and datagrams; HTTP, chat and exec only
    /// streams.
    pub fn transports(self) -> Transports {
        Transports {
            stream: true,
            datagram: !matches!(
                self,
                ServiceKind::Http | ServiceKind::Chat | ServiceKind::Exec
            ),
        }
    }

    /// Builds the service for a server; `site` is used by HTTP only,
    /// `chat` by chat only, `command` by exec only.
    ///
    /// # Errors
    /// A site that cannot be set up (its root is not a directory), exec
    /// without a command.
    pub fn build(
        self,
        site: &SiteConfig,
        chat: &ChatConfig,
        command: Option<&ExecCommand>,
    ) -> Result<Service, String> {
        let classic = match self {
            ServiceKind::Http => return Ok(Service::Http(Arc::new(Site::new(site)?))),
            ServiceKind::Chat => return Ok(Service::Chat(Hub::start(chat.clone())?)),
            ServiceKind::Exec => {
                let command = command.ok_or("serve exec needs a command after --")?;
                return Ok(Service::Exec(Arc::new(command.clone())));
            }
            ServiceKind::Hello => Classic::Message(MessageKind::Hello),
            ServiceKind::Timestamp => Classic::Message(MessageKind::Timestamp),
            ServiceKind::Ping => Classic::Message(MessageKind::Ping),
            ServiceKind::Echo => Classic::Echo,
            ServiceKind::Discard => Classic::Discard,
            ServiceKind::Daytime => Classic::Daytime,
            ServiceKind::Time => Classic::Time,
            ServiceKind::Chargen => Classic::Chargen,
        };
        Ok(Service::Classic(classic))
    }
}

/// A service built for a server: what serves its connections and its
/// datagrams. Cloned into every listener of the service; services with
/// state (a chat hub, an HTTP site) share it behind an `Arc` here.
#[derive(Debug, Clone)]
pub enum Service {
    /// One of the small stateless services of SPEC 2.
    Classic(Classic),
    /// The HTTP server and its site.
    Http(Arc<Site>),
    /// The chat room: one hub for every listener of the service.
    Chat(Arc<Hub>),
    /// The chat's web listeners (`--web`): its page and WebSocket, onto
    /// the same hub.
    ChatWeb(Arc<Hub>),
    /// A child process per connection.
    Exec(Arc<ExecCommand>),
}

/// The small stateless services: each answers streams and datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classic {
    /// hello, timestamp, ping: one reply per message.
    Message(MessageKind),
    /// RFC 862.
    Echo,
    /// RFC 863.
    Discard,
    /// RFC 867.
    Daytime,
    /// RFC 868.
    Time,
    /// RFC 864.
    Chargen,
}

/// Per-service state kept by a datagram socket's loop between datagrams.
#[derive(Debug, Default)]
pub struct DatagramState {
    clock: clock::Clock,
    chargen_line: usize,
}

/// What every connection of a listener shares: its limits and the two
/// phases of shutdown. Built once per listener; each connection holds an
/// `Arc` of it.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// Longest line a message service accepts.
    pub max_line: usize,
    /// Close connections silent for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Hand a connection silent this long back to the parking lot
    /// (`--park-after`): the line services and echo do, on plain TCP and
    /// Unix streams; `None`: never (and on every TLS listener).
    pub park_after: Option<Duration>,
    /// How long a message with no line end waits before it is answered as a
    /// bare message.
    pub flush_delay: Duration,
    /// Cancelled when the shutdown signal arrives: the server accepts no
    /// more, and a service that can end a connection gracefully (an HTTP
    /// keep-alive, a chat session saying goodbye) starts to. Cancelled
    /// once, by the server.
    pub stop_accepting: CancellationToken,
    /// Cancelled when the grace period after a shutdown signal runs out:
    /// connections still open then are closed. Cancelled once, by the
    /// server.
    pub force_close: CancellationToken,
    /// The listener's counters: bytes, messages, errors (see
    /// docs/metrics.md).
    pub metrics: ListenerMetrics,
}

/// What one connection is served with: who it is from, and what its
/// listener shares.
#[derive(Debug, Clone)]
pub struct ConnContext {
    /// The peer, as logs and chat name it.
    pub peer: PeerAddr,
    /// The listener's limits and shutdown phases.
    pub listener: Arc<ListenerContext>,
}

impl std::ops::Deref for ConnContext {
    type Target = ListenerContext;

    /// The listener's settings read as the connection's own
    /// (`ctx.max_line`): every connection of a listener has the same.
    fn deref(&self) -> &ListenerContext {
        &self.listener
    }
}

impl Service {
    /// What the service is.
    pub fn kind(&self) -> ServiceKind {
        match self {
            Service::Classic(Classic::Message(MessageKind::Hello)) => ServiceKind::Hello,
            Service::Classic(Classic::Message(MessageKind::Timestamp)) => ServiceKind::Timestamp,
            Service::Classic(Classic::Message(MessageKind::Ping)) => ServiceKind::Ping,
            Service::Classic(Classic::Echo) => ServiceKind::Echo,
            Service::Classic(Classic::Discard) => ServiceKind::Discard,
            Service::Classic(Classic::Daytime) => ServiceKind::Daytime,
            Service::Classic(Classic::Time) => ServiceKind::Time,
            Service::Classic(Classic::Chargen) => ServiceKind::Chargen,
            Service::Http(_) => ServiceKind::Http,
            Service::Chat(_) | Service::ChatWeb(_) => ServiceKind::Chat,
            Service::Exec(_) => ServiceKind::Exec,
        }
    }

    /// The side of the service that serves its `--web` listeners: chat's
    /// page and WebSocket, onto the same hub; `None` for the others.
    pub fn web(&self) -> Option<Service> {
        match self {
            Service::Chat(hub) => Some(Service::ChatWeb(hub.clone())),
            _ => None,
        }
    }

    /// Whether a connection stays silent on our side until the client
    /// sends (so it may wait in the parking lot); daytime, time and
    /// chargen speak first, a chat member is welcomed and hears the room
    /// before it says a word, and an exec child may speak first too. Over
    /// TLS every client speaks first (its ClientHello), whatever the
    /// service.
    pub fn waits_for_client(&self) -> bool {
        !matches!(
            self,
            Service::Classic(Classic::Daytime | Classic::Time | Classic::Chargen)
                | Service::Chat(_)
                | Service::Exec(_)
        )
    }

    /// How long a new connection may stay silent before the service gives
    /// up on it (HTTP: the header timeout); `None`: only the idle timeout.
    pub fn first_words_due(&self) -> Option<Duration> {
        match self {
            Service::Classic(_) | Service::Chat(_) | Service::Exec(_) => None,
            Service::Http(site) => Some(site.header_timeout),
            Service::ChatWeb(_) => Some(crate::http::site::DEFAULT_HEADER_TIMEOUT),
        }
    }

    /// The ALPN protocols a TLS listener of this service offers, most
    /// preferred first (none for the line services).
    pub fn alpn(&self) -> &'static [&'static [u8]] {
        match self {
            Service::Classic(_) | Service::Chat(_) | Service::Exec(_) => &[],
            Service::Http(_) => &[b"h2", b"http/1.1"],
            // A WebSocket upgrade needs HTTP/1.1.
            Service::ChatWeb(_) => &[b"http/1.1"],
        }
    }

    /// What answers the service's datagrams; `None` for a stream-only
    /// service.
    pub fn datagram(&self) -> Option<Classic> {
        match self {
            Service::Classic(classic) => Some(*classic),
            Service::Http(_) | Service::Chat(_) | Service::ChatWeb(_) | Service::Exec(_) => None,
        }
    }

    /// Serves one stream connection (TCP, Unix, or TLS on top of TCP),
    /// and ends it: over TLS with close_notify (SPEC 3). A plain
    /// connection of a line service or echo that has gone quiet for
    /// `park_after` comes back as [`Ended::Quiet`], to be parked.
    ///
    /// # Errors
    /// I/O errors on the stream; they end only this connection.
    pub async fn serve_stream(&self, mut stream: Stream, ctx: &ConnContext) -> io::Result<Ended> {
        match self {
            Service::Classic(classic) => match classic.serve_stream(&mut stream, ctx).await {
                Ok(Served::Quiet(last_active)) => Ok(Ended::Quiet {
                    stream,
                    last_active,
                }),
                served => {
                    close_tls(&mut stream).await;
                    served.map(|_| Ended::Closed)
                }
            },
            Service::Chat(hub) => {
                let (mut stream, side) = crate::chat::session::prepare(hub, stream);
                let served = crate::chat::session::serve(hub, &mut stream, side, ctx).await;
                close_tls(&mut stream).await;
                served.map(|()| Ended::Closed)
            }
            // The three below are boxed: a connection's task is sized for
            // the largest of these futures, and hyper's (2-2.6 KB) would
            // otherwise be what every chat member and ping connection
            // holds too. One allocation per connection for them.
            // hyper shuts the stream down itself when the connection ends.
            Service::Http(site) => {
                let (stop, force) = (&ctx.stop_accepting, &ctx.force_close);
                let requests = ctx.metrics.http.clone();
                Box::pin(crate::http::conn::serve(
                    site.clone(),
                    stream,
                    ctx.peer,
                    requests,
                    stop,
                    force,
                ))
                .await
                .map(|()| Ended::Closed)
            }
            // hyper, or the WebSocket's close, ends the stream.
            Service::ChatWeb(hub) => Box::pin(crate::chat::web::serve(hub, stream, ctx))
                .await
                .map(|()| Ended::Closed),
            // The relay shuts the stream down when the child's output ends.
            Service::Exec(command) => Box::pin(exec::serve(command, stream, ctx))
                .await
                .map(|()| Ended::Closed),
        }
    }
}

/// How a connection's service ended with it.
#[derive(Debug)]
pub enum Ended {
    /// The connection is over: the client closed, it timed out, or the
    /// server is shutting down.
    Closed,
    /// The client has said nothing for `park_after`, and nothing is
    /// buffered either way: the stream is handed back to wait, taskless,
    /// for its next bytes.
    Quiet {
        /// The connection, still open.
        stream: Stream,
        /// When the client last sent something: the idle timeout counts
        /// from here.
        last_active: Instant,
    },
}

/// How a service's loop over a lent stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Done with the connection.
    Closed,
    /// Quiet since the instant given, with nothing buffered: the caller
    /// may park the stream.
    Quiet(Instant),
}

/// Sends close_notify on a TLS stream that is done, unless the client is
/// gone or stuck.
async fn close_tls(stream: &mut Stream) {
    if stream.is_tls() {
        let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, stream.close()).await;
    }
}

impl Classic {
    async fn serve_stream(self, stream: &mut Stream, ctx: &ConnContext) -> io::Result<Served> {
        let closed = |()| Served::Closed;
        match self {
            Classic::Message(kind) => message::serve(kind, stream, ctx).await,
            Classic::Echo => echo::serve(stream, ctx, true).await,
            Classic::Discard => echo::serve(stream, ctx, false).await,
            Classic::Chargen => chargen::serve(stream, ctx).await.map(closed),
            Classic::Daytime => daytime::serve(stream, ctx, daytime::daytime_reply)
                .await
                .map(closed),
            Classic::Time => daytime::serve(stream, ctx, daytime::time_reply)
                .await
                .map(closed),
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
        match self {
            Classic::Message(kind) => {
                let (msg, end) = split_datagram(request);
                if msg.len() > max_line {
                    message::too_long_reply(max_line, out);
                    return true;
                }
                kind.reply(msg, out, &mut state.clock);
                if let Some(end) = end {
                    out.extend_from_slice(end.bytes());
                }
            }
            Classic::Echo => out.extend_from_slice(request),
            Classic::Discard => return false,
            Classic::Daytime => {
                out.extend_from_slice(state.clock.ctime());
                out.extend_from_slice(b"\r\n");
            }
            Classic::Time => daytime::time_reply(out),
            Classic::Chargen => {
                chargen::lines(state.chargen_line, chargen::UDP_LINES, out);
                state.chargen_line = state.chargen_line.wrapping_add(1);
            }
        }
        true
    }
}

/// Closes a connection after a stretch of silence, cheaply: activity only
/// records an `Instant`; the timer is re-armed when it fires early, not on
/// every read. Made with [`IdleTimer::parking`], it also tells when the
/// connection has been quiet long enough to be parked.
#[derive(Debug)]
pub struct IdleTimer {
    timeout: Option<Duration>,
    park_after: Option<Duration>,
    /// The client's last activity.
    last: Instant,
    /// Where the quiet interval counts from: `last`, or later when a
    /// connection could not be parked when it was due.
    quiet_since: Instant,
    sleep: Pin<Box<Sleep>>,
}

/// What a stretch of silence has come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Quiet for the park interval: the connection may be parked.
    Quiet,
    /// Silent for the idle timeout: the connection is to be closed.
    Idle,
}

/// A deadline far enough away to stand for "never".
const FAR: Duration = Duration::from_secs(86_400 * 365);

impl IdleTimer {
    /// A timer for `timeout` of silence; `None` never fires.
    pub fn new(timeout: Option<Duration>) -> Self {
        Self::parking(timeout, None)
    }

    /// A timer for `timeout` of silence that also reports
    /// [`Silence::Quiet`] after `park_after` of it (when that comes
    /// first); `None`s never fire.
    pub fn parking(timeout: Option<Duration>, park_after: Option<Duration>) -> Self {
        let now = Instant::now();
        let park_after = park_after.filter(|p| timeout.is_none_or(|t| *p < t));
        let first = park_after.or(timeout).unwrap_or(FAR);
        IdleTimer {
            timeout,
            park_after,
            last: now,
            quiet_since: now,
            sleep: Box::pin(tokio::time::sleep_until(now + first)),
        }
    }

    /// Records activity.
    pub fn touch(&mut self) {
        if self.timeout.is_some() || self.park_after.is_some() {
            self.last = Instant::now();
            self.quiet_since = self.last;
        }
    }

    /// When the client was last active (when the timer was made, if it
    /// has not been since).
    pub fn last_active(&self) -> Instant {
        self.last
    }

    /// The connection could not be parked when it was due: report
    /// [`Silence::Quiet`] again only after another park interval.
    pub fn defer_park(&mut self) {
        self.quiet_since = Instant::now();
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

    /// Completes once the connection has been quiet for the park
    /// interval or silent for the idle timeout, whichever comes first.
    pub async fn silence(&mut self) -> Silence {
        let park = self.park_after.map(|p| self.quiet_since + p);
        let idle = self.timeout.map(|t| self.last + t);
        let Some(next) = park.into_iter().chain(idle).min() else {
            return std::future::pending().await;
        };
        // `expired` may have left the timer at the later idle deadline.
        if self.sleep.deadline() > next {
            self.sleep.as_mut().reset(next);
        }
        loop {
            self.sleep.as_mut().await;
            let now = Instant::now();
            if idle.is_some_and(|d| now >= d) {
                return Silence::Idle;
            }
            if park.is_some_and(|d| now >= d) {
                return Silence::Quiet;
            }
            self.sleep.as_mut().reset(next);
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

    fn reply(kind: ServiceKind, req: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut state = DatagramState::default();
        kind.build(&SiteConfig::default(), &ChatConfig::default(), None)
            .unwrap()
            .datagram()
            .unwrap()
            .reply_datagram(req, 64, &mut out, &mut state)
            .then_some(out)
    }

    #[test]
    fn datagram_line_ends_follow_the_request() {
        assert_eq!(
            reply(ServiceKind::Hello, b"World").unwrap(),
            b"Hello, World"
        );
        assert_eq!(
            reply(ServiceKind::Hello, b"World\n").unwrap(),
            b"Hello, World\n"
        );
        assert_eq!(
            reply(ServiceKind::Ping, b"ping 7\r\n").unwrap(),
            b"pong 7\r\n"
        );
    }

    #[test]
    fn datagram_replies_are_small() {
        assert_eq!(reply(ServiceKind::Discard, b"x"), None);
        assert_eq!(reply(ServiceKind::Time, b"").unwrap().len(), 4);
        assert!(reply(ServiceKind::Daytime, b"").unwrap().ends_with(b"\r\n"));
        assert!(reply(ServiceKind::Chargen, b"").unwrap().len() <= 512);
        assert_eq!(reply(ServiceKind::Echo, b"abc").unwrap(), b"abc");
        let long = reply(ServiceKind::Hello, &[b'x'; 100]).unwrap();
        assert_eq!(long, b"error: line too long (max 64 bytes)\n");
    }

    #[test]
    fn built_services_know_their_kind() {
        let cat = exec::ExecCommand::new(&["cat".into()]).unwrap();
        for kind in ServiceKind::ALL {
            let built = kind
                .build(&SiteConfig::default(), &ChatConfig::default(), Some(&cat))
                .unwrap();
            assert_eq!(built.kind(), kind);
            assert_eq!(built.datagram().is_some(), kind.transports().datagram);
        }
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

    #[tokio::test(start_paused = true)]
    async fn silence_says_quiet_first_then_idle() {
        let mut idle =
            IdleTimer::parking(Some(Duration::from_secs(10)), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(1)).await;
        idle.touch();
        let touched = idle.last_active();
        let start = Instant::now();
        assert_eq!(idle.silence().await, Silence::Quiet);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // The write path's timer leaves it at the idle deadline; silence
        // pulls it back to the park deadline.
        idle.defer_park();
        let deferred = Instant::now();
        assert_eq!(idle.silence().await, Silence::Quiet);
        assert_eq!(deferred.elapsed(), Duration::from_secs(2));
        assert_eq!(idle.last_active(), touched);
        // Parking deferred past the idle deadline: idle wins.
        tokio::time::advance(Duration::from_millis(4500)).await;
        idle.defer_park();
        assert_eq!(idle.silence().await, Silence::Idle);
        assert_eq!(Instant::now() - touched, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_park_interval_past_the_idle_timeout_never_parks() {
        let mut idle =
            IdleTimer::parking(Some(Duration::from_secs(3)), Some(Duration::from_secs(5)));
        let start = Instant::now();
        assert_eq!(idle.silence().await, Silence::Idle);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let mut never = IdleTimer::parking(None, None);
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.silence()).await;
        assert!(waited.is_err());
    }
}
