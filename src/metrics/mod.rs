//! What a server counts (SPEC 8, `--metrics ADDR`): one registry per
//! process, its metric families labelled by `service` and `listener` (the
//! listener's endpoint as its `listening on` line prints it), and the
//! per-listener handles the accept loops, datagram loops and services
//! count with.
//!
//! Every handle is made once, when a listener is set up
//! ([`Metrics::stream_listener`], [`Metrics::datagram_socket`]);
//! counting is then an atomic add on a handle the counting code already
//! holds, never a lookup. HTTP status codes are not all known in
//! advance: the common ones ([`HTTP_STATUSES`]) get their counters at
//! setup like the rest, and a rarer code looks its counter up in the
//! family (a read lock and a hash). Chat's figures live in the hub
//! and are read when someone asks ([`Metrics::refresh`]), so chat's own
//! paths do not change. The meaning of every family is in
//! docs/metrics.md; [`endpoint`] serves them over HTTP.

pub mod endpoint;
pub mod merge;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The series of one listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    service: Arc<str>,
    listener: Arc<str>,
}

/// A listener's series split by why (refusals, drops).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    service: Arc<str>,
    listener: Arc<str>,
    reason: &'static str,
}

/// A listener's errors, by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    service: Arc<str>,
    listener: Arc<str>,
    kind: &'static str,
}

/// A listener's TLS handshakes, by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    service: Arc<str>,
    listener: Arc<str>,
    result: &'static str,
}

/// The listener's labels plus one more, whose name the target type gives.
trait WithDetail<T> {
    fn with(&self, detail: &'static str) -> T;
}

macro_rules! with_detail {
    ($($labels:ident . $field:ident),*) => {$(
        impl WithDetail<$labels> for ListenerLabels {
            fn with(&self, detail: &'static str) -> $labels {
                $labels {
                    service: self.service.clone(),
                    listener: self.listener.clone(),
                    $field: detail,
                }
            }
        }
    )*};
}

with_detail!(ReasonLabels.reason, KindLabels.kind, ResultLabels.result);

/// A listener's HTTP responses, by status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    service: Arc<str>,
    listener: Arc<str>,
    status: u16,
}

/// The HTTP status codes whose counters every HTTP listener makes at
/// setup (at zero until counted): what a static site answers most. Any
/// other code gets its series with its first response.
pub const HTTP_STATUSES: [u16; 6] = [200, 206, 301, 304, 403, 404];

/// Every family, registered once in the process's registry.
#[derive(Default)]
struct Families {
    accepted: Family<ListenerLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    active: Family<ListenerLabels, Gauge>,
    parked: Family<ListenerLabels, Gauge>,
    bytes_received: Family<ListenerLabels, Counter>,
    bytes_sent: Family<ListenerLabels, Counter>,
    messages: Family<ListenerLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    tls_handshakes: Family<ResultLabels, Counter>,
    http_requests: Family<StatusLabels, Counter>,
    datagrams_received: Family<ListenerLabels, Counter>,
    datagrams_sent: Family<ListenerLabels, Counter>,
    datagrams_dropped: Family<ReasonLabels, Counter>,
    chat_members: Family<ListenerLabels, Gauge>,
    chat_rooms: Family<ListenerLabels, Gauge>,
    chat_dropped: Family<ListenerLabels, Counter>,
    chat_remote_members: Family<ListenerLabels, Gauge>,
    chat_redis_up: Family<ListenerLabels, Gauge>,
}

