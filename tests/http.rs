//! `sockit serve http` on the real binary: the hello page, static files,
//! listings, validators, refusals and limits, over plain HTTP/1.1 on a raw
//! TCP socket (the responses read with httparse), and HTTP/2 (h2c and
//! over TLS with ALPN) with curl.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, TempDir, run_bounded, serve};

const LIMIT: Duration = Duration::from_secs(20);

/// One parsed response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 client on one connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `method path` with `extra` header lines, and reads the reply
    /// (a HEAD reply or a 304 has no body, whatever Content-Length says).
    fn request(&mut self, method: &str, path: &str, extra: &[&str]) -> Reply {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        self.read_reply(method == "HEAD")
    }

    fn read_reply(&mut self, head_only: bool) -> Reply {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = res.parse(&self.buf).unwrap() {
                let status = res.code.unwrap();
                let headers: Vec<(String, String)> = res
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..len);
                let chunked = headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")
                });
                let body = if head_only || status == 304 {
                    Vec::new()
                } else if chunked {
                    self.read_chunked()
                } else {
                    let body_len = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    self.take(body_len)
                };
                return Reply {
                    status,
                    headers,
                    body,
                };
            }
            self.fill();
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    /// A `Transfer-Encoding: chunked` body, its chunks joined.
    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let (at, size) = loop {
                match httparse::parse_chunk_size(&self.buf).unwrap() {
                    httparse::Status::Complete(found) => break found,
                    httparse::Status::Partial => self.fill(),
                }
            };
            self.buf.drain(..at);
            let size = usize::try_from(size).unwrap();
            if size == 0 {
                // No trailers are sent: the last chunk's CRLF ends it.
                assert_eq!(self.take(2), b"\r\n");
                return body;
            }
            body.extend(self.take(size));
            assert_eq!(self.take(2), b"\r\n");
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed mid-reply after {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn get(addr: &str, path: &str) -> Reply {
    Client::connect(addr).request("GET", path, &[])
}

/// A site: a few files, a subdirectory with an index, a dotfile, a name
/// that is markup, a large file, and symlinks inside and out.
fn site() -> (TempDir, TempDir) {
    let root = TempDir::new("http-root");
    let outside = TempDir::new("http-outside");
    std::fs::write(outside.0.join("secret.txt"), b"outside the root").unwrap();
    std::fs::write(root.0.join("hello.txt"), b"hello file\n").unwrap();
    std::fs::write(root.0.join("page.html"), b"<p>page</p>\n").unwrap();
    std::fs::create_dir(root.0.join("sub")).unwrap();
    std::fs::write(root.0.join("sub/index.html"), b"<h1>sub index</h1>\n").unwrap();
    std::fs::create_dir(root.0.join("empty")).unwrap();
    std::fs::write(root.0.join(".env"), b"SECRET=1\n").unwrap();
    std::fs::write(root.0.join("<img src=x onerror=alert(1)>.txt"), b"x").unwrap();
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.0.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink(root.0.join("hello.txt"), root.0.join("inside-link.txt")).unwrap();
    std::os::unix::fs::symlink(
        outside.0.join("secret.txt"),
        root.0.join("outside-link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside.0, root.0.join("outside-dir")).unwrap();
    (root, outside)
}

fn serve_root(root: &TempDir, extra: &[&str]) -> Proc {
    let dir = root.0.to_str().unwrap();
    let mut args = vec!["http", "-l", "127.0.0.1:0", "--root", dir];
    args.extend_from_slice(extra);
    serve(&args, 1)
}

#[test]
fn without_a_root_a_hello_page() {
    let p = serve(&["http", "-l", "127.0.0.1:0"], 1);
    let addr = p.host_port(0);
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("Hello, World!"), "{}", r.text());
    let head = Client::connect(addr).request("HEAD", "/", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), r.header("content-length"));
    assert_eq!(get(addr, "/nothing-here").status, 404);
}

#[test]
fn http_listens_on_streams_only() {
    let out = run_bounded(&["serve", "http", "-l", "udp://127.0.0.1:0"], LIMIT);
    let line = out.failure(2);
    assert!(line.contains("http does not serve datagrams"), "{line}");
    // Without -l: TCP 8080 only, no UDP socket (not bound here: port 8080
    // may be taken; the config says which listeners it would open).
    let out = run_bounded(&["serve", "echo", "--root", "/tmp"], LIMIT);
    assert!(
        out.failure(2).contains("for the http service"),
        "{}",
        out.stderr
    );
    let out = run_bounded(
        &["serve", "http", "-l", ":0", "--root", "/nonexistent/site"],
        LIMIT,
    );
    assert!(
        out.failure(2).contains("/nonexistent/site"),
        "{}",
        out.stderr
    );
}

#[test]
fn files_with_type_length_and_validators() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let addr = p.host_port(0);
    let r = get(addr, "/hello.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello file\n"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("11"));
    let etag = r.header("etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let modified = r.header("last-modified").unwrap().to_owned();
    assert_eq!(
        get(addr, "/page.html").header("content-type"),
        Some("text/html; charset=utf-8")
    );

    let mut c = Client::connect(addr);
    let r = c.request("GET", "/hello.txt", &[&format!("If-None-Match: {etag}")]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = c.request("GET", "/hello.txt", &["If-None-Match: \"other\""]);
    assert_eq!(r.status, 200);
    let r = c.request(
        "GET",
        "/hello.txt",
        &[&format!("If-Modified-Since: {modified}")],
    );
    assert_eq!(r.status, 304);
    let r = c.request(
        "GET",
        "/hello.txt",
        &["If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"],
    );
    assert_eq!(r.status, 200);
    let r = c.request("HEAD", "/hello.txt", &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("11")));

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = c.request(method, "/hello.txt", &["Content-Length: 0"]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn a_large_file_streams_whole() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let r = get(p.host_port(0), "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(root.0.join("big.bin")).unwrap());
}

#[test]
fn directories_index_listing_and_redirect() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let addr = p.host_port(0);
    assert_eq!(get(addr, "/sub/").text(), "<h1>sub index</h1>\n");
    let r = get(addr, "/sub");
    assert_eq!((r.status, r.header("location")), (301, Some("/sub/")));
    let r = get(addr, "/sub?x=1");
    assert_eq!(r.header("location"), Some("/sub/?x=1"));

    let listing = get(addr, "/");
    assert_eq!(listing.status, 200);
    let html = listing.text();
    assert!(
        html.contains("<a href=\"./hello.txt\">hello.txt</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"./sub/\">sub/</a>"), "{html}");
    // A file name is text, never markup (a stored XSS otherwise).
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;.txt"),
        "{html}"
    );
    assert!(!html.contains(".env"), "dotfiles are not listed: {html}");

    let mut c = Client::connect(addr);
    let json = c.request("GET", "/", &["Accept: application/json"]);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let entries: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"hello.txt") && names.contains(&"sub"),
        "{names:?}"
    );
    assert!(!names.contains(&".env"), "{names:?}");
    let empty = c.request("GET", "/empty/", &[]);
    assert_eq!(empty.status, 200);
}

