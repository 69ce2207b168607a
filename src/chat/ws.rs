//! One member on a WebSocket (`serve chat --web`, after the upgrade in
//! [`web`](super::web)): a member exactly like a telnet one, with frames
//! for lines. Each text frame in is one line, checked the same way
//! (length, escaping, flood control) by the same code; each line out is
//! one text frame, without a line end.
//!
//! tungstenite does the framing: masking, fragments, UTF-8 checks, the
//! size caps, and ping/pong (a ping is answered while the reader reads).
//! As in [`session`](super::session), the reader and the writer run side
//! by side, so a member whose socket is full still has its lines read.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::hub::{Flow, Hub, Inbox, Lines, Membership, Speech};
use super::notice::Notice;
use super::session::{DRAIN_WAIT, Flood, KEPT_BATCH, WRITE_BATCH, act};
use crate::service::{ConnContext, IdleTimer};

/// How long the client gets to answer our close frame before the
/// connection is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// tungstenite's read buffer. Its default (128 KiB) would cost 1.3 GB
/// for 10,000 members; a line is at most 4 KiB by default.
const READ_BUFFER: usize = 8 * 1024;

/// Bytes of outgoing frames tungstenite gathers before it writes them.
const WRITE_BUFFER: usize = 16 * 1024;

/// Why the reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client sent a close frame (answered by tungstenite) or hung up.
    Closed,
    /// `/quit`: the queued lines (its `* bye`), then our close frame.
    Quit,
    /// `--idle-timeout` passed without a frame.
    Idle,
}

/// The largest message (and frame) accepted from a member: four times
/// `--max-line`. A text frame up to `max_line` bytes is a line, one up to
/// this gets the too-long notice like an over-long telnet line, and a
/// larger one ends the connection with close code 1009 before it is
/// buffered.
pub fn max_message(max_line: usize) -> usize {
    max_line.saturating_mul(4).max(1024)
}

/// Serves one member over an upgraded connection until it leaves, is
/// dropped, or the grace period after a shutdown signal ends.
///
/// # Errors
/// I/O and protocol errors on the WebSocket; they end only this member.
pub async fn serve<S>(hub: &Arc<Hub>, io: S, ctx: &ConnContext) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cap = max_message(ctx.max_line);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let ws = Shared(Mutex::new(
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await,
    ));
    let (member, mut lines) = hub.join(ctx.peer.to_string(), None).await;
    let dropped = lines.dropped.clone();
    let close = {
        let mut source = Frames(&ws);
        let reading = read_frames(&mut source, &member, hub, ctx);
        let writing = write_lines(&ws, &mut lines);
        tokio::pin!(reading, writing);
        let read = tokio::select! {
            read = &mut reading => read,
            written = &mut writing => return written.map_err(io::Error::other),
            // Too slow: its socket is not being read, so no last word.
            _ = dropped.cancelled() => return Ok(()),
            _ = ctx.force_close.cancelled() => Err(CloseCode::Away),
        };
        match read {
            Ok(End::Closed) => return Ok(()),
            Ok(End::Quit) => {
                // Leaving closes the queue once drained, which ends the writer.
                member.leave();
                tokio::select! {
                    _ = tokio::time::timeout(DRAIN_WAIT, &mut writing) => {}
                    _ = ctx.force_close.cancelled() => {}
                }
                CloseCode::Normal
            }
            Ok(End::Idle) | Err(CloseCode::Away) => CloseCode::Away,
            Err(code) => code,
        }
    };
    member.leave();
    let frame = CloseFrame {
        code: close,
        reason: "".into(),
    };
    // Our close frame, then the client's answer (or a second's wait).
    let mut ws = ws.0.into_inner().unwrap_or_else(PoisonError::into_inner);
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    Ok(())
}

/// The member's WebSocket, read and written side by side in its task.
/// A lock of its own rather than `StreamExt::split`: the writer takes it
/// once a poll for as much of a batch of frames as goes, where the split
/// halves lock twice a frame (`poll_ready`, `start_send`). The two sides take turns in one
/// task, so the lock is never contended.
struct Shared<S>(Mutex<WebSocketStream<S>>);

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, WebSocketStream<S>> {
        // A panic while holding it ends the task that holds the other
        // side too: nothing half-done can be seen.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reading side of [`Shared`].
struct Frames<'a, S>(&'a Shared<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Frames<'_, S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.lock().poll_next_unpin(cx)
    }
}

