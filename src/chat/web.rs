//! `serve chat --web`: the HTTP side of the chat's web listeners, on
//! hyper (HTTP/1.1 only: a WebSocket upgrade is an HTTP/1.1 affair). `GET
//! /` is the chat page, one file with its script and style inline
//! ([`PAGE`]); `GET /ws` is the WebSocket, whose member is served by
//! [`ws`](super::ws) on the same connection task once hyper hands over
//! the upgraded socket. Anything else is 404, other methods 405.
//!
//! The upgrade is refused (403) when the request has an `Origin` that is
//! not the page's own (`http://` or `https://` and the `Host` it was
//! asked under): another site's page cannot make a visitor's browser
//! chat under the visitor's address. No `Origin` is allowed, so
//! non-browser clients (websocat, scripts) need not invent one.
//!
//! Limits as for `serve http`: the request head within
//! [`DEFAULT_HEADER_TIMEOUT`] and [`MAX_HEAD`] bytes; the connection
//! counts against the service's `--max-conns` like a telnet member.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::hub::Hub;
use super::session::SEND_BUFFER;
use crate::http::conn::MAX_HEAD;
use crate::http::site::DEFAULT_HEADER_TIMEOUT;
use crate::net::stream::Stream;
use crate::service::ConnContext;

/// The chat page: HTML, script and style in one file, nothing fetched
/// from anywhere else.
pub const PAGE: &str = include_str!("assets/chat.html");

/// The page may run its own inline script and style and talk to its own
/// origin (`'self'` covers `ws:`/`wss:` to it), nothing more.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

type Body = Full<Bytes>;

/// Where the `/ws` request's upgrade is left for the connection's task:
/// filled by the request handler once it has said 101, taken by
/// [`serve`] when hyper lets go of the connection.
type UpgradeSlot = Arc<Mutex<Option<OnUpgrade>>>;

