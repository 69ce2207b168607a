//! `sockit bench`, run as the real binary for a second or less at a time:
//! closed and open loop against `sockit serve` (ping, echo, hello) over TCP,
//! UDP, Unix and unixgram, against test servers in this file (a redis-like
//! `+PONG` line server, a UDP server that loses every 10th datagram, a
//! server that never answers), and with bad input. These check that the
//! load generator works, not how fast anything is: CI runs no benchmark.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Output, TempDir, run_bounded};
use serde_json::Value;

/// The longest one bench run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

fn bench(args: &[&str]) -> Output {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    run_bounded(&full, LIMIT)
}

/// Runs a bench with `--json`, asserts it succeeded with nothing on stderr
/// (no progress display when stderr is not a terminal), and returns the
/// result object.
fn bench_json(args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.push("--json");
    let out = bench(&full);
    assert_eq!(out.code, Some(0), "{args:?}: {}{}", out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "{args:?}: stderr {:?}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn assert_clean(result: &Value) {
    assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert_eq!(result["timeouts"], 0, "{result}");
    assert_eq!(result["unexpected_replies"], 0, "{result}");
    assert!(result["requests_per_sec"].as_f64().unwrap() > 0.0);
    let latency = &result["latency_ms"];
    for key in [
        "min", "avg", "max", "mdev", "p50", "p90", "p99", "p99.9", "p99.99",
    ] {
        assert!(latency[key].is_number(), "{key}: {result}");
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64());
}

#[test]
fn closed_loop_against_the_services_on_every_transport() {
    let dir = TempDir::new("bench");
    let unix = format!("unix://{}", dir.path("s.sock"));
    let unixgram = format!("unixgram://{}", dir.path("g.sock"));
    let ping = common::serve(
        &[
            "ping",
            "-q",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            "udp://127.0.0.1:0",
        ],
        2,
    );
    let echo = common::serve(&["echo", "-q", "-l", &unix, "-l", &unixgram], 2);
    let hello = common::serve(&["hello", "-q", "-l", "udp://127.0.0.1:0"], 1);
    let common_args = [
        "-c",
        "4",
        "--pipeline",
        "4",
        "-d",
        "500ms",
        "--warmup",
        "100ms",
    ];
    let cases = [
        (ping.addrs[0].clone(), "16"),
        (ping.addrs[1].clone(), "16"),
        (echo.addrs[0].clone(), "1000"),
        (echo.addrs[1].clone(), "100"),
        (hello.addrs[0].clone(), "40"),
    ];
    for (addr, size) in cases {
        let mut args = vec![addr.as_str(), "-s", size];
        args.extend_from_slice(&common_args);
        let result = bench_json(&args);
        assert_clean(&result);
        assert_eq!(result["addr"], addr.as_str());
        assert_eq!(result["mode"], "closed");
        assert_eq!(result["connections"], 4);
        assert_eq!(result["pipeline"], 4);
        assert_eq!(result["request_size"], size.parse::<u64>().unwrap());
        let requests = result["requests"].as_u64().unwrap();
        let sent = result["bytes_sent"].as_u64().unwrap();
        assert!(sent >= requests * size.parse::<u64>().unwrap(), "{result}");
        assert!(result["bytes_received"].as_u64().unwrap() > 0);
        let duration = result["duration_s"].as_f64().unwrap();
        assert!((duration - 0.5).abs() < 0.01, "{result}");
    }
}

/// 400 datagrams in flight on one socket, then on 16: the server's and
/// the client's raised UDP buffers hold the burst, so nothing is lost
/// (with the kernel's default receive buffer, a few hundred replies
/// queued at once overflow it and time out).
#[test]
fn four_hundred_datagrams_in_flight_lose_none() {
    let ping = common::serve(&["ping", "-q", "-l", "udp://127.0.0.1:0"], 1);
    for (conns, depth) in [("1", "400"), ("16", "25")] {
        let result = bench_json(&[
            &ping.addrs[0],
            "-c",
            conns,
            "--pipeline",
            depth,
            "-d",
            "1s",
            "--warmup",
            "200ms",
        ]);
        assert_clean(&result);
    }
}

#[test]
fn open_loop_holds_the_rate() {
    let server = common::serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let result = bench_json(&[
        &server.addrs[0],
        "--rate",
        "500",
        "-c",
        "2",
        "-d",
        "1s",
        "--warmup",
        "100ms",
    ]);
    assert_clean(&result);
    assert_eq!(result["mode"], "open");
    assert_eq!(result["target_rate"], 500.0);
    let rate = result["requests_per_sec"].as_f64().unwrap();
    assert!((400.0..=600.0).contains(&rate), "{result}");
}

#[test]
fn text_summary_names_every_figure() {
    let server = common::serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let addr = &server.addrs[0];
    let out = bench(&[addr, "-c", "2", "-d", "300ms", "--warmup", "0s"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let text = &out.stdout;
    assert!(
        text.starts_with(&format!(
            "{addr}: 2 connections x 1 pipeline, closed loop, 16-byte requests"
        )),
        "{text}"
    );
    for label in [
        "  duration  ",
        "  requests  ",
        "  sent      ",
        "  received  ",
        "  errors    0 (0 timeouts)",
        "  latency   min ",
        "            p50 ",
    ] {
        assert!(text.contains(label), "{label:?} missing: {text}");
    }
}

/// A redis-like line server: every line gets `+PONG\r\n`, as redis answers
/// an inline `PING`. Serves `conns` connections, then stops accepting.
fn pong_server(conns: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(common::SERVER_WAIT)).unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut reply = Vec::new();
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                    reply.clear();
                    for _ in 0..lines {
                        reply.extend_from_slice(b"+PONG\r\n");
                    }
                    if stream.write_all(&reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn any_line_reply_server_works() {
    let addr = pong_server(2);
    let result = bench_json(&[
        &addr,
        "--request",
        "PING",
        "-c",
        "2",
        "--pipeline",
        "8",
        "-d",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert_clean(&result);
    assert_eq!(result["request_size"], 5);
    let requests = result["requests"].as_u64().unwrap();
    // Every reply is `+PONG\r\n`: 7 bytes.
    let received = result["bytes_received"].as_u64().unwrap();
    assert!(received.abs_diff(requests * 7) <= 2 * 8 * 7, "{result}");
}

/// A UDP ping server that drops every 10th datagram it gets and answers
/// every 7th twice.
fn lossy_udp_server() -> (String, Arc<AtomicBool>) {
    common::udp_answering(|count, request, reply| {
        if count.is_multiple_of(10) {
            return;
        }
        let pong = common::pong(request);
        reply(&pong);
        if count.is_multiple_of(7) {
            reply(&pong);
        }
    })
}

#[test]
fn udp_loss_and_duplicates_are_counted_and_never_hang() {
    for pipeline in ["1", "4"] {
        let (addr, stop) = lossy_udp_server();
        let started = Instant::now();
        let out = bench(&[
            &addr,
            "-c",
            "2",
            "--pipeline",
            pipeline,
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--timeout",
            "100ms",
            "--json",
        ]);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert!(started.elapsed() < Duration::from_secs(10));
        let result: Value = serde_json::from_str(&out.stdout).unwrap();
        let requests = result["requests"].as_u64().unwrap();
        let timeouts = result["timeouts"].as_u64().unwrap();
        assert!(requests > 0, "{result}");
        assert!(timeouts > 0, "{result}");
        assert!(result["errors"].as_u64().unwrap() >= timeouts, "{result}");
        assert!(
            result["unexpected_replies"].as_u64().unwrap() > 0,
            "{result}"
        );
        // One in ten is lost: give or take the requests cut off at either
        // end of the window, the timeouts are a tenth of what was sent.
        let share = timeouts as f64 / (requests + timeouts) as f64;
        assert!((0.04..=0.2).contains(&share), "{share}: {result}");
    }
}

#[test]
fn refused_is_one_line_and_exit_1() {
    let port = common::closed_tcp_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let out = bench(&[&addr, "-d", "1s"]);
    assert_eq!(
        out.failure(1),
        format!("sockit: connect to {addr}: connection refused")
    );
    assert!(out.stdout.is_empty());

    let port = common::closed_udp_port();
    let addr = format!("udp://127.0.0.1:{port}");
    let out = bench(&[&addr, "-d", "1s"]);
    assert_eq!(
        out.failure(1),
        format!("sockit: connect to {addr}: connection refused")
    );
}

#[test]
fn a_server_that_never_answers_is_one_line_and_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let started = Instant::now();
    let out = bench(&[&addr, "-c", "2", "-d", "1s", "--timeout", "200ms"]);
    assert_eq!(
        out.failure(1),
        format!("sockit: wait for a reply from {addr}: timed out after 200ms")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["tcp://127.0.0.1:1", "--rate", "0"][..],
        &["tcp://127.0.0.1:1", "-s", "3"],
        &["udp://127.0.0.1:1", "-s", "100000"],
        &["tcp://127.0.0.1:1", "-s", "20", "--request", "PING"],
        &["tcp://127.0.0.1:1", "-c", "0"],
        &["tcp://127.0.0.1:1", "--pipeline", "0"],
        &["tcp://127.0.0.1:1", "-d", "0s"],
        &["nope://x"],
    ] {
        let out = bench(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
}