#[test]
fn a_keep_alive_connection_serves_ten_thousand_requests() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let mut c = Client::connect(p.host_port(0));
    for i in 0..10_000 {
        let r = c.request("GET", "/hello.txt", &[]);
        assert_eq!(r.status, 200, "request {i}");
    }
}

#[test]
fn huge_heads_and_garbage_are_refused() {
    let p = serve(&["http", "-l", "127.0.0.1:0"], 1);
    let addr = p.host_port(0);
    let mut c = Client::connect(addr);
    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    c.stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: t\r\n{big}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(c.read_reply(false).status, 431);

    let mut c = Client::connect(addr);
    c.stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    assert_eq!(c.read_reply(false).status, 400);
    // Nobody else noticed.
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn a_slow_head_is_cut_off_at_the_header_timeout() {
    let p = serve(
        &["http", "-l", "127.0.0.1:0", "--header-timeout", "500ms"],
        1,
    );
    let started = Instant::now();
    let mut slow = TcpStream::connect(p.host_port(0)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "cut after {waited:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{rest:?}"
    );
}

#[test]
fn shutdown_ends_idle_keep_alive_connections() {
    let mut p = serve(&["http", "-l", "127.0.0.1:0", "--grace", "10s"], 1);
    let mut c = Client::connect(p.host_port(0));
    assert_eq!(c.request("GET", "/", &[]).status, 200);
    p.signal("TERM");
    // Graceful: the idle keep-alive connection is closed at once, so the
    // server does not wait for the grace period.
    p.assert_exits_0(Duration::from_secs(5));
}

/// Runs curl and returns what it printed (the tests using it are
/// `#[ignore]`d, and `.ci/run` installs it).
fn curl_bytes(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    out.stdout
}

fn curl(args: &[&str]) -> String {
    String::from_utf8_lossy(&curl_bytes(args)).into_owned()
}

#[test]
#[ignore = "needs curl"]
fn http2_with_prior_knowledge_and_over_tls_with_alpn() {
    let (root, _outside) = site();
    let dir = root.0.to_str().unwrap();
    let p = serve(
        &[
            "http",
            "-l",
            "127.0.0.1:0",
            "-l",
            "tls://127.0.0.1:0",
            "--root",
            dir,
        ],
        2,
    );
    let plain = format!("http://{}/hello.txt", p.host_port(0));
    let tls = format!("https://{}/hello.txt", p.host_port(1));
    let fmt = "%{http_version} %{http_code}";
    assert_eq!(
        curl(&[
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            fmt,
            &plain
        ]),
        "2 200"
    );
    assert_eq!(
        curl(&["--http1.1", "-o", "/dev/null", "-w", fmt, &plain]),
        "1.1 200"
    );
    // ALPN: h2 when offered, HTTP/1.1 otherwise.
    assert_eq!(
        curl(&["-k", "--http2", "-o", "/dev/null", "-w", fmt, &tls]),
        "2 200"
    );
    assert_eq!(
        curl(&["-k", "--http1.1", "-o", "/dev/null", "-w", fmt, &tls]),
        "1.1 200"
    );
    assert_eq!(curl(&["-k", "--http2", &tls]), "hello file\n");
    // A large file over HTTP/2, whole.
    let big_url = format!("http://{}/big.bin", p.host_port(0));
    let big = curl_bytes(&["--http2-prior-knowledge", &big_url]);
    let want = std::fs::read(root.0.join("big.bin")).unwrap();
    assert_eq!(big, want);
    // And over TLS, where a connection's output is held until each of its
    // wake-ups ends (net::cork): whole in both protocols, and streams
    // multiplexed on one connection all answered.
    let big_tls = format!("https://{}/big.bin", p.host_port(1));
    for version in ["--http2", "--http1.1"] {
        assert_eq!(curl_bytes(&["-k", version, &big_tls]), want, "{version}");
    }
    let mut args = vec![
        "-k",
        "--http2",
        "-Z",
        "-w",
        "%{http_code} %{size_download}\n",
    ];
    for i in 0..20 {
        let url = if i % 8 == 0 { &big_tls } else { &tls };
        args.extend(["-o", "/dev/null", url]);
    }
    let mut answers: Vec<String> = curl(&args).lines().map(str::to_owned).collect();
    answers.sort();
    answers.dedup();
    assert_eq!(
        answers,
        ["200 11".to_owned(), format!("200 {}", want.len())]
    );
}

#[test]
fn nothing_outside_the_root_and_no_dotfiles() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let addr = p.host_port(0);
    let long = format!("/{}", "a".repeat(5000));
    let cases: &[(&str, u16)] = &[
        ("/../../../../etc/passwd", 403),
        ("/sub/../../etc/passwd", 403),
        ("/%2e%2e/%2e%2e/etc/passwd", 403),
        ("/.%2e/etc/passwd", 403),
        ("/sub%2f..%2f..%2fetc%2fpasswd", 403),
        ("/sub%5c..%5c..%5cetc%5cpasswd", 403),
        ("/sub\\..\\hello.txt", 403),
        ("//etc/passwd", 404),
        ("/hello.txt%00.html", 400),
        ("/%zz", 400),
        (&long, 414),
        ("/outside-link.txt", 403),
        ("/outside-dir/secret.txt", 403),
        ("/outside-dir/", 403),
        ("/.env", 404),
        ("/%2eenv", 404),
        ("/hello.txt/", 404),
        ("/inside-link.txt", 200),
    ];
    let mut c = Client::connect(addr);
    for (path, want) in cases {
        let r = c.request("GET", path, &[]);
        assert_eq!(r.status, *want, "{path}: {}", r.text());
        assert!(!r.text().contains("outside the root"), "{path} leaked");
        assert!(!r.text().contains("SECRET"), "{path} leaked the dotfile");
        assert!(!r.text().contains("root:"), "{path} leaked /etc/passwd");
    }
    assert_eq!(
        c.request("GET", "/inside-link.txt", &[]).text(),
        "hello file\n"
    );
    // An index.html linked out of the root is passed over: a listing.
    std::fs::create_dir(root.0.join("escape-index")).unwrap();
    std::os::unix::fs::symlink(
        _outside.0.join("secret.txt"),
        root.0.join("escape-index/index.html"),
    )
    .unwrap();
    let r = c.request("GET", "/escape-index/", &[]);
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("outside the root"), "{}", r.text());
    assert!(r.text().contains("Index of /escape-index/"), "{}", r.text());

    // The trailing-slash redirect is never an open redirect.
    std::fs::create_dir(root.0.join("evil.example")).unwrap();
    let r = c.request("GET", "//evil.example", &[]);
    assert_eq!(r.status, 301);
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with('/') && !location.starts_with("//"),
        "{location}"
    );

    // --hidden serves and lists dotfiles (links that leave the root stay
    // refused).
    let p = serve_root(&root, &["--hidden"]);
    let mut c = Client::connect(p.host_port(0));
    assert_eq!(c.request("GET", "/.env", &[]).text(), "SECRET=1\n");
    assert!(c.request("GET", "/", &[]).text().contains(".env"));
    assert_eq!(c.request("GET", "/outside-link.txt", &[]).status, 403);
}

