//! `serve --workers N`: N worker processes share every listener, so one
//! host holds more connections than one process's descriptor limit.
//!
//! ```text
//! parent ── binds every socket (N SO_REUSEPORT copies of TCP/UDP, one Unix)
//!   │       makes the development certificate and the ticket keys
//!   │       owns signals, restarts workers, serves the merged /metrics
//!   ├─ worker 0 ─┐ the normal server on the sockets it is handed,
//!   └─ worker 1 ─┘ re-executed from the same binary with the same arguments
//! ```
//!
//! Each worker's stdin is its end of a private `SOCK_SEQPACKET` socket
//! pair with the parent, its `Channel`: the parent sends a `Setup`
//! (which socket is which, the development certificate, the ticket keys)
//! and then the descriptors themselves (`SCM_RIGHTS`); the worker says
//! `READY` once it serves, and answers metrics requests on it. Secrets
//! never go through argv or the environment; the environment only says
//! that the process is a worker ([`WORKER_ENV`]). A worker whose channel
//! closes (the parent is gone) shuts down as on SIGTERM.
//! The parent is in [`parent`], the worker's side in [`child`].

pub mod child;
pub mod parent;

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::net::listener::SocketKind;
use crate::net::tickets::TicketSecret;
use crate::net::tls::DevelopmentKey;

/// Set in a worker's environment to its index; nothing else is in it.
pub const WORKER_ENV: &str = "SOCKIT_WORKER";

/// What a worker says once its server is built and its sockets served.
const READY: &[u8] = b"ready";

/// The first byte of a metrics request (then the request's id).
const METRICS_REQUEST: u8 = b'm';

/// The largest message either side sends: a setup, a metrics chunk.
const MAX_MESSAGE: usize = 64 * 1024;

/// A metrics reply is sent in pieces of at most this, each after a
/// 9-byte head (the request's id, and 1 on the last piece).
const CHUNK: usize = 32 * 1024;

/// Descriptors sent per message (the kernel takes at most 253).
const FDS_PER_MESSAGE: usize = 32;

/// This process's worker index, when it was started as a worker.
pub fn worker_index() -> Option<usize> {
    std::env::var(WORKER_ENV).ok()?.parse().ok()
}

/// What a worker is told at start.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Setup {
    /// Which worker it is (0-based).
    pub index: usize,
    /// The names of the configuration's services, in order: a worker
    /// whose own reading of the arguments (or the config file, since
    /// changed) differs refuses to start.
    pub services: Vec<String>,
    /// The sockets, in the order their descriptors follow.
    pub sockets: Vec<SetupSocket>,
    /// The development certificate, when a `tls://` listener uses it.
    pub development: Option<DevelopmentKey>,
    /// The session-ticket keys, when there are `tls://` listeners.
    pub tickets: Option<TicketSecret>,
    /// Whether to run on one thread (as many workers as CPUs, or more).
    pub single_thread: bool,
}

/// One socket of a [`Setup`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SetupSocket {
    /// The index of its service.
    pub service: usize,
    /// A chat `--web` listener.
    pub web: bool,
    /// Its announced name, the metrics' `listener` label.
    pub name: String,
    /// What kind of socket the descriptor is.
    pub kind: SocketKind,
}

/// One end of the parent–worker socket pair.
#[derive(Debug)]
pub(crate) struct Channel(UnixStream);

impl Channel {
    /// A new pair: the parent's end and the worker's (made its stdin).
    pub fn pair() -> io::Result<(Channel, OwnedFd)> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((Channel(UnixStream::from(ours)), theirs))
    }

    /// The worker's end, from its stdin (a duplicate: stdin stays open).
    pub fn from_stdin() -> io::Result<Channel> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        let channel = Channel(UnixStream::from(fd));
        let ty = rustix::net::sockopt::socket_type(&channel.0).map_err(|_| not_a_channel())?;
        if ty != rustix::net::SocketType::SEQPACKET {
            return Err(not_a_channel());
        }
        Ok(channel)
    }

    /// Bounds every later receive (`None`: wait for ever).
    pub fn set_timeout(&self, limit: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(limit)
    }

    /// Sends one message.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        if message.len() > MAX_MESSAGE {
            return Err(io::Error::other("worker channel message too large"));
        }
        (&self.0).write_all(message)
    }

    /// Receives one message; `None` at EOF (the other side is gone).
    pub fn recv(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = (&self.0).read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(buf))
    }

    /// Sends descriptors, a few per message.
    pub fn send_fds(&self, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        for batch in fds.chunks(FDS_PER_MESSAGE) {
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(batch)) {
                return Err(io::Error::other("descriptors do not fit the message"));
            }
            rustix::net::sendmsg(
                &self.0,
                &[IoSlice::new(b"f")],
                &mut control,
                SendFlags::empty(),
            )?;
        }
        Ok(())
    }

    /// Receives `count` descriptors sent by [`send_fds`](Self::send_fds).
    pub fn recv_fds(&self, count: usize) -> io::Result<Vec<OwnedFd>> {
        let mut fds = Vec::with_capacity(count);
        while fds.len() < count {
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut byte = [0u8; 1];
            let got = rustix::net::recvmsg(
                &self.0,
                &mut [IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            if got.bytes == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the parent closed the worker channel",
                ));
            }
            let before = fds.len();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            if fds.len() == before {
                return Err(io::Error::other(
                    "a worker channel message without descriptors",
                ));
            }
        }
        if fds.len() != count {
            return Err(io::Error::other("more descriptors than sockets"));
        }
        Ok(fds)
    }
}

