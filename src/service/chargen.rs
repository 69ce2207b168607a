//! `chargen` (RFC 864): rotating 72-character lines of the 95 printable
//! ASCII characters, each ending in `\r\n`; over TCP until the client
//! leaves, over UDP one bounded set of lines per datagram.

use std::io;
use std::sync::OnceLock;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::service::{ConnContext, IdleTimer};

/// Characters per line, before the `\r\n`.
pub const LINE_LEN: usize = 72;
/// The printable ASCII characters, space to tilde.
const PRINTABLE: usize = 95;
/// Bytes per line including `\r\n`.
const LINE_BYTES: usize = LINE_LEN + 2;
/// A UDP reply stays within 512 bytes (RFC 864 and our anti-amplification
/// rule): six lines.
pub const UDP_LINES: usize = 512 / LINE_BYTES;
const _: () = assert!(UDP_LINES * LINE_BYTES <= 512);

/// All 95 lines of one full rotation, back to back: the TCP loop writes
/// slices of it, so generating output costs nothing per line.
fn cycle() -> &'static [u8] {
    static CYCLE: OnceLock<Vec<u8>> = OnceLock::new();
    CYCLE.get_or_init(|| {
        let mut all = Vec::with_capacity(PRINTABLE * LINE_BYTES);
        for start in 0..PRINTABLE {
            all.extend((0..LINE_LEN).map(|i| b' ' + ((start + i) % PRINTABLE) as u8));
            all.extend_from_slice(b"\r\n");
        }
        all
    })
}

/// Appends `count` lines starting at line number `first` of the rotation.
pub fn lines(first: usize, count: usize, out: &mut Vec<u8>) {
    let cycle = cycle();
    for i in 0..count {
        let n = (first + i) % PRINTABLE;
        out.extend_from_slice(&cycle[n * LINE_BYTES..(n + 1) * LINE_BYTES]);
    }
}

/// Streams lines until the client closes (or resets, or stalls past the
/// idle timeout). What the client sends is read and dropped.
///
/// # Errors
/// I/O errors on the stream; the caller logs them.
pub async fn serve<S>(stream: &mut S, ctx: &ConnContext) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let cycle = cycle();
    let mut idle = IdleTimer::new(ctx.idle_timeout);
    let mut sink = [0u8; 512];
    let mut offset = 0;
    // A half-close (the client's EOF) is not leaving: keep writing until
    // the connection is gone.
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            _ = ctx.force_close.cancelled() => return Ok(()),
            n = reader.read(&mut sink), if reading => {
                if n? == 0 {
                    reading = false;
                }
            }
            n = writer.write(&cycle[offset..]) => {
                offset = (offset + n?) % cycle.len();
                idle.touch();
            }
            _ = idle.expired() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate() {
        let mut out = Vec::new();
        lines(0, 2, &mut out);
        assert_eq!(&out[..3], b" !\"");
        assert_eq!(&out[LINE_BYTES..LINE_BYTES + 2], b"!\"");
        assert!(out.ends_with(b"\r\n"));
        out.clear();
        lines(94, 1, &mut out);
        assert_eq!(&out[..2], b"~ ");
    }
}