#[test]
fn a_thousand_connections_at_once() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let addr = p.host_port(0).to_owned();
    let mut clients: Vec<Client> = (0..1000).map(|_| Client::connect(&addr)).collect();
    for c in &mut clients {
        c.stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for c in &mut clients {
        let r = c.read_reply(false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello file\n"[..]));
    }
}

#[test]
fn ranges_and_preconditions() {
    let (root, _outside) = site();
    let p = serve_root(&root, &[]);
    let mut c = Client::connect(p.host_port(0));
    // "hello file\n" is 11 bytes.
    let r = c.request("GET", "/hello.txt", &["Range: bytes=0-4"]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"hello"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 0-4/11"));
    assert_eq!(r.header("content-length"), Some("5"));
    let r = c.request("GET", "/hello.txt", &["Range: bytes=-5"]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"file\n"[..]));
    let r = c.request("GET", "/hello.txt", &["Range: bytes=6-"]);
    assert_eq!(r.body, b"file\n");
    // Unsatisfiable: 416 with the length.
    let r = c.request("GET", "/hello.txt", &["Range: bytes=100-200"]);
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */11"))
    );
    // Malformed: ignored, the whole file (RFC 9110).
    for bad in ["bytes=abc", "bytes=5-1", "lines=1-2", "bytes=--5"] {
        let r = c.request("GET", "/hello.txt", &[&format!("Range: {bad}")]);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"hello file\n"[..]),
            "{bad}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
    }
    // Several ranges: multipart/byteranges, each part with its range.
    let r = c.request("GET", "/hello.txt", &["Range: bytes=0-1,6-7"]);
    assert_eq!(r.status, 206);
    let content_type = r.header("content-type").unwrap().to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let body = r.text();
    assert_eq!(
        body,
        format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/11\r\n\r\nhe\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 6-7/11\r\n\r\nfi\r\n\
             --{boundary}--\r\n"
        )
    );
    // If-Range: the range only for the current version.
    let etag = c
        .request("HEAD", "/hello.txt", &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let r = c.request(
        "GET",
        "/hello.txt",
        &["Range: bytes=0-0", &format!("If-Range: {etag}")],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &b"h"[..]));
    let r = c.request(
        "GET",
        "/hello.txt",
        &["Range: bytes=0-0", "If-Range: \"stale\""],
    );
    assert_eq!(r.status, 200);
    // If-Match and If-Unmodified-Since: 412 when they fail.
    let r = c.request("GET", "/hello.txt", &["If-Match: \"stale\""]);
    assert_eq!(r.status, 412);
    let r = c.request("GET", "/hello.txt", &[&format!("If-Match: {etag}")]);
    assert_eq!(r.status, 200);
    let r = c.request(
        "GET",
        "/hello.txt",
        &["If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"],
    );
    assert_eq!(r.status, 412);
    // A range in the middle of a large (streamed) file.
    let big = std::fs::read(root.0.join("big.bin")).unwrap();
    let r = c.request("GET", "/big.bin", &["Range: bytes=1000000-2999999"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &big[1_000_000..3_000_000]);
}

