//! The line-framed message loop shared by hello, timestamp and ping.
//!
//! One reply per message, in order, ending with the line end the message
//! used (SPEC 2). Replies produced from one read are gathered into one
//! buffer and written together, so a pipelining client costs one write per
//! batch rather than one per line. A message with no line end that then
//! sits idle for the flush delay is answered as a bare message, and so is a
//! trailing fragment at EOF.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::net::frame::{Frame, LineBuffer};
use crate::net::stream::Stream;
use crate::service::clock::Clock;
use crate::service::{
    ConnContext, IdleTimer, Served, Silence, hello, ping, timestamp, write_bounded,
};

/// Replies are written once this much has been gathered, even mid-batch,
/// so a flood of pipelined lines cannot grow the reply buffer unboundedly.
const WRITE_THRESHOLD: usize = 64 * 1024;

/// The services that answer each message with one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `Hello, M`.
    Hello,
    /// `[ctime] M`.
    Timestamp,
    /// `pong`, or `pong REST` for `ping REST`.
    Ping,
}

impl MessageKind {
    /// Appends the reply to `msg` (without a line end) to `out`.
    pub fn reply(self, msg: &[u8], out: &mut Vec<u8>, clock: &mut Clock) {
        match self {
            MessageKind::Hello => hello::reply(msg, out),
            MessageKind::Timestamp => timestamp::reply(msg, out, clock),
            MessageKind::Ping => ping::reply(msg, out),
        }
    }
}

/// The reply to a line over the `--max-line` limit.
pub fn too_long_reply(max_line: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = writeln!(out, "error: line too long (max {max_line} bytes)");
}

/// Serves one connection until the client closes, goes idle, or the
/// shutdown grace period ends; or, with `park_after`, until it has been
/// quiet that long with no partial line held ([`Served::Quiet`]: every
/// reply has been written by then, and the buffers go with the task).
///
/// # Errors
/// I/O errors on the stream (a reset client, say); the caller logs them.
pub async fn serve(
    kind: MessageKind,
    stream: &mut Stream,
    ctx: &ConnContext,
) -> io::Result<Served> {
    let mut lines = LineBuffer::new(ctx.max_line);
    let mut out = Vec::new();
    let mut clock = Clock::new();
    let mut idle = IdleTimer::parking(ctx.idle_timeout, ctx.park_after);
    let flush = tokio::time::sleep(ctx.flush_delay);
    // Made once: a fresh `cancelled()` each turn would join and leave the
    // token's waiter list on every read.
    let force_close = ctx.force_close.cancelled();
    tokio::pin!(flush, force_close);
    let mut partial_waiting = false;

    loop {
        tokio::select! {
            biased;
            read = read_some(stream, &mut lines) => {
                if read? == 0 {
                    if let Some(frame) = lines.take_partial() {
                        respond(kind, frame, ctx.max_line, &mut out, &mut clock);
                        ctx.metrics.messages.inc();
                    }
                    write_bounded(stream, &mut out, ctx, &mut idle).await?;
                    return Ok(Served::Closed);
                }
                idle.touch();
                // Counted once per read, not per line: one atomic add for
                // a whole pipelined batch.
                let mut answered = 0;
                while let Some(frame) = lines.next_frame() {
                    respond(kind, frame, ctx.max_line, &mut out, &mut clock);
                    answered += 1;
                    if out.len() >= WRITE_THRESHOLD {
                        write_bounded(stream, &mut out, ctx, &mut idle).await?;
                    }
                }
                ctx.metrics.messages.inc_by(answered);
                write_bounded(stream, &mut out, ctx, &mut idle).await?;
                partial_waiting = lines.has_partial();
                if partial_waiting {
                    flush.as_mut().reset(Instant::now() + ctx.flush_delay);
                }
            }
            _ = &mut flush, if partial_waiting => {
                partial_waiting = false;
                if let Some(frame) = lines.take_partial() {
                    respond(kind, frame, ctx.max_line, &mut out, &mut clock);
                    ctx.metrics.messages.inc();
                }
                write_bounded(stream, &mut out, ctx, &mut idle).await?;
            }
            _ = &mut force_close => return Ok(Served::Closed),
            // A partial line is answered within the flush delay: silence
            // is judged after that.
            silence = idle.silence(), if !partial_waiting => match silence {
                Silence::Idle => {
                    tracing::debug!("closing idle connection");
                    return Ok(Served::Closed);
                }
                // Mid-way through dropping an over-long line: that state
                // lives in the buffer, so the connection keeps its task.
                Silence::Quiet if !lines.is_clear() => idle.defer_park(),
                Silence::Quiet => return Ok(Served::Quiet(idle.last_active())),
            },
        }
    }
}

/// Reads once into `lines` and records what came; 0 at EOF. Until the
/// buffer has been allocated (the client's first bytes), waits without it,
/// so a connection that never sends costs no buffer at all.
async fn read_some(stream: &mut Stream, lines: &mut LineBuffer) -> io::Result<usize> {
    if lines.capacity() == 0 {
        let limit = lines.first_read_len();
        return stream
            .read_unbuffered(limit, |bytes| lines.push(bytes))
            .await;
    }
    let n = stream.read(lines.spare()).await?;
    lines.filled(n);
    Ok(n)
}

fn respond(
    kind: MessageKind,
    frame: Frame<'_>,
    max_line: usize,
    out: &mut Vec<u8>,
    clock: &mut Clock,
) {
    match frame {
        Frame::Line(msg, end) => {
            kind.reply(msg, out, clock);
            out.extend_from_slice(end.bytes());
        }
        Frame::TooLong => too_long_reply(max_line, out),
    }
}
