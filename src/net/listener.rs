//! Binding every kind of listening socket, and accepting with backoff.
//!
//! [`bind`] turns an [`Endpoint`] into a [`Bound`] socket: a stream listener
//! (TCP, TLS's TCP, Unix) or a datagram socket (UDP, unixgram). Stream
//! listeners share one shape, [`StreamListener`], whose `accept` yields a
//! [`Conn`], so the server's accept loop is written once for all of them.
//!
//! An accepted [`Conn`] is handed over unregistered from tokio's reactor:
//! the server decides whether it waits, taskless, in the parking lot until
//! its first bytes arrive, or goes straight to a task.
//! Unix socket files are handled with care: a stale file left by a dead
//! server is replaced, a live server's is refused, anything that is not a
//! socket is left alone, and our own file is removed when the listener is
//! dropped.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};

use crate::net::addr::{Endpoint, HostPort};
use crate::net::stream::{PeerAddr, PlainSocket, Stream};

/// Pending connections the kernel queues for us; the kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Receive buffer asked for on UDP sockets. The default (~200 KiB) drops
/// datagrams under a burst of a few hundred in flight; the kernel caps the
/// request at `net.core.rmem_max`.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// The longest pause between retries after an accept error such as running
/// out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A bound socket, ready to serve.
#[derive(Debug)]
pub enum Bound {
    /// Accepts connections.
    Stream(StreamListener),
    /// Receives datagrams.
    Datagram(DatagramSocket),
}

/// A listener for stream connections.
#[derive(Debug)]
pub enum StreamListener {
    /// TCP, or TLS on top of it.
    Tcp {
        /// The socket.
        listener: TcpListener,
        /// Whether connections are to be wrapped in TLS.
        tls: bool,
    },
    /// Unix-domain stream.
    Unix {
        /// The socket.
        listener: UnixListener,
        /// Removes the socket file when dropped.
        file: SocketFile,
    },
}

/// A datagram socket.
#[derive(Debug)]
pub enum DatagramSocket {
    /// UDP.
    Udp(UdpSocket),
    /// Unix-domain datagram.
    Unix {
        /// The socket.
        socket: UnixDatagram,
        /// Removes the socket file when dropped.
        file: SocketFile,
    },
}

/// An accepted connection, non-blocking and not yet registered with any
/// reactor (see [`Conn::into_stream`]).
#[derive(Debug)]
pub struct Conn {
    socket: ConnSocket,
    /// Who it is from.
    pub peer: PeerAddr,
    /// When it was accepted: the TLS handshake deadline counts from here.
    pub accepted: tokio::time::Instant,
    /// When the client last sent something (when it was accepted, for a
    /// connection that has not spoken yet): the parking lot's idle check
    /// counts from here.
    pub last_active: tokio::time::Instant,
}

#[derive(Debug)]
enum ConnSocket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Conn {
    /// Registers the socket with tokio's reactor: a plain [`Stream`]
    /// (TLS, if the listener wants it, is set up on top of it).
    ///
    /// # Errors
    /// When the reactor refuses the registration (out of memory).
    pub fn into_stream(self) -> io::Result<Stream> {
        Ok(match self.socket {
            ConnSocket::Tcp(s) => Stream::from(tokio::net::TcpStream::from_std(s.into())?),
            ConnSocket::Unix(s) => Stream::from(tokio::net::UnixStream::from_std(s.into())?),
        })
    }

    /// A served connection taken back from its task to be parked again
    /// (see [`Stream::into_plain`]).
    pub fn from_plain(
        socket: PlainSocket,
        peer: PeerAddr,
        accepted: tokio::time::Instant,
        last_active: tokio::time::Instant,
    ) -> Conn {
        let socket = match socket {
            PlainSocket::Tcp(s) => ConnSocket::Tcp(mio::net::TcpStream::from_std(s)),
            PlainSocket::Unix(s) => ConnSocket::Unix(mio::net::UnixStream::from_std(s)),
        };
        Conn {
            socket,
            peer,
            accepted,
            last_active,
        }
    }

    /// The socket as a mio event source, for the parking lot.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match &mut self.socket {
            ConnSocket::Tcp(s) => s,
            ConnSocket::Unix(s) => s,
        }
    }
}

/// A Unix socket file that we created, removed when dropped unless
/// something else has replaced it since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: Option<u64>,
}

