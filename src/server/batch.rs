//! Datagrams in batches on UDP sockets: up to [`BATCH`] received with one
//! blocking `recvmmsg` (nix's, `MSG_WAITFORONE`: it waits for the first
//! datagram, then takes what else is queued) and their replies sent with
//! one `sendmmsg` (rustix's). Under load that is two system calls for a
//! burst of datagrams instead of two per datagram; when only one is
//! waiting it costs what `recvfrom`/`sendto` do, and an idle socket
//! costs nothing: no readiness poll, no probe that finds nothing.
//!
//! The socket asks for no ancillary data: no receive timestamps, no
//! packet info, no TOS, no GRO. Each of those makes the kernel build a
//! control message for every datagram (about 4 % of a UDP ping server's
//! time when they were on), and a reply needs only the source address.
//!
//! The receive buffers are allocated once per socket, [`BATCH`] of
//! [`MAX_DATAGRAM`] bytes, zeroed lazily by the kernel: only the pages
//! datagrams land in are ever touched.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use std::net::UdpSocket;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

/// Datagrams taken per `recvmmsg`.
pub(super) const BATCH: usize = 32;

/// The largest datagram read; anything longer is truncated by the kernel.
pub(super) const MAX_DATAGRAM: usize = 65_535;

/// The reply buffer is given back past this (a batch of large echoes).
const KEPT_REPLIES: usize = 256 * 1024;

/// One UDP socket's batch buffers, made and used by the socket's thread
/// (nix's headers are not `Send`: they point into themselves).
pub(super) struct UdpBatch {
    bufs: Box<[Box<[u8]>; BATCH]>,
    /// The `recvmmsg` headers and source addresses, made once.
    headers: MultiHeaders<SockaddrStorage>,
    /// Each received datagram's length and source, from the last
    /// `recvmmsg`.
    received: [(usize, Option<SocketAddr>); BATCH],
    /// The replies of one batch, one after another, and where each one
    /// goes.
    replies: Vec<u8>,
    spans: Vec<(usize, usize, SocketAddr)>,
}

impl UdpBatch {
    /// Batch buffers for a UDP socket.
    pub(super) fn new() -> UdpBatch {
        UdpBatch {
            bufs: Box::new(std::array::from_fn(|_| {
                vec![0u8; MAX_DATAGRAM].into_boxed_slice()
            })),
            headers: MultiHeaders::preallocate(BATCH, None),
            received: [(0, None); BATCH],
            replies: Vec::new(),
            spans: Vec::with_capacity(BATCH),
        }
    }

    /// Waits for a datagram (as long as the socket's read timeout), then
    /// takes it and what else is queued: calls `each` with every datagram
    /// and its source, in order, and lets it add a reply with
    /// [`Replies::add`]. How many datagrams came; `WouldBlock` when none
    /// came in time.
    pub(super) fn receive(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(&[u8], SocketAddr, &mut Replies<'_>),
    ) -> io::Result<usize> {
        let UdpBatch {
            bufs,
            headers,
            received,
            replies,
            spans,
        } = self;
        let messages = receive_many(socket, headers, bufs, received)?;
        replies.clear();
        spans.clear();
        let mut out = Replies { replies, spans };
        let mut datagrams = 0;
        for (buf, &(len, from)) in bufs.iter().zip(received.iter()).take(messages) {
            // A datagram without a source address (none should come on a
            // UDP socket) cannot be answered.
            let Some(from) = from else { continue };
            datagrams += 1;
            each(&buf[..len.min(buf.len())], from, &mut out);
        }
        Ok(datagrams)
    }

    /// Sends the replies the last [`receive`](UdpBatch::receive) made:
    /// as many as the socket takes in one `sendmmsg`, the rest one by
    /// one (waiting while the send buffer is full). Calls `sent` with each
    /// reply's outcome.
    pub(super) fn send(
        &mut self,
        socket: &UdpSocket,
        mut sent: impl FnMut(io::Result<usize>, SocketAddr),
    ) {
        let done = if self.spans.len() > 1 {
            self.send_many(socket, &mut sent)
        } else {
            0
        };
        for &(start, end, to) in &self.spans[done..] {
            sent(socket.send_to(&self.replies[start..end], to), to);
        }
        if self.replies.capacity() > KEPT_REPLIES {
            self.replies = Vec::new();
        }
    }

    /// One `sendmmsg` of the replies; how many went.
    fn send_many(
        &self,
        socket: &UdpSocket,
        sent: &mut impl FnMut(io::Result<usize>, SocketAddr),
    ) -> usize {
        let addrs: Vec<SocketAddrAny> = self
            .spans
            .iter()
            .map(|s| SocketAddrAny::from(s.2))
            .collect();
        let iovs: Vec<[IoSlice<'_>; 1]> = self
            .spans
            .iter()
            .map(|&(start, end, _)| [IoSlice::new(&self.replies[start..end])])
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
            (0..self.spans.len()).map(|_| Default::default()).collect();
        let mut messages: Vec<MMsgHdr<'_>> = addrs
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
            .collect();
        let result = rustix::net::sendmmsg(socket, &mut messages, SendFlags::empty())
            .map_err(io::Error::from);
        match result {
            Ok(n) => {
                for (message, span) in messages.iter().zip(&self.spans).take(n) {
                    sent(Ok(message.bytes_sent()), span.2);
                }
                n
            }
            // An error for the first of them: the one-by-one path sorts
            // it out.
            Err(_) => 0,
        }
    }
}

/// Where a datagram's handler puts its reply.
pub(super) struct Replies<'a> {
    replies: &'a mut Vec<u8>,
    spans: &'a mut Vec<(usize, usize, SocketAddr)>,
}

impl Replies<'_> {
    /// Queues `reply` for `to`.
    pub(super) fn add(&mut self, reply: &[u8], to: SocketAddr) {
        let start = self.replies.len();
        self.replies.extend_from_slice(reply);
        self.spans.push((start, self.replies.len(), to));
    }
}

/// One `recvmmsg` into `bufs`, waiting for the first datagram only; each
/// datagram's length and source go into `received`. How many came.
fn receive_many(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [Box<[u8]>; BATCH],
    received: &mut [(usize, Option<SocketAddr>); BATCH],
) -> io::Result<usize> {
    let mut iovs = bufs.each_mut().map(|buf| [IoSliceMut::new(buf)]);
    let results = recvmmsg(
        socket.as_raw_fd(),
        headers,
        iovs.iter_mut(),
        MsgFlags::MSG_WAITFORONE,
        None,
    )
    .map_err(io::Error::from)?;
    let mut count = 0;
    for (slot, message) in received.iter_mut().zip(results) {
        *slot = (
            message.bytes,
            message.address.as_ref().and_then(to_socket_addr),
        );
        count += 1;
    }
    Ok(count)
}

/// A received datagram's source as a std address.
fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
