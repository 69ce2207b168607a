//! `echo` (RFC 862): every byte back, unchanged; and `discard` (RFC 863),
//! which reads the same way and sends nothing. Binary safe.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::service::{ConnContext, IdleTimer};

/// First read buffer; small so that idle connections stay cheap.
const INITIAL_BUFFER: usize = 4 * 1024;
/// The buffer doubles while reads fill it, up to this, so bulk transfers
/// move in large chunks.
const MAX_BUFFER: usize = 64 * 1024;

/// Echoes (or with `reply == false`, discards) until the client closes.
/// The client's half-close is passed on: once everything is echoed, our
/// write side is shut down too.
///
/// # Errors
/// I/O errors on the stream; the caller logs them.
pub async fn serve<S>(mut stream: S, ctx: &ConnContext, reply: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; INITIAL_BUFFER];
    let mut idle = IdleTimer::new(ctx.idle_timeout);
    loop {
        let n = tokio::select! {
            biased;
            _ = ctx.force_close.cancelled() => return Ok(()),
            n = stream.read(&mut buf) => n?,
            _ = idle.expired() => return Ok(()),
        };
        if n == 0 {
            return stream.shutdown().await;
        }
        idle.touch();
        if reply {
            tokio::select! {
                biased;
                _ = ctx.force_close.cancelled() => return Ok(()),
                r = stream.write_all(&buf[..n]) => r?,
                _ = idle.expired() => return Ok(()),
            }
            idle.touch();
        }
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf.resize(buf.len() * 2, 0);
        }
    }
}