impl SocketFile {
    fn new(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        SocketFile {
            path: path.to_path_buf(),
            inode: std::fs::metadata(path).ok().map(|m| m.ino()),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let current = std::fs::symlink_metadata(&self.path).ok().map(|m| m.ino());
        if current.is_some() && current == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Bound {
    /// The address actually bound, in the address syntax: the real port
    /// when port 0 was asked for.
    pub fn local_endpoint(&self) -> io::Result<String> {
        Ok(match self {
            Bound::Stream(StreamListener::Tcp { listener, tls }) => {
                let scheme = if *tls { "tls" } else { "tcp" };
                format!("{scheme}://{}", listener.local_addr()?)
            }
            Bound::Stream(StreamListener::Unix { file, .. }) => {
                format!("unix://{}", file.path.display())
            }
            Bound::Datagram(DatagramSocket::Udp(socket)) => {
                format!("udp://{}", socket.local_addr()?)
            }
            Bound::Datagram(DatagramSocket::Unix { file, .. }) => {
                format!("unixgram://{}", file.path.display())
            }
        })
    }
}

/// Binds `endpoint`. A name is resolved and its first address bound.
///
/// # Errors
/// Resolution, a live server on a Unix path, a non-socket file in the way,
/// or the OS refusing the bind; each message names the address.
pub async fn bind(endpoint: &Endpoint) -> io::Result<Bound> {
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}"));
    match endpoint {
        Endpoint::Tcp(hp) | Endpoint::Tls(hp) => {
            let addr = first_addr(hp).await.map_err(named)?;
            let listener = bind_tcp(addr).map_err(named)?;
            Ok(Bound::Stream(StreamListener::Tcp {
                listener,
                tls: matches!(endpoint, Endpoint::Tls(_)),
            }))
        }
        Endpoint::Udp(hp) => {
            let addr = first_addr(hp).await.map_err(named)?;
            Ok(Bound::Datagram(DatagramSocket::Udp(
                bind_udp(addr).map_err(named)?,
            )))
        }
        Endpoint::Unix(path) => {
            clear_stale_socket(path, false).map_err(named)?;
            let listener = UnixListener::bind(path).map_err(named)?;
            Ok(Bound::Stream(StreamListener::Unix {
                listener,
                file: SocketFile::new(path),
            }))
        }
        Endpoint::UnixGram(path) => {
            clear_stale_socket(path, true).map_err(named)?;
            let socket = UnixDatagram::bind(path).map_err(named)?;
            Ok(Bound::Datagram(DatagramSocket::Unix {
                socket,
                file: SocketFile::new(path),
            }))
        }
    }
}

async fn first_addr(hp: &HostPort) -> io::Result<SocketAddr> {
    Ok(hp.resolve().await?[0])
}

fn new_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; IPv4 gets its own `-l`, so the listening
        // lines say exactly what is served.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_tcp_with(addr, false)
}

fn bind_tcp_with(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    bind_udp_with(addr, false)
}

fn bind_udp_with(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    raise_udp_buffers(&socket);
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Asks for [`UDP_RECV_BUFFER`] both ways on a UDP socket, server's or
/// client's: a burst of replies in flight must not overflow the default.
/// Best effort: a smaller buffer only means drops under bursts.
pub(crate) fn raise_udp_buffers(socket: &Socket) {
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_RECV_BUFFER);
}

/// Binds `endpoint` for `copies` worker processes: TCP and UDP as that
/// many sockets on one port with SO_REUSEPORT (the kernel spreads
/// connections and datagrams over them; the first resolves port 0, the
/// others bind the port it got), a Unix socket once, to be shared.
///
/// # Errors
/// As [`bind`].
pub async fn bind_shared(endpoint: &Endpoint, copies: usize) -> io::Result<Vec<Bound>> {
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}"));
    let (hp, tcp) = match endpoint {
        Endpoint::Tcp(hp) | Endpoint::Tls(hp) => (hp, true),
        Endpoint::Udp(hp) => (hp, false),
        Endpoint::Unix(_) | Endpoint::UnixGram(_) => return Ok(vec![bind(endpoint).await?]),
    };
    let tls = matches!(endpoint, Endpoint::Tls(_));
    let mut addr = first_addr(hp).await.map_err(named)?;
    let mut bound = Vec::with_capacity(copies);
    for _ in 0..copies {
        let socket = if tcp {
            let listener = bind_tcp_with(addr, true).map_err(named)?;
            addr = listener.local_addr()?;
            Bound::Stream(StreamListener::Tcp { listener, tls })
        } else {
            let socket = bind_udp_with(addr, true).map_err(named)?;
            addr = socket.local_addr()?;
            Bound::Datagram(DatagramSocket::Udp(socket))
        };
        bound.push(socket);
    }
    Ok(bound)
}

