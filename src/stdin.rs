//! Stdin read on a thread of its own, for the programs that read it while
//! they talk to a socket: `sockit connect` (chunks of bytes) and `sockit
//! peer` (lines). Each gives the loop that reads; this module gives the
//! thread and the channel.
//!
//! Why not `tokio::io::stdin`: it reads on tokio's blocking pool, such a
//! read cannot be cancelled, and dropping the runtime waits for it. When
//! the other side closes first, `connect` would then hang until the user
//! pressed Enter. A thread of our own ends with the process instead.
//!
//! What is read goes through a small bounded channel, so a program that
//! stops taking input (its socket is slow) stops the reader, and the
//! writer on the other end of the pipe waits, instead of memory filling.

use std::io::{self, Read, StdinLock};

use tokio::sync::mpsc;

/// Starts the `stdin` thread, which runs `read` on stdin with the sending
/// half of a channel of `queue` items, and returns the receiving half. The
/// channel closes when `read` returns; a `blocking_send` fails once the
/// receiver is dropped, which is `read`'s cue to stop.
///
/// # Errors
/// When the thread cannot be started.
pub(crate) fn spawn_reader<T: Send + 'static>(
    queue: usize,
    read: impl FnOnce(StdinLock<'static>, &mpsc::Sender<T>) + Send + 'static,
) -> io::Result<mpsc::Receiver<T>> {
    let (tx, rx) = mpsc::channel(queue);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read(io::stdin().lock(), &tx))?;
    Ok(rx)
}

/// One `read`, tried again when a signal interrupted it.
pub(crate) fn read_retrying(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interrupted once, then reads from `data`.
    struct Flaky<'a> {
        interrupted: bool,
        data: &'a [u8],
    }

    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.data.read(buf)
        }
    }

    #[test]
    fn an_interrupted_read_is_tried_again() {
        let mut input = Flaky {
            interrupted: false,
            data: b"hi",
        };
        let mut buf = [0; 8];
        assert_eq!(read_retrying(&mut input, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(read_retrying(&mut input, &mut buf).unwrap(), 0);
    }
}
