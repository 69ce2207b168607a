//! `--metrics ADDR` (SPEC 8): the Prometheus endpoint's counters match
//! the load that was sent (connections, refusals, bytes, messages,
//! datagrams, TLS handshakes, HTTP statuses, chat members and rooms),
//! scrapes while load runs see counters only grow, and SIGUSR1 and the
//! shutdown log the same figures.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, TempDir, bin, run_bounded, serve};

const LIMIT: Duration = Duration::from_secs(20);

/// One scrape, parsed: `name{labels}` as printed → value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The value of `name` with exactly `labels` (in the order printed).
    fn get(&self, name: &str, labels: &str) -> f64 {
        let key = format!("{name}{{{labels}}}");
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no series {key} in {:?}", self.0.keys()))
    }
}

/// GETs `path` from `addr` over plain HTTP/1.1; the status and body.
fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// Scrapes `http://ADDR/metrics` and parses the exposition.
fn scrape(metrics_url: &str) -> Scrape {
    let addr = metrics_url.strip_prefix("http://").unwrap();
    let (status, head, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let mut series = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ').unwrap();
        series.insert(key.to_owned(), value.parse().unwrap());
    }
    Scrape(series)
}

/// `service="S",listener="L"` and an optional extra label.
fn labels(service: &str, listener: &str, extra: &str) -> String {
    let mut l = format!("service=\"{service}\",listener=\"{listener}\"");
    if !extra.is_empty() {
        l.push(',');
        l.push_str(extra);
    }
    l
}

fn tcp(addr: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    BufReader::new(s)
}