#[test]
fn every_request_gets_a_combined_access_log_line() {
    let dir = TempDir::new("http-log");
    let log = dir.0.join("stderr");
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "http", "-l", "127.0.0.1:0"]);
    let p = Proc::start_logged(&mut cmd, 1, &log);
    let mut c = Client::connect(p.host_port(0));
    c.request(
        "GET",
        "/?q=1",
        &["User-Agent: tester \"quoted\"", "Referer: http://r/"],
    );
    c.request("GET", "/missing", &[]);
    drop(p);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\" 200 ") || l.contains("\" 404 "))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("127.0.0.1 - - [")
            && lines[0].contains("] \"GET /?q=1 HTTP/1.1\" 200 ")
            && lines[0].ends_with(" \"http://r/\" \"tester \\x22quoted\\x22\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /missing HTTP/1.1\" 404 "),
        "{}",
        lines[1]
    );
}

#[test]
fn cache_control_cors_and_extra_headers() {
    let (root, _outside) = site();
    let p = serve_root(
        &root,
        &[
            "--cache-control",
            "max-age=60",
            "--cors",
            "--header",
            "X-Served-By: sockit",
            "--header",
            "X-Frame-Options: DENY",
        ],
    );
    let mut c = Client::connect(p.host_port(0));
    let r = c.request("GET", "/hello.txt", &[]);
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("x-served-by"), Some("sockit"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Every response gets the extra headers, even a 404.
    let r = c.request("GET", "/missing", &[]);
    assert_eq!((r.status, r.header("x-served-by")), (404, Some("sockit")));
    // A CORS preflight.
    let r = c.request(
        "OPTIONS",
        "/hello.txt",
        &[
            "Origin: http://a.example",
            "Access-Control-Request-Method: GET",
        ],
    );
    assert_eq!(r.status, 204);
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("GET")
    );

    for (args, want) in [
        (vec!["--header", "no colon here"], "no colon"),
        (vec!["--header", "Bad Name: x"], "not a valid header name"),
        (vec!["--cache-control", "a\u{1}b"], "--cache-control"),
    ] {
        let mut full = vec!["serve", "http", "-l", "127.0.0.1:0"];
        full.extend(args);
        let out = run_bounded(&full, LIMIT);
        assert!(out.failure(2).contains(want), "{}", out.stderr);
    }
    let out = run_bounded(&["serve", "echo", "-l", ":0", "--cors"], LIMIT);
    assert!(
        out.failure(2).contains("for the http service"),
        "{}",
        out.stderr
    );
}