/// What a bound socket is, as a worker process is told with its
/// descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SocketKind {
    /// A TCP listener.
    Tcp,
    /// A TCP listener whose connections are TLS.
    Tls,
    /// A UDP socket.
    Udp,
    /// A Unix stream listener.
    Unix,
    /// A Unix datagram socket.
    UnixGram,
}

impl Bound {
    /// Which kind of socket this is.
    pub fn kind(&self) -> SocketKind {
        match self {
            Bound::Stream(StreamListener::Tcp { tls: false, .. }) => SocketKind::Tcp,
            Bound::Stream(StreamListener::Tcp { tls: true, .. }) => SocketKind::Tls,
            Bound::Stream(StreamListener::Unix { .. }) => SocketKind::Unix,
            Bound::Datagram(DatagramSocket::Udp(_)) => SocketKind::Udp,
            Bound::Datagram(DatagramSocket::Unix { .. }) => SocketKind::UnixGram,
        }
    }

    /// Its descriptor, to be handed to a worker process.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Bound::Stream(StreamListener::Tcp { listener, .. }) => listener.as_fd(),
            Bound::Stream(StreamListener::Unix { listener, .. }) => listener.as_fd(),
            Bound::Datagram(DatagramSocket::Udp(socket)) => socket.as_fd(),
            Bound::Datagram(DatagramSocket::Unix { socket, .. }) => socket.as_fd(),
        }
    }

    /// Takes on a socket bound by another process (a worker's parent, or
    /// systemd): `kind` says what it is, `path` is a Unix socket's file,
    /// which the other process owns and removes.
    ///
    /// # Errors
    /// When tokio cannot register the socket.
    pub fn adopt(kind: SocketKind, path: &Path, fd: std::os::fd::OwnedFd) -> io::Result<Bound> {
        let file = || SocketFile {
            path: path.to_path_buf(),
            inode: None,
        };
        Ok(match kind {
            SocketKind::Tcp | SocketKind::Tls => {
                let listener = std::net::TcpListener::from(fd);
                listener.set_nonblocking(true)?;
                Bound::Stream(StreamListener::Tcp {
                    listener: TcpListener::from_std(listener)?,
                    tls: kind == SocketKind::Tls,
                })
            }
            SocketKind::Udp => {
                let socket = std::net::UdpSocket::from(fd);
                socket.set_nonblocking(true)?;
                Bound::Datagram(DatagramSocket::Udp(UdpSocket::from_std(socket)?))
            }
            SocketKind::Unix => {
                let listener = std::os::unix::net::UnixListener::from(fd);
                listener.set_nonblocking(true)?;
                Bound::Stream(StreamListener::Unix {
                    listener: UnixListener::from_std(listener)?,
                    file: file(),
                })
            }
            SocketKind::UnixGram => {
                let socket = std::os::unix::net::UnixDatagram::from(fd);
                socket.set_nonblocking(true)?;
                Bound::Datagram(DatagramSocket::Unix {
                    socket: UnixDatagram::from_std(socket)?,
                    file: file(),
                })
            }
        })
    }
}

/// Makes way for a Unix socket at `path`: removes a socket file nobody
/// answers on (a dead server's), refuses a live one or any other file.
fn clear_stale_socket(path: &Path, datagram: bool) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not touching it",
        ));
    }
    let live = if datagram {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    } else {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    };
    if live {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is live on this socket",
        ));
    }
    std::fs::remove_file(path)
}

/// Adopts sockets passed by systemd socket activation (`LISTEN_FDS`), in
/// order, each as whatever kind of socket it is. A TCP socket named `tls`
/// or `tls-...` (`FileDescriptorName=` in the `.socket` unit, which
/// systemd passes in `LISTEN_FDNAMES`) is served over TLS, as a `tls://`
/// listener would be.
///
/// # Errors
/// A passed descriptor that is not a socket of a kind sockit serves.
pub fn from_systemd() -> io::Result<Vec<Bound>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut bound = Vec::new();
    for i in 0..fds.len() {
        let name = names.get(i).map_or("", String::as_str);
        // What the descriptor is, and a Unix socket's file (systemd owns
        // it: never removed here); then taken on like a worker's sockets.
        let (kind, fd, path): (SocketKind, OwnedFd, Option<PathBuf>) =
            if let Some(l) = fds.take_tcp_listener(i).ok().flatten() {
                let tls = name == "tls" || name.starts_with("tls-");
                let kind = if tls {
                    SocketKind::Tls
                } else {
                    SocketKind::Tcp
                };
                (kind, l.into(), None)
            } else if let Some(s) = fds.take_udp_socket(i).ok().flatten() {
                (SocketKind::Udp, s.into(), None)
            } else if let Some(l) = fds.take_unix_listener(i).ok().flatten() {
                let path = l.local_addr()?.as_pathname().map(Path::to_path_buf);
                (SocketKind::Unix, l.into(), path)
            } else if let Some(s) = fds.take_unix_datagram(i).ok().flatten() {
                let path = s.local_addr()?.as_pathname().map(Path::to_path_buf);
                (SocketKind::UnixGram, s.into(), path)
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "LISTEN_FDS descriptor {} is not a TCP, UDP or Unix socket",
                        3 + i
                    ),
                ));
            };
        bound.push(Bound::adopt(kind, &path.unwrap_or_default(), fd)?);
    }
    Ok(bound)
}

