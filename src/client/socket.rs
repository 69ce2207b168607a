//! Opening a client socket for an [`Endpoint`]: a connected TCP or Unix
//! stream, or a connected UDP or unixgram socket, within a timeout.
//!
//! This is the one place where a client turns an address into a socket, so
//! every client reports a refused connection, an unknown host or a timeout
//! the same way: one lower-case line that names the address
//! ([`ClientError`]). Clients yet to come (`ping`, `bench`, `chat`) are meant
//! to open their sockets here too.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::net::addr::{Endpoint, Host, HostPort};
use crate::units::format_duration;

/// The receive buffer for one datagram: larger than any UDP payload, so no
/// UDP reply is cut short.
pub(crate) const RECV_BUFFER: usize = 64 * 1024;

/// Why a client could not open its socket, or lost it: one line that names
/// the address, for `main` to print (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `tls://` needs a TLS client, which sockit does not have yet.
    #[error("{addr}: TLS client support is not available yet (use tcp:// for plain TCP)")]
    TlsUnsupported {
        /// The address as given.
        addr: String,
    },
    /// Unix-domain sockets on a platform that has none.
    #[error("{addr}: unix sockets are not supported on this platform")]
    UnixUnsupported {
        /// The address as given.
        addr: String,
    },
    /// The host name did not resolve.
    #[error("resolve {host}: {}", Cause(.cause))]
    Resolve {
        /// The name that failed.
        host: String,
        /// The resolver's error.
        cause: io::Error,
    },
    /// No address of the endpoint took the connection.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The address as given.
        addr: String,
        /// Why, for each address tried when there were several.
        reason: String,
    },
    /// A step did not finish in time.
    #[error("{step} {target}: timed out after {}", format_duration(*.after))]
    TimedOut {
        /// What was going on: `resolve`, `connect to`.
        step: &'static str,
        /// The name or address it was going on with.
        target: String,
        /// The time it had.
        after: Duration,
    },
    /// Ctrl-C ended a datagram session, which handles it so that a unixgram
    /// client's socket file is removed.
    #[error("interrupted")]
    Interrupted,
    /// An I/O error on an open socket.
    #[error("{step} {addr}: {}", Cause(.cause))]
    Io {
        /// What was going on: `read from`, `send to`.
        step: &'static str,
        /// The address of the socket's peer.
        addr: String,
        /// The error.
        cause: io::Error,
    },
}

impl ClientError {
    /// An I/O error while `step` (`read from`, `send to`) with `addr`.
    pub(crate) fn io(step: &'static str, addr: &str, cause: io::Error) -> ClientError {
        ClientError::Io {
            step,
            addr: addr.to_owned(),
            cause,
        }
    }
}

/// An I/O error as a short lower-case phrase, `connection refused` rather
/// than `Connection refused (os error 111)`, so an error reads as one
/// sentence after the address it names.
pub(crate) struct Cause<'a>(pub(crate) &'a io::Error);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let text = text
            .split_once(" (os error ")
            .map_or(text.as_str(), |(phrase, _)| phrase);
        let mut chars = text.chars();
        match (chars.next(), chars.clone().next()) {
            // Leave acronyms ("TLS ...") alone; lower only a capitalised word.
            (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
                write!(f, "{}{}", first.to_lowercase(), chars.as_str())
            }
            _ => f.write_str(text),
        }
    }
}

/// A byte stream a client talks over: TCP or Unix today, TLS when it comes.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// An open client socket, in the shape its transport gives it.
pub(crate) enum Connection {
    /// TCP or Unix stream: bytes both ways, and the write side can be shut.
    Stream(Box<dyn ByteStream>),
    /// UDP or unixgram: datagrams to and from the server alone.
    Datagram(Datagram),
}

/// A connected datagram socket: it sends to the server and, because it is
/// connected, the kernel drops datagrams from anyone else. A UDP server that
/// is not there shows up as `connection refused` on a later send or receive.
pub(crate) struct Datagram(DatagramSocket);

enum DatagramSocket {
    Udp(UdpSocket),
    /// A unixgram client needs a socket file of its own as its return
    /// address; the [`SocketFile`] removes it when the socket goes.
    #[cfg(unix)]
    Unix {
        socket: tokio::net::UnixDatagram,
        _file: SocketFile,
    },
}

