//! What a request gets: the hello page without `--root`, and with it the
//! static file server's answers (files, `index.html`, listings, redirects,
//! conditional requests, refusals).
//!
//! Request heads are hyper's; header values (`If-None-Match`,
//! `If-Modified-Since`, `Accept`) are read with the `headers` crate; which
//! file a path means is [`super::path`]'s decision alone.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use headers::{
    ContentLength, ContentType, ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch,
    IfUnmodifiedSince, LastModified,
};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::BasicAuth;
use super::path::{self, PathPolicy, Refusal, Target};
use super::range::{self, Selection};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// The body of every response: a small buffer, or a file streamed in
/// large reads.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Default `--header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes per read when streaming a file: large reads keep the per-byte
/// cost of a big download low (the thread-pool hop of `tokio::fs` is paid
/// per read).
const FILE_CHUNK: usize = 256 * 1024;

/// Files up to this size are read whole, on the connection's own thread,
/// instead of streamed through tokio's blocking pool. For files in the
/// page cache (the common case of a busy small site) the read takes a few
/// microseconds, where each hop to the pool and back costs more than
/// that: with every open and read on the pool, 1 KiB requests ran at a
/// quarter of nginx's rate. nginx, too, reads files in its event loop.
const SMALL_FILE: u64 = 128 * 1024;

/// The most a `multipart/byteranges` reply holds (it is built in memory);
/// asked for more, the whole file is sent instead.
const MAX_MULTIPART: u64 = 8 << 20;

/// A listing stops after this many entries, so a directory of millions
/// cannot turn one request into unbounded memory.
const MAX_LISTING: usize = 10_000;

/// The page served without `--root`.
const HELLO_PAGE: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sockit</title></head>\n<body><h1>Hello, World!</h1>\n<p>This is <code>sockit serve http</code>. Serve a directory with <code>--root DIR</code>.</p></body></html>\n";

/// How a site is set up, as the command line and the config file say.
#[derive(Debug, Clone, Default)]
pub struct SiteConfig {
    /// The directory served; `None`: the hello page.
    pub root: Option<PathBuf>,
    /// Serve and list dotfiles (`--hidden`).
    pub hidden: bool,
    /// How long a client may take to send a request head
    /// (`--header-timeout`); `None`: [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Option<Duration>,
    /// The `Cache-Control` of file responses (`--cache-control`).
    pub cache_control: Option<String>,
    /// Cross-origin requests allowed from anywhere (`--cors`).
    pub cors: bool,
    /// Headers added to every response (`--header 'Name: value'`).
    pub headers: Vec<String>,
    /// `USER:HASH` every request must authenticate as (`--basic-auth`).
    pub basic_auth: Option<String>,
}

/// `Name: value`, as `--header` takes it.
fn parse_header(text: &str) -> Result<(header::HeaderName, HeaderValue), String> {
    let bad = |why: &str| format!("--header {text:?}: {why} (expected 'Name: value')");
    let (name, value) = text.split_once(':').ok_or_else(|| bad("no colon"))?;
    let name = header::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| bad("not a valid header name"))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("not a valid header value"))?;
    Ok((name, value))
}

/// A site built for a server: shared by every connection of every
/// listener of the service.
#[derive(Debug)]
pub struct Site {
    /// Canonical, so that the path check compares like with like.
    root: Option<PathBuf>,
    policy: PathPolicy,
    /// How long a request head may take to arrive.
    pub header_timeout: Duration,
    cache_control: Option<HeaderValue>,
    cors: bool,
    /// `--header`s, checked.
    extra_headers: Vec<(header::HeaderName, HeaderValue)>,
    auth: Option<Arc<BasicAuth>>,
}

impl Site {
    /// Builds the site; the root must be a directory. `config` calls this
    /// too, to check the options before anything binds.
    ///
    /// # Errors
    /// A root that does not exist or is not a directory, a `--header` that
    /// is not `Name: value`, a bad `--cache-control` or `--basic-auth`;
    /// each named.
    pub fn new(config: &SiteConfig) -> Result<Site, String> {
        let root = match &config.root {
            None => None,
            Some(dir) => {
                let canonical = std::fs::canonicalize(dir)
                    .map_err(|e| format!("--root {}: {e}", dir.display()))?;
                if !canonical.is_dir() {
                    return Err(format!("--root {}: not a directory", dir.display()));
                }
                Some(canonical)
            }
        };
        Ok(Site {
            root,
            policy: PathPolicy {
                hidden: config.hidden,
                ..PathPolicy::default()
            },
            header_timeout: config.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
            cache_control: match &config.cache_control {
                Some(v) => {
                    Some(HeaderValue::from_str(v).map_err(|_| format!("--cache-control {v:?}"))?)
                }
                None => None,
            },
            cors: config.cors,
            extra_headers: config
                .headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<_, _>>()?,
            auth: match &config.basic_auth {
                Some(spec) => Some(Arc::new(BasicAuth::parse(spec)?)),
                None => None,
            },
        })
    }

