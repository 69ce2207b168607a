//! `daytime` (RFC 867) and `time` (RFC 868): say the time once, then close.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::service::ConnContext;
use crate::service::clock::{Clock, rfc868_now};

/// Appends the daytime reply: the ctime date and `\r\n`.
pub fn daytime_reply(out: &mut Vec<u8>) {
    out.extend_from_slice(Clock::new().ctime());
    out.extend_from_slice(b"\r\n");
}

/// Appends the time reply: 4 bytes, big endian seconds since 1900.
pub fn time_reply(out: &mut Vec<u8>) {
    out.extend_from_slice(&rfc868_now());
}

/// Sends `reply`'s bytes on connect and closes. A client that does not read
/// them cannot hold the connection open past the idle timeout.
///
/// # Errors
/// I/O errors on the stream; the caller logs them.
pub async fn serve<S>(stream: &mut S, ctx: &ConnContext, reply: fn(&mut Vec<u8>)) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(32);
    reply(&mut out);
    let send = async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    };
    let limit = ctx
        .idle_timeout
        .unwrap_or(crate::service::HANDSHAKE_TIMEOUT);
    tokio::select! {
        r = tokio::time::timeout(limit, send) => r.unwrap_or(Ok(())),
        _ = ctx.force_close.cancelled() => Ok(()),
    }
}
