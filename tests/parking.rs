//! Quiet connections parked again (`--park-after`): a line-service or
//! echo connection that has spoken and then gone quiet gives up its task
//! and waits in the parking lot, and is served on when it speaks again:
//! replies in order, nothing lost at the hand-over, the idle timeout
//! counted from the last activity, `--max-conns` and shutdown as for any
//! open connection. `sockit_connections_parked` shows where a connection
//! is, so each test can tell that the re-parking really happened.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{Duplex, Proc, TempDir, connect, expect, read_to_eof, roundtrip, serve};

const LIMIT: Duration = Duration::from_secs(20);

/// Starts `sockit serve ARGS...` on `listen` with a metrics endpoint;
/// the listener's address and the metrics address.
fn serve_with_metrics(args: &[&str], listen: &str) -> (Proc, String, String) {
    let mut full = args.to_vec();
    full.extend(["-q", "-l", listen, "--metrics", "127.0.0.1:0"]);
    let p = serve(&full, 2);
    let (addr, metrics) = (p.addrs[0].clone(), p.addrs[1].clone());
    (p, addr, metrics)
}

/// The value of `sockit_connections_parked` (of the one listener).
fn parked(metrics_url: &str) -> u64 {
    series(metrics_url, "sockit_connections_parked")
}

/// The value of the series `name` (of the one listener).
fn series(metrics_url: &str, name: &str) -> u64 {
    let samples = common::scrape_metrics(metrics_url);
    let prefix = format!("{name}{{");
    let (_, value) = samples
        .iter()
        .find(|(k, _)| k.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {samples:?}"));
    *value as u64
}

/// Waits until `want` connections are parked.
fn wait_parked(metrics_url: &str, want: u64) {
    let start = Instant::now();
    loop {
        let now = parked(metrics_url);
        if now == want {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{now} connections parked, never {want}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_quiet_connection_is_parked_and_answered_in_order_when_it_speaks_again() {
    let (_p, addr, metrics) =
        serve_with_metrics(&["ping", "--park-after", "200ms"], "tcp://127.0.0.1:0");
    let mut s = connect(&addr);
    // Never spoken: parked from the start.
    wait_parked(&metrics, 1);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    assert_eq!(parked(&metrics), 0, "served by a task after speaking");
    // Quiet past --park-after: back in the lot.
    wait_parked(&metrics, 1);
    roundtrip(&mut *s, b"ping 2\n", b"pong 2\n");
    // A pipelined batch right after waking, answered in order.
    wait_parked(&metrics, 1);
    roundtrip(
        &mut *s,
        b"ping 3\nping 4\r\nping 5\n",
        b"pong 3\npong 4\r\npong 5\n",
    );
    wait_parked(&metrics, 1);
    // A bare message (no line end) after waking is answered bare.
    roundtrip(&mut *s, b"ping 6", b"pong 6\n");
    // Parked four times, it is still one connection accepted, one open.
    wait_parked(&metrics, 1);
    assert_eq!(series(&metrics, "sockit_connections_accepted_total"), 1);
    assert_eq!(series(&metrics, "sockit_connections_active"), 1);
}

#[test]
fn five_hundred_quiet_connections_all_park_again_and_are_answered() {
    let (_p, addr, metrics) =
        serve_with_metrics(&["ping", "--park-after", "200ms"], "tcp://127.0.0.1:0");
    let mut conns: Vec<Box<dyn Duplex>> = (0..500).map(|_| connect(&addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(
            &mut **s,
            format!("ping {i}\n").as_bytes(),
            format!("pong {i}\n").as_bytes(),
        );
    }
    wait_parked(&metrics, 500);
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(
            &mut **s,
            format!("ping again {i}\n").as_bytes(),
            format!("pong again {i}\n").as_bytes(),
        );
    }
    wait_parked(&metrics, 500);
}

/// Ping after ping with pauses around a tiny park interval, so that many
/// requests arrive just as the connection is handed to the lot or back.
fn ping_across_hand_overs(addr: &str, rounds: usize) {
    let mut s = connect(addr);
    for i in 0..rounds {
        // Two writes a moment apart: the second may land mid-hand-over.
        s.write_all(format!("ping {i}a\n").as_bytes()).unwrap();
        thread::sleep(Duration::from_micros((i % 7) as u64 * 300));
        s.write_all(format!("ping {i}b\n").as_bytes()).unwrap();
        expect(&mut *s, format!("pong {i}a\npong {i}b\n").as_bytes());
        thread::sleep(Duration::from_micros((i % 5) as u64 * 400));
    }
}

#[test]
fn bytes_sent_at_the_hand_over_are_neither_lost_nor_reordered() {
    let dir = TempDir::new("repark");
    let unix = format!("unix://{}", dir.path("p.sock"));
    for listen in ["tcp://127.0.0.1:0", unix.as_str()] {
        let (_p, addr, metrics) = serve_with_metrics(&["ping", "--park-after", "1ms"], listen);
        ping_across_hand_overs(&addr, 400);
        // The connection did go back to the lot between requests.
        wait_parked(&metrics, 0);
        let mut s = connect(&addr);
        roundtrip(&mut *s, b"ping x\n", b"pong x\n");
        wait_parked(&metrics, 1);
    }
}

#[test]
fn echo_parks_too_and_loses_nothing() {
    let (_p, addr, metrics) =
        serve_with_metrics(&["echo", "--park-after", "1ms"], "tcp://127.0.0.1:0");
    let mut s = connect(&addr);
    let mut all = Vec::new();
    for i in 0..300u32 {
        let chunk: Vec<u8> = (0..(i % 50 + 1)).map(|k| (i + k) as u8).collect();
        s.write_all(&chunk).unwrap();
        all.extend_from_slice(&chunk);
        if i % 3 == 0 {
            thread::sleep(Duration::from_micros(u64::from(i % 4) * 500));
        }
    }
    expect(&mut *s, &all);
    wait_parked(&metrics, 1);
    // A large message after parking: the buffer comes back and grows.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone_box();
    let sent = big.clone();
    let w = thread::spawn(move || writer.write_all(&sent).unwrap());
    expect(&mut *s, &big);
    w.join().unwrap();
}

#[test]
fn the_idle_timeout_counts_from_the_last_activity_not_from_accept() {
    let (_p, addr, metrics) = serve_with_metrics(
        &["ping", "--park-after", "100ms", "--idle-timeout", "2s"],
        "tcp://127.0.0.1:0",
    );
    let mut s = connect(&addr);
    thread::sleep(Duration::from_millis(1500));
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    let spoke = Instant::now();
    wait_parked(&metrics, 1);
    s.read_timeout(Duration::from_secs(6));
    assert_eq!(read_to_eof(&mut *s), b"");
    let quiet = spoke.elapsed();
    // Counted from accept it would close within 0.5-1.5 s of the ping
    // (the lot checks once a second); from the ping, 2-3 s after it.
    assert!(
        quiet >= Duration::from_millis(1900),
        "closed {quiet:?} after it last spoke"
    );
    assert!(quiet < Duration::from_secs(4), "closed {quiet:?} after");
    wait_parked(&metrics, 0);
}

#[test]
fn max_conns_counts_parked_connections() {
    let (_p, addr, metrics) = serve_with_metrics(
        &["ping", "--park-after", "100ms", "--max-conns", "2"],
        "tcp://127.0.0.1:0",
    );
    let mut a = connect(&addr);
    let mut b = connect(&addr);
    roundtrip(&mut *a, b"ping a\n", b"pong a\n");
    roundtrip(&mut *b, b"ping b\n", b"pong b\n");
    wait_parked(&metrics, 2);
    let mut c = connect(&addr);
    assert_eq!(read_to_eof(&mut *c), b"error: too many connections\n");
    drop(a);
    // The closed one's slot comes back once the lot sees it go.
    let start = Instant::now();
    let mut d = loop {
        let mut d = connect(&addr);
        d.write_all(b"ping d\n").unwrap();
        let mut got = [0u8; 7];
        if d.read_exact(&mut got).is_ok() && &got == b"pong d\n" {
            break d;
        }
        assert!(start.elapsed() < LIMIT, "the slot never came back");
        thread::sleep(Duration::from_millis(20));
    };
    roundtrip(&mut *b, b"ping b2\n", b"pong b2\n");
    roundtrip(&mut *d, b"ping d2\n", b"pong d2\n");
}

#[test]
fn shutdown_serves_parked_connections_through_the_grace_period_then_closes_them() {
    let (mut p, addr, metrics) = serve_with_metrics(
        &["ping", "--park-after", "100ms", "--grace", "1s"],
        "tcp://127.0.0.1:0",
    );
    let mut s = connect(&addr);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    wait_parked(&metrics, 1);
    let start = Instant::now();
    p.signal("TERM");
    thread::sleep(Duration::from_millis(200));
    // Woken from the lot during the grace period, served, and quiet
    // again (the lot has ended by then: it keeps its task).
    roundtrip(&mut *s, b"ping 2\n", b"pong 2\n");
    thread::sleep(Duration::from_millis(300));
    roundtrip(&mut *s, b"ping 3\n", b"pong 3\n");
    p.assert_exits_0(Duration::from_secs(4));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "grace not honoured: {:?}",
        start.elapsed()
    );
    assert_eq!(read_to_eof(&mut *s), b"");
}

#[test]
fn a_parked_connection_is_closed_at_the_end_of_grace() {
    let (mut p, addr, metrics) = serve_with_metrics(
        &["hello", "--park-after", "100ms", "--grace", "500ms"],
        "tcp://127.0.0.1:0",
    );
    let mut s = connect(&addr);
    roundtrip(&mut *s, b"you\n", b"Hello, you\n");
    wait_parked(&metrics, 1);
    let start = Instant::now();
    p.signal("TERM");
    s.read_timeout(Duration::from_secs(5));
    assert_eq!(read_to_eof(&mut *s), b"");
    p.assert_exits_0(Duration::from_secs(4));
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn park_after_zero_keeps_the_task() {
    let (_p, addr, metrics) =
        serve_with_metrics(&["ping", "--park-after", "0s"], "tcp://127.0.0.1:0");
    let mut s = connect(&addr);
    roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(parked(&metrics), 0);
    roundtrip(&mut *s, b"ping 2\n", b"pong 2\n");
}
