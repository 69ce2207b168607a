//! The command line, as clap derive types: one subcommand per tool.
//!
//! Values stay raw strings here where a bad one must produce sockit's own
//! one-line error (addresses), and are checked into settings by the module
//! that uses them (`config` for `serve`, `client` for the clients).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{
    MAX_CHAT_HISTORY, MAX_CHAT_QUEUE, MAX_FLOOD, MAX_MAX_CONNS, MAX_MAX_LINE, MAX_UDP_RATE,
};
use crate::http::path::Symlinks;
use crate::net::tls::ClientTlsOptions;
use crate::service::ServiceKind;
use crate::units::{parse_bytes, parse_duration, parse_nonzero_duration};

/// sockit: the socket-programming tutorials' servers and clients, grown up.
#[derive(Debug, Parser)]
#[command(name = "sockit", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How the logs look.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Log verbosity and format (logs go to stderr; stdout is for data).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log detail (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a service on one or more listeners (TCP, UDP, Unix, TLS at once).
    // Boxed: its options dwarf every other subcommand's (clippy's
    // large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Talk to a socket like netcat: stdin to the socket, the socket to stdout.
    Connect(ConnectArgs),
    /// Send messages, print the replies, exit (the tutorials' one-shot client).
    Send(SendArgs),
    /// Measure round-trip times against a ping service, like ping(8).
    Ping(PingArgs),
    /// Load-test an echo, ping, hello or timestamp service.
    Bench(BenchArgs),
    /// Chat in a `serve chat` room: a terminal UI, or plain lines when piped.
    Chat(ChatClientArgs),
    /// Join (or start) a peer-to-peer UDP mesh: every node is client and server.
    Peer(PeerArgs),
    /// Print shell completions for sockit (bash, zsh, fish, elvish, powershell).
    #[command(after_long_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print sockit's man page (roff).
    #[command(after_long_help = MAN_EXAMPLES)]
    Man,
    /// Read a password on stdin and print its Argon2 hash, for
    /// `serve http --basic-auth USER:HASH`.
    #[command(after_long_help = HASH_PASSWORD_EXAMPLES)]
    HashPassword,
}

const HASH_PASSWORD_EXAMPLES: &str = "\
Examples:
  sockit hash-password                     # type the password, then Enter
  printf '%s' \"$PASSWORD\" | sockit hash-password
  sockit serve http --root . --basic-auth \"alice:$(sockit hash-password < pw.txt)\"";

/// `sockit serve`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true, after_long_help = SERVE_EXAMPLES)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum, required_unless_present = "config")]
    pub service: Option<ServiceKind>,
    /// Where to listen (repeatable): tcp://, udp://, unix://, unixgram://,
    /// tls:// or HOST:PORT. Default: the service's port on 127.0.0.1, TCP and UDP.
    #[arg(short, long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Run several services from a TOML file, like inetd.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["service", "listen"])]
    pub config: Option<PathBuf>,
    /// The limits and access rules for the service.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics (tcp:// or unix://;
    /// with --config, overrides the file's `metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// After SIGINT/SIGTERM, how long open connections may go on.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
    /// Worker processes sharing every listener (SO_REUSEPORT), each with
    /// its own descriptors; the parent restarts any that dies. Default 1:
    /// one process. With --config, overrides the file's `workers`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
    /// The certificate for tls:// listeners.
    #[command(flatten)]
    pub tls: TlsServerArgs,
    /// What `serve http` serves.
    #[command(flatten)]
    pub http: HttpArgs,
    /// How `serve chat` keeps its room.
    #[command(flatten)]
    pub chat: ChatArgs,
    /// exec: the command each connection runs, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `serve http`'s site, shared by the command line and the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpArgs {
    /// http: serve the files under DIR (default: a hello page).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// http: serve and list dotfiles too.
    #[arg(long)]
    pub hidden: bool,
    /// http: how long a client may take to send a request head (default 10s).
    #[arg(long, value_name = "DUR", value_parser = parse_nonzero_duration)]
    pub header_timeout: Option<Duration>,
    /// http: the Cache-Control header of every file response
    /// (e.g. 'max-age=3600').
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,
    /// http: allow cross-origin requests from anywhere
    /// (Access-Control-Allow-Origin: *, and OPTIONS preflights).
    #[arg(long)]
    pub cors: bool,
    /// http: add this header to every response (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// http: require this user and password (HASH from `sockit hash-password`,
    /// or a bcrypt hash as `htpasswd -nB` writes).
    #[arg(long, value_name = "USER:HASH")]
    pub basic_auth: Option<String>,
    /// http: which symlinks are followed: inside (those whose target
    /// stays inside the root), any, or none.
    #[arg(long, value_name = "POLICY", value_parser = parse_symlinks)]
    pub symlinks: Option<Symlinks>,
    /// http: send files as they are, never compressed on the fly
    /// (precompressed .br/.zst/.gz siblings are still served).
    #[arg(long)]
    pub no_compress: bool,
}

