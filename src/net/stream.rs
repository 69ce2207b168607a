//! The one byte-stream type every server connection and every client
//! speaks over: [`Stream`], a TCP, Unix or TLS-over-TCP connection.
//!
//! Services, clients and the load generator are written once against
//! `Stream` (tokio's `AsyncRead`/`AsyncWrite`, plus
//! [`Stream::read_unbuffered`]); which transport sits underneath is a
//! match inside each call, never a trait object per connection. The peer a
//! server connection came from is a [`PeerAddr`].
//!
//! A server connection carries a [`ByteMeter`] ([`Stream::metered`]):
//! every read and write adds what it moved to the listener's counters,
//! one relaxed atomic add per system call (or TLS record poll), next to
//! the call it counts.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::metrics::ByteMeter;

/// A TLS session over TCP, from either side (tokio-rustls).
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// Size of the stack buffer behind [`Stream::read_unbuffered`] and
/// [`read_through_stack`].
pub const UNBUFFERED_READ: usize = 4096;

/// A connected byte stream, and the counters its bytes go to (server
/// connections only).
#[derive(Debug)]
pub struct Stream {
    io: Transport,
    /// Two `Arc`s: the connection's listener's byte counters, attached
    /// after the TLS handshake, so the bytes counted are the service's
    /// (plaintext), never TLS framing.
    meter: Option<ByteMeter>,
}

/// What carries a [`Stream`].
#[derive(Debug)]
enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
    /// TLS over TCP. Boxed: a TLS session is a few KiB of state, and the
    /// plain variants should not pay for it.
    Tls(Box<TlsStream>),
    /// A plain socket shared with a [`SideWriter`]
    /// ([`Stream::with_side_writer`]).
    Shared(Shared),
}

/// A plain socket, TCP or Unix, that a [`Stream`] and its [`SideWriter`]
/// both hold. tokio's sockets do their I/O through `&self` (readiness,
/// then `try_*`), which is all either side needs.
#[derive(Debug)]
enum Plain {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The stream's side of a shared plain socket.
#[derive(Debug)]
struct Shared(Arc<Plain>);

/// A second way to write to a plain connection, beside its [`Stream`]
/// ([`Stream::with_side_writer`]): it never waits, it writes what the
/// socket takes now. For a server that can write a short reply from
/// wherever it is made, as long as nothing else is being written on the
/// stream meanwhile, rather than wake the connection's task to write it.
/// The socket stays open while this is held.
#[derive(Debug)]
pub struct SideWriter {
    socket: Arc<Plain>,
    /// The stream's own counters: its bytes are counted the same.
    meter: Option<ByteMeter>,
}

/// A plain socket taken out of tokio's reactor ([`Stream::into_plain`]).
#[derive(Debug)]
pub enum PlainSocket {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// A Unix-domain stream socket.
    Unix(std::os::unix::net::UnixStream),
}

/// Who is at the other end of a server connection: an IP peer, or the
/// `N`th Unix client of this process (Unix clients are usually unnamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP (or TLS) peer.
    Ip(SocketAddr),
    /// A Unix-domain peer, numbered per process.
    Unix(u64),
}

impl PeerAddr {
    /// The peer's IP address, for access checks (Unix peers have none).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            PeerAddr::Ip(addr) => Some(addr.ip()),
            PeerAddr::Unix(_) => None,
        }
    }
}

/// The peer as written in logs and chat names: `127.0.0.1:40000`,
/// `[::1]:40000` or `unix-3`.
impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(n) => write!(f, "unix-{n}"),
        }
    }
}