/// Sends `ping SEQ` on `s` and reads `pong SEQ`.
fn ping(s: &mut BufReader<TcpStream>, seq: usize) {
    // One write: `write!` would send the pieces apart, and a fragment
    // left waiting past the flush delay is answered on its own.
    s.get_mut()
        .write_all(format!("ping {seq}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    assert_eq!(line, format!("pong {seq}\n"));
}

/// Scrapes until `done` holds (counters settle a moment after the
/// client side is done: a close is seen by the server later).
fn scrape_until(url: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(url);
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < LIMIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_match_the_load_that_was_sent() {
    let p = serve(
        &[
            "ping",
            "-q",
            "--max-conns",
            "3",
            "--deny",
            "127.0.0.2/32",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://127.0.0.1:0",
            "-l",
            "tls://127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        4,
    );
    let (tcp_l, udp_l, tls_l, url) = (&p.addrs[0], &p.addrs[1], &p.addrs[2], &p.addrs[3]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let tcp_addr = p.host_port(0).to_owned();

    // Before any load every series is there, at zero.
    let before = scrape(url);
    assert_eq!(
        before.get(
            "sockit_connections_accepted_total",
            &labels("ping", tcp_l, "")
        ),
        0.0
    );

    // N = 3 × 10 pings over M = 3 connections, held open.
    let (conns, per_conn) = (3, 10);
    let mut open: Vec<_> = (0..conns).map(|_| tcp(&tcp_addr)).collect();
    let (mut sent, mut got) = (0, 0);
    for (c, s) in open.iter_mut().enumerate() {
        for i in 0..per_conn {
            let seq = c * 100 + i;
            ping(s, seq);
            sent += format!("ping {seq}\n").len();
            got += format!("pong {seq}\n").len();
        }
    }
    let during = scrape(url);
    assert_eq!(
        during.get("sockit_connections_active", &labels("ping", tcp_l, "")),
        3.0
    );

    // A fourth is over --max-conns; a peer from 127.0.0.2 is denied.
    let mut refused = tcp(&tcp_addr);
    let mut line = String::new();
    refused.read_line(&mut line).unwrap();
    assert_eq!(line, "error: too many connections\n");
    let mut denied = common::tcp_from("127.0.0.2", &tcp_addr);
    assert_eq!(denied.read(&mut [0u8; 16]).unwrap_or(0), 0);
    drop(open);

    // K = 5 datagrams.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(LIMIT)).unwrap();
    let (mut udp_in, mut udp_out) = (0, 0);
    for i in 0..5 {
        let msg = format!("ping {i}");
        udp.send_to(msg.as_bytes(), p.host_port(1)).unwrap();
        let mut buf = [0u8; 64];
        let n = udp.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("pong {i}").as_bytes());
        udp_in += msg.len();
        udp_out += n;
    }

    // One TLS handshake that works, one that does not.
    let out = run_bounded(&["send", "--insecure", tls_l, "ping 7"], LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("pong 7"), "{}", out.stdout);
    let mut not_tls = TcpStream::connect(p.host_port(2)).unwrap();
    not_tls.set_read_timeout(Some(LIMIT)).unwrap();
    not_tls.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _ = not_tls.read(&mut [0u8; 64]);

    let tcp_labels = labels("ping", tcp_l, "");
    let s = scrape_until(url, "every connection closed", |s| {
        s.get("sockit_connections_active", &tcp_labels) == 0.0
            && s.get("sockit_connections_active", &labels("ping", tls_l, "")) == 0.0
            && s.get(
                "sockit_tls_handshakes_total",
                &labels("ping", tls_l, "result=\"failed\""),
            ) == 1.0
    });
    let want = [
        (
            "sockit_connections_accepted_total",
            labels("ping", tcp_l, ""),
            5,
        ),
        (
            "sockit_connections_refused_total",
            labels("ping", tcp_l, "reason=\"limit\""),
            1,
        ),
        (
            "sockit_connections_refused_total",
            labels("ping", tcp_l, "reason=\"access\""),
            1,
        ),
        (
            "sockit_connections_refused_total",
            labels("ping", tcp_l, "reason=\"per_ip\""),
            0,
        ),
        ("sockit_messages_total", labels("ping", tcp_l, ""), 30),
        (
            "sockit_bytes_received_total",
            labels("ping", tcp_l, ""),
            sent,
        ),
        ("sockit_bytes_sent_total", labels("ping", tcp_l, ""), got),
        (
            "sockit_datagrams_received_total",
            labels("ping", udp_l, ""),
            5,
        ),
        ("sockit_datagrams_sent_total", labels("ping", udp_l, ""), 5),
        ("sockit_messages_total", labels("ping", udp_l, ""), 5),
        (
            "sockit_bytes_received_total",
            labels("ping", udp_l, ""),
            udp_in,
        ),
        (
            "sockit_bytes_sent_total",
            labels("ping", udp_l, ""),
            udp_out,
        ),
        (
            "sockit_datagrams_dropped_total",
            labels("ping", udp_l, "reason=\"access\""),
            0,
        ),
        (
            "sockit_connections_accepted_total",
            labels("ping", tls_l, ""),
            2,
        ),
        (
            "sockit_tls_handshakes_total",
            labels("ping", tls_l, "result=\"ok\""),
            1,
        ),
        ("sockit_messages_total", labels("ping", tls_l, ""), 1),
        (
            "sockit_errors_total",
            labels("ping", tcp_l, "kind=\"io\""),
            0,
        ),
    ];
    for (name, labels, value) in want {
        assert_eq!(s.get(name, &labels), value as f64, "{name}{{{labels}}}");
    }
}

#[test]
fn http_requests_are_counted_by_status_and_other_paths_get_404() {
    let p = serve(
        &[
            "http",
            "-q",
            "-l",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    for _ in 0..2 {
        assert_eq!(http_get(p.host_port(0), "/").0, 200);
    }
    assert_eq!(http_get(p.host_port(0), "/no-such-file").0, 404);
    let metrics_addr = p.host_port(1);
    assert_eq!(http_get(metrics_addr, "/").0, 404);
    assert_eq!(http_get(metrics_addr, "/metrics/x").0, 404);
    let l = &p.addrs[0];
    let s = scrape_until(&p.addrs[1], "three requests", |s| {
        s.0.get(&format!(
            "sockit_http_requests_total{{{}}}",
            labels("http", l, "status=\"404\"")
        )) == Some(&1.0)
    });
    assert_eq!(
        s.get(
            "sockit_http_requests_total",
            &labels("http", l, "status=\"200\"")
        ),
        2.0
    );
    // The common codes are there before their first response.
    assert_eq!(
        s.get(
            "sockit_http_requests_total",
            &labels("http", l, "status=\"304\"")
        ),
        0.0
    );
    assert_eq!(
        s.get("sockit_connections_accepted_total", &labels("http", l, "")),
        3.0
    );
}

#[test]
fn scrapes_while_load_runs_only_ever_grow() {
    let p = serve(
        &[
            "ping",
            "-q",
            "-l",
            "tcp://127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    let (addr, url, l) = (p.host_port(0).to_owned(), p.addrs[1].clone(), &p.addrs[0]);
    let (conns, per_conn) = (4, 300);
    let load: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = tcp(&addr);
                for i in 0..per_conn {
                    ping(&mut s, c * 1000 + i);
                }
            })
        })
        .collect();
    let key = labels("ping", l, "");
    let (mut last_messages, mut last_bytes, mut scrapes) = (0.0, 0.0, 0);
    while !load.iter().all(|t| t.is_finished()) {
        let s = scrape(&url);
        let (messages, bytes) = (
            s.get("sockit_messages_total", &key),
            s.get("sockit_bytes_received_total", &key),
        );
        assert!(messages >= last_messages, "{messages} < {last_messages}");
        assert!(bytes >= last_bytes, "{bytes} < {last_bytes}");
        (last_messages, last_bytes) = (messages, bytes);
        scrapes += 1;
    }
    for t in load {
        t.join().unwrap();
    }
    assert!(scrapes > 0);
    let s = scrape_until(&url, "all closed", |s| {
        s.get("sockit_connections_active", &key) == 0.0
    });
    assert_eq!(
        s.get("sockit_messages_total", &key),
        (conns * per_conn) as f64
    );
    assert_eq!(
        s.get("sockit_connections_accepted_total", &key),
        conns as f64
    );
}

#[test]
fn chat_members_and_rooms_are_reported() {
    let p = serve(
        &[
            "chat",
            "-q",
            "-l",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    let l = &p.addrs[0];
    let key = labels("chat", l, "");
    let mut alice = tcp(p.host_port(0));
    let _bob = tcp(p.host_port(0));
    scrape_until(&p.addrs[1], "two members", |s| {
        s.get("sockit_chat_members", &key) == 2.0 && s.get("sockit_chat_rooms", &key) == 1.0
    });
    alice.get_mut().write_all(b"/join kitchen\n").unwrap();
    let s = scrape_until(&p.addrs[1], "a second room", |s| {
        s.get("sockit_chat_rooms", &key) == 2.0
    });
    assert_eq!(s.get("sockit_messages_total", &key), 1.0);
    assert_eq!(s.get("sockit_chat_dropped_total", &key), 0.0);
    // Without --redis there are no Redis series.
    assert!(!s.0.keys().any(|k| k.contains("redis")), "{:?}", s.0.keys());
    drop(alice);
    scrape_until(&p.addrs[1], "one member left", |s| {
        s.get("sockit_chat_members", &key) == 1.0 && s.get("sockit_chat_rooms", &key) == 1.0
    });
}

/// `sockit_chat_redis_up` and `sockit_chat_remote_members`: 0 while the
/// chat's Redis is not there; with a real redis-server and a second
/// server, 1 and the other server's member.
fn redis_series(redis_port: u16, other: Option<&str>) {
    let url = format!("redis://127.0.0.1:{redis_port}");
    let p = serve(
        &[
            "chat",
            "-q",
            "-l",
            "127.0.0.1:0",
            "--redis",
            &url,
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    let key = labels("chat", &p.addrs[0], "");
    match other {
        None => {
            let s = scrape(&p.addrs[1]);
            assert_eq!(s.get("sockit_chat_redis_up", &key), 0.0);
            assert_eq!(s.get("sockit_chat_remote_members", &key), 0.0);
        }
        Some(other_addr) => {
            let _member = tcp(other_addr);
            scrape_until(&p.addrs[1], "the other server's member", |s| {
                s.get("sockit_chat_redis_up", &key) == 1.0
                    && s.get("sockit_chat_remote_members", &key) == 1.0
            });
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn chat_redis_series_say_when_redis_is_out_of_reach() {
    redis_series(free_port(), None);
}

#[test]
#[ignore = "needs redis-server"]
fn chat_redis_series_count_the_other_servers_members() {
    let port = free_port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < LIMIT, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis://127.0.0.1:{port}");
    let other = serve(&["chat", "-q", "-l", "127.0.0.1:0", "--redis", &url], 1);
    redis_series(port, Some(other.host_port(0)));
    let _ = redis.kill();
    let _ = redis.wait();
}

#[test]
fn sigusr1_and_shutdown_log_the_figures() {
    let dir = TempDir::new("metrics-log");
    let log = common::temp_path(&dir, "stderr.log");
    let mut p = Proc::start_logged(
        Command::new(bin()).args([
            "serve",
            "ping",
            "-l",
            "tcp://127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ]),
        2,
        &log,
    );
    let mut s = tcp(p.host_port(0));
    for i in 0..3 {
        ping(&mut s, i);
    }
    p.signal("USR1");
    let start = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains("metrics (SIGUSR1)")) {
            break line.to_owned();
        }
        assert!(start.elapsed() < LIMIT, "no SIGUSR1 line in {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for want in ["accepted=1", "active=1", "messages=3", "bytes_received=21"] {
        assert!(line.contains(want), "{want} in {line}");
    }
    drop(s);
    p.signal("TERM");
    p.assert_exits_0(LIMIT);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("metrics (shutdown)"))
        .unwrap_or_else(|| panic!("no shutdown figures in {text}"));
    assert!(line.contains("messages=3"), "{line}");
}

#[test]
fn a_config_file_names_the_endpoint_and_bad_addresses_are_refused() {
    let dir = TempDir::new("metrics-config");
    let path = common::temp_path(&dir, "sockit.toml");
    std::fs::write(
        &path,
        "metrics = \"tcp://127.0.0.1:0\"\n[[service]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\"]\n",
    )
    .unwrap();
    let p = serve(&["-q", "--config", path.to_str().unwrap()], 2);
    let s = scrape(&p.addrs[1]);
    assert_eq!(
        s.get(
            "sockit_connections_accepted_total",
            &labels("echo", &p.addrs[0], "")
        ),
        0.0
    );
    let out = run_bounded(&["serve", "echo", "--metrics", "udp://127.0.0.1:0"], LIMIT);
    assert!(
        out.failure(2).contains("tcp:// or unix://"),
        "{}",
        out.stderr
    );
}
