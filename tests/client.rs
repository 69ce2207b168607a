//! The clients, run as the real binary against servers each test starts
//! itself: `sockit connect` (netcat) and `sockit send` (the one-shot
//! client), over TCP, UDP and Unix sockets.
//!
//! The servers are a few lines of std sockets on port 0, not `sockit serve`,
//! so that these tests pin down the clients alone and say exactly which
//! bytes went over the wire. Every wait is bounded: the client run by
//! [`LIMIT`], the servers by [`SERVER_WAIT`].

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Output, SERVER_WAIT, read_to_eof, tcp_server, udp_server};

/// The longest one client run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `sockit ARGS...`, writing `stdin` to it and then closing its stdin.
fn sockit(args: &[&str], stdin: impl Into<Vec<u8>>) -> Output {
    common::run_with_stdin(args, stdin, LIMIT)
}

/// Runs `sockit ARGS...` with its stdin left open until it has exited.
fn sockit_stdin_open(args: &[&str]) -> Output {
    common::run_stdin_open(args, LIMIT)
}

/// Sends back every byte as it comes until EOF (RFC 862); returns the count.
fn echo(mut stream: TcpStream) -> usize {
    let mut buf = [0; 64 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        stream.write_all(&buf[..n]).unwrap();
        total += n;
    }
}

/// Reads whole the bytes that came and writes them back in one go, so the
/// client gets them in one read.
fn echo_at_eof(mut stream: TcpStream) {
    let got = read_to_eof(&mut stream);
    stream.write_all(&got).unwrap();
}

/// Answers each line `M` with `Hello, M`, as `sockit serve hello` does, and
/// returns the lines it got.
fn hello_lines(stream: TcpStream) -> Vec<String> {
    use std::io::BufRead;
    let mut writer = stream.try_clone().unwrap();
    let mut got = Vec::new();
    for line in std::io::BufReader::new(stream).lines() {
        let line = line.unwrap();
        writer
            .write_all(format!("Hello, {line}\n").as_bytes())
            .unwrap();
        got.push(line);
    }
    got
}

/// Answers bare messages: bytes with no line end, once the client has gone
/// quiet for a moment, get `Hello, M\n`. Returns the messages.
fn hello_bare(mut stream: TcpStream) -> Vec<String> {
    stream
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let deadline = Instant::now() + SERVER_WAIT;
    let (mut got, mut pending, mut buf) = (Vec::new(), Vec::new(), [0; 1024]);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !pending.is_empty() {
                    let message = String::from_utf8(std::mem::take(&mut pending)).unwrap();
                    let reply = format!("Hello, {message}\n");
                    stream.write_all(reply.as_bytes()).unwrap();
                    got.push(message);
                }
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Deterministic bytes that look random: xorshift64.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// ---- sockit connect ----

#[test]
fn connect_tcp_carries_10_mib_of_binary_both_ways_unchanged() {
    let (addr, server) = tcp_server(echo);
    let data = noise(10 << 20);
    let run = sockit(&["connect", &addr], data.clone());
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    assert_eq!(run.stdout_bytes.len(), data.len());
    assert!(run.stdout_bytes == data, "the echoed bytes differ");
    assert_eq!(server.join().unwrap(), data.len());
}

#[test]
fn connect_half_closes_at_stdin_eof_and_prints_the_answer() {
    let (addr, server) = tcp_server(|mut stream| {
        let got = read_to_eof(&mut stream);
        writeln!(stream, "got {} bytes", got.len()).unwrap();
        got
    });
    let run = sockit(&["connect", &addr], "hello world");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "got 11 bytes\n");
    assert_eq!(server.join().unwrap(), b"hello world");
}

#[test]
fn connect_exits_when_the_peer_closes_first_without_waiting_for_stdin() {
    let (addr, server) = tcp_server(|mut stream| {
        stream.write_all(b"bye\n").unwrap();
        stream.shutdown(Shutdown::Both).unwrap();
    });
    let run = sockit_stdin_open(&["connect", &addr]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "bye\n");
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    server.join().unwrap();
}

#[test]
fn connect_crlf_turns_line_feeds_into_crlf() {
    let (addr, server) = tcp_server(echo_at_eof);
    let run = sockit(&["connect", "--crlf", &addr], "a\nb\r\nc");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "a\r\nb\r\nc");
    server.join().unwrap();
}

