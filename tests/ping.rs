//! `sockit ping`, run as the real binary: against `sockit serve ping` over
//! TCP, UDP, Unix and unixgram; against test servers in this file that lose,
//! duplicate and reorder UDP replies, never reply, or hang up; and with bad
//! input. Every run is bounded by [`LIMIT`], and every test server stops by
//! itself.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Output, TempDir, run_bounded};

/// The longest one ping run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

fn ping(args: &[&str]) -> Output {
    let mut full = vec!["ping"];
    full.extend_from_slice(args);
    run_bounded(&full, LIMIT)
}

/// The summary line `N sent, N received, ...` of a text run.
fn counts_line(out: &Output) -> &str {
    out.stdout
        .lines()
        .find(|l| l.contains(" sent, "))
        .unwrap_or_else(|| panic!("no summary in {:?}", out.stdout))
}

#[test]
fn pings_the_ping_service_over_every_transport() {
    let dir = TempDir::new("ping");
    let server = common::serve_on(&["ping", "-q"], &common::every_transport(&dir));
    let runs: Vec<_> = server
        .addrs
        .iter()
        .map(|addr| {
            let addr = addr.clone();
            thread::spawn(move || (ping(&[&addr, "-c", "5", "-i", "10ms"]), addr))
        })
        .collect();
    for run in runs {
        let (out, addr) = run.join().unwrap();
        assert_eq!(out.code, Some(0), "{addr}: {}{}", out.stdout, out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], format!("PING {addr}: 64 bytes"));
        for seq in 1..=5 {
            let prefix = format!("64 bytes from {addr}: seq={seq} time=");
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&prefix) && l.ends_with(" ms")),
                "no reply line for seq {seq}: {}",
                out.stdout
            );
        }
        assert!(lines.contains(&format!("--- {addr} ping statistics ---").as_str()));
        assert!(
            counts_line(&out)
                .starts_with("5 sent, 5 received, 0% loss, 0 duplicates, 0 reordered, time "),
            "{}",
            out.stdout
        );
        let rtt = lines
            .iter()
            .find(|l| l.starts_with("rtt min/avg/max/mdev = "));
        assert!(
            rtt.is_some_and(|l| l.contains(" ms, jitter = ")),
            "{}",
            out.stdout
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("rtt p50/p90/p99/p99.9 = ") && l.ends_with(" ms")),
            "{}",
            out.stdout
        );
        assert!(out.stderr.is_empty(), "{}", out.stderr);
    }
}

