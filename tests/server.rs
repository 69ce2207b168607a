//! The server around the services (SPEC 1, 2 and 7): connection limits,
//! access rules, line limits, idle timeouts, graceful shutdown on signals,
//! Unix socket files, address and config errors, the super-server config
//! file, and what goes to stdout and stderr. Every test runs the real
//! binary on port 0 and talks to it over plain std sockets.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Dgram, Duplex, Proc, QUIET, TempDir, connect, expect, read_to_eof, roundtrip, run_bounded,
    serve, show, try_connect,
};

/// How long a process may take to exit once it should.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

/// The socket address part of a `udp://...` or `tcp://...` line.
fn sockaddr(addr: &str) -> SocketAddr {
    addr.split_once("://").unwrap().1.parse().unwrap()
}

/// Asserts a stream connection to `addr` is accepted by the kernel and
/// then closed by the server without a byte.
fn assert_closed_at_accept(addr: &str) {
    let mut s = connect(addr);
    s.read_timeout(Duration::from_secs(2));
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{addr}: denied peer got {}", show(&buf[..n])),
        Err(e) => panic!("{addr}: not closed at accept: {e}"),
    }
}

// --- load and limits --------------------------------------------------------

#[test]
fn a_thousand_concurrent_clients_are_all_served() {
    let p = serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let mut conns: Vec<Box<dyn Duplex>> = (0..1000).map(|_| connect(&p.addrs[0])).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("ping {i}\n").as_bytes()).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        expect(&mut **s, format!("pong {i}\n").as_bytes());
    }
}

#[test]
fn max_conns_refuses_with_a_message_and_recovers() {
    let p = serve(
        &["ping", "-q", "--max-conns", "10", "-l", "tcp://127.0.0.1:0"],
        1,
    );
    let addr = &p.addrs[0];
    let mut conns: Vec<Box<dyn Duplex>> = Vec::new();
    for i in 0..10 {
        let mut s = connect(addr);
        roundtrip(
            &mut *s,
            format!("ping {i}\n").as_bytes(),
            format!("pong {i}\n").as_bytes(),
        );
        conns.push(s);
    }
    let mut eleventh = connect(addr);
    assert_eq!(
        read_to_eof(&mut *eleventh),
        b"error: too many connections\n",
        "the 11th connection"
    );
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(
            &mut **s,
            format!("ping {i}\n").as_bytes(),
            format!("pong {i}\n").as_bytes(),
        );
    }
    // Once one closes, there is room again.
    drop(conns.remove(0));
    let (mut s, _) = connect_when_served(addr);
    roundtrip(&mut *s, b"ping new\n", b"pong new\n");
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(
            &mut **s,
            format!("ping {i}\n").as_bytes(),
            format!("pong {i}\n").as_bytes(),
        );
    }
}

#[test]
fn max_conns_counts_every_listener_of_the_service() {
    let dir = TempDir::new("maxconns");
    let unix = format!("unix://{}", dir.path("s.sock"));
    let p = serve(
        &[
            "hello",
            "-q",
            "--max-conns",
            "2",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            &unix,
        ],
        2,
    );
    let mut a = connect(&p.addrs[0]);
    roundtrip(&mut *a, b"a\n", b"Hello, a\n");
    let mut b = connect(&p.addrs[1]);
    roundtrip(&mut *b, b"b\n", b"Hello, b\n");
    for addr in &p.addrs {
        let mut s = connect(addr);
        assert_eq!(
            read_to_eof(&mut *s),
            b"error: too many connections\n",
            "{addr}"
        );
    }
    roundtrip(&mut *a, b"a\n", b"Hello, a\n");
    roundtrip(&mut *b, b"b\n", b"Hello, b\n");
}

