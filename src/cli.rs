//! The command line, as clap derive types: one subcommand per tool.
//!
//! Values stay raw strings here where a bad one must produce sockit's own
//! one-line error (addresses), and are checked into settings by the module
//! that uses them (`config` for `serve`, `client` for the clients).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::service::Service;
use crate::units::{parse_bytes, parse_duration};

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
    Serve(ServeArgs),
    /// Talk to a socket like netcat: stdin to the socket, the socket to stdout.
    Connect(ConnectArgs),
    /// Send messages, print the replies, exit (the tutorials' one-shot client).
    Send(SendArgs),
}

/// `sockit serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum, required_unless_present = "config")]
    pub service: Option<Service>,
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
    /// After SIGINT/SIGTERM, how long open connections may go on.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
}

/// Per-service limits, shared by the command line and the config file.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections served at once; beyond it a new one is told
    /// `error: too many connections` and closed.
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Close a connection that has been silent this long (0s: never).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// The longest line a message service accepts.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_line: Option<usize>,
    /// Only peers in this network may connect (repeatable; CIDR or address).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Peers in this network are refused (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<String>,
    /// UDP replies per second to one non-loopback source address (0: unlimited).
    #[arg(long, value_name = "N")]
    pub udp_rate: Option<u32>,
}

/// `sockit connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Where to connect: tcp://, udp://, unix://, unixgram:// or HOST:PORT.
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
}

/// `sockit send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Where to send: tcp://, udp://, unix://, unixgram:// or HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The messages; each is sent as a line (one datagram each over UDP).
    #[arg(value_name = "MESSAGE", required = true)]
    pub messages: Vec<String>,
    /// Send each message bare, without a line end, and wait for its reply.
    #[arg(long)]
    pub raw: bool,
    /// Give up when the replies have not all come by then.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