fn parse_symlinks(text: &str) -> Result<Symlinks, String> {
    text.parse()
}

/// `serve chat`'s settings, shared by the command line and the config
/// file.
#[derive(Debug, Clone, Default, Args)]
pub struct ChatArgs {
    /// chat: lines of a room replayed to a member who joins it (default
    /// 20; 0: none kept).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>(0, MAX_CHAT_HISTORY as u64))]
    pub history: Option<usize>,
    /// chat: lines a member may fall behind before it is dropped as too
    /// slow (default 1000).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>(1, MAX_CHAT_QUEUE as u64))]
    pub queue: Option<usize>,
    /// chat: lines a second each member may send; past it they are
    /// dropped, with a notice (default 10; 0: no flood control).
    #[arg(long, value_name = "N", value_parser = whole_number::<u32>(0, MAX_FLOOD.into()))]
    pub flood_rate: Option<u32>,
    /// chat: lines a member may send at once after a pause (default 20).
    #[arg(long, value_name = "N", value_parser = whole_number::<u32>(1, MAX_FLOOD.into()))]
    pub flood_burst: Option<u32>,
    /// chat: rooms of more than N members get no `* NAME joined ROOM`,
    /// `left` or `dropped (too slow)` notices, which cost a line to every
    /// member each (default: every room gets them).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>(0, MAX_MAX_CONNS as u64))]
    pub quiet_joins: Option<usize>,
    /// chat: also serve the chat page at / and its WebSocket at /ws on
    /// ADDR (tcp://, tls:// for HTTPS, unix://); may be repeated.
    #[arg(long, value_name = "ADDR")]
    pub web: Vec<String>,
    /// chat: join the other chat servers using this Redis into one chat:
    /// redis://HOST:PORT (USER:PASS@ before the host, /DB after, as needed),
    /// or rediss:// for TLS.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// chat: what the chat's Redis keys start with, so several chats can
    /// share one Redis (default sockit:).
    #[arg(long, value_name = "PREFIX", requires = "redis")]
    pub redis_prefix: Option<String>,
    /// chat: the CA (PEM) that signed a rediss:// server's certificate,
    /// instead of the system roots.
    #[arg(long, value_name = "FILE", requires = "redis")]
    pub redis_ca: Option<PathBuf>,
}

/// The certificate and handshake limit of `tls://` listeners, shared by
/// the command line and the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsServerArgs {
    /// PEM certificate chain (leaf first) for tls:// listeners. Without
    /// one, a self-signed development certificate is made at start.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Close a tls:// connection whose handshake has not finished this long
    /// after it was accepted (default 10s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
}

/// How a client checks a `tls://` server (ignored for other addresses).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsClientArgs {
    /// Trust only the certificates in this PEM file, not the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The server name to send (SNI) and verify; default: the address's host.
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// Do not verify the server's certificate (a warning says so).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
}

impl TlsClientArgs {
    /// The options as the TLS client takes them.
    pub fn options(&self) -> ClientTlsOptions {
        ClientTlsOptions {
            ca: self.ca.clone(),
            servername: self.servername.clone(),
            insecure: self.insecure,
            no_resume: false,
        }
    }
}

/// Per-service limits, shared by the command line and the config file.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections served at once; beyond it a new one is told
    /// `error: too many connections` and closed.
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>(1, MAX_MAX_CONNS as u64))]
    pub max_conns: Option<usize>,
    /// Connections served at once from any one IP address; beyond it a
    /// new one from there is told `error: too many connections from your
    /// address` and closed (default: no such limit).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>(1, MAX_MAX_CONNS as u64))]
    pub max_conns_per_ip: Option<usize>,
    /// Close a connection that has been silent this long (0s: never).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Hand a connection that has been quiet this long, with nothing
    /// pending, back to the parking lot: its task and buffers are freed
    /// until its next bytes (line services and echo, on TCP and Unix;
    /// default 5s; 0s: never).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub park_after: Option<Duration>,
    /// The longest line a message service accepts (chat: default 4KiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_max_line)]
    pub max_line: Option<usize>,
    /// Only peers in this network may connect (repeatable; CIDR or address).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Peers in this network are refused (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<String>,
    /// UDP replies per second to one non-loopback source address (0: unlimited).
    #[arg(long, value_name = "N", value_parser = whole_number::<u32>(0, MAX_UDP_RATE.into()))]
    pub udp_rate: Option<u32>,
}