/// Reads the member's frames and acts on them, until a close frame, EOF,
/// `/quit` or the idle timeout; a frame the protocol refuses ends it with
/// the close code to send.
async fn read_frames<R>(
    source: &mut R,
    member: &Membership,
    hub: &Hub,
    ctx: &ConnContext,
) -> Result<End, CloseCode>
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut flood = Flood::new(hub.config().flood_rate, hub.config().flood_burst);
    let mut idle = IdleTimer::new(ctx.idle_timeout);
    let mut speech = Speech::default();
    let mut told_shutdown = false;
    let mut told_binary = false;
    loop {
        let message = tokio::select! {
            biased;
            message = source.next() => message,
            _ = ctx.stop_accepting.cancelled(), if !told_shutdown => {
                told_shutdown = true;
                member.notice(Notice::ShuttingDown);
                continue;
            }
            _ = idle.expired() => return Ok(End::Idle),
        };
        let message = match message {
            None => return Ok(End::Closed),
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(close_code(&e)),
        };
        idle.touch();
        match message {
            Message::Text(text) => {
                let line = strip_line_end(text.as_str());
                if line.len() > ctx.max_line {
                    member.notice(Notice::TooLong { max: ctx.max_line });
                } else if act(member, line.as_bytes(), &mut flood, &mut speech).await == Flow::Quit
                {
                    return Ok(End::Quit);
                }
                // A frame is a line: each goes out as it comes.
                member.speak(&mut speech);
            }
            Message::Binary(_) => {
                if !told_binary {
                    told_binary = true;
                    member.notice(Notice::Binary);
                }
            }
            // tungstenite has queued the answer; the stream ends next.
            Message::Close(_) => {}
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// The close code for a frame tungstenite refused: too big (1009), not
/// UTF-8 (1007), any other protocol error (1002).
fn close_code(error: &WsError) -> CloseCode {
    match error {
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        _ => CloseCode::Protocol,
    }
}

/// A frame is one line: a line end at its end (some clients add one) is
/// not part of it. Line ends inside it are control characters like any
/// other and shown escaped.
fn strip_line_end(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// Writes the member's queued lines, one text frame each, until the queue
/// closes; one flush per batch.
async fn write_lines<S>(ws: &Shared<S>, lines: &mut Inbox) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch = VecDeque::new();
    while lines.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let mut sent = Sent::default();
        std::future::poll_fn(|cx| send_batch(&mut ws.lock(), cx, &batch, &mut sent)).await?;
        batch.clear();
        if batch.capacity() > KEPT_BATCH {
            batch = VecDeque::new();
        }
    }
    Ok(())
}

/// How far [`send_batch`] got: whole entries of the batch, and lines of
/// the next one.
#[derive(Default)]
struct Sent {
    entries: usize,
    lines: usize,
}

/// Queues the batch's lines in tungstenite, one text frame each, from
/// where `sent` says, then flushes them: pending when the socket is full,
/// to go on from there.
fn send_batch<S>(
    ws: &mut WebSocketStream<S>,
    cx: &mut Context<'_>,
    batch: &VecDeque<Lines>,
    sent: &mut Sent,
) -> Poll<Result<(), WsError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(entry) = batch.get(sent.entries) {
        for line in entry.iter().skip(sent.lines) {
            ready!(ws.poll_ready_unpin(cx))?;
            ws.start_send_unpin(Message::text(line.to_owned()))?;
            sent.lines += 1;
        }
        sent.entries += 1;
        sent.lines = 0;
    }
    ws.poll_flush_unpin(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_line() {
        assert_eq!(strip_line_end("hi\r\n"), "hi");
        assert_eq!(strip_line_end("hi\n"), "hi");
        assert_eq!(strip_line_end("a\nb"), "a\nb");
    }

    #[test]
    fn the_cap_leaves_room_for_the_too_long_notice() {
        assert_eq!(max_message(4096), 16384);
        assert_eq!(max_message(10), 1024);
        assert_eq!(max_message(usize::MAX), usize::MAX);
    }
}
