//! Checked server settings, built from `sockit serve` arguments or from an
//! inetd-style TOML file (`sockit serve --config FILE`).
//!
//! Everything a user can get wrong is caught here, before any socket is
//! bound, and reported as a one-line [`UsageError`] (exit status 2).
//!
//! The file format (every key but `name` optional):
//!
//! ```toml
//! grace = "10s"              # shutdown grace period; a bare number is seconds
//! metrics = "127.0.0.1:9100" # Prometheus endpoint (tcp:// or unix://), as --metrics
//! workers = 2                # worker processes sharing every listener, as --workers
//!
//! [[service]]
//! name = "ping"
//! listen = ["tcp://127.0.0.1:8888", "udp://127.0.0.1:8888"]
//! max_conns = 1000           # 1 to 1000000
//! max_conns_per_ip = 50      # one address cannot take every slot
//! idle_timeout = "5m"        # or 300 (seconds); "0s": never
//! park_after = "5s"          # quiet this long: back to the parking lot; "0s": never
//! max_line = "64KiB"         # or a number of bytes; at most 16MiB
//! allow = ["127.0.0.0/8"]
//! deny = []
//! udp_rate = 1000            # replies/s per non-loopback source, at most
//!                            # 1000000; 0: unlimited
//! tls_cert = "/etc/sockit/cert.pem"   # for tls:// listeners; with tls_key
//! tls_key = "/etc/sockit/key.pem"
//! handshake_timeout = "10s"
//!
//! [[service]]
//! name = "chat"              # chat's max_line defaults to 4KiB, and it has
//!                            # no idle timeout unless one is given
//! history = 20               # lines replayed on join; 0: none
//! queue = 1000               # lines a member may fall behind
//! flood_rate = 10            # lines/s per member; 0: off
//! flood_burst = 20
//! quiet_joins = 1000         # no join/leave notices in rooms bigger than
//!                            # this (default: every room has them)
//! web = ["tcp://127.0.0.1:5080"]   # the chat page and its WebSocket
//! redis = "redis://127.0.0.1:6379"  # one chat with the other servers
//! redis_prefix = "sockit:"          # on it; rediss:// with redis_ca =
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::chat::{ChatConfig, RedisConfig};
use crate::cli::{ChatArgs, HttpArgs, LimitArgs, ServeArgs, TlsServerArgs};
use crate::error::UsageError;
use crate::http::{Site, SiteConfig};
use crate::net::access::AccessList;
use crate::net::addr::{DefaultScheme, Endpoint, HostPort};
use crate::net::tls::ServerIdentity;
use crate::service::exec::ExecCommand;
use crate::service::{ServiceKind, Transports};
use crate::units::{parse_bytes, parse_duration};

/// Default `--max-conns`: well under the usual 20,000-descriptor limit,
/// leaving room for listeners and the rejected connections we still accept
/// to tell them why.
pub const DEFAULT_MAX_CONNS: usize = 10_000;
/// Default `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `--park-after`: a connection quiet this long gives up its task
/// and buffers. Long enough that a client in a conversation (a person
/// typing, a ping every second) keeps its task; short enough that quiet
/// keep-alive clients cost little for most of their life.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(5);
/// Default `--max-line`.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default `--udp-rate`.
pub const DEFAULT_UDP_RATE: u32 = 1000;
/// Default `--handshake-timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most `--max-conns` takes: far more than one process's descriptors
/// allow, and far below what the connection semaphore can count.
pub const MAX_MAX_CONNS: usize = 1_000_000;
/// The most `--max-line` takes.
pub const MAX_MAX_LINE: usize = 16 << 20;
/// The most `--udp-rate` takes (replies per second per source).
pub const MAX_UDP_RATE: u32 = 1_000_000;
/// Default shutdown grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How long an unterminated message waits before it is answered bare:
/// long enough for the rest of a line split across TCP segments to
/// arrive, short enough that a person does not notice.
pub const FLUSH_DELAY: Duration = Duration::from_millis(30);
/// Default `--max-line` of `chat` (SPEC 5): a chat line is something a
/// person typed.
pub const CHAT_MAX_LINE: usize = 4 * 1024;
/// The most `--history` takes (lines per room).
pub const MAX_CHAT_HISTORY: usize = 10_000;
/// The most `--queue` takes (lines per member).
pub const MAX_CHAT_QUEUE: usize = 1_000_000;
/// The most `--flood-rate` and `--flood-burst` take.
pub const MAX_FLOOD: u32 = 1_000_000;
/// The most `--workers` takes.
pub const MAX_WORKERS: usize = 256;
/// Config files larger than this are refused rather than read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Everything `sockit serve` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The services, each with its own listeners and limits.
    pub services: Vec<ServiceConfig>,
    /// How long open connections may go on after a shutdown signal.
    pub grace: Duration,
    /// Where `/metrics` is served (`--metrics`); `None`: nowhere.
    pub metrics: Option<Endpoint>,
    /// Worker processes sharing every listener (`--workers`); 1: the
    /// server is this one process.
    pub workers: usize,
}

