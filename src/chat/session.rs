//! One member on a stream connection (TCP, Unix, TLS): the bytes in,
//! through the telnet filter and the line framing, checked (flood, length,
//! escaping) and handed to the hub; and the member's queue out, written
//! as fast as its socket takes it.
//!
//! Reading and writing run side by side in the connection's task, so a
//! member whose socket is full still has its lines read (and a member who
//! never writes still gets the room's). Neither ever waits on the hub's
//! lock for long, and the hub never waits on them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::command::{ClientLine, parse};
use super::hub::{Flow, Hub, Inbox, Lines, Membership, Speech};
use super::notice::Notice;
use super::telnet::TelnetFilter;
use super::text::clean;
use crate::net::frame::{Frame, LineBuffer, LineEnd};
use crate::net::ratelimit::TokenBucket;
use crate::net::stream::{
    SideWriter, Stream, UNBUFFERED_READ, read_through_stack, write_all_vectored,
};
use crate::service::{ConnContext, IdleTimer};

/// The kernel send buffer of a chat connection. Left to autotuning it
/// grows to megabytes, and a stuck member would sit on thousands of lines
/// in the kernel before its `--queue` even began to fill: with it capped,
/// the queue is what bounds a member's backlog, and a stuck one is found
/// out after `--queue` lines plus this. Plenty for a reading member: a
/// burst of long lines is 64 KiB.
pub(super) const SEND_BUFFER: usize = 64 * 1024;

/// How long a member that is done (EOF, `/quit`) gets for the lines still
/// queued for it (its `* bye`, the answer to a piped-in `/who`).
pub(super) const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The most read at once from a member: a sender's burst is fanned out
/// in pieces this big.
const READ_BUFFER: usize = 16 * 1024;

/// Lines taken from the queue at once: a burst's worth, written with as
/// few system calls as [`WRITE_CHUNK`] allows.
pub(super) const WRITE_BATCH: usize = 1024;

/// Bytes gathered before they are written: large enough that a burst to
/// a member is one `write`, small enough to bound the buffer.
const WRITE_CHUNK: usize = 64 * 1024;

/// The batch of lines is given back past this many (512 bytes of
/// pointers), so a member quiet after a burst costs what a new one does.
pub(super) const KEPT_BATCH: usize = 32;

/// Readies a new member's connection for [`serve`]: where the hub has a
/// writer of its own ([`Hub::joins_with_side_writer`]: a runtime of one
/// thread), a plain socket is shared with a [`SideWriter`] for it.
pub fn prepare(hub: &Hub, stream: Stream) -> (Stream, Option<SideWriter>) {
    if hub.joins_with_side_writer() {
        stream.with_side_writer()
    } else {
        (stream, None)
    }
}

/// Serves one member until it leaves, is dropped, or the grace period
/// after a shutdown signal ends. `side` is from [`prepare`].
///
/// # Errors
/// I/O errors on the stream; they end only this member.
pub async fn serve(
    hub: &Arc<Hub>,
    stream: &mut Stream,
    side: Option<SideWriter>,
    ctx: &ConnContext,
) -> io::Result<()> {
    if let Err(e) = stream.set_send_buffer(SEND_BUFFER) {
        tracing::debug!(error = %e, "cannot cap the send buffer");
    }
    let (member, mut lines) = hub.join(ctx.peer.to_string(), side).await;
    let dropped = lines.dropped.clone();
    // Set by the reader when the member shows it is a telnet client (or
    // ends lines with CRLF): its lines then go out with CRLF too.
    let crlf = AtomicBool::new(false);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let reading = read_lines(&mut reader, &member, hub, ctx, &crlf);
    let writing = write_lines(&mut writer, &mut lines, &crlf);
    tokio::pin!(reading, writing);
    let read = tokio::select! {
        read = &mut reading => read,
        written = &mut writing => return written,
        _ = dropped.cancelled() => return Ok(()),
        _ = ctx.force_close.cancelled() => return Ok(()),
    };
    // Leaving closes the queue once drained, which ends the writer.
    member.leave();
    let drained = tokio::select! {
        written = tokio::time::timeout(DRAIN_WAIT, &mut writing) => written.unwrap_or(Ok(())),
        _ = ctx.force_close.cancelled() => Ok(()),
    };
    read.and(drained)
}

