//! `serve chat --redis URL`: the link that joins this server to the
//! others sharing the Redis, so that they are one chat (SPEC 5).
//!
//! What lives in Redis, under the `--redis-prefix` (default `sockit:`):
//!
//! - `events`: one stream (`XADD ... MAXLEN ~ 10000`) of every
//!   [`Event`]: lines, notices, private lines and presence changes. Each
//!   server reads it with `XREAD BLOCK` from the last id it saw, so after
//!   an outage it resumes where it stopped instead of losing what was
//!   said (plain PUB/SUB would).
//! - `history:ROOM`: a stream per room of the lines said there, capped at
//!   `--history` (`MAXLEN ~`): what a member joining the room is replayed,
//!   on any server.
//! - `servers` (a set), `server:ID` (a key with a TTL) and `members:ID`
//!   (a hash `name key -> ROOM<TAB>NAME`, with the same TTL): who is on
//!   which live server. Each server refreshes its keys every
//!   [`HEARTBEAT`]; a server that dies stops refreshing, its keys expire
//!   after [`PRESENCE_TTL`], and the others see its members go at their
//!   next scan.
//! - `nick:KEY`: who holds a name, `SERVER:MEMBER`, taken with a
//!   check-and-set script and refreshed with the presence: what makes a
//!   name unique across servers. A dead server's names expire with it.
//!
//! Nothing here is a round trip to another server: a server asks Redis
//! (a name, a room's history) and reads the stream; the others never
//! answer it. A member only waits on Redis to take a name or to join a
//! room, and then for [`ROUND_TRIP`] at most.
//!
//! While Redis cannot be reached the chat goes on locally: lines reach
//! this server's members only (they are not queued for later, which
//! would flood everyone when it comes back), members are told, names
//! cannot change, and a room's history is this server's. The connection
//! manager reconnects; the next successful heartbeat writes this
//! server's presence again, catches up on the lines said meanwhile (the
//! last 200), and the members are told the other servers are
//! back.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamId, StreamMaxlen, StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Client, RedisResult, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::cluster::{Event, Roster, parse_presence, presence_value};
use super::command::name_key;
use super::hub::{Hub, Line, MemberId};

/// Default `--redis-prefix`.
pub const DEFAULT_PREFIX: &str = "sockit:";

/// How long a server's presence and names outlive its last heartbeat: a
/// dead server's members leave the others' `/who` within this plus a
/// [`HEARTBEAT`] plus one read (SPEC 5: 15 s).
pub const PRESENCE_TTL: Duration = Duration::from_secs(8);
/// How often a server refreshes its presence and looks at the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a read of the event stream blocks in Redis when nothing
/// comes: also the longest a heartbeat can be late.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// How long a member waits on Redis to take a name or join a room before
/// the server goes on without it.
pub const ROUND_TRIP: Duration = Duration::from_secs(1);
/// How long a starting server waits for its Redis before it listens
/// anyway.
pub const STARTUP_WAIT: Duration = Duration::from_secs(2);
/// How long between tries while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(500);
/// Entries kept in the event stream: how far back a server can resume.
const EVENTS_MAXLEN: usize = 10_000;
/// The most events replayed after an outage: the newest, so members are
/// not flooded (and dropped as too slow) by a backlog.
const RESUME_MAX: usize = 200;
/// Events read at once.
const READ_COUNT: usize = 1000;
/// Events this server may have waiting to be written before new ones are
/// dropped (Redis slower than the chat).
const PUBLISH_QUEUE: usize = 10_000;
/// Events written to Redis in one round trip.
const WRITE_BATCH: usize = 256;

/// Takes `KEYS[1]` for `ARGV[1]` (`SERVER:MEMBER`) with a TTL of
/// `ARGV[3]` seconds, if it is free or already this server's (`ARGV[2]`
/// is `SERVER:`): this server's own names are kept unique by its hub.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] or string.sub(v, 1, string.len(ARGV[2])) == ARGV[2] then \
      redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3]) return 1 end \
    return 0";
/// Frees `KEYS[1]` if `ARGV[1]` still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
      return redis.call('DEL', KEYS[1]) end return 0";

/// The field of a history entry that holds its line.
const HISTORY_LINE: &str = "l";

/// `--redis` and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[USER:PASS@]HOST:PORT[/DB]` or `rediss://` (TLS).
    pub url: String,
    /// What every key starts with.
    pub prefix: String,
    /// A PEM file of the CA that signed a `rediss://` server's
    /// certificate, instead of the system roots.
    pub ca: Option<PathBuf>,
}