/// Connects to `addr` until a connection is served rather than told
/// `error: too many connections` (a freed slot is noticed asynchronously);
/// a served connection says nothing until spoken to, except chargen, whose
/// first bytes are returned.
fn connect_when_served(addr: &str) -> (Box<dyn Duplex>, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect(addr);
        s.read_timeout(Duration::from_millis(200));
        let mut buf = [0u8; 28];
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                s.read_timeout(common::IO_TIMEOUT);
                return (s, Vec::new());
            }
            Ok(n) if !b"error: too many connections\n".starts_with(&buf[..n]) => {
                s.read_timeout(common::IO_TIMEOUT);
                return (s, buf[..n].to_vec());
            }
            Ok(_) => {}
            Err(e) => panic!("{addr}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: a freed slot was never reused"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_refused_client_that_spoke_first_still_reads_why() {
    let p = serve(
        &["ping", "-q", "--max-conns", "1", "-l", "tcp://127.0.0.1:0"],
        1,
    );
    let mut first = connect(&p.addrs[0]);
    roundtrip(&mut *first, b"ping 1\n", b"pong 1\n");
    let mut eager = connect(&p.addrs[0]);
    eager.write_all(b"ping 2\n").unwrap();
    thread::sleep(Duration::from_millis(50));
    assert_eq!(read_to_eof(&mut *eager), b"error: too many connections\n");
    roundtrip(&mut *first, b"ping 3\n", b"pong 3\n");
}

#[test]
fn chargen_stops_when_the_client_leaves() {
    let p = serve(
        &[
            "chargen",
            "-q",
            "--max-conns",
            "1",
            "-l",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let mut s = connect(&p.addrs[0]);
    let mut lines = vec![0u8; 74 * 100];
    s.read_exact(&mut lines).unwrap();
    drop(s);
    // The slot comes back: the server noticed the client left.
    let (mut again, first) = connect_when_served(&p.addrs[0]);
    assert!(!first.is_empty(), "chargen sends at once");
    let mut more = vec![0u8; 74];
    again.read_exact(&mut more).unwrap();
}

#[test]
fn idle_timeout_also_ends_a_client_that_stops_reading() {
    let p = serve(
        &[
            "echo",
            "-q",
            "--idle-timeout",
            "300ms",
            "--max-conns",
            "1",
            "-l",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let mut stuck = connect(&p.addrs[0]);
    // Writes until the buffers fill (nothing is read back), then fails
    // once the server gives up on the connection.
    let start = Instant::now();
    let chunk = vec![b'z'; 1 << 20];
    let mut failed = false;
    for _ in 0..64 {
        if stuck.write_all(&chunk).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "64 MiB written to a client that reads nothing");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // Its slot is free again.
    let (mut next, _) = connect_when_served(&p.addrs[0]);
    roundtrip(&mut *next, b"hi", b"hi");
}

// --- access rules -----------------------------------------------------------

/// tcp v4, udp v4, tcp v6, udp v6, with the given rules.
fn serve_dual_stack(rules: &[&str]) -> Proc {
    let mut args = vec!["ping", "-q"];
    args.extend_from_slice(rules);
    args.extend_from_slice(&[
        "-l",
        "tcp://127.0.0.1:0",
        "-l",
        "udp://127.0.0.1:0",
        "-l",
        "tcp://[::1]:0",
        "-l",
        "udp://[::1]:0",
    ]);
    serve(&args, 4)
}

fn assert_served(p: &Proc, tcp: usize, udp: usize, dir: &TempDir) {
    let mut s = connect(&p.addrs[tcp]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    Dgram::new(&p.addrs[udp], dir).expect_reply(b"ping 2", b"pong 2");
}

fn assert_denied(p: &Proc, tcp: usize, udp: usize, dir: &TempDir) {
    assert_closed_at_accept(&p.addrs[tcp]);
    Dgram::new(&p.addrs[udp], dir).expect_silence(b"ping 3");
}

#[test]
fn deny_closes_at_accept_and_drops_datagrams() {
    let dir = TempDir::new("deny");
    let p = serve_dual_stack(&["--deny", "127.0.0.1/32"]);
    assert_denied(&p, 0, 1, &dir);
    // Other peers are still served: IPv6 loopback, and 127.0.0.2.
    assert_served(&p, 2, 3, &dir);
    Dgram::udp_from("127.0.0.2:0", sockaddr(&p.addrs[1])).expect_reply(b"ping 4", b"pong 4");
}

#[test]
fn allow_alone_denies_everyone_else() {
    let dir = TempDir::new("allow");
    let p = serve_dual_stack(&["--allow", "10.0.0.0/8"]);
    assert_denied(&p, 0, 1, &dir);
    assert_denied(&p, 2, 3, &dir);
    drop(p);
    // Allowing loopback v4 lets it in, and only it.
    let p = serve_dual_stack(&["--allow", "127.0.0.0/8"]);
    assert_served(&p, 0, 1, &dir);
    assert_denied(&p, 2, 3, &dir);
}

#[test]
fn deny_wins_over_allow_and_works_for_ipv6() {
    let dir = TempDir::new("deny6");
    let p = serve_dual_stack(&[
        "--allow",
        "::/0",
        "--allow",
        "0.0.0.0/0",
        "--deny",
        "::1/128",
    ]);
    assert_denied(&p, 2, 3, &dir);
    assert_served(&p, 0, 1, &dir);
}

// --- line limits ------------------------------------------------------------

#[test]
fn over_long_line_is_refused_and_the_connection_stays_usable() {
    let dir = TempDir::new("maxline");
    let p = serve(
        &[
            "ping",
            "-q",
            "--max-line",
            "16",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://127.0.0.1:0",
        ],
        2,
    );
    let too_long = b"error: line too long (max 16 bytes)\n";
    let mut s = connect(&p.addrs[0]);
    let mut line = b"ping ".to_vec();
    line.extend_from_slice(&[b'x'; 95]);
    line.push(b'\n');
    roundtrip(&mut *s, &line, too_long);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    // The boundary: 16 bytes pass (with either line end), 17 do not.
    roundtrip(&mut *s, b"ping 0123456789a\n", b"pong 0123456789a\n");
    roundtrip(&mut *s, b"ping 0123456789a\r\n", b"pong 0123456789a\r\n");
    roundtrip(&mut *s, b"ping 0123456789ab\n", too_long);
    roundtrip(&mut *s, b"ping 0123456789ab\r\n", too_long);
    // An over-long line arriving in pieces gets one error, and the lines
    // around it are answered.
    s.write_all(b"ping 5\nping 0123456789abcdef").unwrap();
    s.write_all(&[b'y'; 200]).unwrap();
    s.write_all(b"zzz\nping 6\n").unwrap();
    expect(&mut *s, b"pong 5\n");
    expect(&mut *s, too_long);
    expect(&mut *s, b"pong 6\n");
    // Over UDP, an over-long datagram gets the error as its reply.
    let d = Dgram::new(&p.addrs[1], &dir);
    d.expect_reply(&line, too_long);
    d.expect_reply(b"ping 0123456789a\n", b"pong 0123456789a\n");
    d.expect_reply(b"ping 0123456789ab", too_long);
}

#[test]
fn bare_over_long_message_is_refused_too() {
    // A bare message (no line end, answered after the flush delay or at
    // EOF) is held to --max-line like a line.
    let p = serve(
        &["ping", "-q", "--max-line", "16", "-l", "tcp://127.0.0.1:0"],
        1,
    );
    let too_long = b"error: line too long (max 16 bytes)\n";
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 0123456789a", b"pong 0123456789a\n");
    roundtrip(&mut *s, b"ping 0123456789ab", too_long);
    s.write_all(b"ping 0123456789ab").unwrap();
    s.shutdown_write();
    assert_eq!(read_to_eof(&mut *s), too_long);
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn a_ten_mib_line_does_not_hurt_the_server() {
    let p = serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    let before = peak_rss_kib(p.pid());
    let mut writer = s.try_clone_box();
    let w = thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..10 {
            writer.write_all(&chunk).unwrap();
        }
        writer
    });
    let mut reader = s;
    expect(&mut *reader, b"error: line too long (max 65536 bytes)\n");
    let mut writer = w.join().unwrap();
    writer.write_all(b"\nping 2\n").unwrap();
    expect(&mut *reader, b"pong 2\n");
    // No crash, and other clients are served.
    let mut other = connect(&p.addrs[0]);
    roundtrip(&mut *other, b"ping 3\n", b"pong 3\n");
    // The line was dropped as it came, not held: holding it would take
    // 10 MiB more.
    let grown = peak_rss_kib(p.pid()).saturating_sub(before);
    assert!(grown < 6 * 1024, "peak RSS grew by {grown} KiB");
}

// --- idle timeout -----------------------------------------------------------

#[test]
fn idle_timeout_closes_silent_clients_only() {
    let p = serve(
        &[
            "ping",
            "-q",
            "--idle-timeout",
            "300ms",
            "-l",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let mut silent = connect(&p.addrs[0]);
    let mut chatty = connect(&p.addrs[0]);
    let start = Instant::now();
    let waiter = thread::spawn(move || {
        silent.read_timeout(Duration::from_secs(2));
        let got = read_to_eof(&mut *silent);
        (got, start.elapsed())
    });
    for i in 0..10 {
        roundtrip(
            &mut *chatty,
            format!("ping {i}\n").as_bytes(),
            format!("pong {i}\n").as_bytes(),
        );
        thread::sleep(Duration::from_millis(100));
    }
    let (got, after) = waiter.join().unwrap();
    assert_eq!(got, b"");
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(1000));
    roundtrip(&mut *chatty, b"ping still\n", b"pong still\n");
}

// --- shutdown ---------------------------------------------------------------

/// Waits until new TCP connections to `addr` are refused.
fn assert_stops_accepting(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match try_connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            // A connection that reached the backlog just as the listener
            // closed is reset (and setting its options right after the
            // connect may then fail too): not accepted either, but look
            // again until the port refuses outright.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::NotConnected
                        | ErrorKind::InvalidInput
                ) => {}
            Err(e) => panic!("connect {addr}: {e}"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts after the signal"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_an_open_conversation_finish() {
    let mut p = serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    s.write_all(b"ping 9").unwrap();
    p.signal("TERM");
    expect(&mut *s, b"pong 9\n");
    assert_stops_accepting(&p.addrs[0]);
    // The open connection is still served during the grace period.
    roundtrip(&mut *s, b"ping 10\n", b"pong 10\n");
    assert_eq!(
        p.child.try_wait().unwrap(),
        None,
        "exited with a client open"
    );
    let closed = Instant::now();
    drop(s);
    p.assert_exits_0(EXIT_LIMIT);
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "{:?}",
        closed.elapsed()
    );
    assert_eq!(p.rest_of_stdout(), "");
}

#[test]
fn grace_period_ends_a_client_that_never_closes() {
    let mut p = serve(
        &["ping", "-q", "--grace", "500ms", "-l", "tcp://127.0.0.1:0"],
        1,
    );
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    let start = Instant::now();
    p.signal("TERM");
    roundtrip(&mut *s, b"ping 2\n", b"pong 2\n");
    p.assert_exits_0(Duration::from_secs(3));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "grace not honoured: {took:?}"
    );
    assert_eq!(read_to_eof(&mut *s), b"", "the stuck client is closed");
}

#[test]
fn a_second_signal_ends_the_grace_period_at_once() {
    let mut p = serve(
        &["ping", "-q", "--grace", "60s", "-l", "tcp://127.0.0.1:0"],
        1,
    );
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    p.signal("INT");
    // Still served during the grace period...
    roundtrip(&mut *s, b"ping 2\n", b"pong 2\n");
    // ...until the second signal, long before the 60s are up.
    p.signal("INT");
    p.assert_exits_0(Duration::from_secs(5));
    assert_eq!(read_to_eof(&mut *s), b"", "the open client is closed");
}

#[test]
fn sigint_stops_the_server_too() {
    let dir = TempDir::new("sigint");
    let mut p = serve(
        &[
            "hello",
            "-q",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://127.0.0.1:0",
        ],
        2,
    );
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"a\n", b"Hello, a\n");
    Dgram::new(&p.addrs[1], &dir).expect_reply(b"b", b"Hello, b");
    p.signal("INT");
    assert_stops_accepting(&p.addrs[0]);
    roundtrip(&mut *s, b"c\n", b"Hello, c\n");
    s.shutdown_write();
    assert_eq!(read_to_eof(&mut *s), b"");
    p.assert_exits_0(EXIT_LIMIT);
}

#[test]
fn idle_server_exits_at_once_on_sigterm() {
    let dir = TempDir::new("sigterm-idle");
    let (unix, gram) = (dir.path("s.sock"), dir.path("g.sock"));
    let mut p = common::serve_on(&["echo", "-q"], &common::every_transport(&dir));
    let start = Instant::now();
    p.signal("TERM");
    p.assert_exits_0(EXIT_LIMIT);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !std::path::Path::new(&unix).exists(),
        "unix socket file left behind"
    );
    assert!(
        !std::path::Path::new(&gram).exists(),
        "unixgram socket file left behind"
    );
}

#[test]
fn a_signal_right_after_the_listening_lines_is_a_clean_shutdown() {
    // SPEC 1: the listening lines mean "ready", and a script may signal at
    // once. The handlers must be in place by then, or the default action
    // kills the process. A shell signals fastest (no fork between reading
    // the line and `kill`), and the window is narrow, so: 20 rounds.
    let dir = TempDir::new("sigrace");
    let script = r#"
        for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            rm -f "$2/fifo" && mkfifo "$2/fifo" || exit 99
            "$1" serve echo -q -l tcp://127.0.0.1:0 > "$2/fifo" &
            pid=$!
            read line < "$2/fifo"
            kill -TERM $pid
            wait $pid
            echo "$? $line"
        done
    "#;
    let out = common::run_bounded_with(
        Command::new("sh").args(["-c", script, "sh", common::bin(), &dir.path("")]),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{out:?}");
    let killed = lines
        .iter()
        .filter(|l| !l.starts_with("0 listening on tcp://"))
        .count();
    assert_eq!(
        killed, 0,
        "{killed} of 20 servers died of the SIGTERM sent right after their listening \
         line (status 143) instead of shutting down with 0: {lines:?}"
    );
}

// --- UDP loop guard ---------------------------------------------------------

#[test]
#[ignore = "needs root: binds source ports below 1024 (.ci/run runs it)"]
fn datagrams_from_classic_service_ports_are_dropped() {
    let dir = TempDir::new("classic");
    let p = serve(&["ping", "-q", "-l", "udp://127.0.0.1:0"], 1);
    let server = sockaddr(&p.addrs[0]);
    let mut guarded = Vec::new();
    for port in [7, 9, 13, 19, 37] {
        match std::net::UdpSocket::bind(("127.0.0.1", port)) {
            Ok(sock) => {
                drop(sock);
                guarded.push(Dgram::udp_from(&format!("127.0.0.1:{port}"), server));
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!("skipping source port {port}: {e} (tests need root)");
            }
            Err(e) => eprintln!("skipping source port {port}: {e}"),
        }
    }
    for d in &guarded {
        d.send(b"ping 1");
    }
    thread::sleep(QUIET);
    for d in &guarded {
        assert_eq!(
            d.recv_within(Duration::from_millis(1)),
            None,
            "reply to a classic port"
        );
    }
    // The same datagram from an ephemeral port is answered.
    Dgram::new(&p.addrs[0], &dir).expect_reply(b"ping 1", b"pong 1");
    assert!(
        guarded
            .iter()
            .any(|d| matches!(d, Dgram::Udp(s) if s.local_addr().unwrap().port() == 19)),
        "could not bind source port 19"
    );
}

#[test]
fn a_unixgram_client_that_never_reads_does_not_freeze_the_socket() {
    let dir = TempDir::new("gramstall");
    let server = dir.path("s.sock");
    let p = serve(&["hello", "-q", "-l", &format!("unixgram://{server}")], 1);
    // A client that sends and never reads its replies. Its unread replies
    // are charged to the server socket's send buffer, which fills after a
    // few hundred; a server that then waits to send stops reading, and
    // every client's send() blocks. It must drop the reply instead.
    let hog = std::os::unix::net::UnixDatagram::bind(dir.path("hog.sock")).unwrap();
    hog.connect(&server).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0;
    while sent < 2000 && hog.send(b"flood").is_ok() {
        sent += 1;
    }
    assert_eq!(
        sent, 2000,
        "the server stopped reading after {sent} datagrams"
    );
    // Once the hog is gone, everyone is served again.
    drop(hog);
    let d = Dgram::new(&p.addrs[0], &dir);
    d.expect_reply(b"hi", b"Hello, hi");
}

// --- Unix socket files ------------------------------------------------------

#[test]
fn unix_socket_files_stale_live_and_removed() {
    let dir = TempDir::new("unixfiles");
    let path = dir.path("s.sock");
    let gram = dir.path("g.sock");
    // Stale files: bound, then closed without unlinking.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    drop(std::os::unix::net::UnixDatagram::bind(&gram).unwrap());
    assert!(std::path::Path::new(&path).exists());
    let stream_addr = format!("unix://{path}");
    let gram_addr = format!("unixgram://{gram}");
    let mut p = serve(&["ping", "-q", "-l", &stream_addr, "-l", &gram_addr], 2);
    assert_eq!(p.addrs, [stream_addr.clone(), gram_addr.clone()]);
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    Dgram::new(&p.addrs[1], &dir).expect_reply(b"ping 2", b"pong 2");

    // A live one: the second server refuses with one line and status 1.
    for addr in [&stream_addr, &gram_addr] {
        let out = run_bounded(&["serve", "ping", "-q", "-l", addr], EXIT_LIMIT);
        let line = out.failure(1);
        assert!(line.starts_with("sockit: "), "{line}");
        assert_eq!(out.stdout, "");
    }
    // ... and leaves the first one's files alone.
    roundtrip(&mut *s, b"ping 3\n", b"pong 3\n");
    let mut again = connect(&p.addrs[0]);
    roundtrip(&mut *again, b"ping 4\n", b"pong 4\n");
    Dgram::new(&p.addrs[1], &dir).expect_reply(b"ping 5", b"pong 5");

    drop(s);
    drop(again);
    p.signal("TERM");
    p.assert_exits_0(EXIT_LIMIT);
    assert!(
        !std::path::Path::new(&path).exists(),
        "socket file left after SIGTERM"
    );
    assert!(
        !std::path::Path::new(&gram).exists(),
        "socket file left after SIGTERM"
    );
}

#[test]
fn shutdown_removes_only_its_own_socket_file() {
    // Server A's file is deleted and server B binds the same path; A's
    // shutdown must leave B's file alone.
    let dir = TempDir::new("unixown");
    let path = dir.path("s.sock");
    let addr = format!("unix://{path}");
    let mut a = serve(&["hello", "-q", "-l", &addr], 1);
    std::fs::remove_file(&path).unwrap();
    let b = serve(&["hello", "-q", "-l", &addr], 1);
    a.signal("TERM");
    a.assert_exits_0(EXIT_LIMIT);
    let mut s = connect(&b.addrs[0]);
    roundtrip(&mut *s, b"b\n", b"Hello, b\n");
}

#[test]
fn a_regular_file_in_the_way_is_left_alone() {
    let dir = TempDir::new("notasocket");
    let path = dir.path("precious");
    std::fs::write(&path, b"keep me").unwrap();
    let out = run_bounded(
        &["serve", "echo", "-q", "-l", &format!("unix://{path}")],
        EXIT_LIMIT,
    );
    out.failure(1);
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

// --- usage errors -----------------------------------------------------------

#[test]
fn bad_addresses_are_one_line_usage_errors() {
    let garbage: String = "x[::\n\t\u{7f}é:/%\0?"
        .chars()
        .filter(|c| *c != '\0')
        .cycle()
        .take(10_000)
        .collect();
    for addr in [
        "",
        "tcp://",
        "tcp://:99999",
        "udp://[::1",
        "unix://relative",
        &garbage,
    ] {
        let out = run_bounded(&["serve", "echo", "-l", addr], EXIT_LIMIT);
        let line = out.failure(2);
        assert!(line.starts_with("sockit: invalid address"), "{line:.300}");
        assert!(line.len() < 600, "{} bytes: {line:.300}", line.len());
        assert_eq!(out.stdout, "", "{addr:.40?}");
    }
}

#[test]
fn bad_access_rules_are_one_line_usage_errors() {
    for rule in [["--allow", "nonsense"], ["--deny", "10.0.0.0/99"]] {
        let out = run_bounded(
            &["serve", "echo", rule[0], rule[1], "-l", "tcp://127.0.0.1:0"],
            EXIT_LIMIT,
        );
        let line = out.failure(2);
        assert!(line.contains(rule[1]), "{line}");
        assert_eq!(out.stdout, "");
    }
}

// --- the super-server config file ------------------------------------------

#[test]
fn config_file_runs_several_services_in_one_process() {
    let dir = TempDir::new("config");
    let file = dir.path("sockit.toml");
    std::fs::write(
        &file,
        r#"
grace = "1s"

[[service]]
name = "ping"
listen = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"]
max_line = 16

[[service]]
name = "daytime"
listen = ["tcp://127.0.0.1:0"]
"#,
    )
    .unwrap();
    let mut p = serve(&["--config", &file, "-q"], 3);
    assert!(p.addrs[0].starts_with("tcp://127.0.0.1:"), "{:?}", p.addrs);
    assert!(p.addrs[1].starts_with("udp://127.0.0.1:"), "{:?}", p.addrs);
    assert!(p.addrs[2].starts_with("tcp://127.0.0.1:"), "{:?}", p.addrs);
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    roundtrip(
        &mut *s,
        b"ping 0123456789ab\n",
        b"error: line too long (max 16 bytes)\n",
    );
    Dgram::new(&p.addrs[1], &dir).expect_reply(b"ping 2", b"pong 2");
    let mut d = connect(&p.addrs[2]);
    let line = read_to_eof(&mut *d);
    assert_eq!(line.len(), 26, "{}", show(&line));
    assert!(line.ends_with(b"\r\n"));
    drop(s);
    p.signal("TERM");
    p.assert_exits_0(EXIT_LIMIT);
    assert_eq!(p.rest_of_stdout(), "");
}

#[test]
fn config_errors_are_one_line_naming_the_file() {
    let dir = TempDir::new("config-bad");
    let missing = dir.path("missing.toml");
    for (name, text) in [
        ("unknown-service.toml", "[[service]]\nname = \"nope\"\n"),
        (
            "bad-listen.toml",
            "[[service]]\nname = \"echo\"\nlisten = [\"tcp://:99999\"]\n",
        ),
        ("syntax.toml", "[[service]\nname = \"echo\"\n"),
        (
            "unknown-key.toml",
            "[[service]]\nname = \"echo\"\ncolour = 1\n",
        ),
    ] {
        let file = dir.path(name);
        std::fs::write(&file, text).unwrap();
        let out = run_bounded(&["serve", "--config", &file], EXIT_LIMIT);
        let line = out.failure(2);
        assert!(line.contains(&file), "{line}");
        assert_eq!(out.stdout, "");
    }
    let out = run_bounded(&["serve", "--config", &missing], EXIT_LIMIT);
    assert!(out.failure(2).contains(&missing));
}

// --- stdout and stderr ------------------------------------------------------

#[test]
fn stdout_holds_only_the_listening_lines() {
    let dir = TempDir::new("stdout");
    let log = common::temp_path(&dir, "stderr.log");
    let unix = format!("unix://{}", dir.path("s.sock"));
    let mut p = Proc::start_logged(
        Command::new(common::bin()).args([
            "serve",
            "hello",
            "-vv",
            "--max-line",
            "8",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://[::1]:0",
            "-l",
            &unix,
        ]),
        3,
        &log,
    );
    assert_eq!(p.addrs[2], unix);
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"World\n", b"Hello, World\n");
    roundtrip(
        &mut *s,
        b"far too long\n",
        b"error: line too long (max 8 bytes)\n",
    );
    Dgram::new(&p.addrs[1], &dir).expect_reply(b"x", b"Hello, x");
    let mut u = connect(&p.addrs[2]);
    u.shutdown_write();
    assert_eq!(read_to_eof(&mut *u), b"");
    drop(s);
    p.signal("TERM");
    p.assert_exits_0(EXIT_LIMIT);
    assert_eq!(p.rest_of_stdout(), "");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines().count() >= 3,
        "logs went somewhere else: {logs:?}"
    );
}

#[test]
fn json_log_format_writes_json_lines() {
    let dir = TempDir::new("json");
    let log = common::temp_path(&dir, "stderr.log");
    let mut p = Proc::start_logged(
        Command::new(common::bin()).args([
            "serve",
            "ping",
            "--log-format",
            "json",
            "--max-conns",
            "1",
            "-l",
            "tcp://127.0.0.1:0",
        ]),
        1,
        &log,
    );
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"ping\n", b"pong\n");
    // A refusal is logged at warn level.
    let mut refused = connect(&p.addrs[0]);
    assert_eq!(read_to_eof(&mut *refused), b"error: too many connections\n");
    drop(s);
    p.signal("TERM");
    p.assert_exits_0(EXIT_LIMIT);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() >= 3, "{logs:?}");
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line:?}"
        );
    }
    assert!(logs.contains("too many connections"), "{logs}");
}