impl Datagram {
    /// Sends one datagram.
    ///
    /// # Errors
    /// The socket's error, such as `connection refused` from an earlier
    /// datagram or `message too long`.
    pub(crate) async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        match &self.0 {
            DatagramSocket::Udp(socket) => socket.send(datagram).await?,
            #[cfg(unix)]
            DatagramSocket::Unix { socket, .. } => socket.send(datagram).await?,
        };
        Ok(())
    }

    /// Waits for one datagram and returns its length; the part of it that
    /// does not fit in `buf` is lost.
    ///
    /// # Errors
    /// The socket's error, such as `connection refused`.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            DatagramSocket::Udp(socket) => socket.recv(buf).await,
            #[cfg(unix)]
            DatagramSocket::Unix { socket, .. } => socket.recv(buf).await,
        }
    }

    /// Polls to send one datagram, for callers that drive the socket from
    /// their own `poll` (the load generator, which must not build a future
    /// per request).
    ///
    /// # Errors
    /// As [`Datagram::send`].
    pub(crate) fn poll_send(
        &self,
        cx: &mut std::task::Context<'_>,
        datagram: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match &self.0 {
            DatagramSocket::Udp(socket) => socket.poll_send(cx, datagram),
            #[cfg(unix)]
            DatagramSocket::Unix { socket, .. } => socket.poll_send(cx, datagram),
        }
    }

    /// Forgets that the socket was readable, without a system call, so the
    /// next [`Datagram::poll_recv`] waits for a new datagram instead of
    /// first finding out with a `recv` that fails with `EAGAIN`.
    ///
    /// Only for a caller that knows nothing is queued (the load generator,
    /// once every request it sent is answered). Were it wrong, nothing
    /// hangs: every arriving datagram marks the socket readable again, and
    /// the next receive takes the queued one first.
    pub(crate) fn forget_readable(&self) {
        let pretend = || Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock));
        let _ = match &self.0 {
            DatagramSocket::Udp(socket) => socket.try_io(tokio::io::Interest::READABLE, pretend),
            #[cfg(unix)]
            DatagramSocket::Unix { socket, .. } => {
                socket.try_io(tokio::io::Interest::READABLE, pretend)
            }
        };
    }

    /// Polls to receive one datagram into `buf`, as [`Datagram::poll_send`]
    /// is to [`Datagram::send`].
    ///
    /// # Errors
    /// As [`Datagram::recv`].
    pub(crate) fn poll_recv(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match &self.0 {
            DatagramSocket::Udp(socket) => socket.poll_recv(cx, buf),
            #[cfg(unix)]
            DatagramSocket::Unix { socket, .. } => socket.poll_recv(cx, buf),
        }
    }
}

/// Runs a datagram session until it ends or Ctrl-C comes.
///
/// A unixgram client's socket file goes when its socket is dropped, and
/// dying of SIGINT would skip that and leave the file behind; so here Ctrl-C
/// ends the session with [`ClientError::Interrupted`] instead, and the
/// stack unwinds as usual.
///
/// # Errors
/// The session's error, or [`ClientError::Interrupted`].
pub(crate) async fn until_interrupted<T>(
    session: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        // Polled first so that the handler is in place before the session
        // sends anything.
        biased;
        () = crate::shutdown::interrupted() => Err(ClientError::Interrupted.into()),
        done = session => done,
    }
}

/// Opens a client socket for `endpoint`. Resolving the name and connecting
/// share one `timeout`; every resolved address is tried in turn.
///
/// # Errors
/// A [`ClientError`] naming the address: `tls://` (not supported yet), a
/// name that does not resolve, every address refusing, or the timeout.
pub(crate) async fn open(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Connection, ClientError> {
    let budget = Budget {
        deadline: Instant::now() + timeout,
        limit: timeout,
    };
    let addr = endpoint.to_string();
    match endpoint {
        Endpoint::Tcp(hp) => {
            let targets = budget.spend("resolve", &host_name(hp), resolve(hp)).await?;
            let connecting = connect_each(&addr, &targets, connect_tcp);
            let stream = budget.spend("connect to", &addr, connecting).await?;
            Ok(Connection::Stream(Box::new(stream)))
        }
        Endpoint::Udp(hp) => {
            let targets = budget.spend("resolve", &host_name(hp), resolve(hp)).await?;
            let connecting = connect_each(&addr, &targets, connect_udp);
            let socket = budget.spend("connect to", &addr, connecting).await?;
            Ok(Connection::Datagram(Datagram(DatagramSocket::Udp(socket))))
        }
        Endpoint::Tls(_) => Err(ClientError::TlsUnsupported { addr }),
        #[cfg(unix)]
        Endpoint::Unix(path) => {
            let connecting = async {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|cause| ClientError::Connect {
                        addr: addr.clone(),
                        reason: Cause(&cause).to_string(),
                    })
            };
            let stream = budget.spend("connect to", &addr, connecting).await?;
            Ok(Connection::Stream(Box::new(stream)))
        }
        #[cfg(unix)]
        Endpoint::UnixGram(path) => connect_unixgram(path, &addr).map(Connection::Datagram),
        #[cfg(not(unix))]
        Endpoint::Unix(_) | Endpoint::UnixGram(_) => Err(ClientError::UnixUnsupported { addr }),
    }
}

/// The time an [`open`] may take, shared by its steps, and the limit that a
/// timeout message quotes.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Instant,
    limit: Duration,
}

impl Budget {
    /// Runs one step, failing with [`ClientError::TimedOut`] at the deadline.
    async fn spend<T>(
        self,
        step: &'static str,
        target: &str,
        work: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        timeout_at(self.deadline, work).await.unwrap_or_else(|_| {
            Err(ClientError::TimedOut {
                step,
                target: target.to_owned(),
                after: self.limit,
            })
        })
    }
}