/// Reads the member's lines and acts on them, until EOF or `/quit`.
async fn read_lines<R: AsyncRead + Unpin>(
    reader: &mut R,
    member: &Membership,
    hub: &Hub,
    ctx: &ConnContext,
    crlf: &AtomicBool,
) -> io::Result<()> {
    let mut buf = LineBuffer::with_capacity(ctx.max_line, READ_BUFFER);
    let mut telnet = TelnetFilter::new();
    let mut flood = Flood::new(hub.config().flood_rate, hub.config().flood_burst);
    let mut idle = IdleTimer::new(ctx.idle_timeout);
    let mut speech = Speech::default();
    let mut told_shutdown = false;
    let mut unyielded = 0;
    let mut unyielded_lines = 0;
    let yield_lines = (hub.config().queue / 2).max(1);
    loop {
        // With no buffer (a new member, or one quiet since its last
        // line), the read goes through the stack and only what it got is
        // kept; otherwise straight into the buffer.
        let unbuffered = buf.capacity() == 0;
        let offered = if unbuffered {
            UNBUFFERED_READ.min(buf.first_read_len())
        } else {
            buf.spare().len()
        };
        let n = tokio::select! {
            biased;
            n = read_some(reader, &mut buf, &mut telnet, unbuffered, offered) => n?,
            _ = ctx.stop_accepting.cancelled(), if !told_shutdown => {
                told_shutdown = true;
                member.notice(Notice::ShuttingDown);
                continue;
            }
            _ = idle.expired() => return Ok(()),
        };
        if n == 0 {
            // A last line without its line end (`printf hi | nc`) counts.
            if let Some(Frame::Line(bytes, _)) = buf.take_partial() {
                ctx.metrics.messages.inc();
                act(member, bytes, &mut flood, &mut speech).await;
                member.speak(&mut speech);
            }
            return Ok(());
        }
        idle.touch();
        if telnet.seen_telnet() {
            use_crlf(crlf, member);
        }
        while let Some(frame) = buf.next_frame() {
            match frame {
                Frame::Line(bytes, end) => {
                    if end == LineEnd::CrLf {
                        use_crlf(crlf, member);
                    }
                    ctx.metrics.messages.inc();
                    if act(member, bytes, &mut flood, &mut speech).await == Flow::Quit {
                        return Ok(());
                    }
                }
                Frame::TooLong => member.notice(Notice::TooLong { max: ctx.max_line }),
            }
        }
        // What this read brought goes to the room as one run.
        let said = speech.len();
        member.speak(&mut speech);
        // The socket is drained (the read did not fill what was offered)
        // and no line is half read: a quiet member keeps no buffer.
        if n < offered {
            buf.release_if_empty();
        }
        // Once a buffer's worth has been fanned out, let the writers send
        // it before reading on: a long burst then leaves in pieces as it
        // comes in, not after it, and each piece is one large write per
        // member. (A drained socket lets them run anyway.) So too once
        // half of `--queue` lines has been said: a read of short lines can
        // hold more lines than a queue, and the members' writers must take
        // what they were given before more comes, or a burst would pass
        // for members falling behind.
        unyielded += n;
        unyielded_lines += said;
        if unyielded >= READ_BUFFER || unyielded_lines >= yield_lines {
            unyielded = 0;
            unyielded_lines = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// From now on the member's lines end in CRLF: its writer makes them, and
/// the hub is told once.
fn use_crlf(crlf: &AtomicBool, member: &Membership) {
    if !crlf.swap(true, Ordering::Relaxed) {
        member.wants_crlf();
    }
}

/// Reads once from the member into `buf`, through the telnet filter: into
/// a stack buffer of `limit` bytes when `unbuffered` (the bytes then
/// pushed into `buf`), else into `buf`'s spare room. The bytes read, 0 at
/// EOF.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut LineBuffer,
    telnet: &mut TelnetFilter,
    unbuffered: bool,
    limit: usize,
) -> io::Result<usize> {
    if !unbuffered {
        let spare = buf.spare();
        let n = reader.read(&mut *spare).await?;
        let kept = telnet.filter(&mut spare[..n]);
        buf.filled(kept);
        return Ok(n);
    }
    // While a member is quiet its `LineBuffer` is given back; only a line
    // cut by the end of a read (or a read that filled the stack buffer, a
    // sender in full flow) allocates it again.
    read_through_stack(reader, limit, |bytes| {
        let kept = telnet.filter(bytes);
        if kept > 0 {
            buf.push(&bytes[..kept]);
        }
    })
    .await
}

/// One line from the member: escaped, parsed, flood-checked, done. A
/// line said (plain or `/me`) is gathered into `speech`, which the caller
/// hands to [`Membership::speak`] once it has acted on what one read
/// brought; any other line speaks what was gathered first, so the
/// member's lines keep their order.
pub(super) async fn act(
    member: &Membership,
    bytes: &[u8],
    flood: &mut Flood,
    speech: &mut Speech,
) -> Flow {
    let text = clean(bytes);
    let request = parse(&text);
    if request == ClientLine::Empty {
        return Flow::Continue;
    }
    match flood.check_now() {
        Verdict::Pass => match request {
            ClientLine::Say(text) => speech.push(text, false),
            ClientLine::Me(text) => speech.push(text, true),
            _ => {
                member.speak(speech);
                return member.handle(request).await;
            }
        },
        Verdict::Drop { first } => {
            if first {
                member.notice(Notice::Flood { rate: flood.rate });
            }
        }
    }
    Flow::Continue
}

/// Writes the member's queued lines until the queue closes.
async fn write_lines<W: AsyncWrite + Unpin>(
    writer: &mut W,
    lines: &mut Inbox,
    crlf: &AtomicBool,
) -> io::Result<()> {
    let mut batch = VecDeque::new();
    while lines.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        if crlf.load(Ordering::Relaxed) {
            // Boxed: every member's task would otherwise be sized for
            // this telnet-only future, quiet or not.
            Box::pin(write_crlf(writer, &batch)).await?;
        } else {
            // The lines as the hub made them, shared with every other
            // member: the kernel gathers them, nothing is copied here.
            let mut slices: Vec<IoSlice<'_>> = batch
                .iter()
                .flat_map(|lines| [IoSlice::new(lines.unsent()), IoSlice::new(b"\n")])
                .collect();
            write_all_vectored(writer, &mut slices).await?;
        }
        batch.clear();
        // TLS holds written records until flushed.
        writer.flush().await?;
        if batch.capacity() > KEPT_BATCH {
            batch = VecDeque::new();
        }
    }
    Ok(())
}

/// Writes `batch` with every line ending in CRLF (a telnet member): the
/// lines are copied, each with its line end, in chunks.
async fn write_crlf<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &VecDeque<Lines>,
) -> io::Result<()> {
    // Made for this batch and given back after it: a member between
    // bursts holds no write buffer. Sized once, never regrown.
    let bytes: usize = batch
        .iter()
        .map(|lines| lines.unsent().len() + 2 * lines.count())
        .sum();
    let mut out = Vec::with_capacity(bytes.min(WRITE_CHUNK + 2 * 1024));
    // What is left of lines the hub began to write before the member
    // turned out to be a telnet client goes on from where it stopped.
    let lines = batch
        .iter()
        .flat_map(|lines| lines.unsent().split(|&b| b == b'\n'));
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(LineEnd::CrLf.bytes());
        if out.len() >= WRITE_CHUNK {
            writer.write_all(&out).await?;
            out.clear();
        }
    }
    writer.write_all(&out).await
}