/// One service and where it listens.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Which service.
    pub service: ServiceKind,
    /// Listeners to bind, in order.
    pub listen: Vec<Endpoint>,
    /// The certificate for its `tls://` listeners, read and checked
    /// already; `None`: a development certificate is made at start.
    pub tls: Option<ServerIdentity>,
    /// What `http` serves (other services ignore it).
    pub site: SiteConfig,
    /// How `chat` keeps its room (other services ignore it).
    pub chat: ChatConfig,
    /// `chat`'s web listeners (`--web`), bound after `listen`.
    pub web: Vec<Endpoint>,
    /// What `exec` runs for each connection (`None` for the others).
    pub command: Option<ExecCommand>,
    /// Whether sockets passed by systemd (`LISTEN_FDS`) are adopted first.
    pub systemd: bool,
    /// The service's limits.
    pub limits: Limits,
}

/// Per-service limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once.
    pub max_conns: usize,
    /// Connections served at once from one IP address; `None`: no limit.
    pub max_conns_per_ip: Option<usize>,
    /// Close connections silent this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Park connections quiet this long (the line services and echo, on
    /// plain TCP and Unix streams); `None`: never.
    pub park_after: Option<Duration>,
    /// Longest line for message services.
    pub max_line: usize,
    /// Which peers may talk to the service.
    pub access: AccessList,
    /// UDP replies per second per non-loopback source; 0: unlimited.
    pub udp_rate: u32,
    /// How long a `tls://` connection may take to finish its handshake.
    pub handshake_timeout: Duration,
}

impl ServerConfig {
    /// Checks `sockit serve` arguments (and reads `--config` if given).
    ///
    /// # Errors
    /// A [`UsageError`] naming the bad address, rule, or config entry.
    pub fn from_args(args: &ServeArgs) -> Result<ServerConfig, UsageError> {
        let metrics = args
            .metrics
            .as_deref()
            .map(|text| parse_metrics(text).map_err(UsageError))
            .transpose()?;
        if let Some(path) = &args.config {
            let mut config = Self::from_file(
                path,
                &args.limits,
                args.grace,
                &args.tls,
                &args.http,
                &args.chat,
            )?;
            if metrics.is_some() {
                config.metrics = metrics;
            }
            if let Some(n) = args.workers {
                config.workers = n as usize;
            }
            config.check_workers()?;
            return Ok(config);
        }
        let service = args
            .service
            .ok_or_else(|| UsageError("serve needs a SERVICE or --config FILE".into()))?;
        let listen = parse_listeners(&args.listen)?;
        check_transports(service, &listen).map_err(UsageError)?;
        let systemd = std::env::var_os("LISTEN_FDS").is_some();
        let mut limits = Limits::from_args(&args.limits, &Limits::for_service(service))?;
        if let Some(timeout) = args.tls.handshake_timeout {
            limits.handshake_timeout = check_handshake_timeout(timeout).map_err(UsageError)?;
        }
        let config = ServerConfig {
            services: vec![ServiceConfig {
                service,
                listen: if listen.is_empty() && !systemd {
                    default_listeners(service).map_err(UsageError)?
                } else {
                    listen
                },
                tls: load_identity(&args.tls).map_err(UsageError)?,
                site: site_config(service, &args.http).map_err(UsageError)?,
                chat: chat_config(service, &args.chat).map_err(UsageError)?,
                web: web_listeners(service, &args.chat.web).map_err(UsageError)?,
                command: exec_command(service, &args.command).map_err(UsageError)?,
                systemd,
                limits,
            }],
            grace: args.grace,
            metrics,
            workers: args.workers.map_or(1, |n| n as usize),
        };
        config.check_workers()?;
        Ok(config)
    }

    /// Refuses what cannot be spread over worker processes: a chat
    /// without Redis (each worker would hold a room of its own).
    fn check_workers(&self) -> Result<(), UsageError> {
        if self.workers < 2 {
            return Ok(());
        }
        for svc in &self.services {
            if svc.service == ServiceKind::Chat && svc.chat.redis.is_none() {
                return Err(UsageError(format!(
                    "--workers {} needs --redis for chat: the workers share one room \
                     only through Redis",
                    self.workers
                )));
            }
        }
        Ok(())
    }