#[test]
fn connect_hex_dumps_what_arrives() {
    let (addr, server) = tcp_server(echo_at_eof);
    let run = sockit(&["connect", "--hex", &addr], "0123456789abcdefXYZ\n");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        run.stdout,
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
         00000010  58 59 5a 0a                                       |XYZ.|\n"
    );
    server.join().unwrap();
}

#[test]
fn connect_udp_sends_a_datagram_per_line_and_prints_replies() {
    let (addr, server) = udp_server(|socket| {
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while got.len() < 3 {
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            let mut reply = b"got: ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            reply.push(b'|');
            socket.send_to(&reply, from).unwrap();
            got.push(buf[..n].to_vec());
        }
        got
    });
    let run = sockit(
        &["connect", "--timeout", "300ms", &format!("udp://{addr}")],
        "a\nb\nc",
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "got: a\n|got: b\n|got: c|");
    assert!(
        run.elapsed >= Duration::from_millis(300),
        "{:?}",
        run.elapsed
    );
    assert_eq!(server.join().unwrap(), [&b"a\n"[..], b"b\n", b"c"]);
}

#[test]
fn connect_unix_stream() {
    use std::os::unix::net::UnixListener;
    let dir = common::TempDir::new("client-unix");
    let path = dir.path("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(SERVER_WAIT)).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        stream.write_all(&got).unwrap();
    });
    let run = sockit(&["connect", &format!("unix://{path}")], "over unix\n");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "over unix\n");
    server.join().unwrap();
}

#[test]
fn connect_unixgram_replies_reach_the_client_and_its_socket_is_removed() {
    use std::os::unix::net::UnixDatagram;
    let dir = common::TempDir::new("client-unixgram");
    let path = dir.path("server.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(SERVER_WAIT)).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0; 1024];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        let from = from.as_pathname().expect("client has a path").to_owned();
        socket.send_to(&buf[..n], &from).unwrap();
        from
    });
    let run = sockit(
        &[
            "connect",
            "--timeout",
            "200ms",
            &format!("unixgram://{path}"),
        ],
        "ping\n",
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "ping\n");
    let client_path = server.join().unwrap();
    assert!(
        !client_path.exists(),
        "{} left behind",
        client_path.display()
    );
}

