//! The clients: `connect` (netcat), `send` (the tutorials' one-shot
//! client), `ping`, and `chat` (the chat's terminal client), and what they
//! share.
//!
//! Every client opens its socket through `socket::open`, which turns an
//! [`Endpoint`](crate::net::addr::Endpoint) into a connected stream or
//! datagram socket within a timeout, and fails with a [`ClientError`] that
//! names the address. `input` (stdin) and `output` (stdout) hold the byte
//! plumbing between that socket and the terminal.

pub mod chat;
pub mod connect;
pub mod ping;
pub mod send;

mod input;
mod output;
pub(crate) mod socket;

pub use crate::net::connect::ClientError;
