//! What comes from the socket: written to stdout as it arrives, raw or as a
//! hex dump (`--hex`), and flushed after every write so that someone at a
//! terminal sees each reply at once.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt, Stdout};

/// Stdout for received bytes (or, in tests, any writer).
pub(crate) struct Output<W = Stdout> {
    out: W,
    /// Set for `--hex`: the dump, which counts offsets across writes.
    hex: Option<HexDump>,
    /// The rendered dump of one write, reused.
    rendered: Vec<u8>,
}

impl Output {
    /// Bytes go to stdout as they are, or as a hex dump when `hex` is set.
    pub(crate) fn new(hex: bool) -> Output {
        Output::to(tokio::io::stdout(), hex)
    }
}

impl<W: AsyncWrite + Unpin> Output<W> {
    /// Like [`Output::new`], writing to `out`.
    pub(crate) fn to(out: W, hex: bool) -> Output<W> {
        Output {
            out,
            hex: hex.then(HexDump::default),
            rendered: Vec::new(),
        }
    }

    /// Writes and flushes `bytes`.
    ///
    /// # Errors
    /// Stdout's error, unchanged, so that `main` can tell a closed pipe (the
    /// reader went away, which is no failure) from the rest.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.hex {
            None => self.out.write_all(bytes).await?,
            Some(dump) => {
                self.rendered.clear();
                dump.render(bytes, &mut self.rendered);
                self.out.write_all(&self.rendered).await?;
            }
        }
        self.out.flush().await
    }

    /// What was written so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> &W {
        &self.out
    }
}

/// Renders bytes the way `hexdump -C` does: the offset, 16 bytes in hex
/// (split in two groups of 8), and the same bytes as ASCII with `.` for
/// anything unprintable. Each write starts a new line, and the offsets run
/// on from one write to the next.
#[derive(Debug, Default)]
pub(crate) struct HexDump {
    offset: u64,
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl HexDump {
    /// Appends the dump of `bytes` to `out`.
    pub(crate) fn render(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for line in bytes.chunks(16) {
            self.render_line(line, out);
            self.offset += line.len() as u64;
        }
    }

    fn render_line(&self, line: &[u8], out: &mut Vec<u8>) {
        // At least 8 digits, and more past 4 GiB rather than wrapping.
        let digits = (64 - self.offset.leading_zeros()).div_ceil(4).max(8);
        for shift in (0..digits).rev() {
            out.push(HEX_DIGITS[(self.offset >> (shift * 4)) as usize & 0xf]);
        }
        out.extend_from_slice(b"  ");
        for i in 0..16 {
            match line.get(i) {
                Some(&byte) => {
                    out.push(HEX_DIGITS[usize::from(byte >> 4)]);
                    out.push(HEX_DIGITS[usize::from(byte & 0xf)]);
                    out.push(b' ');
                }
                None => out.extend_from_slice(b"   "),
            }
            if i == 7 {
                out.push(b' ');
            }
        }
        out.extend_from_slice(b" |");
        out.extend(line.iter().map(|&b| {
            if b == b' ' || b.is_ascii_graphic() {
                b
            } else {
                b'.'
            }
        }));
        out.extend_from_slice(b"|\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(dump: &mut HexDump, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        dump.render(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    // The expected lines are what `hexdump -C` prints for the same bytes.
    #[test]
    fn matches_hexdump_canonical_format() {
        let mut d = HexDump::default();
        assert_eq!(
            dump(&mut d, b"0123456789abcdefXYZ"),
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
             00000010  58 59 5a                                          |XYZ|\n"
        );
        let mut d = HexDump::default();
        assert_eq!(
            dump(&mut d, b"01234567"),
            "00000000  30 31 32 33 34 35 36 37                           |01234567|\n"
        );
        let mut d = HexDump::default();
        assert_eq!(
            dump(&mut d, b"hi\n"),
            "00000000  68 69 0a                                          |hi.|\n"
        );
    }

    #[test]
    fn offsets_run_on_across_writes() {
        let mut d = HexDump::default();
        dump(&mut d, b"hi\n");
        assert_eq!(
            dump(&mut d, b"\x00\xff ~"),
            "00000003  00 ff 20 7e                                       |.. ~|\n"
        );
        d.offset = 0x1_0000_0000;
        assert!(dump(&mut d, b"x").starts_with("100000000  78 "));
    }
}