/// Waits for a plain socket to be readable, then reads into a stack
/// buffer that lives only for the read (the body of
/// [`Stream::read_unbuffered`] for TCP and Unix sockets, which share the
/// methods but no trait).
macro_rules! read_ready_into_stack {
    ($socket:expr, $limit:expr, $take:expr) => {
        loop {
            // Readiness can be a false positive (tokio reports a fresh
            // socket as readable): `try_read` settles it.
            $socket.readable().await?;
            let mut stack = [0u8; UNBUFFERED_READ];
            match $socket.try_read(&mut stack[..$limit]) {
                Ok(n) => {
                    $take(&stack[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    };
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Stream {
        Stream::new(Transport::Tcp(tcp))
    }
}

impl From<UnixStream> for Stream {
    fn from(unix: UnixStream) -> Stream {
        Stream::new(Transport::Unix(unix))
    }
}

impl From<TlsStream> for Stream {
    fn from(tls: TlsStream) -> Stream {
        Stream::new(Transport::Tls(Box::new(tls)))
    }
}

impl Stream {
    fn new(io: Transport) -> Stream {
        Stream { io, meter: None }
    }

    /// The stream with every byte it moves from now on counted in `meter`.
    pub fn metered(self, meter: ByteMeter) -> Stream {
        Stream {
            meter: Some(meter),
            ..self
        }
    }

    /// The TCP socket under a plain TCP stream (to run a TLS handshake
    /// on it); any other stream is handed back.
    ///
    /// # Errors
    /// The stream itself, when it is not plain TCP.
    pub fn into_tcp(self) -> Result<TcpStream, Stream> {
        match self.io {
            Transport::Tcp(tcp) => Ok(tcp),
            io => Err(Stream { io, ..self }),
        }
    }

    /// Takes a plain TCP or Unix socket back out of tokio's reactor (one
    /// `epoll_ctl`), still open and non-blocking, so it can wait in the
    /// parking lot; the meter is dropped (the next task attaches its own).
    ///
    /// # Errors
    /// A TLS stream (its session cannot be taken apart; it is closed), or
    /// the reactor refusing to let go of the socket (it is closed too).
    pub fn into_plain(self) -> io::Result<PlainSocket> {
        match self.io {
            Transport::Tcp(tcp) => tcp.into_std().map(PlainSocket::Tcp),
            Transport::Unix(unix) => unix.into_std().map(PlainSocket::Unix),
            Transport::Tls(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TLS stream cannot be taken apart",
            )),
            Transport::Shared(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a shared socket cannot be taken apart",
            )),
        }
    }

    /// The stream, and for a plain TCP or Unix one, a [`SideWriter`] on
    /// the same socket. A TLS stream comes back as it is, with none: its
    /// records can be made only by its own session.
    pub fn with_side_writer(self) -> (Stream, Option<SideWriter>) {
        let plain = match self.io {
            Transport::Tcp(tcp) => Plain::Tcp(tcp),
            Transport::Unix(unix) => Plain::Unix(unix),
            io => return (Stream { io, ..self }, None),
        };
        let socket = Arc::new(plain);
        let side = SideWriter {
            socket: socket.clone(),
            meter: self.meter.clone(),
        };
        let stream = Stream {
            io: Transport::Shared(Shared(socket)),
            ..self
        };
        (stream, Some(side))
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Transport::Tls(_))
    }

    /// Whether the TLS session was resumed rather than negotiated in full;
    /// `None` when the stream is not TLS (or the handshake is not done).
    pub fn tls_resumed(&self) -> Option<bool> {
        let Transport::Tls(tls) = &self.io else {
            return None;
        };
        let kind = match &**tls {
            tokio_rustls::TlsStream::Client(c) => c.get_ref().1.handshake_kind(),
            tokio_rustls::TlsStream::Server(s) => s.get_ref().1.handshake_kind(),
        };
        kind.map(|k| k == rustls::HandshakeKind::Resumed)
    }

    /// Waits for data, reads at most `limit` bytes (and at most 4 KiB) into
    /// a short-lived stack buffer and hands them to `take`; returns the
    /// bytes read, 0 at EOF.
    ///
    /// This is what keeps an idle connection small: the caller's own
    /// buffer is allocated only once the peer has sent something, and
    /// while it waits no buffer is held, not even on the stack of the
    /// suspended future.
    ///
    /// # Errors
    /// The socket's (or the TLS session's) read error.
    pub async fn read_unbuffered<F>(&mut self, limit: usize, take: F) -> io::Result<usize>
    where
        F: FnOnce(&[u8]) + Send,
    {
        let n = self.io.read_unbuffered(limit, take).await?;
        if let Some(meter) = &self.meter {
            meter.received.inc_by(n as u64);
        }
        Ok(n)
    }

    /// Caps the kernel's send buffer of the connection at `bytes` (Linux
    /// doubles the value for its bookkeeping), which also turns off the
    /// buffer's autotuning: a server that wants its own queue, not a few
    /// megabytes of kernel memory, to hold a slow reader's backlog sets
    /// this.
    ///
    /// # Errors
    /// The `setsockopt` error.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        match &self.io {
            Transport::Tcp(s) => socket2::SockRef::from(s).set_send_buffer_size(bytes),
            Transport::Unix(s) => socket2::SockRef::from(s).set_send_buffer_size(bytes),
            Transport::Tls(s) => socket2::SockRef::from(s.get_ref().0).set_send_buffer_size(bytes),
            Transport::Shared(s) => s.0.sock_ref().set_send_buffer_size(bytes),
        }
    }

    /// Ends the conversation politely where the transport has a way to:
    /// over TLS, sends close_notify and shuts the TCP write side (SPEC 3).
    /// Plain sockets need nothing; dropping them closes them.
    ///
    /// # Errors
    /// The write error, for a peer that has already gone.
    pub async fn close(&mut self) -> io::Result<()> {
        match &mut self.io {
            Transport::Tls(s) => tokio::io::AsyncWriteExt::shutdown(&mut **s).await,
            Transport::Tcp(_) | Transport::Unix(_) | Transport::Shared(_) => Ok(()),
        }
    }
}