impl StreamListener {
    /// Accepts the next connection. Errors that concern only the one
    /// connection are skipped; errors of the process (out of descriptors or
    /// memory) are retried with backoff, logged, and never returned: a
    /// listener outlives any burst of failures.
    pub async fn accept(&self, unix_ids: &std::sync::atomic::AtomicU64) -> Conn {
        let mut backoff = Duration::from_millis(5);
        loop {
            // `into_std` takes the socket back out of tokio's reactor (one
            // epoll_ctl); tokio's listeners have no way to accept without
            // registering, and the alternative, AsyncFd on a mio listener,
            // needs unsafe code.
            let result = match self {
                StreamListener::Tcp { listener, .. } => {
                    listener.accept().await.and_then(|(s, a)| {
                        // Replies are small and latency matters more than
                        // packet count: without this, a small reply can
                        // wait for the peer's delayed ACK.
                        let _ = s.set_nodelay(true);
                        let now = tokio::time::Instant::now();
                        Ok(Conn {
                            socket: ConnSocket::Tcp(mio::net::TcpStream::from_std(s.into_std()?)),
                            peer: PeerAddr::Ip(a),
                            accepted: now,
                            last_active: now,
                        })
                    })
                }
                StreamListener::Unix { listener, .. } => {
                    listener.accept().await.and_then(|(s, _)| {
                        let id = unix_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let now = tokio::time::Instant::now();
                        Ok(Conn {
                            socket: ConnSocket::Unix(mio::net::UnixStream::from_std(s.into_std()?)),
                            peer: PeerAddr::Unix(id),
                            accepted: now,
                            last_active: now,
                        })
                    })
                }
            };
            match result {
                Ok(conn) => return conn,
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "accept: connection failed before it was accepted");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
    }
}

/// Errors that belong to one failed connection, not to the listener
/// (the same split as hyper and axum make).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::DefaultScheme;

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s, DefaultScheme::Tcp).unwrap()
    }

    #[tokio::test]
    async fn port_zero_reports_the_real_port() {
        let bound = bind(&ep("tcp://127.0.0.1:0")).await.unwrap();
        let name = bound.local_endpoint().unwrap();
        assert!(name.starts_with("tcp://127.0.0.1:"));
        assert!(!name.ends_with(":0"));
        let bound = bind(&ep("udp://[::1]:0")).await.unwrap();
        assert!(bound.local_endpoint().unwrap().starts_with("udp://[::1]:"));
    }

    #[tokio::test]
    async fn shared_copies_bind_one_port() {
        for text in ["tcp://127.0.0.1:0", "udp://127.0.0.1:0", "tls://[::1]:0"] {
            let copies = bind_shared(&ep(text), 3).await.unwrap();
            assert_eq!(copies.len(), 3);
            let names: Vec<String> = copies.iter().map(|b| b.local_endpoint().unwrap()).collect();
            assert!(!names[0].ends_with(":0"), "{names:?}");
            assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
        }
        let path = std::env::temp_dir().join(format!("sockit-shared-{}.sock", std::process::id()));
        let one = bind_shared(&Endpoint::Unix(path.clone()), 3).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].kind(), SocketKind::Unix);
        drop(one);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn unix_socket_files_stale_live_and_foreign() {
        let dir = std::env::temp_dir().join(format!("sockit-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let endpoint = Endpoint::Unix(path.clone());

        // A stale file (bound, then the socket closed without unlinking).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = bind(&endpoint).await.expect("stale socket replaced");
        // A live one is refused.
        let err = bind(&endpoint).await.unwrap_err();
        assert!(err.to_string().contains("live"), "{err}");
        drop(live);
        assert!(!path.exists(), "our socket file is removed on drop");

        // A regular file is never removed.
        std::fs::write(&path, b"precious").unwrap();
        assert!(bind(&endpoint).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