impl RedisConfig {
    /// The client for this configuration; checks the URL (and reads the
    /// CA) without connecting.
    ///
    /// # Errors
    /// A malformed URL or an unreadable CA file, as a one-line reason.
    pub fn client(&self) -> Result<Client, String> {
        let shown = redacted(&self.url);
        let client = match &self.ca {
            None => Client::open(self.url.as_str()),
            Some(ca) => {
                let root_cert =
                    std::fs::read(ca).map_err(|e| format!("--redis-ca {}: {e}", ca.display()))?;
                Client::build_with_tls(
                    self.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
        };
        client.map_err(|e| format!("--redis {shown}: {e}"))
    }
}

/// The URL as logged: without its password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// The names of the keys, under the prefix.
#[derive(Debug)]
struct Keys {
    prefix: String,
    events: String,
    servers: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            events: format!("{prefix}events"),
            servers: format!("{prefix}servers"),
        }
    }

    fn history(&self, room: &str) -> String {
        format!("{}history:{room}", self.prefix)
    }

    fn server(&self, server: &str) -> String {
        format!("{}server:{server}", self.prefix)
    }

    fn members(&self, server: &str) -> String {
        format!("{}members:{server}", self.prefix)
    }

    fn nick(&self, key: &str) -> String {
        format!("{}nick:{key}", self.prefix)
    }
}

/// What asking Redis for a name came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this member's.
    Granted,
    /// A member of another server has it.
    Taken,
    /// Redis did not answer (in time).
    Unreachable,
}

/// The hub's side of the link: what it publishes to, and asks.
#[derive(Debug)]
pub struct Link {
    /// This server's id in Redis: random, new at every start.
    server: String,
    keys: Keys,
    /// `--history`: how much of a room's stream to keep and replay.
    history: usize,
    /// Set once the first connection is made.
    conn: OnceLock<ConnectionManager>,
    /// Whether Redis answered the last heartbeat.
    up: AtomicBool,
    publish: mpsc::Sender<(MemberId, Event)>,
    /// Cancelled the first time the link is up.
    connected: CancellationToken,
}

/// The receiving end of [`Link::publish`], for the writer task.
pub struct Outbox(mpsc::Receiver<(MemberId, Event)>);

impl Link {
    /// A link that is not connected yet: [`run`](Link::run) connects it.
    pub fn new(config: &RedisConfig, history: usize) -> (Arc<Link>, Outbox) {
        let (publish, outbox) = mpsc::channel(PUBLISH_QUEUE);
        let server = format!("{:016x}", rand::random::<u64>());
        let link = Link {
            server,
            keys: Keys::new(&config.prefix),
            history,
            conn: OnceLock::new(),
            up: AtomicBool::new(false),
            publish,
            connected: CancellationToken::new(),
        };
        (Arc::new(link), Outbox(outbox))
    }

    /// Whether the other servers can be reached now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Ready when the link was first up.
    pub async fn connected(&self) {
        self.connected.cancelled().await;
    }

    /// What a member's claim on a name is stored as.
    fn owner(&self, id: MemberId) -> String {
        format!("{}:{id}", self.server)
    }

    /// Hands an event to the writer; dropped while Redis is unreachable
    /// (SPEC 5: lines meanwhile reach only local members) or when the
    /// writer is that far behind.
    pub fn publish(&self, id: MemberId, event: Event) {
        if self.is_up() && self.publish.try_send((id, event)).is_err() {
            tracing::debug!("redis writer behind: event dropped");
        }
    }