    /// Reads an inetd-style TOML file; `cli` limits are the defaults for
    /// every entry.
    ///
    /// # Errors
    /// A [`UsageError`] naming the file and, for syntax errors, the line.
    pub fn from_file(
        path: &Path,
        cli: &LimitArgs,
        cli_grace: Duration,
        cli_tls: &TlsServerArgs,
        cli_http: &HttpArgs,
        cli_chat: &ChatArgs,
    ) -> Result<ServerConfig, UsageError> {
        let err = |msg: String| UsageError(format!("config {}: {msg}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(err(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::from_toml_with(&text, cli, cli_grace, cli_tls, cli_http, cli_chat).map_err(err)
    }

    /// Parses config text (see the module docs for the format).
    ///
    /// # Errors
    /// A one-line description of the first problem, with its line number.
    pub fn from_toml(
        text: &str,
        cli: &LimitArgs,
        cli_grace: Duration,
        cli_tls: &TlsServerArgs,
    ) -> Result<ServerConfig, String> {
        Self::from_toml_with(
            text,
            cli,
            cli_grace,
            cli_tls,
            &HttpArgs::default(),
            &ChatArgs::default(),
        )
    }

    /// [`from_toml`](Self::from_toml) with the command line's HTTP and
    /// chat options as the defaults of `http` and `chat` entries.
    ///
    /// # Errors
    /// As [`from_toml`](Self::from_toml).
    pub fn from_toml_with(
        text: &str,
        cli: &LimitArgs,
        cli_grace: Duration,
        cli_tls: &TlsServerArgs,
        cli_http: &HttpArgs,
        cli_chat: &ChatArgs,
    ) -> Result<ServerConfig, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        if file.service.is_empty() {
            return Err("no [[service]] entries".into());
        }
        let grace = match &file.grace {
            Some(g) => g.to_duration().map_err(|e| format!("grace: {e}"))?,
            None => cli_grace,
        };
        let metrics = file
            .metrics
            .as_deref()
            .map(parse_metrics)
            .transpose()
            .map_err(|e| format!("metrics: {e}"))?;
        let workers = file.workers.unwrap_or(1);
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(format!(
                "workers {workers}: must be between 1 and {MAX_WORKERS}"
            ));
        }
        let mut services = Vec::new();
        for (i, entry) in file.service.iter().enumerate() {
            let ctx = |e: String| format!("service #{} ({}): {e}", i + 1, entry.name.name());
            let listen = parse_listeners(&entry.listen).map_err(|e| ctx(e.0))?;
            check_transports(entry.name, &listen).map_err(ctx)?;
            let defaults =
                Limits::from_args(cli, &Limits::for_service(entry.name)).map_err(|e| e.0)?;
            let mut limits = entry.limits.to_limits(&defaults).map_err(ctx)?;
            let tls = entry.tls.to_args(cli_tls).map_err(ctx)?;
            if let Some(timeout) = tls.handshake_timeout {
                limits.handshake_timeout = check_handshake_timeout(timeout).map_err(ctx)?;
            }
            services.push(ServiceConfig {
                service: entry.name,
                listen: if listen.is_empty() {
                    default_listeners(entry.name).map_err(ctx)?
                } else {
                    listen
                },
                tls: load_identity(&tls).map_err(ctx)?,
                site: site_config(entry.name, &entry.http.to_args(cli_http)?).map_err(ctx)?,
                chat: chat_config(entry.name, &entry.chat.to_args(cli_chat)).map_err(ctx)?,
                web: web_listeners(entry.name, &entry.chat.to_args(cli_chat).web).map_err(ctx)?,
                command: exec_command(
                    entry.name,
                    &entry.command.iter().map(OsString::from).collect::<Vec<_>>(),
                )
                .map_err(ctx)?,
                systemd: false,
                limits,
            });
        }
        Ok(ServerConfig {
            services,
            grace,
            metrics,
            workers,
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: DEFAULT_MAX_CONNS,
            max_conns_per_ip: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            park_after: Some(DEFAULT_PARK_AFTER),
            max_line: DEFAULT_MAX_LINE,
            access: AccessList::default(),
            udp_rate: DEFAULT_UDP_RATE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The defaults of one service: a chat line is at most 4 KiB, and a
    /// chat member may listen without speaking for as long as it likes
    /// (a room can be quiet for hours), so chat has no idle timeout
    /// unless one is given.
    pub fn for_service(service: ServiceKind) -> Limits {
        match service {
            ServiceKind::Chat => Limits {
                max_line: CHAT_MAX_LINE,
                idle_timeout: None,
                ..Limits::default()
            },
            _ => Limits::default(),
        }
    }

    fn from_args(args: &LimitArgs, defaults: &Limits) -> Result<Limits, UsageError> {
        let access = if args.allow.is_empty() && args.deny.is_empty() {
            defaults.access.clone()
        } else {
            AccessList::new(&args.allow, &args.deny).map_err(UsageError)?
        };
        let limits = Limits {
            max_conns: args.max_conns.unwrap_or(defaults.max_conns),
            max_conns_per_ip: args.max_conns_per_ip.or(defaults.max_conns_per_ip),
            idle_timeout: match args.idle_timeout {
                Some(d) => (!d.is_zero()).then_some(d),
                None => defaults.idle_timeout,
            },
            park_after: match args.park_after {
                Some(d) => (!d.is_zero()).then_some(d),
                None => defaults.park_after,
            },
            max_line: args.max_line.unwrap_or(defaults.max_line),
            access,
            udp_rate: args.udp_rate.unwrap_or(defaults.udp_rate),
            handshake_timeout: defaults.handshake_timeout,
        };
        limits.check().map_err(UsageError)?;
        Ok(limits)
    }

    /// The command line's values were range-checked by clap already, so
    /// what fails here comes from a config file: the messages name its keys.
    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_MAX_CONNS).contains(&self.max_conns) {
            return Err(format!(
                "max_conns {}: must be between 1 and {MAX_MAX_CONNS}",
                self.max_conns
            ));
        }
        if let Some(n) = self.max_conns_per_ip
            && !(1..=MAX_MAX_CONNS).contains(&n)
        {
            return Err(format!(
                "max_conns_per_ip {n}: must be between 1 and {MAX_MAX_CONNS}"
            ));
        }
        if !(1..=MAX_MAX_LINE).contains(&self.max_line) {
            return Err(format!(
                "max_line {}: must be between 1 byte and 16MiB",
                self.max_line
            ));
        }
        if self.udp_rate > MAX_UDP_RATE {
            return Err(format!(
                "udp_rate {}: must be between 0 (unlimited) and {MAX_UDP_RATE}",
                self.udp_rate
            ));
        }
        Ok(())
    }
}

/// The listeners of a service started without `-l`: its default port on
/// loopback, TCP, then UDP if it answers datagrams.
///
/// # Errors
/// A service without a default port (exec): it must be given `-l`.
pub fn default_listeners(service: ServiceKind) -> Result<Vec<Endpoint>, String> {
    let Some(port) = service.default_port() else {
        return Err(format!(
            "serve {} has no default port: give it -l ADDR",
            service.name()
        ));
    };
    let at = HostPort { host: None, port };
    let mut listen = vec![Endpoint::Tcp(at.clone())];
    if service.transports().datagram {
        listen.push(Endpoint::Udp(at));
    }
    Ok(listen)
}

/// The command of an exec service, found now (exit 2 if it cannot be);
/// a command given to another service is refused.
fn exec_command(service: ServiceKind, argv: &[OsString]) -> Result<Option<ExecCommand>, String> {
    match (service, argv.is_empty()) {
        (ServiceKind::Exec, _) => ExecCommand::new(argv).map(Some),
        (_, true) => Ok(None),
        (_, false) => Err(format!(
            "a command (after --) is for serve exec, not {}",
            service.name()
        )),
    }
}

/// Refuses a listener the service cannot be served on: `udp://` for a
/// stream-only service, a stream for a datagram-only one.
fn check_transports(service: ServiceKind, listen: &[Endpoint]) -> Result<(), String> {
    check_listeners_fit(service.name(), service.transports(), listen)
}

fn check_listeners_fit(
    name: &str,
    transports: Transports,
    listen: &[Endpoint],
) -> Result<(), String> {
    for endpoint in listen {
        let (ok, what) = if endpoint.is_datagram() {
            (transports.datagram, "datagrams (udp://, unixgram://)")
        } else {
            (transports.stream, "streams (tcp://, tls://, unix://)")
        };
        if !ok {
            return Err(format!(
                "cannot listen on {endpoint}: {name} does not serve {what}"
            ));
        }
    }
    Ok(())
}

fn check_handshake_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() || timeout > Duration::from_secs(3600) {
        return Err("--handshake-timeout must be between 1ms and 1h".into());
    }
    Ok(timeout)
}