    /// Answers one request. Never fails: every problem is a status.
    pub async fn respond(&self, req: Request<Incoming>) -> Response<Body> {
        let mut res = self.answer(req).await;
        let headers = res.headers_mut();
        if self.cors {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        for (name, value) in &self.extra_headers {
            headers.append(name.clone(), value.clone());
        }
        res
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        if self.cors && req.method() == Method::OPTIONS {
            // A CORS preflight: what may be asked, and for how long the
            // browser may remember it.
            let mut res = Response::new(empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Range, If-None-Match, If-Modified-Since, If-Range"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            return res;
        }
        if let Some(auth) = &self.auth
            && !auth.permits(req.headers().get(header::AUTHORIZATION)).await
        {
            let mut res = page(StatusCode::UNAUTHORIZED, "Sign in to see this site.");
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sockit\", charset=\"UTF-8\""),
            );
            return res;
        }
        if req.method() != Method::GET && !head {
            let mut res = page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Only GET and HEAD are served here.",
            );
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let res = match &self.root {
            None => self.hello(req.uri().path()),
            Some(root) => self.static_file(root, &req).await,
        };
        if head { without_body(res) } else { res }
    }

    fn hello(&self, path: &str) -> Response<Body> {
        if path != "/" && path != "/index.html" {
            return page(StatusCode::NOT_FOUND, "Not found.");
        }
        html(StatusCode::OK, HELLO_PAGE.to_owned())
    }

    async fn static_file(&self, root: &Path, req: &Request<Incoming>) -> Response<Body> {
        let raw = req.uri().path();
        match path::resolve(root, raw, &self.policy) {
            Err(refusal) => refused(refusal),
            Ok(Target::Dir {
                slash_redirect: true,
                ..
            }) => {
                let mut location = path::redirect_location(raw);
                if let Some(query) = req.uri().query() {
                    location.push('?');
                    location.push_str(query);
                }
                redirect(&location)
            }
            Ok(Target::Dir { path, .. }) => {
                let index = path.join("index.html");
                match std::fs::metadata(&index) {
                    Ok(meta) if meta.is_file() => self.file(&index, &meta, req).await,
                    _ => self.listing(&path, raw, req).await,
                }
            }
            Ok(Target::File { path, meta }) => self.file(&path, &meta, req).await,
        }
    }

    /// A file's answer, with `--cache-control` on it.
    async fn file(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        req: &Request<Incoming>,
    ) -> Response<Body> {
        let mut res = serve_file(path, meta, req).await;
        if let Some(value) = &self.cache_control {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, value.clone());
        }
        res
    }

    /// A directory listing: HTML, or JSON for `Accept: application/json`.
    async fn listing(&self, dir: &Path, raw: &str, req: &Request<Incoming>) -> Response<Body> {
        let entries = match read_listing(dir, self.policy.hidden).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot list");
                return page(StatusCode::FORBIDDEN, "This directory cannot be listed.");
            }
        };
        let wants_json = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        if wants_json {
            let json = serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into());
            let mut res = Response::new(full(json));
            res.headers_mut().typed_insert(ContentType::json());
            return res;
        }
        html(StatusCode::OK, listing_html(raw, &entries))
    }
}

/// One entry of a listing, as the JSON listing gives it.
#[derive(Debug, serde::Serialize)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    /// Seconds since the Unix epoch.
    modified: Option<u64>,
}

async fn read_listing(dir: &Path, hidden: bool) -> io::Result<Vec<Entry>> {
    let mut read = tokio::fs::read_dir(dir).await?;
    let mut entries = Vec::new();
    while let Some(entry) = read.next_entry().await? {
        if entries.len() >= MAX_LISTING {
            break;
        }
        let Ok(name) = entry.file_name().into_string() else {
            // A name that is not UTF-8 cannot be linked to reliably.
            continue;
        };
        if name.starts_with('.') && !hidden {
            continue;
        }
        let Ok(meta) = tokio::fs::metadata(entry.path()).await else {
            continue;
        };
        entries.push(Entry {
            kind: if meta.is_dir() { "dir" } else { "file" },
            size: if meta.is_dir() { 0 } else { meta.len() },
            modified: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            name,
        });
    }
    entries.sort_by(|a, b| (a.kind != "dir", &a.name).cmp(&(b.kind != "dir", &b.name)));
    Ok(entries)
}