impl SideWriter {
    /// Writes as much of `bufs` as the socket takes now, without
    /// waiting, and counts it.
    ///
    /// # Errors
    /// `WouldBlock` when the socket takes nothing now; the socket's
    /// error (the peer gone).
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.socket.try_write_vectored(bufs)?;
        if let Some(meter) = &self.meter {
            meter.sent.inc_by(n as u64);
        }
        Ok(n)
    }
}

/// Calls the same method of whichever socket a [`Plain`] is (TCP and Unix
/// sockets share their methods, but no trait).
macro_rules! plain {
    ($plain:expr, $s:ident => $call:expr) => {
        match $plain {
            Plain::Tcp($s) => $call,
            Plain::Unix($s) => $call,
        }
    };
}

impl Plain {
    fn sock_ref(&self) -> socket2::SockRef<'_> {
        plain!(self, s => socket2::SockRef::from(s))
    }

    async fn readable(&self) -> io::Result<()> {
        plain!(self, s => s.readable().await)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        plain!(self, s => s.try_read(buf))
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        plain!(self, s => s.try_write_vectored(bufs))
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        plain!(self, s => s.poll_read_ready(cx))
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        plain!(self, s => s.poll_write_ready(cx))
    }
}

/// What tokio's own sockets do in `poll_read` and `poll_write`, through
/// `&self`: wait for readiness, try, and on a false positive (the
/// `try_*` call clears the readiness) wait again.
impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.sock_ref().shutdown(std::net::Shutdown::Write))
    }
}

impl Transport {
    /// [`Stream::read_unbuffered`], uncounted.
    async fn read_unbuffered<F>(&mut self, limit: usize, take: F) -> io::Result<usize>
    where
        F: FnOnce(&[u8]) + Send,
    {
        let limit = limit.clamp(1, UNBUFFERED_READ);
        match self {
            Transport::Tcp(s) => read_ready_into_stack!(s, limit, take),
            Transport::Unix(s) => read_ready_into_stack!(s, limit, take),
            Transport::Shared(s) => read_ready_into_stack!(s.0, limit, take),
            // TLS has no readiness to wait on (the bytes that make a
            // record may already sit in rustls' buffers).
            Transport::Tls(s) => read_through_stack(&mut **s, limit, |bytes| take(bytes)).await,
        }
    }
}

