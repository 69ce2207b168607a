//! `echo` (RFC 862): every byte back, unchanged; and `discard` (RFC 863),
//! which reads the same way and sends nothing. Binary safe.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::stream::Stream;
use crate::service::{ConnContext, IdleTimer, Served, Silence};

/// First read buffer; small so that idle connections stay cheap.
const INITIAL_BUFFER: usize = 4 * 1024;
/// The buffer doubles while reads fill it, up to this, so bulk transfers
/// move in large chunks.
const MAX_BUFFER: usize = 64 * 1024;

/// Echoes (or with `reply == false`, discards) until the client closes.
/// The client's half-close is passed on: once everything is echoed, our
/// write side is shut down too. With `park_after`, a connection quiet
/// that long is handed back ([`Served::Quiet`]; everything read has been
/// echoed by then) and its buffer freed.
///
/// # Errors
/// I/O errors on the stream; the caller logs them.
pub async fn serve(stream: &mut Stream, ctx: &ConnContext, reply: bool) -> io::Result<Served> {
    // Allocated at the first sign of data: idle connections stay small.
    let mut buf = Vec::new();
    let mut idle = IdleTimer::parking(ctx.idle_timeout, ctx.park_after);
    // Made once, not per read: see message.rs.
    let force_close = ctx.force_close.cancelled();
    tokio::pin!(force_close);
    loop {
        let n = tokio::select! {
            biased;
            n = read_into(stream, &mut buf) => n?,
            _ = &mut force_close => return Ok(Served::Closed),
            silence = idle.silence() => match silence {
                Silence::Idle => return Ok(Served::Closed),
                Silence::Quiet => return Ok(Served::Quiet(idle.last_active())),
            },
        };
        if n == 0 {
            return stream.shutdown().await.map(|()| Served::Closed);
        }
        idle.touch();
        if reply {
            tokio::select! {
                biased;
                r = stream.write_all(&buf[..n]) => r?,
                _ = &mut force_close => return Ok(Served::Closed),
                _ = idle.expired() => return Ok(Served::Closed),
            }
        }
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// Reads into `buf`. The first read goes through a stack buffer and only
/// then allocates `buf`: a client that never sends costs no buffer.
async fn read_into(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.is_empty() {
        return stream
            .read_unbuffered(INITIAL_BUFFER, |bytes| {
                buf.resize(INITIAL_BUFFER, 0);
                buf[..bytes.len()].copy_from_slice(bytes);
            })
            .await;
    }
    stream.read(buf).await
}
