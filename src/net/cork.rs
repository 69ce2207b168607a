//! Holding a connection's TLS output back until its task has done all it
//! can in one wake-up, then sending it in one system call: what
//! `TCP_CORK` does for a socket, done above TLS.
//!
//! The `h2` crate flushes after every DATA frame of 256 bytes or more
//! (it sends such payloads without copying them, and writes them out
//! before it queues the next frame). Ten 1 KiB responses answered in one
//! wake-up of an HTTP/2 connection were therefore ten `writev` calls,
//! each a trip through the kernel's TCP stack: on loopback that was about
//! a third of the server's time. Behind [`cork`], a write only seals TLS
//! records into the session's buffer (rustls' limit, 64 KiB, past which
//! the buffer is sent first), and a flush does nothing; the connection's
//! task sends the buffer when each poll of the protocol ends
//! ([`Cork::drive`]), before it sleeps. Nothing waits for a timer: the
//! bytes leave in the same wake-up as before, only together.
//!
//! Plain TCP and Unix streams have no buffer to hold bytes in, and write
//! at once, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::Stream;

/// Splits `stream` into the side a protocol library reads and writes
/// ([`Corked`]) and the side its task sends the held output with
/// ([`Cork`]).
pub fn cork(stream: Stream) -> (Corked, Cork) {
    let vectored = stream.is_write_vectored();
    let shared = Arc::new(Mutex::new(stream));
    (
        Corked {
            stream: shared.clone(),
            vectored,
        },
        Cork { stream: shared },
    )
}

/// The stream as the protocol sees it: reads as usual, writes held back
/// until the [`Cork`] sends them.
///
/// The stream is shared with the `Cork` behind a mutex that both take
/// only from the connection's own task, one at a time: it is never
/// contended, and costs an atomic operation or two per call.
#[derive(Debug)]
pub struct Corked {
    stream: Arc<Mutex<Stream>>,
    vectored: bool,
}

/// Sends what the [`Corked`] side holds; kept by the task that drives the
/// connection.
#[derive(Debug)]
pub struct Cork {
    stream: Arc<Mutex<Stream>>,
}

fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cork {
    /// Sends everything held back: `Pending` while the socket cannot take
    /// it all (the task is woken when it can).
    ///
    /// # Errors
    /// The socket's write error.
    pub fn poll_release(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.stream)).poll_flush(cx)
    }

    /// Runs `conn` (a protocol's connection future, writing through the
    /// [`Corked`] side) and sends what each of its polls wrote when that
    /// poll ends. A failure to send ends it with that error, unless
    /// `conn` has failed already.
    pub fn drive<F, T, E>(&self, mut conn: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>> + Unpin,
        E: From<io::Error>,
    {
        std::future::poll_fn(move |cx| {
            let polled = Pin::new(&mut conn).poll(cx);
            match (self.poll_release(cx), polled) {
                (Poll::Ready(Err(e)), Poll::Pending | Poll::Ready(Ok(_))) => {
                    Poll::Ready(Err(e.into()))
                }
                (_, polled) => polled,
            }
        })
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.stream)).poll_read(cx, buf)
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.stream).poll_write_held(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.stream).poll_write_held(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    /// Nothing to do here: plain sockets have no buffer, and what TLS
    /// holds is the [`Cork`]'s to send.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends what is held, then shuts down (over TLS, with close_notify).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.stream)).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A TLS connection over loopback: the server's stream, and the
    /// client's.
    async fn tls_pair() -> (
        Stream,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let identity = tls::ServerIdentity::development(&[]).unwrap();
        let acceptor = tls::acceptor(&identity, &[], tls::ticketer().unwrap()).unwrap();
        let client = tls::TlsClient::new(&tls::ClientTlsOptions {
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(
            async {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                client.handshake(tcp, "127.0.0.1").await.unwrap()
            },
            async {
                let (tcp, _) = listener.accept().await.unwrap();
                acceptor.accept(tcp).await.unwrap()
            }
        );
        (
            Stream::from(tokio_rustls::TlsStream::from(accepted)),
            connected,
        )
    }

    #[tokio::test]
    async fn tls_writes_wait_for_the_release_and_a_full_buffer_is_sent() {
        let (server, mut client) = tls_pair().await;
        let (mut corked, cork) = cork(server);
        corked.write_all(b"one ").await.unwrap();
        corked.write_all(b"two").await.unwrap();
        corked.flush().await.unwrap();
        assert!(lock(&corked.stream).tls_output_held());
        std::future::poll_fn(|cx| cork.poll_release(cx))
            .await
            .unwrap();
        assert!(!lock(&corked.stream).tls_output_held());
        let mut got = [0; 7];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");

        // Far more than the session's buffer holds: sent as it fills,
        // while the client reads; the rest at shutdown.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got).await;
            got
        });
        corked.write_all(&big).await.unwrap();
        corked.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), big);
    }

    #[tokio::test]
    async fn plain_writes_go_out_at_once_and_shutdown_ends_the_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut corked, _cork) = cork(Stream::from(tcp));
        corked.write_all(b"one ").await.unwrap();
        corked.write_all(b"two").await.unwrap();
        corked.shutdown().await.unwrap();
        assert_eq!(client.await.unwrap(), b"one two");
    }
}