#[test]
fn connect_unixgram_removes_its_socket_on_ctrl_c() {
    use std::os::unix::net::UnixDatagram;
    let dir = common::TempDir::new("client-unixgram-int");
    let path = dir.path("server.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(SERVER_WAIT)).unwrap();
    let (heard, hearing) = std::sync::mpsc::channel();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let run = common::run_feeding(
        &["connect", &format!("unixgram://{path}")],
        LIMIT,
        move |mut pipe, pid| {
            pipe.write_all(b"hi\n").unwrap();
            let mut buf = [0; 64];
            let (_, from) = socket.recv_from(&mut buf).unwrap();
            heard.send(from.as_pathname().unwrap().to_owned()).unwrap();
            common::signal(pid, "INT");
            // Stdin stays open: only the signal can end the session.
            let _ = wait.recv_timeout(LIMIT);
            drop(pipe);
        },
    );
    let _ = done.send(());
    let client_path = hearing.recv_timeout(LIMIT).unwrap();
    assert_eq!(run.failure(1), "sockit: interrupted");
    assert!(
        !client_path.exists(),
        "{} left behind",
        client_path.display()
    );
}

#[test]
fn connect_refused_is_one_line_naming_the_address() {
    let port = common::closed_tcp_port();
    let run = sockit(&["connect", &format!("127.0.0.1:{port}")], "");
    assert_eq!(
        run.failure(1),
        format!("sockit: connect to tcp://127.0.0.1:{port}: connection refused")
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn connect_unknown_host_is_one_line() {
    let run = sockit(&["connect", "--timeout", "5s", "nosuchhost.invalid:1"], "");
    let line = run.failure(1);
    assert!(
        line.starts_with("sockit: resolve nosuchhost.invalid: "),
        "{line}"
    );
}

#[test]
fn connect_malformed_address_is_a_usage_error() {
    let run = sockit(&["connect", "tcp://:99999"], "");
    let line = run.failure(2);
    assert!(
        line.starts_with(
            "sockit: invalid address \"tcp://:99999\": port 99999 is out of range (0-65535)"
        ),
        "{line}"
    );
}

#[test]
fn send_tcp_prints_a_reply_line_per_message() {
    let (addr, server) = tcp_server(hello_lines);
    let run = sockit(&["send", &addr, "alice", "bob", "carol"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "Hello, alice\nHello, bob\nHello, carol\n");
    assert_eq!(server.join().unwrap(), ["alice", "bob", "carol"]);
}

#[test]
fn send_raw_sends_bare_messages_one_at_a_time() {
    let (addr, server) = tcp_server(hello_bare);
    let run = sockit(&["send", "--raw", &addr, "alice", "bob"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "Hello, alice\nHello, bob\n");
    assert_eq!(server.join().unwrap(), ["alice", "bob"]);
}

#[test]
fn send_raw_takes_a_bare_reply_that_is_followed_by_a_pause() {
    let (addr, server) = tcp_server(echo);
    let run = sockit(&["send", "--raw", &addr, "abc"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "abc\n");
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn send_udp_prints_each_reply_datagram_on_its_own_line() {
    let (addr, server) = udp_server(|socket| {
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while got.len() < 2 {
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            // The first reply has a line end, the second none.
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            let reply = format!("Hello, {}", text.trim_end());
            let reply = if got.is_empty() { reply + "\n" } else { reply };
            socket.send_to(reply.as_bytes(), from).unwrap();
            got.push(text);
        }
        got
    });
    let run = sockit(&["send", &format!("udp://{addr}"), "alice", "bob"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "Hello, alice\nHello, bob\n");
    assert_eq!(server.join().unwrap(), ["alice\n", "bob\n"]);
}

#[test]
fn send_times_out_with_one_line_when_no_reply_comes() {
    let (addr, server) = tcp_server(|mut stream| read_to_eof(&mut stream));
    let run = sockit(&["send", "--timeout", "500ms", &addr, "x", "y"], "");
    assert_eq!(
        run.failure(1),
        format!("sockit: no reply from tcp://{addr}: timed out after 500ms (0 of 2 replies)")
    );
    assert!(
        run.elapsed >= Duration::from_millis(500),
        "{:?}",
        run.elapsed
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert_eq!(server.join().unwrap(), b"x\n");
}

#[test]
fn send_udp_times_out_when_no_reply_comes() {
    let (addr, server) = udp_server(|socket| {
        let mut buf = [0; 64];
        socket.recv(&mut buf).map(|n| buf[..n].to_vec()).unwrap()
    });
    let run = sockit(
        &["send", "--timeout", "300ms", &format!("udp://{addr}"), "x"],
        "",
    );
    assert_eq!(
        run.failure(1),
        format!("sockit: no reply from udp://{addr}: timed out after 300ms (0 of 1 replies)")
    );
    assert_eq!(server.join().unwrap(), b"x\n");
}

#[test]
fn send_udp_to_a_closed_port_is_refused() {
    let addr = format!("127.0.0.1:{}", common::closed_udp_port());
    let run = sockit(&["send", &format!("udp://{addr}"), "x"], "");
    assert_eq!(
        run.failure(1),
        format!("sockit: no reply from udp://{addr}: connection refused")
    );
}

#[test]
fn send_accepts_a_server_that_says_one_line_and_closes() {
    let (addr, server) = tcp_server(|mut stream| {
        stream.write_all(b"Sun Nov 22 01:18:03 2026\r\n").unwrap();
    });
    let run = sockit(&["send", &addr, "x", "y"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "Sun Nov 22 01:18:03 2026\r\n");
    server.join().unwrap();
}

#[test]
fn send_prints_a_binary_reply_raw() {
    let time = [0xEB, 0x2C, 0x1F, 0x80];
    let (addr, server) = tcp_server(move |mut stream| stream.write_all(&time).unwrap());
    let run = sockit(&["send", &addr, "x"], "");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout_bytes, time);
    server.join().unwrap();
}

#[test]
fn send_fails_when_the_server_closes_before_any_reply() {
    let (addr, server) = tcp_server(|mut stream| {
        let mut line = [0; 2];
        stream.read_exact(&mut line).unwrap();
        line
    });
    let run = sockit(&["send", &addr, "x"], "");
    assert_eq!(
        run.failure(1),
        format!("sockit: connection closed by tcp://{addr} before any reply")
    );
    assert_eq!(&server.join().unwrap(), b"x\n");
}