/// Reads once from `reader` into a stack buffer of at most `limit` bytes
/// (up to [`UNBUFFERED_READ`]) that lives only inside one poll, and hands
/// what came to `take`, which may change it in place: so a connection
/// waiting for its next bytes holds no buffer, not even in this future.
/// The bytes read; 0 at EOF.
///
/// # Errors
/// The read's.
pub async fn read_through_stack<R, F>(reader: &mut R, limit: usize, take: F) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
    F: FnOnce(&mut [u8]),
{
    let limit = limit.clamp(1, UNBUFFERED_READ);
    let mut take = Some(take);
    std::future::poll_fn(|cx| {
        let mut stack = [0u8; UNBUFFERED_READ];
        let mut buf = ReadBuf::new(&mut stack[..limit]);
        match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if let Some(take) = take.take() {
                    take(&mut stack[..n]);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The most slices one `writev` takes (Linux's `UIO_MAXIOV`).
const MAX_SLICES: usize = 1024;

/// Writes all of `slices`, in order, with as few vectored writes as the
/// writer takes: the pieces go out as they are, gathered by the kernel
/// (or by rustls into whole records), never copied into one buffer
/// first. A writer that is not vectored gets them one by one.
///
/// # Errors
/// The writes'; `WriteZero` if one wrote nothing.
pub async fn write_all_vectored<W>(
    writer: &mut W,
    mut slices: &mut [io::IoSlice<'_>],
) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    use tokio::io::AsyncWriteExt;
    while !slices.is_empty() {
        let upto = slices.len().min(MAX_SLICES);
        let n = writer.write_vectored(&slices[..upto]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Forwards a poll method to whichever transport the stream is.
macro_rules! each {
    ($io:expr, $s:ident => $call:expr) => {
        match $io {
            Transport::Tcp($s) => $call,
            Transport::Unix($s) => $call,
            Transport::Shared($s) => $call,
            Transport::Tls($s) => {
                let $s = &mut **$s;
                $call
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = each!(&mut this.io, s => Pin::new(s).poll_read(cx, buf));
        if let (Some(meter), Poll::Ready(Ok(()))) = (&this.meter, &polled) {
            meter.received.inc_by((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = each!(&mut this.io, s => Pin::new(s).poll_write(cx, buf));
        this.count_sent(&polled);
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.get_mut().io, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.get_mut().io, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = each!(&mut this.io, s => Pin::new(s).poll_write_vectored(cx, bufs));
        this.count_sent(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Unix(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
            Transport::Shared(s) => s.is_write_vectored(),
        }
    }
}

impl Stream {
    /// Writes as `poll_write_vectored` does, except over TLS: there the
    /// bytes are sealed into records that stay in the session's buffer
    /// until the next `poll_flush` (see [`super::cork`]), unless the
    /// buffer is full (rustls' limit, 64 KiB), which is sent first. Plain
    /// sockets write at once.
    pub(crate) fn poll_write_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Transport::Tls(tls) = &mut self.io else {
            return Pin::new(self).poll_write_vectored(cx, bufs);
        };
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        use std::io::Write as _;
        let mut flushed = false;
        let polled = loop {
            let written = match &mut **tls {
                tokio_rustls::TlsStream::Server(s) => s.get_mut().1.writer().write_vectored(bufs),
                tokio_rustls::TlsStream::Client(c) => c.get_mut().1.writer().write_vectored(bufs),
            };
            // Nothing taken: the buffer is full. Send it, then try once
            // more; a session that takes nothing even then (closed for
            // writing) gets its 0 back, which callers treat as an error.
            match written {
                Ok(0) if !flushed => {}
                other => break Poll::Ready(other),
            }
            if let Err(e) = std::task::ready!(Pin::new(&mut **tls).poll_flush(cx)) {
                break Poll::Ready(Err(e));
            }
            flushed = true;
        };
        self.count_sent(&polled);
        polled
    }

    /// Whether a TLS session holds records not yet written to the socket.
    #[cfg(test)]
    pub(crate) fn tls_output_held(&self) -> bool {
        match &self.io {
            Transport::Tls(tls) => tls.get_ref().1.wants_write(),
            Transport::Tcp(_) | Transport::Unix(_) | Transport::Shared(_) => false,
        }
    }

    fn count_sent(&self, polled: &Poll<io::Result<usize>>) {
        if let (Some(meter), Poll::Ready(Ok(n))) = (&self.meter, polled) {
            meter.sent.inc_by(*n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn peers_are_named_as_in_logs() {
        let v4: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        assert_eq!(PeerAddr::Ip(v4).to_string(), "127.0.0.1:40000");
        assert_eq!(PeerAddr::Ip(v6).to_string(), "[::1]:40000");
        assert_eq!(PeerAddr::Unix(3).to_string(), "unix-3");
        assert_eq!(PeerAddr::Unix(3).ip(), None);
    }

    #[tokio::test]
    async fn unbuffered_read_then_buffered_io_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"hello world").await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            back
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = Stream::from(tcp);
        let mut first = Vec::new();
        let n = stream
            .read_unbuffered(5, |b| first.extend_from_slice(b))
            .await
            .unwrap();
        assert_eq!((n, first.as_slice()), (5, &b"hello"[..]));
        let mut rest = [0u8; 16];
        let n = stream.read(&mut rest).await.unwrap();
        assert_eq!(&rest[..n], b" world");
        stream.write_all(b"bye").await.unwrap();
        stream.close().await.unwrap();
        drop(stream);
        assert_eq!(client.await.unwrap(), b"bye");
    }
}
