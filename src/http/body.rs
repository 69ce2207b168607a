//! Response bodies: a buffer in memory, or bytes read from a file or an
//! encoder as they are sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncRead;

/// The body of every response: a small buffer, or a file streamed in
/// large reads.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A body of bytes in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// No body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body read from `reader` in chunks of up to `chunk` bytes: exactly
/// `remaining` bytes when the length was announced in Content-Length
/// (a file that grows meanwhile is cut there; one that shrinks is an
/// error), or until the end when it was not.
pub struct ReadBody<R> {
    reader: R,
    remaining: Option<u64>,
    chunk: usize,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> ReadBody<R> {
    /// Exactly `len` bytes of `reader`.
    pub fn exact(reader: R, len: u64, chunk: usize) -> ReadBody<R> {
        ReadBody {
            reader,
            remaining: Some(len),
            chunk,
            buf: BytesMut::new(),
        }
    }

    /// All of `reader`, of a length not known beforehand.
    pub fn chunked(reader: R, chunk: usize) -> ReadBody<R> {
        ReadBody {
            reader,
            remaining: None,
            chunk,
            buf: BytesMut::new(),
        }
    }
}

impl<R: AsyncRead + Unpin> HttpBody for ReadBody<R> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == Some(0) {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < this.chunk {
            this.buf.reserve(this.chunk);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.reader), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(0)) => match this.remaining {
                None => {
                    this.remaining = Some(0);
                    Poll::Ready(None)
                }
                Some(_) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while being sent",
                )))),
            },
            Poll::Ready(Ok(_)) => {
                let n = match &mut this.remaining {
                    None => this.buf.len(),
                    Some(remaining) => {
                        let n = usize::try_from(*remaining)
                            .map_or(this.buf.len(), |r| r.min(this.buf.len()));
                        *remaining -= n as u64;
                        n
                    }
                };
                let chunk = this.buf.split_to(n).freeze();
                this.buf.clear();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
