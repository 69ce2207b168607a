//! What a request gets: the hello page without `--root`, and with it the
//! static file server's answers (files, `index.html`, listings, redirects,
//! conditional requests, refusals).
//!
//! Request heads are hyper's; header values (`If-None-Match`,
//! `If-Modified-Since`, `Accept`) are read with the `headers` crate; which
//! file a path means is [`super::path`]'s decision alone.

use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use headers::{ContentLength, ContentType, HeaderMapExt};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::BasicAuth;
use super::body::{Body, FileBody, empty, full};
use super::cache::{self, FileCache, FileHeaders};
use super::conditional::{self, Validators};
use super::encoding::{self, Coding};
use super::path::{self, PathPolicy, Refusal, Symlinks, Target};
use super::range::{self, Selection};

/// Default `--header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes per read when streaming a file: large reads keep the per-byte
/// cost of a big download low (a system call, a frame and a wake-up are
/// paid per read).
const FILE_CHUNK: usize = 256 * 1024;

/// Files up to this size are read whole, on the connection's own thread,
/// instead of streamed through tokio's blocking pool. For files in the
/// page cache (the common case of a busy small site) the read takes a few
/// microseconds, where each hop to the pool and back costs more than
/// that: with every open and read on the pool, 1 KiB requests ran at a
/// quarter of nginx's rate. nginx, too, reads files in its event loop.
const SMALL_FILE: u64 = 128 * 1024;

/// Smaller files are sent as they are: compressing them saves a few
/// bytes of a packet already sent.
const MIN_COMPRESS: u64 = 256;

/// Larger files are not compressed on the fly (a precompressed sibling
/// is still served): at tens of MB/s of CPU, a client asking for a big
/// log file again and again should not cost a core.
const MAX_COMPRESS: u64 = 16 << 20;

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
    /// Never compress on the fly (`--no-compress`).
    pub no_compress: bool,
    /// Which symlinks are followed (`--symlinks`).
    pub symlinks: Symlinks,
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
    /// Compress text on the fly for clients that accept it.
    compress: bool,
    /// Small files recently served.
    cache: FileCache,
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
                symlinks: config.symlinks,
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
            compress: !config.no_compress,
            cache: FileCache::default(),
        })
    }

    /// Answers one request. Never fails: every problem is a status.
    ///
    /// The request is borrowed, not taken: hyper spawns the future of
    /// every HTTP/2 request as a task, copying it, and a request moved
    /// down through `async fn`s is held once in each of their futures.
    pub async fn respond(&self, req: &Request<Incoming>) -> Response<Body> {
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

    async fn answer(&self, req: &Request<Incoming>) -> Response<Body> {
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
            Some(root) => match self.static_file(root, req) {
                Found::Answer(res) => res,
                // Boxed: the listing's state (a directory read on the
                // blocking pool) would otherwise make every request's
                // future as large as its own.
                Found::Listing(dir) => Box::pin(self.listing(&dir, req.uri().path(), req)).await,
            },
        };
        if head { without_body(res) } else { res }
    }

    fn hello(&self, path: &str) -> Response<Body> {
        if path != "/" && path != "/index.html" {
            return page(StatusCode::NOT_FOUND, "Not found.");
        }
        html(StatusCode::OK, HELLO_PAGE.to_owned())
    }

    /// A path's answer, or the directory to list: everything but the
    /// listing is done without waiting, so no state of it is held in the
    /// request's future.
    fn static_file(&self, root: &Path, req: &Request<Incoming>) -> Found {
        let raw = req.uri().path();
        if let Some(hit) = self.cache.get(raw) {
            let source = Source::Read(hit.bytes);
            return Found::Answer(self.file(root, &hit.path, source, &hit.meta, hit.headers, req));
        }
        let res = match path::resolve(root, raw, &self.policy) {
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
            Ok(Target::Dir { path, .. }) => match path::index(root, &path, &self.policy) {
                Some((index, file, meta)) => {
                    let headers = file_headers(&index, &meta);
                    self.file(root, &index, Source::Open(file), &meta, headers, req)
                }
                None => return Found::Listing(path),
            },
            Ok(Target::File { path, meta, file }) => {
                let headers = file_headers(&path, &meta);
                self.file(root, &path, Source::Open(file), &meta, headers, req)
            }
        };
        Found::Answer(res)
    }

    /// A file's answer: the representation the client is best served
    /// with (the file, a precompressed sibling, or the file compressed on
    /// the fly), with `--cache-control` on it. `headers` are the file's
    /// own (see [`file_headers`]).
    fn file(
        &self,
        root: &Path,
        path: &Path,
        source: Source,
        meta: &Metadata,
        headers: FileHeaders,
        req: &Request<Incoming>,
    ) -> Response<Body> {
        let content_type = &headers.content_type;
        // Range requests are answered from the file as it is, so that a
        // byte range means the same bytes whatever the client accepts.
        let varies = encoding::worth_compressing(content_type.to_str().unwrap_or_default());
        let choice = if varies && !req.headers().contains_key(header::RANGE) {
            self.choose(root, path, meta, req.headers())
        } else {
            Choice::AsIs
        };
        let mut res = match choice {
            Choice::AsIs => {
                let source = self.remember(req.uri().path(), path, source, meta, &headers);
                let validators = &headers.validators;
                serve_file(path, source, meta, validators, content_type, req)
            }
            Choice::Precompressed(coding, found) => {
                let (sibling, sibling_file, sibling_meta) = *found;
                // The sibling's own validator, marked with its extension:
                // it changes when the sibling does.
                let tag = Validators::of(&sibling_meta, &format!(".{}", coding.extension()));
                let source = Source::Open(sibling_file);
                let mut res = serve_file(&sibling, source, &sibling_meta, &tag, content_type, req);
                if res.status() == StatusCode::OK {
                    set_coding(&mut res, coding);
                }
                res
            }
            Choice::OnTheFly(coding) => {
                let tag = Validators::of(meta, &format!("-{}", coding.token()));
                let source = self.remember(req.uri().path(), path, source, meta, &headers);
                let res = serve_file(path, source, meta, &tag, content_type, req);
                compressed(res, coding)
            }
        };
        let headers = res.headers_mut();
        if varies {
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        if let Some(value) = &self.cache_control {
            headers.insert(header::CACHE_CONTROL, value.clone());
        }
        res
    }

    /// A small file read whole and cached as the answer to `raw`, with
    /// its headers; others as they are.
    fn remember(
        &self,
        raw: &str,
        path: &Path,
        source: Source,
        meta: &Metadata,
        headers: &FileHeaders,
    ) -> Source {
        match source {
            Source::Open(file) if meta.len() <= cache::MAX_FILE => {
                match read_small(&file, 0, meta.len()) {
                    Ok(bytes) => {
                        let bytes = Bytes::from(bytes);
                        self.cache
                            .put(raw, path, meta, bytes.clone(), headers.clone());
                        Source::Read(bytes)
                    }
                    // Reported by serve_file, which reads again.
                    Err(_) => Source::Open(file),
                }
            }
            other => other,
        }
    }

    /// Which representation of a compressible file to send: a
    /// precompressed sibling in any coding the client accepts (it costs
    /// no CPU), else the file compressed on the fly in the coding it
    /// prefers, else the file as it is.
    fn choose(
        &self,
        root: &Path,
        path: &Path,
        meta: &Metadata,
        headers: &hyper::HeaderMap,
    ) -> Choice {
        let accepted = encoding::accepted(headers);
        for &coding in &accepted {
            if let Some((sibling, file, meta)) =
                path::sibling(root, path, coding.extension(), &self.policy)
            {
                return Choice::Precompressed(coding, Box::new((sibling, file, meta)));
            }
        }
        match accepted.first() {
            Some(&coding)
                if self.compress && (MIN_COMPRESS..=MAX_COMPRESS).contains(&meta.len()) =>
            {
                Choice::OnTheFly(coding)
            }
            _ => Choice::AsIs,
        }
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
        let res = html(StatusCode::OK, listing_html(raw, &entries));
        let mut res = match encoding::accepted(req.headers()).first() {
            Some(&coding) if self.compress => compressed(res, coding),
            _ => res,
        };
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        res
    }
}

