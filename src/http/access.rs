//! The access log: one line per request on stderr, in the combined
//! format nginx and Apache write (with `--log-format json`, that line is
//! the `message` of a JSON log object). `-q` turns it off with the other
//! info lines.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{REFERER, USER_AGENT};
use hyper::{Request, Version};

use super::body::Body;
use crate::net::stream::PeerAddr;

/// What the log says of a request, taken from its head before it is
/// answered.
#[derive(Debug)]
pub struct AccessRecord {
    client: String,
    request: String,
    referer: String,
    user_agent: String,
}

impl AccessRecord {
    /// Takes the parts of `req` the log line needs.
    pub fn new<B>(req: &Request<B>, peer: &PeerAddr) -> AccessRecord {
        let header = |name| {
            req.headers().get(name).map_or_else(
                || "-".to_owned(),
                |v| escape(&String::from_utf8_lossy(v.as_bytes())),
            )
        };
        let version = match req.version() {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        AccessRecord {
            client: match peer {
                PeerAddr::Ip(addr) => addr.ip().to_string(),
                PeerAddr::Unix(_) => peer.to_string(),
            },
            // The path as HTTP/1.1 sends it: HTTP/2 requests carry the
            // scheme and authority too, which nginx leaves out as well.
            request: escape(&format!(
                "{} {} {version}",
                req.method(),
                req.uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().to_string(), ToString::to_string)
            )),
            referer: header(REFERER),
            user_agent: header(USER_AGENT),
        }
    }

    /// Logs the request with its answer's status and body length.
    pub fn log(self, status: u16, bytes: u64) {
        let time = chrono::Local::now().format("%d/%b/%Y:%H:%M:%S %z");
        // The line alone, no structured fields: text logs print fields
        // after the message, which would write every value twice.
        tracing::info!(
            target: "sockit::http::access",
            "{} - - [{time}] \"{}\" {status} {bytes} \"{}\" \"{}\"",
            self.client,
            self.request,
            self.referer,
            self.user_agent,
        );
    }
}

/// A response body that logs its request once it is done: sent to the
/// end, or dropped because the client went away. The line counts the
/// body bytes actually sent, as nginx's `$body_bytes_sent` does, which
/// for a compressed or cut-short body is not a length known up front.
pub struct LoggedBody {
    inner: Body,
    /// Boxed: the body lives as long as its stream, and a request not
    /// logged (`-q`) should not carry four empty strings.
    record: Option<Box<AccessRecord>>,
    status: u16,
    sent: u64,
}

impl LoggedBody {
    /// `inner`, to be logged as `record` with `status` (`None`: not
    /// logged).
    pub fn new(inner: Body, record: Option<Box<AccessRecord>>, status: u16) -> LoggedBody {
        LoggedBody {
            inner,
            record,
            status,
            sent: 0,
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.log(self.status, self.sent);
        }
    }
}

/// Quotes, backslashes and control characters as `\xHH`, as nginx writes
/// them, so a request cannot forge a log line or break its quoting.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '"' || c == '\\' || c.is_control() {
            for byte in c.to_string().bytes() {
                out.push_str(&format!("\\x{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_forge_lines_or_quotes() {
        assert_eq!(escape("a\"b\\c\nd\te"), "a\\x22b\\x5Cc\\x0Ad\\x09e");
        let req = Request::builder()
            .uri("/x?y=1")
            .header(USER_AGENT, "evil\" 200 0 \"")
            .body(())
            .unwrap();
        let peer = PeerAddr::Ip("127.0.0.1:4000".parse().unwrap());
        let record = AccessRecord::new(&req, &peer);
        assert_eq!(record.client, "127.0.0.1");
        assert_eq!(record.request, "GET /x?y=1 HTTP/1.1");
        let h2 = Request::builder()
            .uri("https://example.org:8443/a%20b?c")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(
            AccessRecord::new(&h2, &peer).request,
            "GET /a%20b?c HTTP/2.0"
        );
        assert_eq!(record.referer, "-");
        assert_eq!(record.user_agent, "evil\\x22 200 0 \\x22");
    }
}
