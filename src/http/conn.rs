//! One HTTP connection, served by hyper: HTTP/1.1, and HTTP/2 both with
//! prior knowledge (h2c) and after ALPN over TLS (hyper-util's auto
//! builder tells them apart by the connection preface).
//!
//! Limits: the request head must arrive within the site's header timeout
//! (hyper enforces it only with a timer set, which is why both protocol
//! builders get one) and fit in [`MAX_HEAD`]; larger heads get 431 from
//! hyper. On shutdown the connection ends gracefully: keep-alive stops and
//! HTTP/2 sends GOAWAY, the requests in flight finish, until the grace
//! period ends.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use tokio_util::sync::CancellationToken;

use super::access::{AccessRecord, LoggedBody};
use super::site::Site;
use crate::metrics::HttpMetrics;
use crate::net::cork;
use crate::net::stream::{PeerAddr, Stream};

/// The largest request head (request line and headers) accepted, in
/// bytes (SPEC 4: 16 KiB, then 431).
pub const MAX_HEAD: usize = 16 * 1024;

/// Serves HTTP on `stream` until the client is done, the connection
/// fails, or shutdown ends it: `stop_accepting` starts a graceful end,
/// `force_close` cuts it short. Each response's status is counted in
/// `requests`.
///
/// # Errors
/// Connection-level failures (a reset, a malformed HTTP/2 frame, the
/// header timeout); they end only this connection.
pub async fn serve(
    site: Arc<Site>,
    stream: Stream,
    peer: PeerAddr,
    requests: Option<HttpMetrics>,
    stop_accepting: &CancellationToken,
    force_close: &CancellationToken,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(site.header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let service = service_fn(move |req| {
        let site = site.clone();
        let requests = requests.clone();
        // Built only when the line will be written: with -q it costs nothing.
        let record = tracing::enabled!(target: "sockit::http::access", tracing::Level::INFO)
            .then(|| Box::new(AccessRecord::new(&req, &peer)));
        async move {
            let res = site.respond(&req).await;
            let status = res.status().as_u16();
            if let Some(requests) = &requests {
                requests.count(status);
            }
            Ok::<_, Infallible>(res.map(|body| LoggedBody::new(body, record, status)))
        }
    });
    // What one wake-up of the connection writes leaves in one system
    // call (see net::cork): over TLS, h2 would otherwise write once per
    // response.
    let (stream, cork) = cork::cork(stream);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        biased;
        done = cork.drive(conn.as_mut()) => done,
        _ = stop_accepting.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                done = cork.drive(conn.as_mut()) => done,
                _ = force_close.cancelled() => Ok(()),
            }
        }
    };
    result.map_err(io::Error::other)
}