/// The name an error about resolving quotes: the host alone.
fn host_name(hp: &HostPort) -> String {
    match &hp.host {
        Some(Host::Name(name)) => name.clone(),
        _ => hp.to_string(),
    }
}

async fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>, ClientError> {
    hp.resolve().await.map_err(|cause| ClientError::Resolve {
        host: host_name(hp),
        cause,
    })
}

/// Tries each address in turn and returns the first socket that connects;
/// when none does, the error lists why each failed.
async fn connect_each<T, F, Fut>(
    addr: &str,
    targets: &[SocketAddr],
    mut connect: F,
) -> Result<T, ClientError>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut failures = Vec::new();
    for &target in targets {
        match connect(target).await {
            Ok(socket) => return Ok(socket),
            Err(cause) => failures.push((target, cause)),
        }
    }
    let reason = match failures.as_slice() {
        [(_, cause)] => Cause(cause).to_string(),
        _ => failures
            .iter()
            .map(|(target, cause)| format!("{target}: {}", Cause(cause)))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Err(ClientError::Connect {
        addr: addr.to_owned(),
        reason,
    })
}

async fn connect_tcp(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(target).await?;
    // Client messages are small and someone is waiting for the reply: send
    // each at once instead of letting Nagle's algorithm hold it back.
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn connect_udp(target: SocketAddr) -> io::Result<UdpSocket> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

#[cfg(unix)]
fn connect_unixgram(server: &std::path::Path, addr: &str) -> Result<Datagram, ClientError> {
    let file = SocketFile::unique();
    let socket = tokio::net::UnixDatagram::bind(&file.0)
        .map_err(|cause| ClientError::io("bind a return address for", addr, cause))?;
    socket
        .connect(server)
        .map_err(|cause| ClientError::Connect {
            addr: addr.to_owned(),
            reason: Cause(&cause).to_string(),
        })?;
    Ok(Datagram(DatagramSocket::Unix {
        socket,
        _file: file,
    }))
}

/// The path of a unixgram client's own socket, removed when dropped.
#[cfg(unix)]
struct SocketFile(std::path::PathBuf);

#[cfg(unix)]
impl SocketFile {
    /// A fresh path in the temporary directory, unique to this process.
    fn unique() -> SocketFile {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sockit-client-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        // The name holds our pid, so a file already there was left by a
        // process that is dead (killed before it could clean up): reuse it.
        let _ = std::fs::remove_file(&path);
        SocketFile(path)
    }
}

#[cfg(unix)]
impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::DefaultScheme;

    fn endpoint(text: &str) -> Endpoint {
        Endpoint::parse(text, DefaultScheme::Tcp).unwrap()
    }

    async fn open_err(text: &str) -> String {
        match open(&endpoint(text), Duration::from_secs(5)).await {
            Ok(_) => panic!("{text} opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn causes_read_as_lower_case_phrases() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause(&refused).to_string(), "connection refused");
        let resolver = io::Error::other("Name or service not known");
        assert_eq!(Cause(&resolver).to_string(), "name or service not known");
        let acronym = io::Error::other("TLS handshake failed");
        assert_eq!(Cause(&acronym).to_string(), "TLS handshake failed");
        #[cfg(target_os = "linux")]
        assert_eq!(
            Cause(&io::Error::from_raw_os_error(111)).to_string(),
            "connection refused"
        );
    }

    #[tokio::test]
    async fn refused_names_the_address() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        assert_eq!(
            open_err(&format!("127.0.0.1:{port}")).await,
            format!("connect to tcp://127.0.0.1:{port}: connection refused")
        );
    }

    #[tokio::test]
    async fn tls_is_refused_for_now() {
        assert_eq!(
            open_err("tls://127.0.0.1:1").await,
            "tls://127.0.0.1:1: TLS client support is not available yet (use tcp:// for plain TCP)"
        );
    }

    #[tokio::test]
    async fn timeout_names_the_step() {
        let budget = Budget {
            deadline: Instant::now(),
            limit: Duration::from_millis(1500),
        };
        let never = std::future::pending::<Result<(), ClientError>>();
        let err = budget.spend("connect to", "tcp://x:1", never).await;
        assert_eq!(
            err.unwrap_err().to_string(),
            "connect to tcp://x:1: timed out after 1500ms"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unixgram_return_address_is_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("sockit-socket-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server_path = dir.join("server.sock");
        let _ = std::fs::remove_file(&server_path);
        let server = tokio::net::UnixDatagram::bind(&server_path).unwrap();
        let addr = format!("unixgram://{}", server_path.display());
        let Ok(Connection::Datagram(client)) = open(&endpoint(&addr), Duration::from_secs(5)).await
        else {
            panic!("no datagram socket");
        };
        client.send(b"hi").await.unwrap();
        let mut buf = [0; 16];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        let from = from.as_pathname().unwrap().to_owned();
        server.send_to(b"back", &from).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(from.exists());
        drop(client);
        assert!(!from.exists(), "{} left behind", from.display());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