/// Serves one web connection: HTTP requests until the client is done or
/// one of them upgrades to the WebSocket, which is then served as a chat
/// member until it leaves.
///
/// # Errors
/// Connection-level failures (a reset, the header timeout, a failed
/// upgrade); they end only this connection.
pub async fn serve(hub: &Arc<Hub>, stream: Stream, ctx: &ConnContext) -> io::Result<()> {
    if let Err(e) = stream.set_send_buffer(SEND_BUFFER) {
        tracing::debug!(error = %e, "cannot cap the send buffer");
    }
    let secure = stream.is_tls();
    let slot = UpgradeSlot::default();
    let service = {
        let slot = slot.clone();
        service_fn(move |req| {
            let res = respond(req, secure, &slot);
            async move { Ok::<_, Infallible>(res) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(DEFAULT_HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let served = tokio::select! {
        biased;
        done = conn.as_mut() => done,
        _ = ctx.stop_accepting.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                done = conn.as_mut() => done,
                _ = ctx.force_close.cancelled() => Ok(()),
            }
        }
    };
    served.map_err(io::Error::other)?;
    let upgrade = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(upgrade) = upgrade else {
        return Ok(());
    };
    let upgraded = upgrade.await.map_err(io::Error::other)?;
    super::ws::serve(hub, TokioIo::new(upgraded), ctx).await
}

/// What a request gets.
fn respond(
    mut req: Request<hyper::body::Incoming>,
    secure: bool,
    slot: &UpgradeSlot,
) -> Response<Body> {
    match (req.uri().path(), req.method()) {
        ("/", &Method::GET | &Method::HEAD) => page(),
        ("/", _) => status(StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD"),
        ("/ws", &Method::GET) => match check_upgrade(req.headers(), secure) {
            Err(refused) => refused.response(),
            Ok(accept) => {
                let upgrade = hyper::upgrade::on(&mut req);
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(upgrade);
                switching(accept)
            }
        },
        ("/ws", _) => status(StatusCode::METHOD_NOT_ALLOWED, "GET"),
        _ => status(StatusCode::NOT_FOUND, ""),
    }
}

fn page() -> Response<Body> {
    let mut res = Response::new(Body::from(PAGE));
    let headers = res.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// A short plain-text answer; `allow` is the `Allow` header of a 405.
fn status(code: StatusCode, allow: &'static str) -> Response<Body> {
    let text = format!("{code}\n");
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = code;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if !allow.is_empty() {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    res
}

fn switching(accept: String) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

/// Why a `/ws` request gets no upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not an upgrade to WebSocket at all: 426 naming `websocket`.
    NotWebSocket,
    /// A WebSocket version other than 13: 426 naming 13.
    Version,
    /// No usable `Sec-WebSocket-Key`: 400.
    Key,
    /// Another site's page: 403.
    Origin,
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let (code, extra) = match self {
            Refusal::NotWebSocket => (
                StatusCode::UPGRADE_REQUIRED,
                Some((header::UPGRADE, "websocket")),
            ),
            Refusal::Version => (
                StatusCode::UPGRADE_REQUIRED,
                Some((header::SEC_WEBSOCKET_VERSION, "13")),
            ),
            Refusal::Key => (StatusCode::BAD_REQUEST, None),
            Refusal::Origin => (StatusCode::FORBIDDEN, None),
        };
        let mut res = status(code, "");
        if let Some((name, value)) = extra {
            res.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        res
    }
}

/// Checks a `/ws` request (RFC 6455 4.2.1 and the origin); the
/// `Sec-WebSocket-Accept` to answer with.
fn check_upgrade(headers: &HeaderMap, secure: bool) -> Result<String, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(Refusal::NotWebSocket);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Refusal::Version);
    }
    // The key is 16 random bytes in base64: 24 characters.
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| key.len() == 24)
        .ok_or(Refusal::Key)?;
    if !origin_allowed(
        headers.get(header::ORIGIN),
        headers.get(header::HOST),
        secure,
    ) {
        return Err(Refusal::Origin);
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Whether a WebSocket request with this `Origin` may join: none at all,
/// or the page's own origin, `http[s]://` and the `Host` it was asked
/// under (host and scheme case-insensitive, default ports optional).
pub fn origin_allowed(
    origin: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
    secure: bool,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    let (scheme, default_port) = if secure {
        ("https://", ":443")
    } else {
        ("http://", ":80")
    };
    let Some(prefix) = origin.get(..scheme.len()) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case(scheme) {
        return false;
    }
    let authority = |text: &str| {
        let text = text.to_ascii_lowercase();
        match text.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => text,
        }
    };
    !host.is_empty() && authority(&origin[scheme.len()..]) == authority(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(origin: Option<&str>, host: Option<&str>, secure: bool) -> bool {
        let value = |s: &str| HeaderValue::from_str(s).unwrap();
        origin_allowed(origin.map(value).as_ref(), host.map(value).as_ref(), secure)
    }

    #[test]
    fn only_the_pages_own_origin_may_upgrade() {
        let host = Some("127.0.0.1:5080");
        assert!(allowed(None, host, false));
        assert!(allowed(Some("http://127.0.0.1:5080"), host, false));
        assert!(allowed(
            Some("HTTP://LocalHost"),
            Some("localhost:80"),
            false
        ));
        assert!(allowed(
            Some("https://chat.example"),
            Some("chat.example"),
            true
        ));
        assert!(!allowed(Some("https://127.0.0.1:5080"), host, false));
        assert!(!allowed(Some("http://127.0.0.1:5080"), host, true));
        assert!(!allowed(Some("http://127.0.0.1:5081"), host, false));
        assert!(!allowed(Some("http://evil.example"), host, false));
        assert!(!allowed(Some("http://127.0.0.1:5080.evil"), host, false));
        assert!(!allowed(Some("null"), host, false));
        assert!(!allowed(Some("http://127.0.0.1:5080"), None, false));
        assert!(!allowed(Some("http://"), Some(""), false));
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in ["src=\"http", "href=\"http", "@import", "//cdn"] {
            assert!(!PAGE.contains(external), "{external}");
        }
    }
}
