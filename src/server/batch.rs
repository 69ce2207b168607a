//! Datagrams in batches on UDP sockets: up to [`BATCH`] received with one
//! `recvmmsg` (quinn-udp's, which also takes coalesced GRO buffers apart
//! by their stride) and their replies sent with one `sendmmsg` (rustix's).
//! Under load that is two system calls for a burst of datagrams instead
//! of two per datagram; when only one is waiting it costs what
//! `recvfrom`/`sendto` do.
//!
//! The receive buffers are allocated once per socket, [`BATCH`] of
//! [`MAX_DATAGRAM`] bytes, zeroed lazily by the kernel: only the pages
//! datagrams land in are ever touched.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken per `recvmmsg`.
pub(super) const BATCH: usize = 32;

/// The largest datagram read; anything longer is truncated by the kernel.
pub(super) const MAX_DATAGRAM: usize = 65_535;

/// The reply buffer is given back past this (a batch of large echoes).
const KEPT_REPLIES: usize = 256 * 1024;

/// One UDP socket's batch buffers.
pub(super) struct UdpBatch {
    state: UdpSocketState,
    bufs: Box<[Box<[u8]>; BATCH]>,
    meta: [RecvMeta; BATCH],
    /// The replies of one batch, one after another, and where each one
    /// goes.
    replies: Vec<u8>,
    spans: Vec<(usize, usize, SocketAddr)>,
}

impl UdpBatch {
    /// Batch buffers for `socket`; `None` where the platform cannot batch
    /// (the loop then takes datagrams one at a time).
    pub(super) fn new(socket: &UdpSocket) -> Option<UdpBatch> {
        let state = UdpSocketState::new(UdpSockRef::from(socket))
            .inspect_err(|e| tracing::debug!(error = %e, "no recvmmsg: one datagram at a time"))
            .ok()?;
        Some(UdpBatch {
            state,
            bufs: Box::new(std::array::from_fn(|_| {
                vec![0u8; MAX_DATAGRAM].into_boxed_slice()
            })),
            meta: [RecvMeta::default(); BATCH],
            replies: Vec::new(),
            spans: Vec::with_capacity(BATCH),
        })
    }

    /// Receives what is queued, without waiting: calls `each` with every
    /// datagram and its source, in order, and lets it add a reply with
    /// [`Replies::add`]. How many datagrams came; `WouldBlock` when none.
    pub(super) fn receive(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(&[u8], SocketAddr, &mut Replies<'_>),
    ) -> io::Result<usize> {
        let UdpBatch {
            state,
            bufs,
            meta,
            replies,
            spans,
        } = self;
        let messages = {
            let mut iovs = bufs.each_mut().map(|buf| IoSliceMut::new(buf));
            socket.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(socket), &mut iovs, meta)
            })?
        };
        replies.clear();
        spans.clear();
        let mut out = Replies { replies, spans };
        let mut datagrams = 0;
        for (buf, meta) in bufs.iter().zip(meta.iter()).take(messages) {
            let data = &buf[..meta.len.min(buf.len())];
            let stride = if meta.stride == 0 {
                data.len()
            } else {
                meta.stride
            };
            // A coalesced (GRO) buffer holds several datagrams; an empty
            // datagram is still one.
            if data.is_empty() {
                datagrams += 1;
                each(data, meta.addr, &mut out);
                continue;
            }
            for datagram in data.chunks(stride.max(1)) {
                datagrams += 1;
                each(datagram, meta.addr, &mut out);
            }
        }
        Ok(datagrams)
    }

    /// Sends the replies the last [`receive`](UdpBatch::receive) made:
    /// as many as the socket takes in one `sendmmsg`, the rest one by
    /// one as it becomes writable. Calls `sent` with each reply's outcome.
    pub(super) async fn send(
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
            sent(socket.send_to(&self.replies[start..end], to).await, to);
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
        let result = socket.try_io(Interest::WRITABLE, || {
            rustix::net::sendmmsg(socket, &mut messages, SendFlags::empty())
                .map_err(io::Error::from)
        });
        match result {
            Ok(n) => {
                for (message, span) in messages.iter().zip(&self.spans).take(n) {
                    sent(Ok(message.bytes_sent()), span.2);
                }
                n
            }
            // Full, or an error for one of them: the one-by-one path
            // sorts it out.
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
