//! `sockit bench --reconnect`: a new connection for every request, to
//! measure what opening costs (over `tls://`, a TLS handshake each time,
//! resumed from the session cache unless `--no-resume`).
//!
//! Each connection task opens, sends one request, reads its one-line
//! reply, closes (with close_notify over TLS), and starts over. A
//! request's latency counts from the start of the opening, so it is the
//! whole price of a short-lived connection. Everything else (the window,
//! the stats, the progress counters) is the closed-loop machinery of
//! `load.rs`.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::load::{RETRY_PAUSE, Shared};
use crate::net::connect::ClientSocket;
use crate::net::stream::Stream;

/// Opens, asks, closes, until the task is dropped.
pub(super) async fn drive(shared: Rc<Shared>) {
    let request = shared.plan.request.bytes.clone();
    let mut buf = vec![0u8; 4096];
    loop {
        let started = Instant::now();
        match exchange(&shared, &request, &mut buf).await {
            Ok((mut stream, received)) => {
                let now = Instant::now();
                shared.progress.replies.fetch_add(1, Ordering::Relaxed);
                if shared.window.contains(now) && started >= shared.window.measure {
                    let mut stats = shared.stats.borrow_mut();
                    let (totals, latency) = &mut *stats;
                    totals.requests += 1;
                    totals.handshakes += 1;
                    totals.resumed += u64::from(stream.tls_resumed() == Some(true));
                    totals.bytes_sent += request.len() as u64;
                    totals.bytes_received += received as u64;
                    latency.record(now - started);
                }
                // Say goodbye; a server that has gone already is fine.
                let _ = stream.close().await;
            }
            Err(e) => {
                tracing::debug!(addr = %shared.plan.addr, error = %e, "request failed");
                shared.errors(1, Instant::now());
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// One connection, one request, one reply line; returns the stream and
/// the bytes of the reply.
async fn exchange(
    shared: &Shared,
    request: &[u8],
    buf: &mut [u8],
) -> anyhow::Result<(Stream, usize)> {
    let ClientSocket::Stream(mut stream) = shared.plan.connector.open().await? else {
        anyhow::bail!("--reconnect needs a stream address");
    };
    stream.write_all(request).await?;
    let mut received = 0;
    loop {
        let n = stream.read(buf).await?;
        if n == 0 {
            anyhow::bail!("connection closed before the reply");
        }
        received += n;
        if memchr::memchr(b'\n', &buf[..n]).is_some() {
            return Ok((stream, received));
        }
    }
}
