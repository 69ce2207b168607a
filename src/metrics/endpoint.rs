//! The `--metrics ADDR` endpoint: a small HTTP/1.1 server on its own
//! socket (TCP or Unix) that answers `GET /metrics` with the OpenMetrics
//! text of every series, and 404 to anything else. One task per scrape
//! connection; it stops with the server's listeners. What it serves is
//! an [`Exposition`]: this process's counters, or (the parent of
//! `--workers N`) the merge of every worker's.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::net::listener::StreamListener;

/// What Prometheus is told the body is (what prometheus-client's text
/// encoder writes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scraper has to send its request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a scrape's text comes from.
#[derive(Clone)]
pub enum Exposition {
    /// This process's registry.
    Process(Arc<Metrics>),
    /// Made by a blocking call on each scrape (the workers' merged
    /// counters, fetched from each of them).
    Gathered(Arc<dyn Fn() -> String + Send + Sync>),
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exposition::Process(_) => "Exposition::Process",
            Exposition::Gathered(_) => "Exposition::Gathered",
        })
    }
}

impl Exposition {
    async fn text(&self) -> String {
        match self {
            Exposition::Process(metrics) => metrics.encode(),
            Exposition::Gathered(gather) => {
                let gather = gather.clone();
                tokio::task::spawn_blocking(move || gather())
                    .await
                    .unwrap_or_else(|_| "# EOF\n".to_owned())
            }
        }
    }
}

/// Serves scrapes on `listener` until `stop` is cancelled. Accept errors
/// are retried by the listener; a failed scrape connection is logged at
/// debug and forgotten.
pub async fn serve(listener: StreamListener, metrics: Exposition, stop: CancellationToken) {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            conn = listener.accept(&IDS) => conn,
        };
        let peer = conn.peer;
        let Ok(stream) = conn.into_stream() else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, &req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "metrics scrape failed");
            }
        });
    }
}

/// `GET /metrics` (or HEAD): the exposition; anything else: 404, or 405
/// for another method on `/metrics`.
async fn respond(metrics: &Exposition, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body, content_type) = if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found\n"),
            "text/plain",
        )
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"method not allowed\n"),
            "text/plain",
        )
    } else {
        (
            StatusCode::OK,
            Bytes::from(metrics.text().await),
            CONTENT_TYPE,
        )
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    res
}
