//! `sockit chat ADDR`: the client for `sockit serve chat` (SPEC 3, 5).
//!
//! On a terminal (stdin and stdout both) it is a chat screen: `app` runs
//! it, `ui` draws it, `room` keeps the room and its members from the
//! server's lines, `scrollback` and `editor` hold the lines shown and
//! the line typed, and `terminal` puts the terminal back however it
//! ends. Anywhere else it is `sockit connect` for chat lines: each stdin
//! line is sent as it is and each line received printed as it is; at the
//! end of stdin the connection is half-closed, the chat sends what it owes
//! and closes, and sockit exits then. `--nick` sends `/nick NAME` first in
//! both.
//!
//! The chat speaks over streams: TCP, Unix and TLS. An address without a
//! port gets the chat's (5000).

mod app;
mod editor;
mod room;
mod scrollback;
mod terminal;
mod ui;

use std::io::IsTerminal;

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use super::connect::relay_stream;
use super::input::{self, LineEnds};
use super::output::Output;
use super::socket::{ClientError, ClientSocket, Connector};
use crate::cli::ChatClientArgs;
use crate::error::UsageError;
use crate::net::addr::{DefaultScheme, Endpoint, HostPort};
use crate::net::stream::Stream;
use crate::service::ServiceKind;

/// Runs `sockit chat`.
///
/// # Errors
/// A malformed or datagram address (exit status 2); a connection that
/// cannot be opened, or fails, with a one-line reason naming the address;
/// a terminal that cannot be set up.
pub async fn run(args: &ChatClientArgs) -> anyhow::Result<()> {
    let port = ServiceKind::Chat
        .default_port()
        .expect("the chat service has a default port");
    let text = match &args.addr {
        Some(addr) => addr.clone(),
        None => format!("{}:{port}", HostPort::DEFAULT_HOST),
    };
    let endpoint = Endpoint::parse_or_port(&text, DefaultScheme::Tcp, port)?;
    if endpoint.is_datagram() {
        return Err(UsageError(format!(
            "{endpoint}: the chat is a stream protocol; use tcp://, unix:// or tls://"
        ))
        .into());
    }
    let addr = endpoint.to_string();
    let connection = Connector::new(&endpoint, args.timeout, &args.tls.options())?
        .open()
        .await?;
    let ClientSocket::Stream(stream) = connection else {
        anyhow::bail!("{addr}: not a stream");
    };
    let nick = args.nick.as_deref();
    if on_a_terminal() {
        app::run(stream, addr, nick).await
    } else {
        plain(stream, &addr, nick).await
    }
}

/// Whether the chat screen can be shown: stdin and stdout are the
/// terminal, and it is not one that cannot move its cursor.
fn on_a_terminal() -> bool {
    std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// Plain line mode: `sockit connect` after a `/nick`.
async fn plain(mut stream: Stream, addr: &str, nick: Option<&str>) -> anyhow::Result<()> {
    if let Some(nick) = nick {
        let sent = async {
            stream
                .write_all(format!("/nick {nick}\n").as_bytes())
                .await?;
            stream.flush().await
        };
        sent.await
            .map_err(|cause| ClientError::io("send to", addr, cause))?;
    }
    // No `> ` prompt: received lines come at any time, and would break
    // into it.
    let stdin = input::read_stdin(false).context("read stdin")?;
    relay_stream(
        stream,
        stdin,
        LineEnds::new(false),
        &mut Output::new(false),
        addr,
    )
    .await
}