#[test]
fn basic_auth_with_a_hash_from_hash_password() {
    let out = common::run_with_stdin(&["hash-password"], "open sesame\n", LIMIT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let hash = out.stdout.trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let spec = format!("alice:{hash}");
    let p = serve(&["http", "-l", "127.0.0.1:0", "--basic-auth", &spec], 1);
    let mut c = Client::connect(p.host_port(0));
    let r = c.request("GET", "/", &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    // base64("alice:open sesame") and base64("alice:wrong").
    let good = "Authorization: Basic YWxpY2U6b3BlbiBzZXNhbWU=";
    let bad = "Authorization: Basic YWxpY2U6d3Jvbmc=";
    assert_eq!(c.request("GET", "/", &[bad]).status, 401);
    assert_eq!(c.request("GET", "/", &[good]).status, 200);
    assert_eq!(c.request("GET", "/", &[good]).status, 200);

    for spec in [
        "alice",
        "alice:plaintext",
        "alice:$2y$12$tooshort",
        "alice:$6$rounds=5000$salt$notsupported",
    ] {
        let out = run_bounded(&["serve", "http", "-l", ":0", "--basic-auth", spec], LIMIT);
        assert!(out.failure(2).contains("--basic-auth"), "{}", out.stderr);
    }
    let out = common::run_with_stdin(&["hash-password"], "\n", LIMIT);
    assert!(out.failure(2).contains("empty"), "{}", out.stderr);
}

/// `body` decoded from `coding` by an independent decoder.
fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use tokio::io::AsyncReadExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut out = Vec::new();
        match coding {
            "br" => BrotliDecoder::new(body).read_to_end(&mut out).await,
            "zstd" => ZstdDecoder::new(body).read_to_end(&mut out).await,
            "gzip" => GzipDecoder::new(body).read_to_end(&mut out).await,
            other => panic!("unexpected coding {other}"),
        }
        .unwrap_or_else(|e| panic!("{coding} body does not decode: {e}"));
        out
    })
}