/// The process's metrics: the registry the endpoint encodes, and what
/// makes each listener's handles.
pub struct Metrics {
    registry: Registry,
    families: Families,
    /// Every listener's handles, in setup order, for the log lines.
    listeners: Mutex<Vec<(ListenerMetrics, Side)>>,
    /// Each chat hub with the handles its figures are copied into.
    hubs: Mutex<Vec<(Arc<dyn ChatSource>, ChatMetrics)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every family registered (names prefixed
    /// `sockit_`; counters get their `_total` when encoded).
    pub fn new() -> Metrics {
        let families = Families::default();
        let mut registry = Registry::with_prefix("sockit");
        let f = &families;
        registry.register(
            "connections_accepted",
            "Stream connections accepted, including those then refused",
            f.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Accepted connections closed at once: access rules, --max-conns, --max-conns-per-ip",
            f.refused.clone(),
        );
        registry.register(
            "connections_active",
            "Connections open now (parked or served)",
            f.active.clone(),
        );
        registry.register(
            "connections_parked",
            "Open connections waiting, taskless, for their next bytes (a part of the active ones)",
            f.parked.clone(),
        );
        registry.register(
            "bytes_received",
            "Bytes read from clients: stream payload (after TLS) and datagrams",
            f.bytes_received.clone(),
        );
        registry.register(
            "bytes_sent",
            "Bytes written to clients: stream payload (before TLS) and datagrams",
            f.bytes_sent.clone(),
        );
        registry.register(
            "messages",
            "Messages answered (hello, timestamp, ping lines; datagrams) and chat lines read",
            f.messages.clone(),
        );
        registry.register(
            "errors",
            "Connections that ended with an error, and failed datagram sends, by kind",
            f.errors.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes on tls:// listeners, by result",
            f.tls_handshakes.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP responses sent, by status code",
            f.http_requests.clone(),
        );
        registry.register(
            "datagrams_received",
            "Datagrams received",
            f.datagrams_received.clone(),
        );
        registry.register(
            "datagrams_sent",
            "Reply datagrams sent",
            f.datagrams_sent.clone(),
        );
        registry.register(
            "datagrams_dropped",
            "Datagrams dropped unanswered: classic source port, access rules, rate limit",
            f.datagrams_dropped.clone(),
        );
        registry.register(
            "chat_members",
            "Chat members connected (the whole service, under its first listener)",
            f.chat_members.clone(),
        );
        registry.register(
            "chat_rooms",
            "Chat rooms open, the lobby included",
            f.chat_rooms.clone(),
        );
        registry.register(
            "chat_dropped",
            "Chat members dropped for falling too far behind",
            f.chat_dropped.clone(),
        );
        registry.register(
            "chat_remote_members",
            "Members of the other chat servers on the same Redis (--redis)",
            f.chat_remote_members.clone(),
        );
        registry.register(
            "chat_redis_up",
            "1 while the chat's Redis answers, 0 while it is out of reach (--redis)",
            f.chat_redis_up.clone(),
        );
        Metrics {
            registry,
            families,
            listeners: Mutex::new(Vec::new()),
            hubs: Mutex::new(Vec::new()),
        }
    }

    /// Makes the handles of one stream listener of `service`, named
    /// `listener` (its endpoint, `tcp://127.0.0.1:8888`), with every
    /// series at zero so a scrape shows them before the first
    /// connection; `http` adds the status counters.
    pub fn stream_listener(
        &self,
        service: &str,
        listener: &str,
        http: bool,
    ) -> (ListenerMetrics, StreamMetrics) {
        let common = self.common(service, listener, http);
        let l = &common.name;
        let f = &self.families;
        let reason = |reason| f.refused.get_or_create_owned(&l.with(reason));
        let kind = |kind| f.errors.get_or_create_owned(&l.with(kind));
        let tls = |result| f.tls_handshakes.get_or_create_owned(&l.with(result));
        let stream = StreamMetrics {
            accepted: f.accepted.get_or_create_owned(l),
            refused_access: reason("access"),
            refused_limit: reason("limit"),
            refused_per_ip: reason("per_ip"),
            active: f.active.get_or_create_owned(l),
            parked: f.parked.get_or_create_owned(l),
            errors: ErrorCounters {
                timeout: kind("timeout"),
                reset: kind("reset"),
                protocol: kind("protocol"),
                io: kind("io"),
            },
            tls_ok: tls("ok"),
            tls_failed: tls("failed"),
        };
        self.lock_listeners()
            .push((common.clone(), Side::Stream(stream.clone())));
        (common, stream)
    }

    /// Makes the handles of one datagram socket, as
    /// [`stream_listener`](Self::stream_listener) does for streams.
    pub fn datagram_socket(
        &self,
        service: &str,
        listener: &str,
    ) -> (ListenerMetrics, DatagramMetrics) {
        let common = self.common(service, listener, false);
        let l = &common.name;
        let f = &self.families;
        let dropped = |reason| f.datagrams_dropped.get_or_create_owned(&l.with(reason));
        let datagram = DatagramMetrics {
            received: f.datagrams_received.get_or_create_owned(l),
            sent: f.datagrams_sent.get_or_create_owned(l),
            dropped_loop: dropped("loop"),
            dropped_access: dropped("access"),
            dropped_rate: dropped("rate"),
            send_errors: f.errors.get_or_create_owned(&l.with("send")),
        };
        self.lock_listeners()
            .push((common.clone(), Side::Datagram(datagram.clone())));
        (common, datagram)
    }

    fn common(&self, service: &str, listener: &str, http: bool) -> ListenerMetrics {
        let name = ListenerLabels {
            service: service.into(),
            listener: listener.into(),
        };
        let f = &self.families;
        ListenerMetrics {
            bytes: ByteMeter {
                received: f.bytes_received.get_or_create_owned(&name),
                sent: f.bytes_sent.get_or_create_owned(&name),
            },
            messages: f.messages.get_or_create_owned(&name),
            http: http.then(|| {
                HttpMetrics(Arc::new(StatusCounters {
                    common: HTTP_STATUSES.map(|status| {
                        f.http_requests
                            .get_or_create_owned(&name.with_status(status))
                    }),
                    family: f.http_requests.clone(),
                    name: name.clone(),
                }))
            }),
            name,
        }
    }

    /// Reports chat hub `hub` under the labels of `listener` (its
    /// service's first): members, rooms and drops are the hub's, shared
    /// by every listener of the service.
    pub fn chat(&self, hub: Arc<dyn ChatSource>, listener: &ListenerMetrics) {
        let f = &self.families;
        let handles = ChatMetrics {
            members: f.chat_members.get_or_create_owned(&listener.name),
            rooms: f.chat_rooms.get_or_create_owned(&listener.name),
            dropped: f.chat_dropped.get_or_create_owned(&listener.name),
            // Only a chat with --redis has these.
            remote: hub.figures().linked.map(|_| {
                (
                    f.chat_remote_members.get_or_create_owned(&listener.name),
                    f.chat_redis_up.get_or_create_owned(&listener.name),
                )
            }),
        };
        self.hubs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((hub, handles));
    }

    /// Copies the figures kept elsewhere (chat's) into their series; done
    /// before every encoding and log.
    pub fn refresh(&self) {
        let hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        for (hub, handles) in hubs.iter() {
            let figures = hub.figures();
            handles.members.set(clamp(figures.members));
            handles.rooms.set(clamp(figures.rooms));
            if let (Some((remote, up)), Some(linked)) = (&handles.remote, figures.linked) {
                remote.set(clamp(figures.remote));
                up.set(i64::from(linked));
            }
            let seen = handles.dropped.get();
            if figures.dropped > seen {
                handles.dropped.inc_by(figures.dropped - seen);
            }
        }
    }

    /// The OpenMetrics text exposition of every series, freshly refreshed.
    pub fn encode(&self) -> String {
        self.refresh();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Logs one INFO line per listener with its main figures (SIGUSR1,
    /// and once at shutdown), plus one per chat hub.
    pub fn log(&self, when: &str) {
        self.refresh();
        for (l, side) in self.lock_listeners().iter() {
            tracing::info!(
                service = %l.name.service,
                listener = %l.name.listener,
                "metrics ({when}): {}",
                l.summary(side)
            );
        }
        let hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        for (_, chat) in hubs.iter() {
            tracing::info!(
                "metrics ({when}): chat members={} rooms={} dropped={}",
                chat.members.get(),
                chat.rooms.get(),
                chat.dropped.get()
            );
        }
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<(ListenerMetrics, Side)>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The handles only one kind of socket has, kept for the log lines.
#[derive(Clone, Debug)]
enum Side {
    Stream(StreamMetrics),
    Datagram(DatagramMetrics),
}

/// What a chat hub reports: read at scrape time, so the hub keeps its
/// figures its own way (under its lock) and chat's paths do not change.
pub trait ChatSource: Send + Sync {
    /// The hub's figures now.
    fn figures(&self) -> ChatFigures;
}

/// A chat hub's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatFigures {
    /// Members connected.
    pub members: usize,
    /// Rooms open, the lobby included.
    pub rooms: usize,
    /// Members dropped for being too slow, since the start.
    pub dropped: u64,
    /// Members of the other servers (`--redis`).
    pub remote: usize,
    /// With `--redis`: whether Redis answers now; `None` without it.
    pub linked: Option<bool>,
}

/// One listener's handles: clones of the registered series, cheap to
/// clone again (each is an `Arc` around an atomic).
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    /// Payload bytes both ways.
    pub bytes: ByteMeter,
    /// Messages answered (see docs/metrics.md for what a message is).
    pub messages: Counter,
    /// HTTP responses by status, on an http service's listeners.
    pub http: Option<HttpMetrics>,
    name: ListenerLabels,
}

/// A stream listener's connection figures.
#[derive(Clone, Debug)]
pub struct StreamMetrics {
    /// Every connection accept returned.
    pub accepted: Counter,
    /// Closed at accept by `--allow`/`--deny`.
    pub refused_access: Counter,
    /// Turned away over `--max-conns`.
    pub refused_limit: Counter,
    /// Turned away over `--max-conns-per-ip`.
    pub refused_per_ip: Counter,
    /// Open now: raised when a connection gets its permit, lowered when
    /// it closes.
    pub active: Gauge,
    /// Of those, the ones waiting in the parking lot.
    pub parked: Gauge,
    /// Connections that ended with an error.
    pub errors: ErrorCounters,
    /// TLS handshakes finished.
    pub tls_ok: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_failed: Counter,
}

/// Connection errors by kind.
#[derive(Clone, Debug)]
pub struct ErrorCounters {
    /// Idle timeout, a client that stopped reading, a slow HTTP head.
    pub timeout: Counter,
    /// The peer reset or went away mid-write.
    pub reset: Counter,
    /// Bytes the protocol could not take (a malformed HTTP/2 frame).
    pub protocol: Counter,
    /// Any other I/O error.
    pub io: Counter,
}

impl ErrorCounters {
    /// Counts `e` under its kind.
    pub fn count(&self, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        match e.kind() {
            TimedOut => &self.timeout,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => &self.reset,
            InvalidData | InvalidInput => &self.protocol,
            _ => &self.io,
        }
        .inc();
    }
}

/// A datagram socket's figures.
#[derive(Clone, Debug)]
pub struct DatagramMetrics {
    /// Every datagram received.
    pub received: Counter,
    /// Every reply sent.
    pub sent: Counter,
    /// Dropped: from a classic service port (the loop guard).
    pub dropped_loop: Counter,
    /// Dropped: denied by access rules.
    pub dropped_access: Counter,
    /// Dropped: over the per-source rate limit.
    pub dropped_rate: Counter,
    /// Replies the kernel refused.
    pub send_errors: Counter,
}

/// A chat hub's figures.
#[derive(Clone, Debug)]
struct ChatMetrics {
    members: Gauge,
    rooms: Gauge,
    dropped: Counter,
    /// Remote members and whether Redis is up, with `--redis`.
    remote: Option<(Gauge, Gauge)>,
}

/// The bytes of a connection's conversation, counted where they pass
/// ([`Stream`](crate::net::stream::Stream)'s reads and writes).
#[derive(Clone, Debug, Default)]
pub struct ByteMeter {
    /// Bytes read from the peer.
    pub received: Counter,
    /// Bytes written to the peer.
    pub sent: Counter,
}

/// The HTTP status counters of one listener; one `Arc` to clone (each
/// request holds one while it is answered).
#[derive(Clone, Debug)]
pub struct HttpMetrics(Arc<StatusCounters>);

#[derive(Debug)]
struct StatusCounters {
    /// The counters of [`HTTP_STATUSES`], in that order.
    common: [Counter; HTTP_STATUSES.len()],
    /// Where the other codes' counters are looked up.
    family: Family<StatusLabels, Counter>,
    name: ListenerLabels,
}

impl HttpMetrics {
    /// Counts one response with `status`: one atomic add for a common
    /// code.
    pub fn count(&self, status: u16) {
        let counters = &*self.0;
        match HTTP_STATUSES.iter().position(|&s| s == status) {
            Some(i) => {
                counters.common[i].inc();
            }
            None => {
                counters
                    .family
                    .get_or_create(&counters.name.with_status(status))
                    .inc();
            }
        }
    }
}

impl ListenerLabels {
    fn with_status(&self, status: u16) -> StatusLabels {
        StatusLabels {
            service: self.service.clone(),
            listener: self.listener.clone(),
            status,
        }
    }
}

impl ListenerMetrics {
    /// The main figures on one line, for the log.
    fn summary(&self, side: &Side) -> String {
        let mut line = String::new();
        if let Side::Stream(s) = side {
            let _ = write!(
                line,
                "accepted={} active={} parked={} refused_limit={} refused_per_ip={} refused_access={} ",
                s.accepted.get(),
                s.active.get(),
                s.parked.get(),
                s.refused_limit.get(),
                s.refused_per_ip.get(),
                s.refused_access.get(),
            );
            let e = &s.errors;
            let errors = e.timeout.get() + e.reset.get() + e.protocol.get() + e.io.get();
            let _ = write!(line, "errors={errors} ");
            if s.tls_ok.get() + s.tls_failed.get() > 0 {
                let _ = write!(
                    line,
                    "tls_ok={} tls_failed={} ",
                    s.tls_ok.get(),
                    s.tls_failed.get()
                );
            }
        }
        if let Side::Datagram(d) = side {
            let dropped = d.dropped_loop.get() + d.dropped_access.get() + d.dropped_rate.get();
            let _ = write!(
                line,
                "datagrams_received={} datagrams_sent={} datagrams_dropped={dropped} ",
                d.received.get(),
                d.sent.get(),
            );
        }
        let _ = write!(
            line,
            "messages={} bytes_received={} bytes_sent={}",
            self.messages.get(),
            self.bytes.received.get(),
            self.bytes.sent.get()
        );
        line
    }
}
