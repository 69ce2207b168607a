//! What goes to the socket: stdin, read on a thread of its own
//! ([`crate::stdin`]) in bounded chunks ([`read_stdin`]), given CRLF line
//! ends for `--crlf`
//! ([`LineEnds`]), and cut into lines when each line is to be one datagram
//! ([`LineSplitter`]).

use std::io::{self, Write};

use tokio::sync::mpsc;

/// The most stdin one read takes, and so the most one socket write carries.
pub(crate) const CHUNK: usize = 16 * 1024;

/// How many chunks may wait for the socket: enough to keep it busy, few
/// enough that a slow peer holds stdin back instead of filling memory.
const READ_AHEAD: usize = 4;

/// Stdin as chunks of bytes; the channel closes at end of input, after an
/// error if there was one.
pub(crate) type StdinChunks = mpsc::Receiver<io::Result<Vec<u8>>>;

/// Starts reading stdin, showing a `> ` prompt on stderr before each read
/// when `prompt` is set.
///
/// # Errors
/// When the thread cannot be started.
pub(crate) fn read_stdin(prompt: bool) -> io::Result<StdinChunks> {
    crate::stdin::spawn_reader(READ_AHEAD, move |mut stdin, chunks| {
        loop {
            if prompt {
                let _ = io::stderr().write_all(b"> ");
            }
            let mut chunk = vec![0; CHUNK];
            let read = match crate::stdin::read_retrying(&mut stdin, &mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    Ok(chunk)
                }
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            // A send fails once the session is over and nobody listens.
            if chunks.blocking_send(read).is_err() || failed {
                return;
            }
        }
    })
}

/// Applies `--crlf`: each `\n` becomes `\r\n`, an existing `\r\n` stays as
/// it is (also when a chunk ends between the two), and other bytes pass
/// through. Without `--crlf` it changes nothing.
pub(crate) struct LineEnds {
    crlf: bool,
    after_cr: bool,
    converted: Vec<u8>,
}

impl LineEnds {
    /// Line ends as they come, or as CRLF when `crlf` is set.
    pub(crate) fn new(crlf: bool) -> LineEnds {
        LineEnds {
            crlf,
            after_cr: false,
            converted: Vec::new(),
        }
    }

    /// The next chunk of stdin, with its line ends converted.
    pub(crate) fn apply<'a>(&'a mut self, chunk: &'a [u8]) -> &'a [u8] {
        if !self.crlf {
            return chunk;
        }
        self.converted.clear();
        for &byte in chunk {
            if byte == b'\n' && !self.after_cr {
                self.converted.push(b'\r');
            }
            self.converted.push(byte);
            self.after_cr = byte == b'\r';
        }
        &self.converted
    }
}

/// A line on stdin that is too long to go out as one datagram.
#[derive(Debug, thiserror::Error)]
#[error("a line on stdin is longer than {max} bytes, more than one datagram can carry")]
pub(crate) struct LineTooLong {
    max: usize,
}

/// Cuts bytes into lines, each keeping its `\n`. An unfinished line is
/// held until its end comes, but only up to `max` bytes.
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// Where the bytes not yet handed out begin in `pending`.
    start: usize,
    max: usize,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes, line end included.
    pub(crate) fn new(max: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds bytes that follow the ones added before.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.pending.drain(..self.start);
        self.start = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete line, or `None` until more bytes are added.
    ///
    /// # Errors
    /// [`LineTooLong`] when a line is, or is bound to become, longer than
    /// `max`.
    pub(crate) fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        let rest = &self.pending[self.start..];
        let len = match memchr::memchr(b'\n', rest) {
            Some(end) => end + 1,
            None if rest.len() > self.max => rest.len(),
            None => return Ok(None),
        };
        if len > self.max {
            return Err(LineTooLong { max: self.max });
        }
        let line = self.start..self.start + len;
        self.start += len;
        Ok(Some(&self.pending[line]))
    }

    /// At end of input: the last line, if it had no `\n` to end it.
    pub(crate) fn finish(&mut self) -> Option<&[u8]> {
        let rest = self.start..self.pending.len();
        self.start = self.pending.len();
        (!rest.is_empty()).then(|| &self.pending[rest])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_converts_bare_line_feeds_only() {
        let mut ends = LineEnds::new(true);
        assert_eq!(ends.apply(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        // A CRLF split across two chunks is not doubled.
        assert_eq!(ends.apply(b"d\r"), b"d\r");
        assert_eq!(ends.apply(b"\ne\n"), b"\ne\r\n");
        assert_eq!(ends.apply(b"\n"), b"\r\n");
    }

    #[test]
    fn without_crlf_bytes_pass_through() {
        let mut ends = LineEnds::new(false);
        assert_eq!(ends.apply(b"a\nb\r\n\0\xff"), b"a\nb\r\n\0\xff");
    }

    fn lines(splitter: &mut LineSplitter) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(line) = splitter.next_line().unwrap() {
            out.push(line.to_vec());
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut splitter = LineSplitter::new(100);
        splitter.extend(b"one\ntw");
        assert_eq!(lines(&mut splitter), [b"one\n".to_vec()]);
        splitter.extend(b"o\r\n\nthree");
        assert_eq!(lines(&mut splitter), [b"two\r\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(splitter.finish(), Some(&b"three"[..]));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn refuses_a_line_longer_than_the_limit() {
        let mut splitter = LineSplitter::new(4);
        splitter.extend(b"abc\n");
        assert_eq!(lines(&mut splitter), [b"abc\n".to_vec()]);
        splitter.extend(b"abcd\n");
        assert!(splitter.next_line().is_err());

        // An unfinished line is refused as soon as it passes the limit,
        // so memory stays bounded while its end never comes.
        let mut splitter = LineSplitter::new(4);
        splitter.extend(b"abcd");
        assert_eq!(splitter.next_line().unwrap(), None);
        splitter.extend(b"e");
        assert!(splitter.next_line().is_err());
    }
}