#[test]
fn compression_by_accept_encoding_with_a_tag_per_coding() {
    let root = TempDir::new("http-compress");
    let outside = TempDir::new("http-compress-out");
    let script: Vec<u8> = (0..2000)
        .flat_map(|i| format!("console.log({i});\n").into_bytes())
        .collect();
    std::fs::write(root.0.join("app.js"), &script).unwrap();
    std::fs::write(root.0.join("tiny.txt"), b"tiny\n").unwrap();
    std::fs::write(root.0.join("photo.png"), vec![7u8; 4096]).unwrap();
    let p = serve_root(&root, &[]);
    let mut c = Client::connect(p.host_port(0));

    // Each coding on its own, decoding to the file, with its own tag.
    let mut tags = Vec::new();
    for coding in ["br", "zstd", "gzip"] {
        let ae = format!("Accept-Encoding: {coding}");
        let r = c.request("GET", "/app.js", &[&ae]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(r.header("vary"), Some("accept-encoding"));
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert!(
            r.body.len() < script.len() / 4,
            "{coding}: {}",
            r.body.len()
        );
        assert_eq!(decode(coding, &r.body), script, "{coding}");
        let tag = r.header("etag").unwrap().to_owned();
        assert!(tag.ends_with(&format!("-{coding}\"")), "{tag}");
        // The tag names this representation: 304 for it, not for another.
        let inm = format!("If-None-Match: {tag}");
        assert_eq!(c.request("GET", "/app.js", &[&ae, &inm]).status, 304);
        let identity = c.request("GET", "/app.js", &[&inm]);
        assert_eq!((identity.status, identity.body.len()), (200, script.len()));
        // HEAD says the same as GET, without the body.
        let head = c.request("HEAD", "/app.js", &[&ae]);
        assert_eq!(head.header("content-encoding"), Some(coding));
        assert_eq!(head.header("etag"), Some(tag.as_str()));
        tags.push(tag);
    }
    // A browser's list: the preferred coding of those offered.
    let r = c.request(
        "GET",
        "/app.js",
        &["Accept-Encoding: gzip, deflate, br, zstd"],
    );
    assert_eq!(r.header("content-encoding"), Some("br"));
    let r = c.request("GET", "/app.js", &["Accept-Encoding: br;q=0.1, gzip;q=0.9"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = c.request(
        "GET",
        "/app.js",
        &["Accept-Encoding: br;q=0, gzip;q=nonsense"],
    );
    assert_eq!(r.header("content-encoding"), None);

    // Without Accept-Encoding: the file as it is, with its own tag.
    let plain = c.request("GET", "/app.js", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, script);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    tags.push(plain.header("etag").unwrap().to_owned());
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 4, "{tags:?}");

    // A range is of the file as it is, whatever the client accepts.
    let r = c.request(
        "GET",
        "/app.js",
        &["Accept-Encoding: br", "Range: bytes=0-11"],
    );
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
    assert_eq!(r.body, &script[..12]);

    // Not worth it: tiny files and images go as they are; images do not
    // vary at all.
    let r = c.request("GET", "/tiny.txt", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (r.header("content-encoding"), r.text().as_str()),
        (None, "tiny\n")
    );
    let r = c.request("GET", "/photo.png", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    assert_eq!(r.body.len(), 4096);

    // Listings compress too.
    let r = c.request("GET", "/", &["Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(
        String::from_utf8(decode("gzip", &r.body))
            .unwrap()
            .contains("app.js")
    );
    drop(outside);
}

#[test]
fn precompressed_siblings_are_served_when_present() {
    let root = TempDir::new("http-precompressed");
    let outside = TempDir::new("http-precompressed-out");
    let css = b"body { color: red; }\n".repeat(100);
    std::fs::write(root.0.join("site.css"), &css).unwrap();
    // The siblings' bytes are not the encoder's: serving them is visible.
    std::fs::write(root.0.join("site.css.br"), b"precompressed br").unwrap();
    std::fs::write(root.0.join("site.css.gz"), b"precompressed gz").unwrap();
    // A sibling that is a link out of the root is passed over.
    std::fs::write(root.0.join("leak.txt"), b"inside\n".repeat(100)).unwrap();
    std::fs::write(outside.0.join("secret.gz"), b"outside the root").unwrap();
    std::os::unix::fs::symlink(outside.0.join("secret.gz"), root.0.join("leak.txt.gz")).unwrap();
    let p = serve_root(&root, &["--no-compress"]);
    let mut c = Client::connect(p.host_port(0));

    let r = c.request("GET", "/site.css", &["Accept-Encoding: gzip, br"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"precompressed br");
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("16"));
    let br_tag = r.header("etag").unwrap().to_owned();
    assert!(br_tag.ends_with(".br\""), "{br_tag}");
    let inm = format!("If-None-Match: {br_tag}");
    assert_eq!(
        c.request("GET", "/site.css", &["Accept-Encoding: br", &inm])
            .status,
        304
    );

    // Whichever accepted coding has a sibling, before compressing.
    let r = c.request("GET", "/site.css", &["Accept-Encoding: zstd, gzip"]);
    assert_eq!(r.body, b"precompressed gz");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // --no-compress: without a sibling, as it is.
    let r = c.request("GET", "/site.css", &["Accept-Encoding: zstd"]);
    assert_eq!(
        (r.header("content-encoding"), r.body.len()),
        (None, css.len())
    );
    let r = c.request("GET", "/leak.txt", &["Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, b"inside\n".repeat(100));
}

#[test]
fn a_changed_file_is_never_served_from_the_cache() {
    let root = TempDir::new("http-cache");
    let outside = TempDir::new("http-cache-out");
    let file = root.0.join("note.txt");
    std::fs::write(&file, "version one\n").unwrap();
    std::fs::write(outside.0.join("secret.txt"), "outside!!!!\n").unwrap();
    let p = serve_root(&root, &[]);
    let mut c = Client::connect(p.host_port(0));
    for _ in 0..3 {
        assert_eq!(c.request("GET", "/note.txt", &[]).text(), "version one\n");
    }
    let first_tag = c
        .request("GET", "/note.txt", &[])
        .header("etag")
        .unwrap()
        .to_owned();

    // Rewritten in place, to the same length.
    std::fs::write(&file, "version two\n").unwrap();
    let r = c.request("GET", "/note.txt", &[]);
    assert_eq!(r.text(), "version two\n");
    assert_ne!(r.header("etag"), Some(first_tag.as_str()));
    assert_eq!(c.request("GET", "/note.txt", &[]).text(), "version two\n");

    // Swapped for a link out of the root: refused, not served from memory.
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(outside.0.join("secret.txt"), &file).unwrap();
    assert_eq!(c.request("GET", "/note.txt", &[]).status, 403);
    // Gone.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(c.request("GET", "/note.txt", &[]).status, 404);
    // Its directory swapped for a link out: refused.
    std::fs::create_dir(root.0.join("d")).unwrap();
    std::fs::write(root.0.join("d/secret.txt"), "inside one\n").unwrap();
    assert_eq!(
        c.request("GET", "/d/secret.txt", &[]).text(),
        "inside one\n"
    );
    std::fs::remove_dir_all(root.0.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside.0, root.0.join("d")).unwrap();
    assert_eq!(c.request("GET", "/d/secret.txt", &[]).status, 403);
}

#[test]
fn symlink_policies_inside_any_and_none() {
    let (root, _outside) = site();
    let p = serve_root(&root, &["--symlinks", "any"]);
    let mut c = Client::connect(p.host_port(0));
    assert_eq!(
        c.request("GET", "/outside-link.txt", &[]).text(),
        "outside the root"
    );
    assert_eq!(c.request("GET", "/inside-link.txt", &[]).status, 200);
    // Dotfiles stay hidden whatever the links.
    assert_eq!(c.request("GET", "/.env", &[]).status, 404);

    let p = serve_root(&root, &["--symlinks", "none"]);
    let mut c = Client::connect(p.host_port(0));
    assert_eq!(c.request("GET", "/inside-link.txt", &[]).status, 403);
    assert_eq!(c.request("GET", "/outside-link.txt", &[]).status, 403);
    assert_eq!(c.request("GET", "/hello.txt", &[]).text(), "hello file\n");

    let dir = root.0.to_str().unwrap();
    let out = run_bounded(
        &["serve", "http", "--root", dir, "--symlinks", "sometimes"],
        LIMIT,
    );
    assert!(
        out.failure(2).contains("inside, any or none"),
        "{}",
        out.failure(2)
    );
    let out = run_bounded(&["serve", "echo", "--symlinks", "none"], LIMIT);
    assert!(out.failure(2).contains("--symlinks"), "{}", out.failure(2));
}
