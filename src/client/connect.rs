//! `sockit connect ADDR`: netcat. Stdin goes to the socket and the socket
//! to stdout, byte for byte, until the conversation is over.
//!
//! Over a stream, the end of stdin half-closes the connection (shutdown of
//! the write side), so the server sees EOF and can still answer; the session
//! ends when the server closes, whether or not stdin has ended. Over UDP and
//! unixgram each stdin line is one datagram, every reply datagram is printed
//! as it comes, and once stdin ends late replies get `--timeout` to arrive.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::input::{self, LineEnds, LineSplitter, StdinChunks};
use super::output::Output;
use super::socket::{self, ClientError, ClientSocket, Connector, Datagram, RECV_BUFFER};
use crate::cli::ConnectArgs;
use crate::net::addr::{DefaultScheme, Endpoint};
use crate::net::stream::Stream;

/// How long opening a connection may take, unless `--timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long replies may still come after stdin ends over datagrams, unless
/// `--timeout` says.
const LATE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// The longest stdin line sent as one datagram: the largest UDP payload
/// over IPv4.
const MAX_DATAGRAM_LINE: usize = 65_507;

/// Runs `sockit connect`.
///
/// # Errors
/// A malformed address (exit status 2); a socket that cannot be opened, or
/// fails on the way, with a one-line reason naming the address; a failure to
/// read stdin or write stdout.
pub async fn run(args: &ConnectArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(&args.addr, DefaultScheme::Tcp)?;
    let addr = endpoint.to_string();
    // Over datagrams `--timeout` is the wait for late replies, so opening
    // (resolving a name, really) keeps the default.
    let open_timeout = match args.timeout {
        Some(timeout) if !endpoint.is_datagram() => timeout,
        _ => CONNECT_TIMEOUT,
    };
    let connection = Connector::new(&endpoint, open_timeout, &args.tls.options())?
        .open()
        .await?;
    let stdin = input::read_stdin(std::io::stdin().is_terminal()).context("read stdin")?;
    let line_ends = LineEnds::new(args.crlf);
    let mut output = Output::new(args.hex);
    match connection {
        ClientSocket::Stream(stream) => {
            relay_stream(stream, stdin, line_ends, &mut output, &addr).await
        }
        ClientSocket::Datagram(socket) => {
            let late_wait = args.timeout.unwrap_or(LATE_REPLY_WAIT);
            let datagrams = Datagrams {
                socket: &socket,
                addr: &addr,
                output: &mut output,
            };
            socket::until_interrupted(datagrams.relay(stdin, line_ends, late_wait)).await
        }
    }
}

/// Runs both directions of a stream at once until the peer closes (also
/// `sockit chat`'s plain line mode).
pub(super) async fn relay_stream(
    stream: Stream,
    stdin: StdinChunks,
    line_ends: LineEnds,
    output: &mut Output,
    addr: &str,
) -> anyhow::Result<()> {
    let (reader, writer) = tokio::io::split(stream);
    let download = download(reader, output, addr);
    tokio::pin!(download);
    tokio::select! {
        finished = &mut download => return finished,
        sent = upload(writer, stdin, line_ends, addr) => sent?,
    }
    // Stdin is done and the peer has seen EOF: it decides when we end.
    download.await
}

/// Copies stdin to the socket, then shuts the write side (over TLS:
/// close_notify, then the TCP write shutdown, as `Stream`'s shutdown does).
async fn upload(
    mut writer: impl AsyncWrite + Unpin,
    mut stdin: StdinChunks,
    mut line_ends: LineEnds,
    addr: &str,
) -> anyhow::Result<()> {
    while let Some(chunk) = stdin.recv().await {
        let chunk = chunk.context("read stdin")?;
        if let Err(e) = writer.write_all(line_ends.apply(&chunk)).await {
            // Writing fails once the peer has gone. What it sent before is
            // still to be read, so the download, not this error, decides how
            // the session ends.
            tracing::debug!(%addr, error = %e, "stopped sending");
            return Ok(());
        }
    }
    if let Err(e) = writer.shutdown().await {
        tracing::debug!(%addr, error = %e, "could not half-close");
    }
    Ok(())
}

/// Copies the socket to stdout until the peer closes.
async fn download(
    mut reader: impl AsyncRead + Unpin,
    output: &mut Output,
    addr: &str,
) -> anyhow::Result<()> {
    let mut buf = vec![0; input::CHUNK];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|cause| ClientError::io("read from", addr, cause))?;
        if n == 0 {
            return Ok(());
        }
        output.write(&buf[..n]).await.context("write to stdout")?;
    }
}

/// A datagram session: stdin lines out, replies to stdout.
struct Datagrams<'a> {
    socket: &'a Datagram,
    addr: &'a str,
    output: &'a mut Output,
}

impl Datagrams<'_> {
    /// Sends each stdin line as it comes and prints replies meanwhile; after
    /// stdin ends, prints what still comes within `late_wait`.
    async fn relay(
        mut self,
        mut stdin: StdinChunks,
        mut line_ends: LineEnds,
        late_wait: Duration,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0; RECV_BUFFER];
        let mut lines = LineSplitter::new(MAX_DATAGRAM_LINE);
        loop {
            tokio::select! {
                chunk = stdin.recv() => {
                    let Some(chunk) = chunk else { break };
                    lines.extend(line_ends.apply(&chunk.context("read stdin")?));
                    while let Some(line) = lines.next_line()? {
                        self.send(line).await?;
                    }
                }
                received = self.socket.recv(&mut buf) => self.print(received, &buf).await?,
            }
        }
        if let Some(last) = lines.finish() {
            self.send(last).await?;
        }
        let deadline = Instant::now() + late_wait;
        while let Ok(received) = timeout_at(deadline, self.socket.recv(&mut buf)).await {
            self.print(received, &buf).await?;
        }
        Ok(())
    }

    async fn send(&self, datagram: &[u8]) -> anyhow::Result<()> {
        self.socket
            .send(datagram)
            .await
            .map_err(|cause| ClientError::io("send to", self.addr, cause).into())
    }

    /// Prints one received datagram, or fails with the receive error (a
    /// UDP server that is not there shows up here as `connection refused`).
    async fn print(&mut self, received: std::io::Result<usize>, buf: &[u8]) -> anyhow::Result<()> {
        let n = received.map_err(|cause| ClientError::io("receive from", self.addr, cause))?;
        self.output
            .write(&buf[..n])
            .await
            .context("write to stdout")
    }
}