/// Reads and checks the certificate and key, if given.
fn load_identity(tls: &TlsServerArgs) -> Result<Option<ServerIdentity>, String> {
    match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => ServerIdentity::load(cert, key).map(Some),
        (None, None) => Ok(None),
        (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
    }
}

/// The `--metrics` address: TCP (a bare `HOST:PORT` too) or a Unix
/// stream socket; an HTTP server needs a stream, and TLS is not offered.
fn parse_metrics(text: &str) -> Result<Endpoint, String> {
    let endpoint = Endpoint::parse(text, DefaultScheme::Tcp).map_err(|e| e.to_string())?;
    match endpoint {
        Endpoint::Tcp(_) | Endpoint::Unix(_) => Ok(endpoint),
        other => Err(format!(
            "--metrics {other}: must be a tcp:// or unix:// address"
        )),
    }
}

fn parse_listeners(list: &[String]) -> Result<Vec<Endpoint>, UsageError> {
    list.iter()
        .map(|s| Endpoint::parse(s, DefaultScheme::Tcp).map_err(UsageError::from))
        .collect()
}

/// The TOML file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    grace: Option<DurationValue>,
    metrics: Option<String>,
    workers: Option<usize>,
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: ServiceKind,
    #[serde(default)]
    listen: Vec<String>,
    /// exec: the program and its arguments (text: TOML has no other).
    #[serde(default)]
    command: Vec<String>,
    #[serde(flatten)]
    limits: LimitEntry,
    #[serde(flatten)]
    tls: TlsEntry,
    #[serde(flatten)]
    http: HttpEntry,
    #[serde(flatten)]
    chat: ChatEntry,
}

/// The `chat` keys of a `[[service]]` entry; the command line's are the
/// defaults.
#[derive(Debug, Deserialize)]
struct ChatEntry {
    history: Option<usize>,
    queue: Option<usize>,
    flood_rate: Option<u32>,
    flood_burst: Option<u32>,
    quiet_joins: Option<usize>,
    #[serde(default)]
    web: Vec<String>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    redis_ca: Option<PathBuf>,
}