/// `sockit connect`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true, after_long_help = CONNECT_EXAMPLES)]
pub struct ConnectArgs {
    /// Where to connect: tcp://, udp://, unix://, unixgram://, tls:// or HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// Send line ends as CRLF, as telnet does.
    #[arg(long)]
    pub crlf: bool,
    /// Print what arrives as a hex dump.
    #[arg(long)]
    pub hex: bool,
    /// Over UDP, how long to wait for late replies after stdin ends (default
    /// 1s); over streams, the connect timeout (default 10s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// TLS verification, for tls:// addresses.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `sockit send`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true, after_long_help = SEND_EXAMPLES)]
pub struct SendArgs {
    /// Where to send: tcp://, udp://, unix://, unixgram://, tls:// or HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The messages; each is sent as a line (one datagram each over UDP).
    #[arg(value_name = "MESSAGE", required = true)]
    pub messages: Vec<String>,
    /// Send each message bare, without a line end, and wait for its reply.
    #[arg(long)]
    pub raw: bool,
    /// Give up when the replies have not all come by then.
    #[arg(long, value_name = "DUR", value_parser = parse_nonzero_duration, default_value = "5s")]
    pub timeout: Duration,
    /// TLS verification, for tls:// addresses.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `sockit ping`.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = PING_NOTES,
    after_long_help = with_examples(PING_NOTES, PING_EXAMPLES)
)]
pub struct PingArgs {
    /// The ping service: tcp://, udp://, unix://, unixgram://, tls:// or HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// Stop after sending COUNT requests (and waiting for their replies).
    /// Default: until Ctrl-C or -w.
    #[arg(short = 'c', long, value_name = "COUNT", value_parser = whole_number::<u64>(1, MAX_PING_COUNT))]
    pub count: Option<u64>,
    /// Time between requests (at least 1ms).
    #[arg(short = 'i', long, value_name = "INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Request size in bytes, line end included (at least `ping SEQ\n`).
    #[arg(short = 's', long, value_name = "SIZE", value_parser = parse_bytes, default_value = "64")]
    pub size: usize,
    /// Stop after this long, however many requests were sent or answered.
    #[arg(short = 'w', long = "deadline", value_name = "DEADLINE", value_parser = parse_nonzero_duration)]
    pub deadline: Option<Duration>,
    /// After the last request, wait this long for outstanding replies
    /// (default: twice the slowest round trip, at least 1s).
    #[arg(short = 'W', long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print JSON lines instead of text: one object per reply, then a summary.
    #[arg(long)]
    pub json: bool,
    /// TLS verification, for tls:// addresses.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `sockit bench`.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = BENCH_NOTES,
    after_long_help = with_examples(BENCH_NOTES, BENCH_EXAMPLES)
)]
pub struct BenchArgs {
    /// The service under load: tcp://, udp://, unix://, unixgram://, tls:// or HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// Connections to open (over UDP: sockets).
    #[arg(short = 'c', long = "connections", value_name = "CONNS", default_value_t = 10,
          value_parser = whole_number::<u32>(1, 10_000))]
    pub connections: u32,
    /// Requests in flight on each connection (open loop: at most this many).
    #[arg(long, value_name = "DEPTH", default_value_t = 1,
          value_parser = whole_number::<u32>(1, 4096))]
    pub pipeline: u32,
    /// How long to measure, after the warm-up.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_nonzero_duration, default_value = "10s")]
    pub duration: Duration,
    /// Load before measuring, left out of the results.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Request size in bytes, line end included (at least 5: `ping\n`).
    #[arg(short = 's', long, value_name = "SIZE", value_parser = parse_bytes, default_value = "16")]
    pub size: usize,
    /// Send this line (and `\n`) as every request instead of `ping ...`.
    #[arg(long, value_name = "LINE", conflicts_with = "size")]
    pub request: Option<String>,
    /// Open loop: send R requests per second in all, spread over the connections.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// A datagram request unanswered this long counts as a timeout; also the
    /// wait for each connection's first reply.
    #[arg(long, value_name = "DUR", value_parser = parse_nonzero_duration, default_value = "1s")]
    pub timeout: Duration,
    /// Worker threads, each with its share of the connections (default: the
    /// CPUs this process may run on, so `taskset -c 1` means one).
    #[arg(short = 't', long, value_name = "N", value_parser = whole_number::<u32>(1, 1024))]
    pub threads: Option<u32>,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Open a new connection for every request (over tls://, a handshake
    /// each time) and report connections opened per second.
    #[arg(long, conflicts_with_all = ["rate", "pipeline"])]
    pub reconnect: bool,
    /// With --reconnect over tls://: no session resumption, so every
    /// handshake is a full one.
    #[arg(long, requires = "reconnect")]
    pub no_resume: bool,
    /// TLS verification, for tls:// addresses.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `sockit chat`.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = CHAT_NOTES,
    after_long_help = with_examples(CHAT_NOTES, CHAT_EXAMPLES)
)]
pub struct ChatClientArgs {
    /// The chat: tcp://, unix://, tls://, HOST:PORT or HOST; without a port,
    /// the chat's 5000. Default: 127.0.0.1:5000.
    #[arg(value_name = "ADDR")]
    pub addr: Option<String>,
    /// Take this name once connected (sends `/nick NAME`).
    #[arg(short, long, value_name = "NAME", value_parser = parse_nick)]
    pub nick: Option<String>,
    /// How long connecting (and the TLS handshake) may take.
    #[arg(long, value_name = "DUR", value_parser = parse_nonzero_duration, default_value = "10s")]
    pub timeout: Duration,
    /// TLS verification, for tls:// addresses.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `chat --nick`: a name the chat would take (checked here, so a bad one
/// is a usage error before connecting).
fn parse_nick(text: &str) -> Result<String, String> {
    crate::chat::command::check_name(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `sockit completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `sockit peer`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true, after_long_help = PEER_EXAMPLES)]
pub struct PeerArgs {
    /// This node's UDP address (HOST:PORT means udp://HOST:PORT).
    #[arg(
        short,
        long = "listen",
        value_name = "ADDR",
        default_value = "udp://127.0.0.1:9999"
    )]
    pub listen: String,
    /// A member to join the mesh through (repeatable; any one is enough).
    #[arg(short, long = "join", value_name = "ADDR")]
    pub join: Vec<String>,
    /// This node's name in messages and /peers (default: HOSTNAME-PORT).
    #[arg(short, long, value_name = "NAME")]
    pub name: Option<String>,
    /// The address other members reach this node at, when it listens on a
    /// wildcard address such as 0.0.0.0.
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Authenticate and encrypt every datagram with a key derived from this
    /// secret; every member must use the same one. Other users can see a
    /// command line: prefer --secret-file.
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Like --secret, reading the secret from a file (trailing newline ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
    /// Script mode: one JSON object per line on stdout for every message and
    /// membership change (commands are still read from stdin).
    #[arg(long)]
    pub json: bool,
    /// Testing aid: drop this fraction (0 to 1) of outgoing datagrams.
    #[arg(long, value_name = "P", hide = true, default_value_t = 0.0, value_parser = parse_fraction)]
    pub simulate_loss: f64,
    /// Testing aid: send this fraction of outgoing datagrams twice.
    #[arg(long, value_name = "P", hide = true, default_value_t = 0.0, value_parser = parse_fraction)]
    pub simulate_duplicate: f64,
    /// Testing aid: delay this fraction of outgoing datagrams by up to 30ms,
    /// so later ones overtake them.
    #[arg(long, value_name = "P", hide = true, default_value_t = 0.0, value_parser = parse_fraction)]
    pub simulate_reorder: f64,
}

/// The services as clap offers them: `sockit serve ping`.
impl ValueEnum for ServiceKind {
    fn value_variants<'a>() -> &'a [Self] {
        &ServiceKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.summary()))
    }
}

/// How `sockit ping` works, after its options in `-h` and `--help`.
const PING_NOTES: &str = "Each request is the line `ping SEQ PADDING`, one datagram each over UDP; \
the service answers `pong SEQ PADDING`. Requests go out every INTERVAL whether or not \
replies came; lost, duplicated and reordered replies are counted. Ctrl-C (or -c, or -w) \
ends the run and prints the summary. Exit status 0 only if a reply came back.\n\n\
--json prints one JSON object per line: {\"type\":\"reply\",...} per reply, then \
{\"type\":\"summary\",...} (see docs/bench.md).";

/// How `sockit bench` works, after its options in `-h` and `--help`.
const BENCH_NOTES: &str = "Each request is one line, `ping 0000000000 abc...` padded to SIZE \
(or --request LINE); each reply is one line (one datagram over UDP), so sockit's echo, \
ping, hello and timestamp services and any line-reply server (redis's inline PING) work. \
Closed loop keeps DEPTH requests in flight per connection; open loop (--rate) sends on \
schedule and measures latency from the scheduled time. Exit status 1 if no request \
completed. Fields of --json: see docs/bench.md.";

/// How `sockit chat` works, after its options in `-h` and `--help`.
const CHAT_NOTES: &str = "On a terminal (stdin and stdout both): a screen with the room's \
lines, its members and an input line. Enter sends; PageUp/PageDown and Up/Down scroll; \
Ctrl-C, Ctrl-D on an empty line, or /quit leave. Your own lines are shown as you send \
them (the chat sends no copy back). Otherwise plain lines: each stdin line is sent as it \
is and each received line printed as it is; at the end of stdin the connection is \
half-closed and sockit exits when the server closes it.";

// The examples end each subcommand's `--help` (not `-h`), as ripgrep's and
// curl's do. tests/cli.rs parses every one of them.

const SERVE_EXAMPLES: &str = "\
Examples:
  sockit serve echo                   # TCP and UDP 127.0.0.1:7007
  sockit serve ping -l tcp://0.0.0.0:8888 -l udp://0.0.0.0:8888
  sockit serve hello -l unix:///tmp/hello.sock --max-conns 100 --idle-timeout 30s
  sockit serve timestamp -l 0.0.0.0:21567 --allow 10.0.0.0/8 --max-line 4KiB
  sockit serve ping -l :8888 -l tls://127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem
  sockit serve echo -l tls://127.0.0.1:7443   # self-signed development certificate
  sockit serve chat                   # telnet 127.0.0.1 5000
  sockit serve chat -l :5000 -l tls://0.0.0.0:5443 --history 50 --flood-rate 0
  sockit serve chat --web :5080       # and a chat page at http://127.0.0.1:5080/
  sockit serve --config services.toml # several services, like inetd";

const CONNECT_EXAMPLES: &str = "\
Examples:
  sockit connect 127.0.0.1:7007       # type lines, read the echo
  sockit connect --crlf tcp://[::1]:8000
  sockit connect udp://127.0.0.1:7007 --timeout 2
  echo hello | sockit connect --hex unix:///tmp/echo.sock
  sockit connect --ca ca.pem tls://localhost:7443
  sockit connect --insecure tls://127.0.0.1:7443  # e.g. a development certificate";

const SEND_EXAMPLES: &str = "\
Examples:
  sockit send 127.0.0.1:8000 World    # Hello, World
  sockit send udp://127.0.0.1:8888 ping one two
  sockit send --raw 127.0.0.1:21567 hi --timeout 0.5
  sockit send --ca ca.pem --servername sockit.example tls://10.0.0.5:8443 ping";

const PING_EXAMPLES: &str = "\
Examples:
  sockit ping 127.0.0.1:8888          # once a second until Ctrl-C
  sockit ping udp://127.0.0.1:8888 -c 10 -i 0.2
  sockit ping unix:///tmp/ping.sock -w 5 -s 1KiB
  sockit ping 127.0.0.1:8888 -c 100 -i 10ms --json";

const BENCH_EXAMPLES: &str = "\
Examples:
  sockit bench 127.0.0.1:7007 -c 50 --pipeline 8 -d 5
  sockit bench udp://127.0.0.1:8888 --rate 10000 -d 30s --json
  sockit bench 127.0.0.1:6379 --request PING -c 4
  sockit bench --ca ca.pem tls://localhost:8443 -c 50
  sockit bench --insecure tls://127.0.0.1:8443 --reconnect -c 8   # handshakes/s";

const CHAT_EXAMPLES: &str = "\
Examples:
  sockit chat                         # the chat at 127.0.0.1:5000
  sockit chat chat.example --nick alice
  sockit chat unix:///tmp/chat.sock -n bob
  sockit chat --ca ca.pem tls://chat.example:5443
  printf '/nick bot\\nhello\\n' | sockit chat 127.0.0.1:5000   # plain lines when piped";

const PEER_EXAMPLES: &str = "\
Examples:
  sockit peer --name alice -l 127.0.0.1:9999
  sockit peer --name bob -l 127.0.0.1:10000 --join 127.0.0.1:9999
  sockit peer -l :10001 -j :9999 --secret-file mesh.key --json";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  sockit completions bash > ~/.local/share/bash-completion/completions/sockit
  sockit completions zsh > ~/.zfunc/_sockit
  sockit completions fish > ~/.config/fish/completions/sockit.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  sockit man > sockit.1 && man ./sockit.1
  sockit man > /usr/local/share/man/man1/sockit.1
  sockit man > ~/.local/share/man/man1/sockit.1";

/// A subcommand's notes followed by its examples, for `--help`.
fn with_examples(notes: &str, examples: &str) -> String {
    format!("{notes}\n\n{examples}")
}

/// The most `ping -c` takes: at `-i 1ms`, eleven days of pinging.
const MAX_PING_COUNT: u64 = 1_000_000_000;

/// Parses the command line, exiting on a mistake or for `--help` and
/// `--version` as clap does, except that a bad value (`--max-conns 0`,
/// `-i soon`) is reported as one line, like sockit's other usage errors:
/// `sockit: invalid value '0' for '--max-conns <N>': expected ...`.
pub fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    Cli::try_parse().unwrap_or_else(|e| match e.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            eprintln!("sockit: {}", one_line(&e));
            std::process::exit(2);
        }
        _ => e.exit(),
    })
}

/// A clap error's text on one line, without the `error: ` label and the
/// pointer to `--help`.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let joined = lines.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// A value parser for a whole number from `lo` to `hi`; whatever is wrong
/// with the text (`-1`, `1e308`, `NaN`, too many digits), the message
/// gives the range.
fn whole_number<T>(lo: u64, hi: u64) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: TryFrom<u64>,
{
    move |text| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("expected a whole number from {lo} to {hi}"))
    }
}

/// `peer --simulate-*`: a fraction of datagrams, from 0 to 1.
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("expected a fraction from 0 to 1, like 0.1".into()),
    }
}

/// `--max-line`: a size between one byte and [`MAX_MAX_LINE`].
fn parse_max_line(text: &str) -> Result<usize, String> {
    match parse_bytes(text)? {
        n if (1..=MAX_MAX_LINE).contains(&n) => Ok(n),
        n => Err(format!("{n} bytes: must be between 1 byte and 16MiB")),
    }
}

/// `bench --rate`: a finite number of requests per second within
/// [`crate::bench::MIN_RATE`] and [`crate::bench::MAX_RATE`], so that
/// each connection's send interval is a duration the timers can hold.
fn parse_rate(text: &str) -> Result<f64, String> {
    use crate::bench::{MAX_RATE, MIN_RATE};
    match text.trim().parse::<f64>() {
        Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "must be between {MIN_RATE} and {MAX_RATE} requests per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn whole_numbers_name_their_range() {
        let conns = whole_number::<usize>(1, 10);
        assert_eq!(conns("10"), Ok(10));
        for bad in [
            "0",
            "11",
            "-1",
            "1e308",
            "NaN",
            "inf",
            "99999999999999999999999",
            "",
        ] {
            assert_eq!(
                conns(bad),
                Err("expected a whole number from 1 to 10".to_string()),
                "{bad:?}"
            );
        }
        // The range is checked before the narrowing conversion.
        assert!(whole_number::<u8>(0, 1000)("300").is_err());
    }

    #[test]
    fn value_errors_are_one_line() {
        let e = Cli::try_parse_from(["sockit", "serve", "echo", "--max-conns", "-1"]).unwrap_err();
        assert_eq!(
            one_line(&e),
            "invalid value '-1' for '--max-conns <N>': expected a whole number from 1 to 1000000"
        );
        let e = Cli::try_parse_from(["sockit", "--log-format", "xml", "ping", "x"]).unwrap_err();
        assert_eq!(
            one_line(&e),
            "invalid value 'xml' for '--log-format <LOG_FORMAT>' [possible values: text, json]"
        );
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in [
            "0", "-1", "1e-20", "1e308", "NaN", "inf", "-inf", "lots", "",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn fractions_are_bounded() {
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert_eq!(parse_fraction("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "1e308", "NaN", "inf", "half"] {
            assert!(parse_fraction(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn max_lines_are_bounded() {
        assert_eq!(parse_max_line("1KiB"), Ok(1024));
        assert_eq!(parse_max_line("16MiB"), Ok(16 << 20));
        for bad in ["0", "17MiB", "-1"] {
            assert!(parse_max_line(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