/// The HTML listing. Every name is escaped as text and percent-encoded
/// in its link: a file called `<script>` shows as text, never as markup.
fn listing_html(raw: &str, entries: &[Entry]) -> String {
    let title = escape_html(&percent_decode_lossy(raw));
    let mut out = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if raw != "/" {
        out.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for e in entries {
        let slash = if e.kind == "dir" { "/" } else { "" };
        let _ = writeln!(
            out,
            "<li><a href=\"./{}{slash}\">{}{slash}</a></li>",
            escape_html(&encode_segment(&e.name)),
            escape_html(&e.name)
        );
    }
    out.push_str("</ul></body></html>\n");
    out
}

/// Serves one file: validators, conditional answers, and the body
/// streamed from disk.
async fn serve_file(
    path: &Path,
    meta: &std::fs::Metadata,
    req: &Request<Incoming>,
) -> Response<Body> {
    let modified = meta.modified().ok();
    let etag = strong_etag(meta);
    let headers = req.headers();
    let mut res = match preconditions(headers, etag.as_ref(), modified) {
        Some(status) => {
            let mut res = Response::new(empty());
            *res.status_mut() = status;
            res
        }
        None => {
            let selection = if req.method() == Method::GET {
                range::select(headers, meta.len(), etag.as_ref(), modified)
            } else {
                Selection::Whole
            };
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            match file_response(path, meta.len(), selection, &mime).await {
                Ok(res) => res,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read");
                    return page(StatusCode::FORBIDDEN, "This file cannot be read.");
                }
            }
        }
    };
    if let Some(etag) = etag {
        res.headers_mut().typed_insert(etag);
    }
    if let Some(m) = modified {
        res.headers_mut().typed_insert(LastModified::from(m));
    }
    res
}

/// The conditional headers in RFC 9110 13.2.2's order: a failed
/// If-Match (or, without it, If-Unmodified-Since) is 412; a matching
/// If-None-Match (or, without it, an If-Modified-Since the file is not
/// newer than) is 304. `None`: go on and send the file.
fn preconditions(
    headers: &hyper::HeaderMap,
    etag: Option<&ETag>,
    modified: Option<SystemTime>,
) -> Option<StatusCode> {
    if let Some(if_match) = headers.typed_get::<IfMatch>() {
        if !etag.is_some_and(|etag| if_match.precondition_passes(etag)) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let (Some(since), Some(m)) = (headers.typed_get::<IfUnmodifiedSince>(), modified)
        && !since.precondition_passes(m)
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    let not_modified = match (headers.typed_get::<IfNoneMatch>(), etag) {
        (Some(inm), Some(etag)) => !inm.precondition_passes(etag),
        (Some(_), None) => false,
        (None, _) => match (headers.typed_get::<IfModifiedSince>(), modified) {
            (Some(ims), Some(m)) => !ims.is_modified(m),
            _ => false,
        },
    };
    not_modified.then_some(StatusCode::NOT_MODIFIED)
}

/// The 200, 206 or 416 for a file of `len` bytes.
async fn file_response(
    path: &Path,
    len: u64,
    selection: Selection,
    mime: &mime_guess::Mime,
) -> io::Result<Response<Body>> {
    let (status, body, content_type) = match selection {
        Selection::Whole => (
            StatusCode::OK,
            file_body(path, 0, len).await?,
            mime.to_string(),
        ),
        Selection::One(range) => {
            let (start, end) = (*range.start(), *range.end());
            let body = file_body(path, start, end - start + 1).await?;
            let mut res = Response::new(body);
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(cr) = headers::ContentRange::bytes(start..=end, len) {
                res.headers_mut().typed_insert(cr);
            }
            return Ok(finish(res, mime.as_ref()));
        }
        Selection::Many(ranges) => {
            let total: u64 = ranges.iter().map(|r| r.end() - r.start() + 1).sum();
            if total > MAX_MULTIPART {
                // More than a multipart reply should hold in memory: the
                // whole file instead, which RFC 9110 allows.
                (
                    StatusCode::OK,
                    file_body(path, 0, len).await?,
                    mime.to_string(),
                )
            } else {
                let (body, boundary) = multipart(path, len, &ranges, mime)?;
                let content_type = format!("multipart/byteranges; boundary={boundary}");
                (StatusCode::PARTIAL_CONTENT, full(body), content_type)
            }
        }
        Selection::Unsatisfiable => {
            let mut res = page(StatusCode::RANGE_NOT_SATISFIABLE, "No such byte range.");
            res.headers_mut()
                .typed_insert(headers::ContentRange::unsatisfied_bytes(len));
            return Ok(res);
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    Ok(finish(res, &content_type))
}

/// Adds what every file response has: its length, its type, and that
/// ranges are welcome.
fn finish(mut res: Response<Body>, content_type: &str) -> Response<Body> {
    let len = res.body().size_hint().exact().unwrap_or(0);
    res.headers_mut().typed_insert(ContentLength(len));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    res.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    res
}

/// `len` bytes of the file from `start`: read at once when small,
/// streamed otherwise.
async fn file_body(path: &Path, start: u64, len: u64) -> io::Result<Body> {
    if len <= SMALL_FILE {
        return read_small(path, start, len).map(full);
    }
    use tokio::io::AsyncSeekExt as _;
    let mut file = tokio::fs::File::open(path).await?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    Ok(FileBody::new(file, len).boxed_unsync())
}

/// A `multipart/byteranges` body (RFC 9110 14.6) and its boundary.
fn multipart(
    path: &Path,
    len: u64,
    ranges: &[RangeInclusive<u64>],
    mime: &mime_guess::Mime,
) -> io::Result<(Vec<u8>, String)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PARTS: AtomicU64 = AtomicU64::new(0);
    // Unique enough never to occur in a body by chance; not a secret.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let boundary = format!(
        "sockit-{:08x}{:016x}",
        nanos,
        PARTS.fetch_add(1, Ordering::Relaxed)
    );
    let mut body = Vec::new();
    for range in ranges {
        let (start, end) = (*range.start(), *range.end());
        let _ = write!(
            Writer(&mut body),
            "--{boundary}\r\nContent-Type: {mime}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n"
        );
        body.extend_from_slice(&read_small(path, start, end - start + 1)?);
        body.extend_from_slice(b"\r\n");
    }
    let _ = write!(Writer(&mut body), "--{boundary}--\r\n");
    Ok((body, boundary))
}

/// `fmt::Write` into a byte buffer.
struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Reads at most `len` bytes of a file from `start`: open, one read,
/// close (no `stat` and no read to find the end, which `std::fs::read`
/// would add). What was read is what is sent, should the file have
/// changed since its metadata was taken.
fn read_small(path: &Path, start: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))?;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A strong validator from the file's size and modification time (as
/// nginx makes its ETags): it changes whenever the content can have.
fn strong_etag(meta: &std::fs::Metadata) -> Option<ETag> {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    // Always a valid entity tag: hex digits and a dash in quotes.
    format!("\"{mtime:x}-{:x}\"", meta.len()).parse().ok()
}