impl ChatEntry {
    fn to_args(&self, cli: &ChatArgs) -> ChatArgs {
        ChatArgs {
            history: self.history.or(cli.history),
            queue: self.queue.or(cli.queue),
            flood_rate: self.flood_rate.or(cli.flood_rate),
            flood_burst: self.flood_burst.or(cli.flood_burst),
            quiet_joins: self.quiet_joins.or(cli.quiet_joins),
            web: if self.web.is_empty() {
                cli.web.clone()
            } else {
                self.web.clone()
            },
            redis: self.redis.clone().or_else(|| cli.redis.clone()),
            redis_prefix: self
                .redis_prefix
                .clone()
                .or_else(|| cli.redis_prefix.clone()),
            redis_ca: self.redis_ca.clone().or_else(|| cli.redis_ca.clone()),
        }
    }
}

/// The web listeners of a `chat` service (`--web`): stream addresses,
/// for chat only.
fn web_listeners(service: ServiceKind, web: &[String]) -> Result<Vec<Endpoint>, String> {
    if web.is_empty() {
        return Ok(Vec::new());
    }
    if service != ServiceKind::Chat {
        return Err(format!(
            "--web is for the chat service, not {}",
            service.name()
        ));
    }
    let web = parse_listeners(web).map_err(|e| e.0)?;
    let streams = Transports {
        stream: true,
        datagram: false,
    };
    check_listeners_fit("chat --web", streams, &web)?;
    Ok(web)
}

/// `--redis` and its companions, checked (the URL parsed, the CA read)
/// without connecting.
fn redis_config(chat: &ChatArgs) -> Result<Option<RedisConfig>, String> {
    let Some(url) = &chat.redis else {
        if chat.redis_prefix.is_some() || chat.redis_ca.is_some() {
            return Err("redis_prefix and redis_ca need redis".into());
        }
        return Ok(None);
    };
    let config = RedisConfig {
        url: url.clone(),
        prefix: chat
            .redis_prefix
            .clone()
            .unwrap_or_else(|| crate::chat::link::DEFAULT_PREFIX.to_owned()),
        ca: chat.redis_ca.clone(),
    };
    config.client()?;
    Ok(Some(config))
}

/// The settings of a `chat` service, range-checked (the command line's
/// were by clap already; a config file's are here); chat options on
/// other services are refused, as HTTP's are.
fn chat_config(service: ServiceKind, chat: &ChatArgs) -> Result<ChatConfig, String> {
    let given = chat.history.is_some()
        || chat.queue.is_some()
        || chat.flood_rate.is_some()
        || chat.flood_burst.is_some()
        || chat.quiet_joins.is_some()
        || chat.redis.is_some();
    if service != ServiceKind::Chat {
        if given {
            return Err(format!(
                "--history, --queue, --flood-rate, --flood-burst, --quiet-joins and --redis \
                 are for the chat service, not {}",
                service.name()
            ));
        }
        return Ok(ChatConfig::default());
    }
    let defaults = ChatConfig::default();
    let config = ChatConfig {
        history: chat.history.unwrap_or(defaults.history),
        queue: chat.queue.unwrap_or(defaults.queue),
        flood_rate: chat.flood_rate.unwrap_or(defaults.flood_rate),
        flood_burst: chat.flood_burst.unwrap_or(defaults.flood_burst),
        quiet_joins: chat.quiet_joins,
        redis: redis_config(chat)?,
    };
    if config.quiet_joins.is_some_and(|n| n > MAX_MAX_CONNS) {
        return Err(format!(
            "quiet_joins {}: must be between 0 and {MAX_MAX_CONNS}",
            config.quiet_joins.unwrap_or_default()
        ));
    }
    if config.history > MAX_CHAT_HISTORY {
        return Err(format!(
            "history {}: must be between 0 and {MAX_CHAT_HISTORY}",
            config.history
        ));
    }
    if !(1..=MAX_CHAT_QUEUE).contains(&config.queue) {
        return Err(format!(
            "queue {}: must be between 1 and {MAX_CHAT_QUEUE}",
            config.queue
        ));
    }
    if config.flood_rate > MAX_FLOOD {
        return Err(format!(
            "flood_rate {}: must be between 0 (off) and {MAX_FLOOD}",
            config.flood_rate
        ));
    }
    if !(1..=MAX_FLOOD).contains(&config.flood_burst) {
        return Err(format!(
            "flood_burst {}: must be between 1 and {MAX_FLOOD}",
            config.flood_burst
        ));
    }
    Ok(config)
}

/// The `http` keys of a `[[service]]` entry; the command line's are the
/// defaults.
#[derive(Debug, Deserialize)]
struct HttpEntry {
    root: Option<std::path::PathBuf>,
    hidden: Option<bool>,
    header_timeout: Option<String>,
    cache_control: Option<String>,
    cors: Option<bool>,
    #[serde(default)]
    header: Vec<String>,
    basic_auth: Option<String>,
    compress: Option<bool>,
    symlinks: Option<String>,
}

impl HttpEntry {
    fn to_args(&self, cli: &HttpArgs) -> Result<HttpArgs, String> {
        Ok(HttpArgs {
            root: self.root.clone().or_else(|| cli.root.clone()),
            hidden: self.hidden.unwrap_or(cli.hidden),
            header_timeout: match &self.header_timeout {
                Some(text) => Some(crate::units::parse_nonzero_duration(text)?),
                None => cli.header_timeout,
            },
            cache_control: self
                .cache_control
                .clone()
                .or_else(|| cli.cache_control.clone()),
            cors: self.cors.unwrap_or(cli.cors),
            headers: if self.header.is_empty() {
                cli.headers.clone()
            } else {
                self.header.clone()
            },
            basic_auth: self.basic_auth.clone().or_else(|| cli.basic_auth.clone()),
            no_compress: self.compress.map_or(cli.no_compress, |on| !on),
            symlinks: match &self.symlinks {
                Some(text) => Some(text.parse()?),
                None => cli.symlinks,
            },
        })
    }
}