fn not_a_channel() -> io::Error {
    io::Error::other(format!(
        "{WORKER_ENV} is set but stdin is not a worker channel: workers are started by \
         `sockit serve --workers N`, not by hand"
    ))
}

/// A metrics request: [`METRICS_REQUEST`] and its id.
fn metrics_request(id: u64) -> [u8; 9] {
    let mut request = [METRICS_REQUEST; 9];
    request[1..].copy_from_slice(&id.to_be_bytes());
    request
}

/// The id of a metrics request, if `message` is one.
fn parse_metrics_request(message: &[u8]) -> Option<u64> {
    match message {
        [METRICS_REQUEST, id @ ..] => Some(u64::from_be_bytes(id.try_into().ok()?)),
        _ => None,
    }
}

/// Sends `text` as the reply to request `id`, in chunks.
fn send_metrics(channel: &Channel, id: u64, text: &[u8]) -> io::Result<()> {
    let mut chunks = text.chunks(CHUNK).peekable();
    if chunks.peek().is_none() {
        return channel.send(&chunk_head(id, true));
    }
    while let Some(chunk) = chunks.next() {
        let mut message = chunk_head(id, chunks.peek().is_none()).to_vec();
        message.extend_from_slice(chunk);
        channel.send(&message)?;
    }
    Ok(())
}

fn chunk_head(id: u64, last: bool) -> [u8; 9] {
    let mut head = [0u8; 9];
    head[..8].copy_from_slice(&id.to_be_bytes());
    head[8] = u8::from(last);
    head
}

/// Reads the reply to request `id`: its chunks, joined; replies to
/// earlier requests (that timed out) are skipped. At most `limit` bytes.
fn recv_metrics(channel: &Channel, id: u64, limit: usize) -> io::Result<String> {
    let mut text = Vec::new();
    loop {
        let Some(message) = channel.recv()? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the worker is gone",
            ));
        };
        if message.len() < 9 || message[..8] != id.to_be_bytes() {
            continue;
        }
        text.extend_from_slice(&message[9..]);
        if text.len() > limit {
            return Err(io::Error::other("metrics reply too large"));
        }
        if message[8] == 1 {
            return String::from_utf8(text).map_err(io::Error::other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_descriptors_and_metrics_cross_the_channel() {
        let (parent, theirs) = Channel::pair().unwrap();
        let worker = Channel(UnixStream::from(theirs));
        parent.send(b"hello").unwrap();
        assert_eq!(worker.recv().unwrap().unwrap(), b"hello");

        let sockets: Vec<std::net::UdpSocket> = (0..40)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
        parent.send_fds(&fds).unwrap();
        let got = worker.recv_fds(40).unwrap();
        for (socket, fd) in sockets.iter().zip(got) {
            let adopted = std::net::UdpSocket::from(fd);
            assert_eq!(adopted.local_addr().unwrap(), socket.local_addr().unwrap());
        }

        // A reply of several chunks, after a stale one.
        let text = "x".repeat(CHUNK * 2 + 10);
        send_metrics(&worker, 1, b"stale").unwrap();
        send_metrics(&worker, 2, text.as_bytes()).unwrap();
        assert_eq!(recv_metrics(&parent, 2, 1 << 20).unwrap(), text);
        send_metrics(&worker, 3, b"").unwrap();
        assert_eq!(recv_metrics(&parent, 3, 1 << 20).unwrap(), "");
        assert_eq!(parse_metrics_request(&metrics_request(77)), Some(77));
        assert_eq!(parse_metrics_request(b"m"), None);

        drop(worker);
        assert!(parent.recv().unwrap().is_none());
    }
}