/// A burst of datagrams from many sockets at once, large and small and
/// empty, taken in batches: every one gets exactly its own reply, on
/// IPv4 and IPv6.
#[test]
fn a_burst_of_datagrams_gets_every_reply_to_its_sender() {
    let p = serve(
        &["echo", "-l", "udp://127.0.0.1:0", "-l", "udp://[::1]:0"],
        2,
    );
    for addr in &p.addrs {
        let server = sockaddr(addr);
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sockets: Vec<UdpSocket> = (0..100)
            .map(|_| {
                let s = UdpSocket::bind(local).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect();
        let payload = |i: usize| -> Vec<u8> {
            match i % 10 {
                0 => Vec::new(),
                5 => vec![b'a' + (i % 26) as u8; 60_000],
                _ => format!("datagram {i}").into_bytes(),
            }
        };
        // All sent before any reply is read: the server finds them
        // queued together.
        for (i, s) in sockets.iter().enumerate() {
            s.send_to(&payload(i), server).unwrap();
        }
        for (i, s) in sockets.iter().enumerate() {
            let mut buf = vec![0u8; 65_536];
            let (n, from) = s.recv_from(&mut buf).expect("a reply");
            assert_eq!(from, server);
            assert_eq!(&buf[..n], &payload(i)[..], "socket {i}");
        }
        std::thread::sleep(Duration::from_millis(100));
        for (i, s) in sockets.iter().enumerate() {
            s.set_nonblocking(true).unwrap();
            assert!(
                s.recv_from(&mut [0u8; 16]).is_err(),
                "socket {i}: a second reply"
            );
        }
    }
}