/// The site of an `http` service, its root checked now (a usage error
/// before anything binds); HTTP options on other services are refused,
/// so a typo'd service name is not silently a hello server.
fn site_config(service: ServiceKind, http: &HttpArgs) -> Result<SiteConfig, String> {
    let given = http.root.is_some()
        || http.hidden
        || http.header_timeout.is_some()
        || http.cache_control.is_some()
        || http.cors
        || !http.headers.is_empty()
        || http.basic_auth.is_some()
        || http.no_compress
        || http.symlinks.is_some();
    if service != ServiceKind::Http {
        if given {
            return Err(format!(
                "--root, --hidden, --header-timeout, --cache-control, --cors, --header, \
                 --basic-auth, --symlinks and --no-compress are for the http service, not {}",
                service.name()
            ));
        }
        return Ok(SiteConfig::default());
    }
    let site = SiteConfig {
        root: http.root.clone(),
        hidden: http.hidden,
        header_timeout: http.header_timeout,
        cache_control: http.cache_control.clone(),
        cors: http.cors,
        headers: http.headers.clone(),
        basic_auth: http.basic_auth.clone(),
        no_compress: http.no_compress,
        symlinks: http.symlinks.unwrap_or_default(),
    };
    // Built once here only to check it; the server builds its own.
    Site::new(&site)?;
    Ok(site)
}

/// The TLS keys of a `[[service]]` entry; the command line's are the
/// defaults.
#[derive(Debug, Deserialize)]
struct TlsEntry {
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    handshake_timeout: Option<String>,
}

impl TlsEntry {
    fn to_args(&self, cli: &TlsServerArgs) -> Result<TlsServerArgs, String> {
        let (tls_cert, tls_key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => (cli.tls_cert.clone(), cli.tls_key.clone()),
            (cert, key) => (cert.clone(), key.clone()),
        };
        Ok(TlsServerArgs {
            tls_cert,
            tls_key,
            handshake_timeout: match &self.handshake_timeout {
                Some(text) => Some(parse_duration(text)?),
                None => cli.handshake_timeout,
            },
        })
    }
}

#[derive(Debug, Deserialize)]
struct LimitEntry {
    max_conns: Option<usize>,
    max_conns_per_ip: Option<usize>,
    idle_timeout: Option<DurationValue>,
    park_after: Option<DurationValue>,
    max_line: Option<ByteSize>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    udp_rate: Option<u32>,
}

/// A size written as a number of bytes or as text like `"64KiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(usize),
    Text(String),
}

