//! `sockit serve exec -l ADDR -- CMD`: a child per connection, the
//! connection as its stdin and stdout, the peer in its environment, every
//! limit applied, and nothing left behind.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    Proc, TempDir, children_described as children, connect, read_to_eof, run_bounded, serve,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Waits until the server has no child left.
fn no_children_within(p: &Proc, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = children(p.child.id());
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "children left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cat_over_tcp_unix_and_tls() {
    let dir = TempDir::new("exec-cat");
    let unix = format!("unix://{}", dir.path("exec.sock"));
    let mut p = serve(
        &[
            "exec",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            &unix,
            "-l",
            "tls://127.0.0.1:0",
            "--",
            "cat",
        ],
        3,
    );
    for addr in &p.addrs[..2] {
        let mut s = connect(addr);
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut w = s.try_clone_box();
            let payload = payload.clone();
            std::thread::spawn(move || {
                w.write_all(&payload).unwrap();
                w.shutdown_write();
            })
        };
        assert_eq!(read_to_eof(&mut *s), payload, "{addr}");
        writer.join().unwrap();
    }
    let out = common::run_with_stdin(&["connect", "--insecure", &p.addrs[2]], "over tls\n", LIMIT);
    assert_eq!(out.stdout, "over tls\n", "{}", out.stderr);
    no_children_within(&p, Duration::from_secs(5));
    p.signal("TERM");
    assert_eq!(p.wait_exit(LIMIT), Some(0));
}

#[test]
fn the_peer_is_in_the_environment() {
    let p = serve(
        &[
            "exec",
            "-l",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            "echo $SOCKIT_REMOTE_ADDR $SOCKIT_REMOTE_PORT $TCPREMOTEIP $TCPREMOTEPORT $PROTO",
        ],
        1,
    );
    let mut s = connect(&p.addrs[0]);
    let text = String::from_utf8(read_to_eof(&mut *s)).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{text:?}");
    assert_eq!(
        (fields[0], fields[2], fields[4]),
        ("127.0.0.1", "127.0.0.1", "TCP")
    );
    assert_eq!(fields[1], fields[3]);
    assert!(fields[1].parse::<u16>().unwrap() > 0);
}

#[test]
fn a_child_that_exits_at_once_or_never_reads() {
    let p = serve(
        &[
            "exec",
            "--idle-timeout",
            "1s",
            "-l",
            "127.0.0.1:0",
            "--",
            "true",
        ],
        1,
    );
    // Exits at once: the connection closes, nothing sent.
    let mut s = connect(&p.addrs[0]);
    assert_eq!(read_to_eof(&mut *s), b"");
    no_children_within(&p, Duration::from_secs(5));

    let p = serve(
        &[
            "exec",
            "--idle-timeout",
            "1s",
            "-l",
            "127.0.0.1:0",
            "--",
            "sleep",
            "300",
        ],
        1,
    );
    let mut s = connect(&p.addrs[0]);
    // Never reads: what fits in the pipe is taken, then nothing moves,
    // and the idle timeout ends the connection and its child.
    let _ = s.write_all(&[b'x'; 1000]);
    let start = Instant::now();
    assert_eq!(read_to_eof(&mut *s), b"");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    no_children_within(&p, Duration::from_secs(5));
}

/// Whether a process is still running (gone, or a zombie, is not).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

#[test]
fn grandchildren_go_too_and_shutdown_ends_children() {
    // sh starts sleep, and neither reads nor writes: the connection (and
    // the child) lasts until shutdown ends it, at the end of the grace.
    let mut p = serve(
        &[
            "exec",
            "-l",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            "sleep 300; echo late",
        ],
        1,
    );
    let s = connect(&p.addrs[0]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (sh, sleep) = loop {
        let kids = children(p.child.id());
        if let [(sh, _)] = kids[..]
            && let [(sleep, _)] = children(sh)[..]
        {
            break (sh, sleep);
        }
        assert!(Instant::now() < deadline, "no sh and sleep: {kids:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    p.signal("TERM");
    std::thread::sleep(Duration::from_millis(100));
    p.signal("TERM");
    assert_eq!(p.wait_exit(LIMIT), Some(0));
    drop(s);
    // The whole group was killed: sh and the sleep it started.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(sh) || running(sleep) {
        assert!(
            Instant::now() < deadline,
            "sh {sh} or sleep {sleep} outlived the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn max_conns_applies() {
    let p = serve(
        &["exec", "--max-conns", "2", "-l", "127.0.0.1:0", "--", "cat"],
        1,
    );
    let mut held: Vec<_> = (0..2).map(|_| connect(&p.addrs[0])).collect();
    for s in &mut held {
        common::roundtrip(&mut **s, b"hi\n", b"hi\n");
    }
    let mut third = connect(&p.addrs[0]);
    let mut told = String::new();
    third.read_to_string(&mut told).unwrap();
    assert_eq!(told, "error: too many connections\n");
    assert_eq!(children(p.child.id()).len(), 2);
}

#[test]
fn usage_errors_are_exit_2() {
    let out = run_bounded(&["serve", "exec", "-l", "127.0.0.1:0"], LIMIT);
    assert!(out.failure(2).contains("needs a command"), "{}", out.stderr);
    let out = run_bounded(&["serve", "exec", "--", "cat"], LIMIT);
    assert!(out.failure(2).contains("no default port"), "{}", out.stderr);
    let out = run_bounded(
        &["serve", "exec", "-l", "127.0.0.1:0", "--", "no-such-cmd-x"],
        LIMIT,
    );
    assert!(
        out.failure(2).contains("no-such-cmd-x: no such executable"),
        "{}",
        out.stderr
    );
    let out = run_bounded(&["serve", "echo", "-l", "127.0.0.1:0", "--", "cat"], LIMIT);
    assert!(out.failure(2).contains("for serve exec"), "{}", out.stderr);
    let out = run_bounded(
        &["serve", "exec", "-l", "udp://127.0.0.1:0", "--", "cat"],
        LIMIT,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}
