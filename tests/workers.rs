//! `serve --workers N` (SPEC 8): worker processes share every listener;
//! the parent announces once, restarts a worker that dies, drains every
//! worker at SIGTERM, shares the TLS ticket keys, and serves the merged
//! metrics.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Proc, TempDir, bin, children, connect, roundtrip, run_bounded, signal, wait_for_children,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The server started with `args` and its stderr collected on a thread.
struct Logged {
    proc: Proc,
    stderr: Arc<Mutex<String>>,
}

impl Logged {
    fn start(args: &[&str], listeners: usize) -> Logged {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut proc = Proc::start_own_stdio(&mut cmd, listeners);
        let pipe = proc.child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Logged { proc, stderr }
    }

    /// Waits until the log holds `count` lines containing every one of
    /// `words`, and returns them.
    fn wait_for_lines(&self, words: &[&str], count: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines: Vec<String> = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .filter(|l| words.iter().all(|w| l.contains(w)))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                start.elapsed() < LIMIT,
                "no {count} log lines with {words:?} in:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// One `ping N` / `pong N` on a new connection to `addr`.
fn ping_once(addr: &str, seq: usize) {
    let mut s = connect(addr);
    roundtrip(
        &mut *s,
        format!("ping {seq}\n").as_bytes(),
        format!("pong {seq}\n").as_bytes(),
    );
}

fn udp_ping(addr: &str, seq: usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(format!("ping {seq}").as_bytes(), addr).unwrap();
    let mut buf = [0u8; 100];
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], format!("pong {seq}").as_bytes());
}