    /// Takes the name with [`name_key`] `key` for member `id`, across
    /// every server.
    pub async fn claim(&self, key: &str, id: MemberId) -> Claim {
        let Some(conn) = self.conn.get().filter(|_| self.is_up()) else {
            return Claim::Unreachable;
        };
        let mut conn = conn.clone();
        let cmd = self.claim_cmd(key, id);
        let claim = cmd.query_async::<i64>(&mut conn);
        match timeout(ROUND_TRIP, claim).await {
            Ok(Ok(1)) => Claim::Granted,
            Ok(Ok(_)) => Claim::Taken,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis: claim failed");
                Claim::Unreachable
            }
            Err(_) => Claim::Unreachable,
        }
    }

    fn claim_cmd(&self, key: &str, id: MemberId) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM)
            .arg(1)
            .arg(self.keys.nick(key))
            .arg(self.owner(id))
            .arg(format!("{}:", self.server))
            .arg(PRESENCE_TTL.as_secs());
        cmd
    }

    /// The last `--history` lines said in `room`, oldest first, from
    /// Redis; `None` when it did not answer in time.
    pub async fn history(&self, room: &str) -> Option<Vec<Line>> {
        if self.history == 0 {
            return Some(Vec::new());
        }
        let mut conn = self.conn.get().filter(|_| self.is_up())?.clone();
        let key = self.keys.history(room);
        let read =
            conn.xrevrange_count::<_, _, _, _, StreamRangeReply>(key, "+", "-", self.history);
        let reply = match timeout(ROUND_TRIP, read).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis: history read failed");
                return None;
            }
            Err(_) => return None,
        };
        let mut lines: Vec<Line> = reply
            .ids
            .iter()
            .filter_map(|entry| text(entry, HISTORY_LINE).map(Line::from))
            .collect();
        lines.reverse();
        Some(lines)
    }

    /// Connects, then keeps this server's presence in Redis and brings in
    /// the others' events, for as long as the server runs; with
    /// [`write`](Link::write) beside it.
    pub async fn run(self: Arc<Self>, client: Client, hub: Arc<Hub>) {
        let (conn, mut reader, told_down) = self.connect(&client).await;
        let _ = self.conn.set(conn.clone());
        let mut follower = Follower {
            link: &self,
            hub: &hub,
            conn,
            last: None,
            told_down,
            clashes: HashSet::new(),
            settled: Instant::now(),
        };
        let mut next_beat = Instant::now();
        loop {
            if !self.is_up() {
                match follower.resync(&mut reader).await {
                    Ok(()) => {
                        self.up.store(true, Ordering::Relaxed);
                        self.connected.cancel();
                        tracing::info!("redis: in touch with the other servers");
                        if std::mem::take(&mut follower.told_down) {
                            hub.reach(true);
                        }
                        next_beat = Instant::now() + HEARTBEAT;
                    }
                    Err(e) => {
                        follower.down(&e);
                        sleep(RETRY).await;
                    }
                }
                continue;
            }
            let step = if Instant::now() >= next_beat {
                next_beat = Instant::now() + HEARTBEAT;
                follower.beat().await
            } else {
                follower.read(&mut reader).await
            };
            if let Err(e) = step {
                follower.down(&e);
            }
        }
    }

    /// The two connections: one for commands, one for the blocking reads
    /// (a blocked `XREAD` holds up whatever else is sent on its
    /// connection). Tries until Redis answers; and whether the members
    /// were told it did not.
    async fn connect(&self, client: &Client) -> (ConnectionManager, ConnectionManager, bool) {
        let config = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(ROUND_TRIP))
                .set_response_timeout(Some(response))
                .set_number_of_retries(1)
                .set_max_delay(RETRY)
        };
        let mut warned = false;
        loop {
            let both = async {
                let conn =
                    ConnectionManager::new_with_config(client.clone(), config(2 * ROUND_TRIP));
                let reader = ConnectionManager::new_with_config(
                    client.clone(),
                    config(READ_BLOCK + 2 * ROUND_TRIP),
                );
                Ok::<_, redis::RedisError>((conn.await?, reader.await?))
            };
            match both.await {
                Ok((conn, reader)) => return (conn, reader, warned),
                Err(e) => {
                    if !warned {
                        // Members are told as they join (they all join
                        // while the link is down).
                        warned = true;
                        tracing::warn!(error = %e, "redis unreachable: serving this server's members only until it answers");
                    }
                    sleep(RETRY).await;
                }
            }
        }
    }

    /// Writes what the hub publishes, in order, a batch per round trip;
    /// each batch atomically, so a scan of the presence never sees a
    /// change without its event in the stream.
    pub async fn write(self: Arc<Self>, Outbox(mut outbox): Outbox) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while outbox.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let Some(conn) = self.conn.get() else {
                batch.clear();
                continue;
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (id, event) in batch.drain(..) {
                self.add_event(&mut pipe, id, &event);
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn.clone()).await {
                tracing::debug!(error = %e, "redis: events lost");
            }
        }
    }

    fn add_event(&self, pipe: &mut redis::Pipeline, id: MemberId, event: &Event) {
        let members = self.keys.members(&self.server);
        if let Some(gone) = &event.gone {
            let key = name_key(gone);
            pipe.hdel(&members, &key).ignore();
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.keys.nick(&key))
                .arg(self.owner(id))
                .ignore();
        }
        if let Some(here) = &event.here {
            let value = presence_value(&here.name, &here.room);
            pipe.hset(&members, name_key(&here.name), value).ignore();
            pipe.expire(&members, ttl()).ignore();
        }
        if let (true, Some(room), Some(line)) = (event.said, &event.room, &event.line)
            && self.history > 0
        {
            let fields = [(HISTORY_LINE, &**line)];
            pipe.xadd_maxlen(
                self.keys.history(room),
                StreamMaxlen::Approx(self.history),
                "*",
                &fields,
            )
            .ignore();
        }
        let fields = event.fields(&self.server);
        pipe.xadd_maxlen(
            &self.keys.events,
            StreamMaxlen::Approx(EVENTS_MAXLEN),
            "*",
            &fields,
        )
        .ignore();
    }
}

