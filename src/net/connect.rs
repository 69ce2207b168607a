//! The client side of every address: turning an [`Endpoint`] into a
//! connected [`ClientSocket`] (a [`Stream`] for TCP, Unix and TLS, or a
//! connected datagram socket for UDP and unixgram) within a timeout.
//!
//! This is the one place where a client turns an address into a socket:
//! resolution, trying every resolved address, the timeout shared by those
//! steps, and the TLS handshake for `tls://`. So `connect`, `send`, `ping`,
//! `bench` (and the chat client) report a refused connection, an unknown
//! host, a timeout or a certificate problem the same way: one lower-case
//! line that names the address ([`ClientError`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::net::addr::{Endpoint, Host, HostPort};
use crate::net::stream::{Stream, TlsStream};
use crate::net::tls::{ClientTlsOptions, TlsClient};
use crate::units::format_duration;

/// The receive buffer for one datagram: larger than any UDP payload, so no
/// UDP reply is cut short.
pub const RECV_BUFFER: usize = 64 * 1024;

/// Why a client could not open its socket, or lost it: one line that names
/// the address, for `main` to print (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS handshake failed: the certificate did not verify, or the
    /// server does not speak TLS.
    #[error("{addr}: {reason}")]
    Tls {
        /// The address as given.
        addr: String,
        /// What went wrong, as [`handshake_failure`](crate::net::tls::handshake_failure) words it.
        reason: String,
    },
    /// The TLS options themselves are unusable (an unreadable `--ca`).
    #[error("{0}")]
    TlsSetup(String),
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
    pub fn io(step: &'static str, addr: &str, cause: io::Error) -> ClientError {
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
pub struct Cause<'a>(pub &'a io::Error);

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

/// An open client socket, in the shape its transport gives it.
#[derive(Debug)]
pub enum ClientSocket {
    /// TCP, Unix or TLS: bytes both ways, and the write side can be shut.
    Stream(Stream),
    /// UDP or unixgram: datagrams to and from the server alone.
    Datagram(Datagram),
}

/// A connected datagram socket: it sends to the server and, because it is
/// connected, the kernel drops datagrams from anyone else. A UDP server that
/// is not there shows up as `connection refused` on a later send or receive.
#[derive(Debug)]
pub struct Datagram(DatagramSocket);

#[derive(Debug)]
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
    pub async fn send(&self, datagram: &[u8]) -> io::Result<()> {
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
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
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
    pub fn poll_send(
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
    pub fn forget_readable(&self) {
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
    pub fn poll_recv(
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

/// Opens client sockets for one endpoint: the timeout every opening gets,
/// and for `tls://` the TLS client (with its session cache, so that a
/// client opening connection after connection resumes its sessions).
#[derive(Debug, Clone)]
pub struct Connector {
    endpoint: Endpoint,
    addr: String,
    timeout: Duration,
    tls: Option<TlsClient>,
}

impl Connector {
    /// A connector for `endpoint`; `tls` is used only for `tls://`.
    ///
    /// # Errors
    /// [`ClientError::TlsSetup`] for TLS options that cannot be used (an
    /// unreadable `--ca` file, a bad `--servername`).
    pub fn new(
        endpoint: &Endpoint,
        timeout: Duration,
        tls: &ClientTlsOptions,
    ) -> Result<Connector, ClientError> {
        let tls = match endpoint {
            Endpoint::Tls(_) => Some(TlsClient::new(tls).map_err(ClientError::TlsSetup)?),
            _ => None,
        };
        Ok(Connector {
            endpoint: endpoint.clone(),
            addr: endpoint.to_string(),
            timeout,
            tls,
        })
    }

    /// The endpoint, as written in error messages (`tcp://127.0.0.1:8888`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Opens one socket. Resolving the name, connecting and the TLS
    /// handshake share the timeout; every resolved address is tried in
    /// turn.
    ///
    /// # Errors
    /// A [`ClientError`] naming the address: a name that does not resolve,
    /// every address refusing, a failed TLS handshake, or the timeout.
    pub async fn open(&self) -> Result<ClientSocket, ClientError> {
        let budget = Budget {
            deadline: Instant::now() + self.timeout,
            limit: self.timeout,
        };
        let addr = &self.addr;
        match &self.endpoint {
            Endpoint::Tcp(hp) => {
                let targets = budget.spend("resolve", &host_name(hp), resolve(hp)).await?;
                let connecting = connect_each(addr, &targets, connect_tcp);
                let stream = budget.spend("connect to", addr, connecting).await?;
                Ok(ClientSocket::Stream(Stream::from(stream)))
            }
            Endpoint::Tls(hp) => {
                let targets = budget.spend("resolve", &host_name(hp), resolve(hp)).await?;
                let connecting = connect_each(addr, &targets, connect_tcp);
                let tcp = budget.spend("connect to", addr, connecting).await?;
                // Always there: `new` makes one for every tls:// endpoint.
                let Some(tls) = &self.tls else {
                    return Err(ClientError::TlsSetup(format!("{addr}: no TLS client")));
                };
                let host = hp.host_text();
                let handshake = async {
                    tls.handshake(tcp, &host)
                        .await
                        .map_err(|reason| ClientError::Tls {
                            addr: addr.clone(),
                            reason,
                        })
                };
                let stream = budget.spend("TLS handshake with", addr, handshake).await?;
                Ok(ClientSocket::Stream(Stream::from(TlsStream::from(stream))))
            }
            Endpoint::Udp(hp) => {
                let targets = budget.spend("resolve", &host_name(hp), resolve(hp)).await?;
                let connecting = connect_each(addr, &targets, connect_udp);
                let socket = budget.spend("connect to", addr, connecting).await?;
                Ok(ClientSocket::Datagram(Datagram(DatagramSocket::Udp(
                    socket,
                ))))
            }
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
                let stream = budget.spend("connect to", addr, connecting).await?;
                Ok(ClientSocket::Stream(Stream::from(stream)))
            }
            #[cfg(unix)]
            Endpoint::UnixGram(path) => connect_unixgram(path, addr).map(ClientSocket::Datagram),
            #[cfg(not(unix))]
            Endpoint::Unix(_) | Endpoint::UnixGram(_) => {
                Err(ClientError::UnixUnsupported { addr: addr.clone() })
            }
        }
    }
}

/// Opens one socket for `endpoint` with default TLS options (system
/// roots): the short form of [`Connector::open`] for one-off clients.
///
/// # Errors
/// As [`Connector::new`] and [`Connector::open`].
pub async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<ClientSocket, ClientError> {
    Connector::new(endpoint, timeout, &ClientTlsOptions::default())?
        .open()
        .await
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
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // A pipelined `sockit bench` has hundreds of replies in
    // flight: the default receive buffer would drop some of them.
    super::listener::raise_udp_buffers(&socket);
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    let socket = UdpSocket::from_std(socket.into())?;
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
#[derive(Debug)]
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
        let Ok(ClientSocket::Datagram(client)) =
            open(&endpoint(&addr), Duration::from_secs(5)).await
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