/// A duration written as text like `"30s"` or as a bare number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl DurationValue {
    /// Numbers go through the same parser as text, so a negative, NaN,
    /// infinite or huge one gets the same message as on the command line
    /// (`f64`'s `Display` writes no exponent: 1e-20 is all its digits).
    fn to_duration(&self) -> Result<std::time::Duration, String> {
        match self {
            DurationValue::Integer(n) => parse_duration(&n.to_string()),
            DurationValue::Float(x) => parse_duration(&x.to_string()),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

impl LimitEntry {
    fn to_limits(&self, defaults: &Limits) -> Result<Limits, String> {
        let args = LimitArgs {
            max_conns: self.max_conns,
            max_conns_per_ip: self.max_conns_per_ip,
            idle_timeout: self
                .idle_timeout
                .as_ref()
                .map(|d| d.to_duration().map_err(|e| format!("idle_timeout: {e}")))
                .transpose()?,
            park_after: self
                .park_after
                .as_ref()
                .map(|d| d.to_duration().map_err(|e| format!("park_after: {e}")))
                .transpose()?,
            max_line: match &self.max_line {
                None => None,
                Some(ByteSize::Bytes(n)) => Some(*n),
                Some(ByteSize::Text(t)) => Some(parse_bytes(t)?),
            },
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            udp_rate: self.udp_rate,
        };
        Limits::from_args(&args, defaults).map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_cli() -> LimitArgs {
        LimitArgs {
            max_conns: None,
            max_conns_per_ip: None,
            idle_timeout: None,
            park_after: None,
            max_line: None,
            allow: vec![],
            deny: vec![],
            udp_rate: None,
        }
    }

    fn parse(text: &str) -> Result<ServerConfig, String> {
        ServerConfig::from_toml(text, &no_cli(), DEFAULT_GRACE, &TlsServerArgs::default())
    }

    #[test]
    fn exec_takes_its_command_from_the_file() {
        let config = parse(
            "[[service]]\nname = \"exec\"\nlisten = [\"127.0.0.1:7000\"]\ncommand = [\"cat\", \"-u\"]",
        )
        .unwrap();
        let command = config.services[0].command.as_ref().unwrap();
        assert!(command.program().ends_with("cat"), "{command:?}");
        let err = parse("[[service]]\nname = \"exec\"\nlisten = [\"127.0.0.1:7000\"]").unwrap_err();
        assert!(err.contains("needs a command"), "{err}");
        let err = parse("[[service]]\nname = \"echo\"\ncommand = [\"cat\"]").unwrap_err();
        assert!(err.contains("for serve exec"), "{err}");
        let err = parse("[[service]]\nname = \"exec\"\ncommand = [\"cat\"]").unwrap_err();
        assert!(err.contains("no default port"), "{err}");
    }

    #[test]
    fn full_file() {
        let cfg = parse(
            r#"
            grace = "2s"
            [[service]]
            name = "ping"
            listen = ["tcp://127.0.0.1:0", "udp://[::1]:0"]
            max_conns = 5
            idle_timeout = "0s"
            max_line = "1KiB"
            deny = ["10.0.0.0/8"]
            [[service]]
            name = "daytime"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.grace, Duration::from_secs(2));
        assert_eq!(cfg.services.len(), 2);
        let ping = &cfg.services[0];
        assert_eq!(ping.service, ServiceKind::Ping);
        assert_eq!(ping.listen.len(), 2);
        assert_eq!(ping.limits.max_conns, 5);
        assert_eq!(ping.limits.idle_timeout, None);
        assert_eq!(ping.limits.max_line, 1024);
        assert!(!ping.limits.access.permits("10.1.1.1".parse().unwrap()));
        assert_eq!(
            cfg.services[1].listen[0].to_string(),
            "tcp://127.0.0.1:1313"
        );
    }

    #[test]
    fn chat_entries_may_have_web_listeners() {
        let cfg =
            parse("[[service]]\nname = \"chat\"\nweb = [\"127.0.0.1:5080\", \"tls://[::1]:5443\"]")
                .unwrap();
        let web: Vec<String> = cfg.services[0].web.iter().map(|e| e.to_string()).collect();
        assert_eq!(web, ["tcp://127.0.0.1:5080", "tls://[::1]:5443"]);
        for (text, want) in [
            (
                "[[service]]\nname = \"echo\"\nweb = [\":1\"]",
                "--web is for the chat service, not echo",
            ),
            (
                "[[service]]\nname = \"chat\"\nweb = [\"udp://:1\"]",
                "chat --web does not serve datagrams",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn chat_entries_take_redis_settings() {
        let cfg = parse(
            "[[service]]\nname = \"chat\"\nredis = \"redis://u:pw@127.0.0.1:6379/2\"\n\
             redis_prefix = \"team:\"",
        )
        .unwrap();
        let redis = cfg.services[0].chat.redis.as_ref().unwrap();
        assert_eq!(redis.url, "redis://u:pw@127.0.0.1:6379/2");
        assert_eq!(redis.prefix, "team:");
        let err = parse("[[service]]\nname = \"chat\"\nredis = \"nope\"").unwrap_err();
        assert!(err.to_string().contains("--redis nope"), "{err}");
        let err = parse("[[service]]\nname = \"chat\"\nredis_prefix = \"x:\"").unwrap_err();
        assert!(err.to_string().contains("need redis"), "{err}");
    }

    #[test]
    fn chat_entries_have_their_own_keys_and_defaults() {
        let cfg = parse(
            "[[service]]\nname = \"chat\"\nhistory = 0\nqueue = 50\nflood_rate = 0\n\
             [[service]]\nname = \"chat\"\nidle_timeout = 60\nmax_line = 100",
        )
        .unwrap();
        let (first, second) = (&cfg.services[0], &cfg.services[1]);
        assert_eq!(
            first.chat,
            ChatConfig {
                history: 0,
                queue: 50,
                flood_rate: 0,
                flood_burst: 20,
                quiet_joins: None,
                redis: None,
            }
        );
        assert_eq!(first.listen[0].to_string(), "tcp://127.0.0.1:5000");
        assert_eq!(first.listen.len(), 1);
        assert_eq!(first.limits.max_line, CHAT_MAX_LINE);
        assert_eq!(first.limits.idle_timeout, None);
        assert_eq!(second.chat, ChatConfig::default());
        assert_eq!(second.limits.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(second.limits.max_line, 100);
        for (text, want) in [
            (
                "[[service]]\nname = \"echo\"\nhistory = 5",
                "for the chat service, not echo",
            ),
            (
                "[[service]]\nname = \"chat\"\nqueue = 0",
                "queue 0: must be between 1",
            ),
            (
                "[[service]]\nname = \"chat\"\nflood_burst = 0",
                "flood_burst 0",
            ),
            (
                "[[service]]\nname = \"chat\"\nhistory = 100000",
                "history 100000",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn workers_come_from_the_file_and_chat_needs_redis_for_them() {
        assert_eq!(parse("[[service]]\nname = \"echo\"").unwrap().workers, 1);
        let cfg = parse("workers = 4\n[[service]]\nname = \"echo\"").unwrap();
        assert_eq!(cfg.workers, 4);
        for (text, want) in [
            (
                "workers = 0\n[[service]]\nname = \"echo\"",
                "workers 0: must be between 1 and 256",
            ),
            ("workers = 257\n[[service]]\nname = \"echo\"", "workers 257"),
            (
                "workers = -1\n[[service]]\nname = \"echo\"",
                "expected usize",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let chat = parse("workers = 2\n[[service]]\nname = \"chat\"").unwrap();
        let err = chat.check_workers().unwrap_err().0;
        assert!(err.contains("--workers 2 needs --redis for chat"), "{err}");
        let linked =
            parse("workers = 2\n[[service]]\nname = \"chat\"\nredis = \"redis://127.0.0.1:6379\"")
                .unwrap();
        assert!(linked.check_workers().is_ok());
    }

    #[test]
    fn park_after_defaults_to_five_seconds_and_zero_turns_it_off() {
        let cfg = parse(
            "[[service]]\nname = \"ping\"\n\
             [[service]]\nname = \"echo\"\npark_after = \"0s\"\n\
             [[service]]\nname = \"hello\"\npark_after = 2",
        )
        .unwrap();
        let park: Vec<_> = cfg.services.iter().map(|s| s.limits.park_after).collect();
        assert_eq!(
            park,
            [Some(DEFAULT_PARK_AFTER), None, Some(Duration::from_secs(2))]
        );
        let err = parse("[[service]]\nname = \"ping\"\npark_after = -1").unwrap_err();
        assert!(err.contains("park_after: invalid duration"), "{err}");
    }

    #[test]
    fn durations_may_be_bare_seconds() {
        let cfg = parse(
            "grace = 2.5\n[[service]]\nname = \"echo\"\nidle_timeout = 90\n\
             [[service]]\nname = \"ping\"\nidle_timeout = \"0.5\"",
        )
        .unwrap();
        assert_eq!(cfg.grace, Duration::from_millis(2500));
        let idle: Vec<_> = cfg.services.iter().map(|s| s.limits.idle_timeout).collect();
        assert_eq!(
            idle,
            [
                Some(Duration::from_secs(90)),
                Some(Duration::from_millis(500))
            ]
        );
    }

    #[test]
    fn listeners_must_fit_the_service() {
        let stream_only = Transports {
            stream: true,
            datagram: false,
        };
        let listen =
            parse_listeners(&["tcp://127.0.0.1:1".into(), "udp://127.0.0.1:1".into()]).unwrap();
        let err = check_listeners_fit("chat", stream_only, &listen).unwrap_err();
        assert_eq!(
            err,
            "cannot listen on udp://127.0.0.1:1: chat does not serve datagrams (udp://, unixgram://)"
        );
        assert!(check_listeners_fit("chat", stream_only, &listen[..1]).is_ok());
        for kind in ServiceKind::ALL {
            let fits = check_transports(kind, &listen).is_ok();
            assert_eq!(fits, kind.transports().datagram, "{}", kind.name());
        }
        for kind in [ServiceKind::Http, ServiceKind::Chat, ServiceKind::Exec] {
            assert!(!kind.transports().datagram, "{}", kind.name());
        }
    }

    #[test]
    fn errors_are_one_line_and_located() {
        for (text, want) in [
            ("[[service]]\nname = \"nope\"", "line 2"),
            (
                "[[service]]\nname = \"echo\"\nlisten = [\"tcp://\"]",
                "missing host and port",
            ),
            ("[[service]]\nname = \"echo\"\ncolour = 1", "colour"),
            (
                "grace = \"soon\"\n[[service]]\nname = \"echo\"",
                "invalid duration",
            ),
            (
                "[[service]]\nname = \"echo\"\nmax_conns = 0",
                "max_conns 0: must be between 1 and 1000000",
            ),
            (
                "[[service]]\nname = \"echo\"\nmax_conns = 99999999999",
                "max_conns 99999999999: must be between 1 and 1000000",
            ),
            (
                "[[service]]\nname = \"echo\"\nmax_conns = -1",
                "expected usize",
            ),
            (
                "[[service]]\nname = \"echo\"\nmax_line = 0",
                "max_line 0: must be between 1 byte and 16MiB",
            ),
            (
                "[[service]]\nname = \"echo\"\nmax_line = \"1000MiB\"",
                "max_line 1048576000",
            ),
            (
                "[[service]]\nname = \"echo\"\nudp_rate = 4000000000",
                "udp_rate 4000000000: must be between 0 (unlimited) and 1000000",
            ),
            (
                "[[service]]\nname = \"echo\"\nidle_timeout = -1",
                "idle_timeout: invalid duration \"-1\": must not be negative",
            ),
            (
                "[[service]]\nname = \"echo\"\nidle_timeout = 1e308",
                "idle_timeout: invalid duration",
            ),
            (
                "[[service]]\nname = \"echo\"\nidle_timeout = nan",
                "idle_timeout: invalid duration \"NaN\"",
            ),
            (
                "[[service]]\nname = \"echo\"\nidle_timeout = -inf",
                "must not be negative",
            ),
            (
                "grace = \"9999h\"\n[[service]]\nname = \"echo\"",
                "grace: invalid duration \"9999h\": at most 8760h",
            ),
            ("", "no [[service]]"),
            ("[[service]\n", "line 1"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