/// [`PRESENCE_TTL`] as Redis takes it.
fn ttl() -> i64 {
    PRESENCE_TTL.as_secs() as i64
}

/// The text of field `name` of a stream entry.
fn text<'a>(entry: &'a StreamId, name: &str) -> Option<&'a str> {
    match entry.map.get(name)? {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// The loop of [`Link::run`] and its state.
struct Follower<'a> {
    link: &'a Link,
    hub: &'a Arc<Hub>,
    conn: ConnectionManager,
    /// The id of the last event seen; `None` before the first connection.
    last: Option<String>,
    /// Whether the members were told the other servers are out of reach.
    told_down: bool,
    /// Members already told that another server has their name.
    clashes: HashSet<MemberId>,
    /// Until when scans only add to the roster (after a resync).
    settled: Instant,
}

impl Follower<'_> {
    /// Redis stopped answering: tell the members, once.
    fn down(&mut self, error: &redis::RedisError) {
        if self.link.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "redis unreachable: serving this server's members only");
        } else {
            tracing::debug!(%error, "redis still unreachable");
        }
        if !self.told_down {
            self.told_down = true;
            self.hub.reach(false);
        }
    }

    /// After a (re)connection: this server's presence written anew, its
    /// names taken again, the events missed caught up on, the others'
    /// presence read.
    async fn resync(&mut self, reader: &mut ConnectionManager) -> RedisResult<()> {
        let link = self.link;
        // Both connections must be back, or the first read fails again.
        redis::cmd("PING").query_async::<()>(reader).await?;
        let present = self.hub.presence();
        let members = link.keys.members(&link.server);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(&members).ignore();
        for (_, name, room) in &present {
            pipe.hset(&members, name_key(name), presence_value(name, room))
                .ignore();
        }
        self.add_heartbeat(&mut pipe);
        pipe.query_async::<()>(&mut self.conn).await?;
        self.claim_names(&present).await?;
        // The others write theirs again at their next try: until they
        // all had the time, a member missing from the presence is not
        // taken to have left.
        self.settled = Instant::now() + PRESENCE_TTL;
        match self.last.clone() {
            None => self.last = Some(self.tail().await?),
            Some(last) => {
                // The newest events since, oldest first.
                let reply: StreamRangeReply = self
                    .conn
                    .xrevrange_count(&link.keys.events, "+", format!("({last}"), RESUME_MAX)
                    .await?;
                for entry in reply.ids.iter().rev() {
                    self.deliver(entry);
                }
            }
        }
        self.scan().await
    }

    /// The periodic refresh: presence and names, then a look at the
    /// other servers.
    async fn beat(&mut self) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        self.add_heartbeat(&mut pipe);
        pipe.query_async::<()>(&mut self.conn).await?;
        let present = self.hub.presence();
        self.claim_names(&present).await?;
        self.scan().await
    }

    fn add_heartbeat(&self, pipe: &mut redis::Pipeline) {
        let link = self.link;
        pipe.set_ex(link.keys.server(&link.server), 1, PRESENCE_TTL.as_secs())
            .ignore();
        pipe.sadd(&link.keys.servers, &link.server).ignore();
        pipe.expire(link.keys.members(&link.server), ttl()).ignore();
    }

    /// Takes (or keeps) every local member's name; a member whose name
    /// another server took while this one was out of reach is told.
    async fn claim_names(&mut self, present: &[(MemberId, Line, Line)]) -> RedisResult<()> {
        if present.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, name, _) in present {
            pipe.add_command(self.link.claim_cmd(&name_key(name), *id));
        }
        let granted: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        for ((id, name, _), granted) in present.iter().zip(granted) {
            if granted == 0 && self.clashes.insert(*id) {
                tracing::warn!(%name, "name also taken on another server");
                self.hub.clash(*id, name);
            }
        }
        Ok(())
    }

    /// The id of the newest event, or `0-0` for an empty stream.
    async fn tail(&mut self) -> RedisResult<String> {
        let reply: StreamRangeReply = self
            .conn
            .xrevrange_count(&self.link.keys.events, "+", "-", 1)
            .await?;
        Ok(reply
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone()))
    }

    /// Reads the others' presence, all at once with the stream's newest
    /// id; brings the events up to that id first, so the roster then
    /// differs from the snapshot only by what no event said (a server
    /// that died, events lost in an outage), and those differences get
    /// their joined and left notices.
    async fn scan(&mut self) -> RedisResult<()> {
        let link = self.link;
        let servers: Vec<String> = self.conn.smembers(&link.keys.servers).await?;
        let others: Vec<&String> = servers.iter().filter(|s| **s != link.server).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for server in &others {
            pipe.exists(link.keys.server(server));
            pipe.hgetall(link.keys.members(server));
        }
        pipe.xrevrange_count(&link.keys.events, "+", "-", 1);
        let mut replies: Vec<Value> = pipe.query_async(&mut self.conn).await?;
        let tail: StreamRangeReply = redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))?;
        let mut roster = Roster::new();
        let mut dead = Vec::new();
        let mut replies = replies.into_iter();
        for server in others {
            let (Some(alive), Some(members)) = (replies.next(), replies.next()) else {
                break;
            };
            if !redis::from_redis_value::<bool>(alive)? {
                dead.push(server.clone());
                continue;
            }
            let members: Vec<(String, String)> = redis::from_redis_value(members)?;
            roster.extend(
                members
                    .into_iter()
                    .filter_map(|(key, value)| Some((key, parse_presence(&value)?))),
            );
        }
        if !dead.is_empty() {
            let mut pipe = redis::pipe();
            for server in &dead {
                pipe.srem(&link.keys.servers, server).ignore();
                pipe.del(link.keys.members(server)).ignore();
            }
            pipe.query_async::<()>(&mut self.conn).await?;
        }
        if let (Some(tail), Some(last)) = (tail.ids.first(), self.last.clone())
            && tail.id != last
        {
            let reply: StreamRangeReply = self
                .conn
                .xrange_count(
                    &link.keys.events,
                    format!("({last}"),
                    &tail.id,
                    EVENTS_MAXLEN,
                )
                .await?;
            for entry in &reply.ids {
                self.deliver(entry);
            }
        }
        self.hub.reconcile(roster, Instant::now() >= self.settled);
        Ok(())
    }

    /// Waits (in Redis) for the others' events, and delivers them.
    async fn read(&mut self, reader: &mut ConnectionManager) -> RedisResult<()> {
        let last = self.last.clone().unwrap_or_else(|| "$".to_owned());
        let options = StreamReadOptions::default()
            .block(READ_BLOCK.as_millis() as usize)
            .count(READ_COUNT);
        let reply: Option<StreamReadReply> = reader
            .xread_options(&[&self.link.keys.events], &[&last], &options)
            .await?;
        for stream in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in &stream.ids {
                self.deliver(entry);
            }
        }
        Ok(())
    }

    /// One event from the stream to the hub, unless it is this server's.
    fn deliver(&mut self, entry: &StreamId) {
        self.last = Some(entry.id.clone());
        match Event::from_fields(|name| text(entry, name)) {
            Some((server, event)) if server != self.link.server => self.hub.deliver(event),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("redis://alice:secret@db:6379/2"),
            "redis://alice:***@db:6379/2"
        );
        assert_eq!(redacted("rediss://:secret@db"), "rediss://:***@db");
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
    }

    #[test]
    fn keys_share_the_prefix() {
        let keys = Keys::new("chat1:");
        assert_eq!(keys.events, "chat1:events");
        assert_eq!(keys.history("dev"), "chat1:history:dev");
        assert_eq!(keys.nick("bob"), "chat1:nick:bob");
        assert_eq!(keys.members("abc"), "chat1:members:abc");
    }

    #[test]
    fn bad_urls_are_refused_without_connecting() {
        let config = RedisConfig {
            url: "http://nope".into(),
            prefix: DEFAULT_PREFIX.into(),
            ca: None,
        };
        let err = config.client().unwrap_err();
        assert!(err.starts_with("--redis http://nope"), "{err}");
    }
}