/// The `accepted=N` figure of a SIGUSR1 metrics line.
fn accepted(line: &str) -> u64 {
    let at = line.find("accepted=").unwrap() + "accepted=".len();
    line[at..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn two_workers_share_tcp_udp_and_unix_and_announce_once() {
    let dir = TempDir::new("workers");
    let unix = format!("unix://{}", dir.path("s.sock"));
    let server = Logged::start(
        &[
            "ping",
            "--workers",
            "2",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://127.0.0.1:0",
            "-l",
            &unix,
            "--metrics",
            "127.0.0.1:0",
        ],
        4,
    );
    let addrs = server.proc.addrs.clone();
    assert!(addrs[0].starts_with("tcp://127.0.0.1:"), "{addrs:?}");
    assert!(addrs[1].starts_with("udp://127.0.0.1:"), "{addrs:?}");
    assert_eq!(addrs[2], unix);
    assert!(addrs[3].starts_with("http://127.0.0.1:"), "{addrs:?}");
    let workers = wait_for_children(server.pid(), 2, LIMIT);

    const CONNS: usize = 40;
    for seq in 0..CONNS {
        ping_once(&addrs[0], seq);
        ping_once(&addrs[2], seq);
        udp_ping(addrs[1].strip_prefix("udp://").unwrap(), seq);
    }

    // The merged counters count every connection, whichever worker took it.
    let start = Instant::now();
    let tcp_key = format!(
        "sockit_connections_accepted_total{{service=\"ping\",listener=\"{}\"}}",
        addrs[0]
    );
    let unix_key =
        format!("sockit_connections_accepted_total{{service=\"ping\",listener=\"{unix}\"}}");
    let udp_key = format!(
        "sockit_datagrams_sent_total{{service=\"ping\",listener=\"{}\"}}",
        addrs[1]
    );
    loop {
        let s = common::scrape_metrics(&addrs[3]);
        if s[&tcp_key] == CONNS as f64
            && s[&unix_key] == CONNS as f64
            && s[&udp_key] == CONNS as f64
        {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "merged metrics never counted everything: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // And both workers served TCP: each logs its own figures at SIGUSR1.
    server.proc.signal("USR1");
    let tcp_lines =
        server.wait_for_lines(&["metrics (SIGUSR1)", &format!("listener={}", addrs[0])], 2);
    assert_eq!(tcp_lines.len(), 2, "{tcp_lines:?}");
    let shares: Vec<u64> = tcp_lines.iter().map(|l| accepted(l)).collect();
    assert!(
        shares.iter().all(|&n| n > 0),
        "one worker took every connection: {shares:?}"
    );
    assert_eq!(shares.iter().sum::<u64>(), CONNS as u64);
    assert_eq!(children(server.pid()), workers, "no worker was restarted");

    // The listening lines came once: nothing more on stdout.
    let mut server = server;
    server.proc.signal("TERM");
    assert_eq!(server.proc.wait_exit(LIMIT), Some(0));
    assert_eq!(server.proc.rest_of_stdout(), "");
    assert!(
        !std::path::Path::new(&dir.path("s.sock")).exists(),
        "socket file removed"
    );
}

#[test]
fn a_killed_worker_is_restarted_and_the_service_goes_on() {
    let mut server = Logged::start(&["ping", "--workers", "2", "-l", "tcp://127.0.0.1:0"], 1);
    let addr = server.proc.addrs[0].clone();
    let workers = wait_for_children(server.pid(), 2, LIMIT);
    signal(workers[0], "KILL");
    let lines = server.wait_for_lines(
        &["worker", &format!("(pid {})", workers[0]), "restarting"],
        1,
    );
    assert!(lines[0].contains("killed by signal 9"), "{lines:?}");
    let now = wait_for_children(server.pid(), 2, LIMIT);
    assert!(
        !now.contains(&workers[0]) && now.contains(&workers[1]),
        "{now:?}"
    );
    // Every connection is answered, on both sockets of the port.
    let start = Instant::now();
    for seq in 0..40 {
        ping_once(&addr, seq);
    }
    assert!(start.elapsed() < LIMIT);
    server.proc.signal("TERM");
    assert_eq!(server.proc.wait_exit(LIMIT), Some(0));
}

#[test]
fn sigterm_drains_every_worker_then_all_exit_zero() {
    let mut server = Logged::start(
        &[
            "ping",
            "--workers",
            "2",
            "--grace",
            "5s",
            "-l",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let addr = server.proc.addrs[0].clone();
    let workers = wait_for_children(server.pid(), 2, LIMIT);
    let mut open = connect(&addr);
    roundtrip(&mut *open, b"ping 1\n", b"pong 1\n");
    let signalled = Instant::now();
    server.proc.signal("TERM");
    // Each worker says so, and says which it is.
    let mut said: Vec<String> = server
        .wait_for_lines(&["SIGTERM: shutting down"], 2)
        .iter()
        .filter_map(|line| {
            line.split_once("worker{n=")
                .map(|(_, rest)| rest[..1].to_owned())
        })
        .collect();
    said.sort();
    assert_eq!(said, ["0", "1"], "{}", server.stderr.lock().unwrap());
    // The open connection is still served during the grace period...
    roundtrip(&mut *open, b"ping 2\n", b"pong 2\n");
    assert!(common::wait_for_exit(&mut server.proc.child, Duration::from_millis(300)).is_none());
    // ...and once it closes, everything exits at once, with status 0.
    drop(open);
    assert_eq!(server.proc.wait_exit(LIMIT), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived the parent");
    }
    // Nothing was forced closed.
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("closing the connections still open"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn tls_sessions_resume_on_whichever_worker_a_client_lands() {
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};
    let server = Logged::start(&["ping", "--workers", "2", "-l", "tls://127.0.0.1:0"], 1);
    let addr = server.proc.host_port(0).to_owned();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(common::AnyCert(provider)))
            .with_no_client_auth(),
    );
    const CONNS: usize = 30;
    let mut kinds = Vec::new();
    for seq in 0..CONNS {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config.clone(), name).unwrap();
        let tcp = TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        // The reply comes after the tickets: the next connection has one.
        tls.write_all(format!("ping {seq}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line).unwrap();
        assert_eq!(line, format!("pong {seq}\n"));
        kinds.push(tls.conn.handshake_kind().unwrap());
    }
    assert_eq!(kinds[0], HandshakeKind::Full);
    let resumed = kinds
        .iter()
        .filter(|&&k| k == HandshakeKind::Resumed)
        .count();
    assert_eq!(resumed, CONNS - 1, "{kinds:?}");

    // Both workers made handshakes, so tickets crossed between them.
    server.proc.signal("USR1");
    let lines = server.wait_for_lines(&["metrics (SIGUSR1)", "tls_ok="], 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // A single development certificate, announced once, by the parent.
    let log = server.stderr.lock().unwrap().clone();
    assert_eq!(log.matches("development certificate").count(), 1, "{log}");
}

#[test]
fn chat_across_workers_needs_redis() {
    let out = run_bounded(
        &["serve", "chat", "--workers", "2", "-l", "127.0.0.1:0"],
        LIMIT,
    );
    let line = out.failure(2);
    assert!(
        line.contains("--workers 2 needs --redis for chat"),
        "{line}"
    );
    // One worker is one room: fine without Redis.
    let mut one = common::serve(&["chat", "--workers", "1", "-l", "127.0.0.1:0"], 1);
    assert!(
        children(one.child.id()).is_empty(),
        "no worker process for --workers 1"
    );
    one.signal("TERM");
    assert_eq!(one.wait_exit(LIMIT), Some(0));
}

#[test]
fn bad_worker_counts_are_usage_errors() {
    for bad in ["0", "-1", "257", "many"] {
        let out = run_bounded(&["serve", "ping", "--workers", bad], LIMIT);
        assert_eq!(out.code, Some(2), "--workers {bad}: {}", out.stderr);
        assert!(out.stderr.contains("--workers"), "{}", out.stderr);
    }
    let dir = TempDir::new("workers-config");
    let file = dir.path("s.toml");
    std::fs::write(&file, "workers = 0\n[[service]]\nname = \"ping\"\n").unwrap();
    let out = run_bounded(&["serve", "--config", &file], LIMIT);
    let line = out.failure(2);
    assert!(
        line.contains("workers 0: must be between 1 and 256"),
        "{line}"
    );
}

#[test]
fn the_config_file_asks_for_workers_and_the_flag_wins() {
    let dir = TempDir::new("workers-config");
    let file = dir.path("s.toml");
    std::fs::write(
        &file,
        "workers = 3\n[[service]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\"]\n",
    )
    .unwrap();
    let mut three = common::serve(&["--config", &file], 1);
    wait_for_children(three.child.id(), 3, LIMIT);
    ping_echo(&three.addrs[0]);
    three.signal("TERM");
    assert_eq!(three.wait_exit(LIMIT), Some(0));
    let mut two = common::serve(&["--config", &file, "--workers", "2"], 1);
    wait_for_children(two.child.id(), 2, LIMIT);
    two.signal("TERM");
    assert_eq!(two.wait_exit(LIMIT), Some(0));
}

fn ping_echo(addr: &str) {
    let mut s = connect(addr);
    roundtrip(&mut *s, b"hello\n", b"hello\n");
}

#[test]
fn a_worker_that_keeps_dying_at_start_ends_the_server() {
    let dir = TempDir::new("workers-config");
    let file = dir.path("s.toml");
    let echo = "[[service]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\"]\n";
    std::fs::write(&file, echo).unwrap();
    let mut server = Logged::start(&["--workers", "2", "--config", &file], 1);
    let workers = wait_for_children(server.pid(), 2, LIMIT);
    // A worker started again reads the file again: it sees another
    // configuration, refuses to serve on the parent's sockets, and so
    // does every retry.
    std::fs::write(&file, format!("{echo}[[service]]\nname = \"ping\"\n")).unwrap();
    signal(workers[0], "KILL");
    server.wait_for_lines(&["the configuration changed since the server started"], 1);
    assert_eq!(server.proc.wait_exit(LIMIT), Some(1));
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("5 times in a row; giving up"), "{log}");
    assert_eq!(
        log.matches("before it served; restarting").count(),
        4,
        "{log}"
    );
    assert!(!alive(workers[1]), "the other worker is stopped too");
}
