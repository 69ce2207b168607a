//! sockit: one binary, and this library behind it, that does as real
//! software what the classic socket-programming tutorials teach.
//!
//! How the crate is laid out (a byte's path is in `docs/architecture.md`):
//!
//! - [`cli`]: the command line; [`config`]: checked server settings built
//!   from it or from a TOML file.
//! - [`net`]: addresses, binding and accepting ([`net::listener`]), bounded
//!   line framing ([`net::frame`]), access lists and UDP rate limits.
//! - [`server`]: runs services on listeners, with connection limits, idle
//!   timeouts and graceful shutdown ([`shutdown`]); with `--workers N`,
//!   in N processes ([`server::workers`]).
//! - [`service`]: one module per service (hello, echo, ping, ...).
//! - [`client`]: `connect` (netcat), `send` (one-shot client), `ping`,
//!   `chat` (a terminal UI for the chat).
//! - [`http`]: `serve http`, the static file server on hyper; [`http::path`]
//!   keeps requests in the root.
//! - [`bench`](mod@bench): the load generator behind `sockit bench`; the
//!   latency histogram it shares with `ping` lives in `stats`.
//! - [`chat`]: `serve chat`, the chat room for telnet and nc.
//! - [`metrics`]: what servers count, for `--metrics` and SIGUSR1.
//! - [`peer`]: the P2P UDP mesh behind `sockit peer`.

pub mod bench;
pub mod chat;
pub mod cli;
pub mod client;
pub mod completions;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod peer;
pub mod server;
pub mod service;
pub mod shutdown;
pub(crate) mod stats;
pub(crate) mod stdin;
pub mod units;
