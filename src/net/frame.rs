//! Bounded line framing for the message services (hello, timestamp, ping).
//!
//! Three kinds of client must all work (SPEC 2): nc and telnet send lines
//! ending in `\n` or `\r\n`; pipelining clients send many lines in one
//! write; the tutorials' clients send a bare message with no line end and
//! wait. [`LineBuffer`] turns bytes into [`Frame`]s without allocating per
//! message: it owns one buffer, reused for the life of the connection, that
//! never holds more than one maximal line. A bare message is not a frame
//! until the caller decides the client has gone quiet (a flush delay, or
//! EOF) and asks for [`LineBuffer::take_partial`].
//!
//! This module is pure (no I/O), so the fuzz target and the unit tests drive
//! it directly.

/// The line end a message arrived with; its reply ends the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// `\n`, also used for a bare message.
    Lf,
    /// `\r\n`.
    CrLf,
}

impl LineEnd {
    /// The bytes of this line end.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            LineEnd::Lf => b"\n",
            LineEnd::CrLf => b"\r\n",
        }
    }
}

/// One decoded unit of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message, without its line end.
    Line(&'a [u8], LineEnd),
    /// A line longer than the limit began; its bytes are being dropped up
    /// to its end. Reported once per over-long line.
    TooLong,
}

/// Initial buffer size. Most connections never need more; it grows on
/// demand up to the line limit.
const INITIAL_CAPACITY: usize = 4 * 1024;

/// A connection's read buffer with line splitting and a hard size cap.
///
/// Callers alternate: read into [`spare`], record it with [`filled`], then
/// take frames until [`next_frame`] says `None`. Drained that way, the
/// pending bytes never exceed a maximal line plus its `\r`, so the buffer
/// never grows past `max_line + 2` bytes (or the capacity it was given).
///
/// [`spare`]: LineBuffer::spare
/// [`filled`]: LineBuffer::filled
/// [`next_frame`]: LineBuffer::next_frame
#[derive(Debug)]
pub struct LineBuffer {
    /// Fully initialised storage; `buf.len()` is the allocated size.
    buf: Vec<u8>,
    /// Start of the bytes not yet returned as frames.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// How far from `start` we already know there is no `\n`, so a slowly
    /// arriving long line is scanned once, not once per read.
    scanned: usize,
    max_line: usize,
    /// The most the buffer grows to: a maximal line and its `\r\n`, or
    /// more ([`LineBuffer::with_capacity`]).
    capacity: usize,
    /// True while dropping the rest of an over-long line.
    discarding: bool,
}

impl LineBuffer {
    /// A buffer for lines of at most `max_line` bytes (line end excluded).
    /// No memory is taken until the first read.
    pub fn new(max_line: usize) -> Self {
        Self::with_capacity(max_line, 0)
    }