/// The headers a file's answers take from the file itself: made here
/// for every answer, and kept with a cached file's bytes.
fn file_headers(path: &Path, meta: &Metadata) -> FileHeaders {
    FileHeaders {
        content_type: content_type(path),
        validators: Validators::of(meta, ""),
    }
}

/// A file's type by its extension; text is declared UTF-8, without which
/// browsers read it as windows-1252 and show `café` as `cafÃ©`.
fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    if mime.starts_with("text/") {
        HeaderValue::from_str(&format!("{mime}; charset=utf-8"))
            .unwrap_or_else(|_| HeaderValue::from_static("text/plain; charset=utf-8"))
    } else {
        HeaderValue::from_static(mime)
    }
}

/// What [`Site::static_file`] came to.
enum Found {
    /// The answer, ready.
    Answer(Response<Body>),
    /// A directory without an index, to be listed.
    Listing(PathBuf),
}

/// Where a file's bytes come from.
enum Source {
    /// The open file.
    Open(File),
    /// All of it, read already (from the cache, or just now).
    Read(Bytes),
}

impl Source {
    /// At most `len` bytes from `start`.
    fn range(&self, start: u64, len: u64) -> io::Result<Bytes> {
        match self {
            Source::Open(file) => read_small(file, start, len).map(Bytes::from),
            Source::Read(bytes) => Ok(slice(bytes, start, len)),
        }
    }
}

/// `bytes[start..start + len]`, cut at the end of `bytes`, without a copy.
fn slice(bytes: &Bytes, start: u64, len: u64) -> Bytes {
    let start = usize::try_from(start).map_or(bytes.len(), |s| s.min(bytes.len()));
    let end =
        usize::try_from(len).map_or(bytes.len(), |l| start.saturating_add(l).min(bytes.len()));
    bytes.slice(start..end)
}