/// Per-member flood control: a token bucket of `burst` lines refilled at
/// `rate` a second; a rate of 0 lets everything through.
#[derive(Debug)]
pub(super) struct Flood {
    rate: u32,
    burst: u32,
    bucket: TokenBucket,
    /// Whether the member was told about the lines being dropped now, so
    /// a flood gets one notice, not one per line.
    warned: bool,
}

/// What the flood control says of a line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Within the limit.
    Pass,
    /// Over it; `first` is the first line dropped since the last pass.
    Drop { first: bool },
}

impl Flood {
    pub(super) fn new(rate: u32, burst: u32) -> Flood {
        let burst = burst.max(1);
        Flood {
            rate,
            burst,
            bucket: TokenBucket::new(f64::from(burst), Instant::now()),
            warned: false,
        }
    }

    /// [`check`](Self::check) at this instant; with flood control off,
    /// without asking the clock (a read of many lines asks once a line).
    fn check_now(&mut self) -> Verdict {
        if self.rate == 0 {
            return Verdict::Pass;
        }
        self.check(Instant::now())
    }

    fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0
            || self
                .bucket
                .allow(f64::from(self.rate), f64::from(self.burst), now)
        {
            self.warned = false;
            return Verdict::Pass;
        }
        let first = !self.warned;
        self.warned = true;
        Verdict::Drop { first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatConfig;

    /// On one thread (as `#[tokio::test]` runs) the hub's writer writes
    /// to an idle plain member; once the socket is full, the line it took
    /// part of stays queued, marked with what was sent, the rest after
    /// it, and the member's own writer sends every byte once, in order.
    #[tokio::test]
    async fn the_hubs_writer_fills_an_idle_members_socket_and_its_own_goes_on_from_there() {
        const LINES: usize = 300;
        let hub = Hub::start(ChatConfig::default()).unwrap();
        assert!(hub.joins_with_side_writer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Small buffers both ends: the socket is full before the hub's
        // writer has written what it takes at once.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut peer = tokio::net::TcpStream::from_std(socket.into()).unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        let stream = Stream::from(ours);
        stream.set_send_buffer(4096).unwrap();
        let (mut stream, side) = stream.with_side_writer();
        let (a, mut inbox) = hub.join("a:1".into(), side).await;
        let (b, _b_inbox) = hub.join("b:1".into(), None).await;
        // The hub's writer runs once this task lets it.
        tokio::task::yield_now().await;
        assert_eq!(
            inbox.try_recv(),
            None,
            "the welcome was written, not queued"
        );

        let said = "z".repeat(999);
        let mut speech = Speech::default();
        for _ in 0..LINES {
            speech.push(&said, false);
            b.speak(&mut speech);
        }
        tokio::task::yield_now().await;
        let first = inbox.try_recv().expect("a full socket: lines queued");
        assert!(
            first.unsent().len() < first.text().len(),
            "the first line queued is the one the socket took part of"
        );
        a.leave();

        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let (_, mut writer) = tokio::io::split(&mut stream);
        writer.write_all(first.unsent()).await.unwrap();
        writer.write_all(b"\n").await.unwrap();
        write_lines(&mut writer, &mut inbox, &AtomicBool::new(false))
            .await
            .unwrap();
        drop(writer);
        drop(stream);
        let got = String::from_utf8(reading.await.unwrap()).unwrap();
        let mut lines = got.lines();
        assert!(lines.next().unwrap().starts_with("* welcome, you are a:1"));
        assert_eq!(lines.next(), Some("* b:1 joined lobby"));
        let want = format!("[b:1] {said}");
        for i in 0..LINES {
            assert_eq!(lines.next(), Some(want.as_str()), "line {i}");
        }
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn flood_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut flood = Flood::new(10, 20);
        for _ in 0..20 {
            assert_eq!(flood.check(start), Verdict::Pass);
        }
        assert_eq!(flood.check(start), Verdict::Drop { first: true });
        assert_eq!(flood.check(start), Verdict::Drop { first: false });
        // 100 ms earns one line.
        let later = start + Duration::from_millis(100);
        assert_eq!(flood.check(later), Verdict::Pass);
        assert_eq!(flood.check(later), Verdict::Drop { first: true });
    }

    #[test]
    fn flood_rate_zero_is_off() {
        let now = Instant::now();
        let mut flood = Flood::new(0, 1);
        for _ in 0..10_000 {
            assert_eq!(flood.check(now), Verdict::Pass);
        }
    }
}