    /// Like [`new`](LineBuffer::new), but the buffer may grow to
    /// `capacity` bytes (when more than a maximal line), so that a client
    /// sending lines in bulk is read in fewer, larger reads.
    pub fn with_capacity(max_line: usize, capacity: usize) -> Self {
        let max_line = max_line.max(1);
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            max_line,
            capacity: capacity.max(max_line.saturating_add(2)),
            discarding: false,
        }
    }

    /// Space to read into; never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            // Move the pending partial line to the front instead of growing.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let limit = self.capacity;
            let grown = (self.buf.len() * 2).clamp(INITIAL_CAPACITY.min(limit), limit);
            self.buf.resize(grown.max(self.end + 1), 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into the slice [`spare`] returned.
    ///
    /// [`spare`]: LineBuffer::spare
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Reads once from `read` into the buffer: the bytes read, 0 at EOF.
    ///
    /// # Errors
    /// Whatever `read` returns.
    pub fn read_from<E>(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let n = read(self.spare())?;
        self.filled(n);
        Ok(n)
    }

    /// The next complete frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let newline = memchr::memchr(b'\n', &pending[self.scanned..]).map(|i| self.scanned + i);
            if self.discarding {
                match newline {
                    Some(i) => {
                        self.start += i + 1;
                        self.scanned = 0;
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        self.start = self.end;
                        self.scanned = 0;
                        return None;
                    }
                }
            }
            let Some(i) = newline else {
                // A maximal line may still be followed by `\r\n`; anything
                // longer can never become a valid line.
                if pending.len() > self.max_line + 1 {
                    self.discarding = true;
                    self.start = self.end;
                    self.scanned = 0;
                    return Some(Frame::TooLong);
                }
                self.scanned = pending.len();
                return None;
            };
            let line_start = self.start;
            self.start += i + 1;
            self.scanned = 0;
            let (len, end) = if i > 0 && self.buf[line_start + i - 1] == b'\r' {
                (i - 1, LineEnd::CrLf)
            } else {
                (i, LineEnd::Lf)
            };
            if len > self.max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(&self.buf[line_start..line_start + len], end));
        }
    }

    /// How much a read into an empty, unallocated buffer may take: what
    /// [`push`](LineBuffer::push) can hold in one call.
    pub fn first_read_len(&self) -> usize {
        INITIAL_CAPACITY.min(self.capacity)
    }

    /// Appends bytes that were read elsewhere. Holds what one
    /// [`spare`](LineBuffer::spare) call offers (for an empty buffer, at
    /// least [`first_read_len`](LineBuffer::first_read_len)); any more is
    /// dropped, so callers read no more than that.
    pub fn push(&mut self, bytes: &[u8]) {
        let spare = self.spare();
        let n = spare.len().min(bytes.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.filled(n);
    }

    /// Whether bytes of an unfinished line are waiting (and not being
    /// discarded): the caller's cue to start its flush-delay timer.
    pub fn has_partial(&self) -> bool {
        !self.discarding && self.start < self.end
    }

    /// Whether the buffer holds nothing the next read depends on: no
    /// partial line, and no over-long line being dropped. A connection
    /// whose buffer is clear can be served on by a fresh buffer.
    pub fn is_clear(&self) -> bool {
        !self.discarding && self.start == self.end
    }

    /// Takes the unfinished line as a bare message: the client went quiet
    /// or closed. A trailing `\r` counts as a CRLF line end.
    pub fn take_partial(&mut self) -> Option<Frame<'_>> {
        if !self.has_partial() {
            return None;
        }
        let (start, end) = (self.start, self.end);
        self.start = end;
        self.scanned = 0;
        let msg = &self.buf[start..end];
        let (msg, end) = match msg.strip_suffix(b"\r") {
            Some(msg) => (msg, LineEnd::CrLf),
            None => (msg, LineEnd::Lf),
        };
        if msg.len() > self.max_line {
            return Some(Frame::TooLong);
        }
        Some(Frame::Line(msg, end))
    }

    /// Bytes held by this buffer (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Gives the buffer's memory back when no bytes are waiting in it (an
    /// over-long line being discarded stays discarded); true if it did.
    /// A connection that goes quiet between lines then holds no buffer:
    /// its next read can go through the stack, and [`push`] (or
    /// [`spare`]) allocates again.
    ///
    /// [`push`]: LineBuffer::push
    /// [`spare`]: LineBuffer::spare
    pub fn release_if_empty(&mut self) -> bool {
        if self.start != self.end || self.buf.is_empty() {
            return false;
        }
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        true
    }
}