/// What [`Site::choose`] picked for a file.
enum Choice {
    /// The file as it is.
    AsIs,
    /// A sibling file holding the content in this coding, opened.
    Precompressed(Coding, Box<(PathBuf, File, Metadata)>),
    /// The file, compressed as it is sent.
    OnTheFly(Coding),
}

/// A 200 with its body compressed as it is sent; any other status (a
/// 304, a 412, an error page) as it was. The length is not known before
/// the end, so Content-Length goes (HTTP/1.1 sends it chunked).
fn compressed(res: Response<Body>, coding: Coding) -> Response<Body> {
    if res.status() != StatusCode::OK {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut res = Response::from_parts(parts, encoding::compress(body, coding));
    set_coding(&mut res, coding);
    res
}

/// Marks a response's body as being in `coding`.
fn set_coding(res: &mut Response<Body>, coding: Coding) {
    res.headers_mut().insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
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

/// Serves one open file (`path` names it in the debug log) as
/// `content_type` with `validators`: conditional answers, and the body
/// read from it.
fn serve_file(
    path: &Path,
    source: Source,
    meta: &Metadata,
    validators: &Validators,
    content_type: &HeaderValue,
    req: &Request<Incoming>,
) -> Response<Body> {
    let (etag, modified) = (validators.etag.as_ref(), validators.modified);
    let headers = req.headers();
    let mut res = match conditional::preconditions(headers, etag, modified) {
        Some(status) => {
            let mut res = Response::new(empty());
            *res.status_mut() = status;
            res
        }
        None => {
            let selection = if req.method() == Method::GET {
                range::select(headers, meta.len(), etag, modified)
            } else {
                Selection::Whole
            };
            match file_response(source, meta.len(), selection, content_type) {
                Ok(res) => res,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read");
                    return page(StatusCode::FORBIDDEN, "This file cannot be read.");
                }
            }
        }
    };
    validators.insert_into(res.headers_mut());
    res
}

/// The 200, 206 or 416 for a file of `len` bytes.
fn file_response(
    source: Source,
    len: u64,
    selection: Selection,
    content_type: &HeaderValue,
) -> io::Result<Response<Body>> {
    let (status, body, content_type) = match selection {
        Selection::Whole => (
            StatusCode::OK,
            file_body(source, 0, len)?,
            content_type.clone(),
        ),
        Selection::One(range) => {
            let (start, end) = (*range.start(), *range.end());
            let body = file_body(source, start, end - start + 1)?;
            let mut res = Response::new(body);
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(cr) = headers::ContentRange::bytes(start..=end, len) {
                res.headers_mut().typed_insert(cr);
            }
            return Ok(finish(res, content_type.clone()));
        }
        Selection::Many(ranges) => {
            let total: u64 = ranges.iter().map(|r| r.end() - r.start() + 1).sum();
            if total > MAX_MULTIPART {
                // More than a multipart reply should hold in memory: the
                // whole file instead, which RFC 9110 allows.
                (
                    StatusCode::OK,
                    file_body(source, 0, len)?,
                    content_type.clone(),
                )
            } else {
                let mime = content_type.to_str().unwrap_or("application/octet-stream");
                let (body, boundary) = multipart(&source, len, &ranges, mime)?;
                let content_type =
                    HeaderValue::try_from(format!("multipart/byteranges; boundary={boundary}"))
                        .map_err(io::Error::other)?;
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
    Ok(finish(res, content_type))
}

/// Adds what every file response has: its length, its type, and that
/// ranges are welcome.
fn finish(mut res: Response<Body>, content_type: HeaderValue) -> Response<Body> {
    let len = res.body().size_hint().exact().unwrap_or(0);
    let headers = res.headers_mut();
    headers.typed_insert(ContentLength(len));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    res
}

/// `len` bytes of the file from `start`: read at once when small,
/// streamed otherwise.
fn file_body(source: Source, start: u64, len: u64) -> io::Result<Body> {
    Ok(match source {
        Source::Read(bytes) => full(slice(&bytes, start, len)),
        Source::Open(file) if len <= SMALL_FILE => full(read_small(&file, start, len)?),
        Source::Open(file) => FileBody::new(file, start, len, FILE_CHUNK).boxed_unsync(),
    })
}

/// A `multipart/byteranges` body (RFC 9110 14.6) and its boundary.
fn multipart(
    source: &Source,
    len: u64,
    ranges: &[RangeInclusive<u64>],
    mime: &str,
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
        body.extend_from_slice(&source.range(start, end - start + 1)?);
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

/// Reads at most `len` bytes of an open file from `start`, in one
/// `pread` when the file is as long as its metadata said (no read to find
/// the end, which `read_to_end` would add). What was read is what is
/// sent, should the file have changed since its metadata was taken.
fn read_small(file: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
    let mut got = 0;
    while got < bytes.len() {
        match file.read_at(&mut bytes[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(got);
    Ok(bytes)
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