#[test]
fn json_prints_a_line_per_reply_and_a_summary() {
    let server = common::serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let addr = &server.addrs[0];
    let out = ping(&[addr, "-c", "3", "-i", "10ms", "-s", "100", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for (i, reply) in lines[..3].iter().enumerate() {
        assert_eq!(reply["type"], "reply");
        assert_eq!(reply["seq"], i as u64 + 1);
        assert_eq!(reply["bytes"], 100);
        assert_eq!(reply["duplicate"], false);
        assert!(reply["time_ms"].as_f64().unwrap() > 0.0);
    }
    let summary = &lines[3];
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["addr"], addr.as_str());
    assert_eq!(summary["sent"], 3);
    assert_eq!(summary["received"], 3);
    assert_eq!(summary["loss_percent"], 0.0);
    let rtt = &summary["rtt_ms"];
    for key in [
        "min", "avg", "max", "mdev", "jitter", "p50", "p90", "p99", "p99.9", "p99.99",
    ] {
        assert!(rtt[key].is_number(), "{key} missing: {summary}");
    }
    assert!(rtt["min"].as_f64() <= rtt["max"].as_f64());
}

/// A UDP ping server that misbehaves on purpose: of the datagrams it gets
/// (counting from 1), every 10th is dropped, the 3rd is answered twice, and
/// the answer to the 5th is held back until the 6th has been answered.
fn lossy_udp_server() -> (String, Arc<AtomicBool>) {
    let mut held = None;
    common::udp_answering(move |count, request, reply| {
        if count.is_multiple_of(10) {
            return;
        }
        let pong = common::pong(request);
        match count {
            3 => {
                reply(&pong);
                reply(&pong);
            }
            5 => held = Some(pong),
            6 => {
                reply(&pong);
                reply(&held.take().unwrap());
            }
            _ => reply(&pong),
        }
    })
}

#[test]
fn udp_loss_duplicates_and_reordering_are_counted_without_hanging() {
    let (addr, stop) = lossy_udp_server();
    let started = Instant::now();
    let out = ping(&[&addr, "-c", "20", "-i", "10ms"]);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let counts = counts_line(&out);
    assert!(
        counts.starts_with("20 sent, 18 received, 10% loss, 1 duplicates, 1 reordered, time "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("seq=3 time="));
    assert_eq!(out.stdout.matches("(DUP!)").count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("seq=5 time=") && out.stdout.contains("(reordered)"));
    assert!(!out.stdout.contains("seq=10 "), "{}", out.stdout);
    // The last request is lost: the run waits its linger (1 s) for it, then
    // ends on its own.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn udp_json_summary_counts_the_same() {
    let (addr, stop) = lossy_udp_server();
    let out = ping(&[&addr, "-c", "12", "-i", "5ms", "-W", "300ms", "--json"]);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["sent"], 12);
    assert_eq!(summary["received"], 11);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(summary["reordered"], 1);
    assert!((summary["loss_percent"].as_f64().unwrap() - 8.3).abs() < 0.01);
    let dups = out
        .stdout
        .lines()
        .filter(|l| l.contains("\"duplicate\":true"))
        .count();
    assert_eq!(dups, 1);
}

#[test]
fn a_silent_server_means_exit_1_within_the_deadline() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = format!("udp://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = ping(&[&addr, "-i", "50ms", "-w", "700ms"]);
    let took = started.elapsed();
    let err = out.failure(1);
    assert!(
        err.starts_with(&format!("sockit: no reply from {addr}: ")),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        counts_line(&out).contains(" 0 received, 100% loss"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("rtt "), "{}", out.stdout);

    // With a count and no deadline, the linger after the last request ends it.
    let started = Instant::now();
    let out = ping(&[&addr, "-c", "3", "-i", "10ms", "-W", "200ms"]);
    out.failure(1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(counts_line(&out).starts_with("3 sent, 0 received, 100% loss"));
    drop(silent);
}

#[test]
fn refused_is_one_line_and_exit_1() {
    let port = common::closed_tcp_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let out = ping(&[&addr, "-c", "1"]);
    assert_eq!(
        out.failure(1),
        format!("sockit: connect to {addr}: connection refused")
    );

    let port = common::closed_udp_port();
    let addr = format!("udp://127.0.0.1:{port}");
    let out = ping(&[&addr, "-c", "3", "-i", "10ms"]);
    assert_eq!(
        out.failure(1),
        format!("sockit: connect to {addr}: connection refused")
    );
}

#[test]
fn a_server_that_hangs_up_is_one_line_and_exit_1() {
    // Accepts one connection and closes it at once.
    let (addr, _server) = common::tcp_server(drop);
    let addr = format!("tcp://{addr}");
    let out = ping(&[&addr, "-c", "3", "-i", "10ms"]);
    let err = out.failure(1);
    assert!(
        err == format!("sockit: connection closed by {addr}")
            || err.starts_with(&format!("sockit: read from {addr}: "))
            || err.starts_with(&format!("sockit: send to {addr}: ")),
        "{err}"
    );
}

#[test]
fn ctrl_c_prints_the_summary_and_exits_0() {
    let server = common::serve(&["ping", "-q", "-l", "tcp://127.0.0.1:0"], 1);
    let mut child = Command::new(common::bin())
        .args(["ping", &server.addrs[0], "-i", "20ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = common::stdout_lines(&mut child);
    // Wait for two replies, then interrupt.
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.contains(" seq="))
        .count()
        < 2
    {
        lines.push(rx.recv_timeout(LIMIT).expect("reply lines"));
    }
    common::signal(child.id(), "INT");
    let status = common::wait_for_exit(&mut child, LIMIT).expect("exit after SIGINT");
    assert_eq!(status.code(), Some(0));
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    assert!(
        lines.iter().any(|l| l.contains(" received, 0% loss")),
        "{lines:?}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["tcp://127.0.0.1:1", "-c", "0"][..],
        &["tcp://127.0.0.1:1", "-s", "70000"],
        &["tcp://127.0.0.1:1", "-i", "soon"],
        &["ftp://127.0.0.1:1"],
    ] {
        let out = ping(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
}