/// Splits a datagram into its message and the line end it carried, if any
/// (SPEC 2: a trailing `\n` or `\r\n` is not part of the message).
///
/// ```
/// use sockit::net::frame::{split_datagram, LineEnd};
/// assert_eq!(split_datagram(b"hi\r\n"), (&b"hi"[..], Some(LineEnd::CrLf)));
/// assert_eq!(split_datagram(b"hi"), (&b"hi"[..], None));
/// ```
pub fn split_datagram(datagram: &[u8]) -> (&[u8], Option<LineEnd>) {
    if let Some(msg) = datagram.strip_suffix(b"\r\n") {
        (msg, Some(LineEnd::CrLf))
    } else if let Some(msg) = datagram.strip_suffix(b"\n") {
        (msg, Some(LineEnd::Lf))
    } else {
        (datagram, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_capacity_reads_more_but_keeps_the_line_limit() {
        // Reads may take the whole capacity, not just a maximal line.
        assert_eq!(LineBuffer::with_capacity(10, 64).spare().len(), 64);
        assert_eq!(LineBuffer::new(10).spare().len(), 12);
        let mut buf = LineBuffer::with_capacity(10, 64);
        buf.push(b"0123456789\nabcdefghijk\nxyz");
        assert_eq!(
            buf.next_frame(),
            Some(Frame::Line(b"0123456789", LineEnd::Lf))
        );
        assert_eq!(buf.next_frame(), Some(Frame::TooLong));
        assert_eq!(buf.next_frame(), None);
        // A partial line past the limit is cut as soon as it is seen.
        buf.push(b"abcdefghij");
        assert_eq!(buf.next_frame(), Some(Frame::TooLong));
        assert!(buf.spare().len() <= 64);
    }

    /// Feeds `bytes` as reads would, returning the frames (a too-long
    /// frame as `<too long>`).
    fn feed(buf: &mut LineBuffer, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = buf.spare().len().min(bytes.len());
            buf.push(&bytes[..n]);
            bytes = &bytes[n..];
            while let Some(frame) = buf.next_frame() {
                out.push(match frame {
                    Frame::Line(line, _) => line.to_vec(),
                    Frame::TooLong => b"<too long>".to_vec(),
                });
            }
        }
        out
    }

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buf = LineBuffer::new(max);
        chunks.iter().flat_map(|c| feed(&mut buf, c)).collect()
    }

    #[test]
    fn splits_lf_and_crlf_lines() {
        let mut buf = LineBuffer::new(100);
        feed(&mut buf, b"");
        let _ = buf.read_from::<()>(|s| {
            s[..9].copy_from_slice(b"a\r\nbb\nc\r\n");
            Ok(9)
        });
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"a", LineEnd::CrLf)));
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"bb", LineEnd::Lf)));
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"c", LineEnd::CrLf)));
        assert_eq!(buf.next_frame(), None);
        assert!(!buf.has_partial());
    }

    #[test]
    fn lines_split_across_reads() {
        assert_eq!(
            lines(100, &[b"hel", b"lo\nwor", b"ld\n"]),
            vec![b"hello".to_vec(), b"world".to_vec()]
        );
    }

    #[test]
    fn partial_is_a_bare_message() {
        let mut buf = LineBuffer::new(100);
        assert!(feed(&mut buf, b"World").is_empty());
        assert!(buf.has_partial());
        assert_eq!(buf.take_partial(), Some(Frame::Line(b"World", LineEnd::Lf)));
        assert!(!buf.has_partial());
        assert_eq!(buf.take_partial(), None);
        assert_eq!(feed(&mut buf, b"x\n"), vec![b"x".to_vec()]);
    }

    #[test]
    fn over_long_line_is_reported_once_and_dropped() {
        let max = 8;
        let long = [b'x'; 50];
        let got = lines(max, &[&long, &long, b"\nok\n"]);
        assert_eq!(got, vec![b"<too long>".to_vec(), b"ok".to_vec()]);
        // Exactly the limit is fine, with either line end; one over is not.
        assert_eq!(lines(max, &[b"12345678\r\n12345678\n"]).len(), 2);
        assert_eq!(
            lines(max, &[b"123456789\n", b"ok\n"]),
            vec![b"<too long>".to_vec(), b"ok".to_vec()]
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut buf = LineBuffer::new(1024);
        for _ in 0..1000 {
            feed(&mut buf, &[b'y'; 4000]);
        }
        assert!(buf.capacity() <= 4096, "{}", buf.capacity());
    }

    #[test]
    fn an_empty_buffer_is_given_back_and_nothing_pending_is_lost() {
        let mut buf = LineBuffer::with_capacity(100, 1024);
        assert!(!buf.release_if_empty(), "nothing allocated yet");
        buf.push(b"one\ntw");
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"one", LineEnd::Lf)));
        assert_eq!(buf.next_frame(), None);
        // Half a line is waiting: the buffer stays.
        assert!(!buf.release_if_empty());
        assert!(buf.capacity() > 0);
        buf.push(b"o\n");
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"two", LineEnd::Lf)));
        assert!(buf.release_if_empty());
        assert_eq!(buf.capacity(), 0);
        // It works on as before, from the first read again.
        buf.push(b"three\n");
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"three", LineEnd::Lf)));
        // A line being discarded stays discarded across a release.
        let mut buf = LineBuffer::with_capacity(4, 64);
        buf.push(b"toolong");
        assert_eq!(buf.next_frame(), Some(Frame::TooLong));
        assert!(buf.release_if_empty());
        buf.push(b"still\nok\n");
        assert_eq!(buf.next_frame(), Some(Frame::Line(b"ok", LineEnd::Lf)));
        assert_eq!(buf.next_frame(), None);
    }

    #[test]
    fn many_pipelined_lines() {
        let input: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("ping {i}\n").into_bytes())
            .collect();
        let got = lines(64, &[&input]);
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[9_999], b"ping 9999");
    }

    #[test]
    fn tiny_limit_never_stalls() {
        let got = lines(1, &[b"a\nbb\n\r\nc"]);
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"<too long>".to_vec(), b"".to_vec()]
        );
    }
}