fn refused(refusal: Refusal) -> Response<Body> {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::NOT_FOUND);
    page(status, &refusal.to_string())
}

fn redirect(location: &str) -> Response<Body> {
    let mut res = page(StatusCode::MOVED_PERMANENTLY, "Moved.");
    if let Ok(value) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, value);
    }
    res
}

/// A short HTML page for a status.
fn page(status: StatusCode, text: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    html(
        status,
        format!(
            "<!doctype html>\n<html><head><title>{} {reason}</title></head><body><h1>{} {reason}</h1><p>{}</p></body></html>\n",
            status.as_u16(),
            status.as_u16(),
            escape_html(text)
        ),
    )
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let len = body.len() as u64;
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut().typed_insert(ContentLength(len));
    res
}

/// The same response with its body dropped, for HEAD: the headers
/// (Content-Length included) stay as GET's.
fn without_body(res: Response<Body>) -> Response<Body> {
    let (parts, _) = res.into_parts();
    Response::from_parts(parts, empty())
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file name as one URL path segment.
fn encode_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// What a path segment must escape: controls, space, and everything
/// with a meaning in a URL or next to one.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\'');

fn percent_decode_lossy(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// A file streamed in [`FILE_CHUNK`] reads, at most `remaining` bytes (the
/// length announced in Content-Length, even if the file grows meanwhile).
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < FILE_CHUNK {
            this.buf.reserve(FILE_CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.file), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being sent",
            )))),
            Poll::Ready(Ok(_)) => {
                // A file that grew since its length was announced is cut
                // at that length.
                let n = usize::try_from(this.remaining)
                    .map_or(this.buf.len(), |r| r.min(this.buf.len()));
                this.remaining -= n as u64;
                let chunk = this.buf.split_to(n).freeze();
                this.buf.clear();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_listings_are_text_not_markup() {
        let entries = vec![Entry {
            name: "<img src=x onerror=alert(1)>\"'.txt".into(),
            kind: "file",
            size: 1,
            modified: None,
        }];
        let page = listing_html("/", &entries);
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;.txt"),
            "{page}"
        );
        assert!(
            page.contains("href=\"./%3Cimg%20src=x%20onerror=alert(1)%3E%22%27.txt\""),
            "{page}"
        );
    }
}
