//! Response bodies: a buffer in memory, or bytes read from a file or an
//! encoder as they are sent.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A body read from `reader` to its end, in chunks of up to `chunk`
/// bytes, of a length not known beforehand (an encoder's output).
pub struct ReadBody<R> {
    reader: R,
    done: bool,
    chunk: usize,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> ReadBody<R> {
    /// All of `reader`.
    pub fn new(reader: R, chunk: usize) -> ReadBody<R> {
        ReadBody {
            reader,
            done: false,
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
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < this.chunk {
            this.buf.reserve(this.chunk);
        }
        match std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut this.reader),
            cx,
            &mut this.buf
        )) {
            Err(e) => Poll::Ready(Some(Err(e))),
            Ok(0) => {
                this.done = true;
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// A range of an open file, sent in reads of up to `chunk` bytes.
///
/// Each read is tried first on the connection's own thread with
/// `preadv2(RWF_NOWAIT)`, which only copies what is in the page cache and
/// never waits for a disk: for a hot file that is all of it, with no
/// hand-off to another thread and no second copy (tokio's `fs::File`
/// reads on its blocking pool into a buffer of its own, then copies).
/// What is not cached yet is read on the blocking pool, so a cold disk
/// never stalls the other connections of this thread.
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    chunk: usize,
    pending: Option<tokio::task::JoinHandle<io::Result<Vec<u8>>>>,
}

/// Set once `RWF_NOWAIT` turns out to be unsupported (a kernel before
/// 4.14, or a filesystem without it): every read then goes to the pool.
static NO_NOWAIT: AtomicBool = AtomicBool::new(false);

impl FileBody {
    /// `len` bytes of `file` from `offset`: exactly those, as announced in
    /// Content-Length (a file that grows meanwhile is cut there; one that
    /// shrinks is an error).
    pub fn new(file: File, offset: u64, len: u64, chunk: usize) -> FileBody {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            chunk,
            pending: None,
        }
    }

    /// The next read's size, and a zeroed buffer for it.
    fn buffer(&self) -> Vec<u8> {
        let want = usize::try_from(self.remaining).map_or(self.chunk, |r| r.min(self.chunk));
        vec![0; want]
    }

    /// Reads from the page cache alone: `None` when that would wait.
    fn read_cached(&self) -> Option<io::Result<Vec<u8>>> {
        use rustix::io::{Errno, ReadWriteFlags, preadv2};
        if NO_NOWAIT.load(Ordering::Relaxed) {
            return None;
        }
        let mut buf = self.buffer();
        let read = preadv2(
            &*self.file,
            &mut [io::IoSliceMut::new(&mut buf)],
            self.offset,
            ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf))
            }
            Err(Errno::AGAIN) => None,
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                NO_NOWAIT.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Reads on the blocking pool, waiting for the disk if it must.
    fn read_on_pool(&self) -> tokio::task::JoinHandle<io::Result<Vec<u8>>> {
        use std::os::unix::fs::FileExt as _;
        let (file, offset, mut buf) = (self.file.clone(), self.offset, self.buffer());
        tokio::task::spawn_blocking(move || {
            let n = loop {
                match file.read_at(&mut buf, offset) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            buf.truncate(n);
            Ok(buf)
        })
    }

    /// A read's bytes as the next frame; none at all means the file
    /// ended before the announced length.
    fn deliver(&mut self, bytes: Vec<u8>) -> Option<Result<Frame<Bytes>, io::Error>> {
        if bytes.is_empty() {
            return Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being sent",
            )));
        }
        self.offset += bytes.len() as u64;
        self.remaining -= bytes.len() as u64;
        Some(Ok(Frame::data(Bytes::from(bytes))))
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let read = loop {
            if let Some(task) = &mut self.pending {
                let done = std::task::ready!(Pin::new(task).poll(cx));
                self.pending = None;
                break done.map_err(io::Error::other).and_then(|read| read);
            }
            match self.read_cached() {
                Some(read) => break read,
                None => self.pending = Some(self.read_on_pool()),
            }
        };
        Poll::Ready(match read {
            Ok(bytes) => self.deliver(bytes),
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All of a body's bytes.
    async fn collect(body: impl HttpBody<Data = Bytes, Error = io::Error>) -> io::Result<Vec<u8>> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_file_body_reads_cold_and_hot_files_alike() {
        let path = std::env::temp_dir().join(format!("sockit-body-{}", std::process::id()));
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        // Out of the page cache, so that the reads go to the pool.
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        for _ in 0..2 {
            let file = File::open(&path).unwrap();
            let body = FileBody::new(file, 0, content.len() as u64, 256 * 1024);
            assert_eq!(collect(body).await.unwrap(), content);
        }
        // A range, in odd-sized reads.
        let file = File::open(&path).unwrap();
        let body = FileBody::new(file, 12_345, 1_000_000, 77_777);
        assert_eq!(collect(body).await.unwrap(), &content[12_345..1_012_345]);
        // A file shorter than announced is an error, not a short body.
        let file = File::open(&path).unwrap();
        let body = FileBody::new(file, 2_999_000, 5_000, 4096);
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(&path).unwrap();
    }
}
