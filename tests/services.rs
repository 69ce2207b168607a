//! The C/S services of SPEC 2 on the wire: each test starts the real
//! binary on port 0 (TCP, UDP, Unix stream, unixgram, and IPv6 TCP and UDP
//! at once) and talks to it with plain std sockets, as the tutorials'
//! clients, nc and telnet would, asserting on the exact bytes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Dgram, Duplex, Proc, TempDir, connect, expect, read_to_eof, roundtrip, show};

/// Seconds from 1900-01-01 (RFC 868) to 1970-01-01.
const RFC868_OFFSET: i64 = 2_208_988_800;

/// Listener order used by [`start_all`].
const TCP: usize = 0;
const UDP: usize = 1;
const UNIX: usize = 2;
const UNIXGRAM: usize = 3;
const TCP6: usize = 4;
const UDP6: usize = 5;
const STREAMS: [usize; 3] = [TCP, UNIX, TCP6];
const DATAGRAMS: [usize; 3] = [UDP, UNIXGRAM, UDP6];

/// A server of `service` on every transport at once, in the order of the
/// constants above, with the environment `env`.
fn start_all_env(service: &str, env: &[(&str, &str)]) -> (Proc, TempDir) {
    let dir = TempDir::new(&format!("svc-{service}"));
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", service, "-q"]);
    for l in common::every_transport(&dir)
        .iter()
        .map(String::as_str)
        .chain(["tcp://[::1]:0", "udp://[::1]:0"])
    {
        cmd.args(["-l", l]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc::start_with(&mut cmd, 6);
    for (i, scheme) in ["tcp", "udp", "unix", "unixgram", "tcp", "udp"]
        .iter()
        .enumerate()
    {
        assert!(
            p.addrs[i].starts_with(&format!("{scheme}://")),
            "{:?}",
            p.addrs
        );
    }
    assert!(p.addrs[TCP].starts_with("tcp://127.0.0.1:") && !p.addrs[TCP].ends_with(":0"));
    assert!(p.addrs[TCP6].starts_with("tcp://[::1]:") && !p.addrs[TCP6].ends_with(":0"));
    assert!(p.addrs[UDP6].starts_with("udp://[::1]:"));
    (p, dir)
}

fn start_all(service: &str) -> (Proc, TempDir) {
    start_all_env(service, &[])
}

// --- time helpers, independent of the server's clock library -------------

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// ctime(3) format of a Unix time, in UTC:
/// `Sun Nov 22 01:18:03 2026` (day padded with a space).
fn ctime(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days + 4).rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        year
    )
}

#[test]
fn ctime_helper_is_right() {
    assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    assert_eq!(ctime(1_795_310_283), "Sun Nov 22 01:18:03 2026");
    assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
}

/// Asserts `text` is a ctime date (24 bytes, fixed positions) within a few
/// seconds of now, as seen at UTC offset `offset` seconds.
fn assert_ctime_now(text: &[u8], offset: i64) {
    let s =
        String::from_utf8(text.to_vec()).unwrap_or_else(|_| panic!("not UTF-8: {}", show(text)));
    assert_eq!(s.len(), 24, "ctime date {s:?}");
    let b = s.as_bytes();
    for (i, c) in [
        (3, b' '),
        (7, b' '),
        (10, b' '),
        (13, b':'),
        (16, b':'),
        (19, b' '),
    ] {
        assert_eq!(b[i], c, "byte {i} of {s:?}");
    }
    for i in [11, 12, 14, 15, 17, 18, 20, 21, 22, 23] {
        assert!(b[i].is_ascii_digit(), "byte {i} of {s:?}");
    }
    assert!(b[8] == b' ' || b[8].is_ascii_digit(), "{s:?}");
    let now = now_secs() + offset;
    assert!(
        (now - 3..=now + 1).any(|t| ctime(t) == s),
        "{s:?} is not within seconds of {:?}",
        ctime(now)
    );
}

/// Asserts `text` is RFC 868 time within a few seconds of now.
fn assert_rfc868_now(text: &[u8]) {
    assert_eq!(text.len(), 4, "time reply {}", show(text));
    let secs = i64::from(u32::from_be_bytes(text.try_into().unwrap()));
    let want = now_secs() + RFC868_OFFSET;
    assert!(
        (want - 3..=want + 1).contains(&secs),
        "got {secs}, now is {want}"
    );
}

/// Checks chargen output: whole lines of 72 printable characters and
/// `\r\n`, each running through the printable set and starting one
/// character further than the line before.
fn assert_chargen_lines(bytes: &[u8]) {
    assert!(
        !bytes.is_empty() && bytes.len().is_multiple_of(74),
        "{} bytes",
        bytes.len()
    );
    let mut prev_first: Option<u8> = None;
    for line in bytes.chunks(74) {
        assert_eq!(&line[72..], b"\r\n", "line {}", show(line));
        for w in line[..72].windows(2) {
            assert!((b' '..=b'~').contains(&w[0]), "{}", show(line));
            let next = if w[0] == b'~' { b' ' } else { w[0] + 1 };
            assert_eq!(w[1], next, "{}", show(line));
        }
        if let Some(p) = prev_first {
            let next = if p == b'~' { b' ' } else { p + 1 };
            assert_eq!(line[0], next, "rotation by one: {}", show(line));
        }
        prev_first = Some(line[0]);
    }
}

// --- one test per service, over every transport ---------------------------

#[test]
fn hello_on_every_transport() {
    let (p, dir) = start_all("hello");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        roundtrip(&mut *s, b"World\n", b"Hello, World\n");
        roundtrip(&mut *s, b"a\r\n", b"Hello, a\r\n");
        roundtrip(&mut *s, b"x\ny\r\n", b"Hello, x\nHello, y\r\n");
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        d.expect_reply(b"World", b"Hello, World");
        d.expect_reply(b"World\n", b"Hello, World\n");
        d.expect_reply(b"World\r\n", b"Hello, World\r\n");
    }
}

#[test]
fn echo_on_every_transport() {
    let (p, dir) = start_all("echo");
    let all: Vec<u8> = (0..=255u8).collect();
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        roundtrip(&mut *s, b"abc\n", b"abc\n");
        roundtrip(&mut *s, b"no newline", b"no newline");
        roundtrip(&mut *s, &all, &all);
        s.shutdown_write();
        assert_eq!(read_to_eof(&mut *s), b"", "echo closes after the client");
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        d.expect_reply(b"abc\n", b"abc\n");
        d.expect_reply(&all, &all);
        let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        d.expect_reply(&big, &big);
    }
}

#[test]
fn timestamp_on_every_transport() {
    let (p, dir) = start_all_env("timestamp", &[("TZ", "UTC")]);
    let check = |reply: &[u8], msg: &[u8], end: &[u8]| {
        assert!(reply.len() == 27 + msg.len() + end.len(), "{}", show(reply));
        assert_eq!(reply[0], b'[', "{}", show(reply));
        assert_eq!(&reply[25..27], b"] ", "{}", show(reply));
        assert_eq!(&reply[27..], [msg, end].concat(), "{}", show(reply));
        assert_ctime_now(&reply[1..25], 0);
    };
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        for (req, msg, end) in [
            (&b"hi\n"[..], &b"hi"[..], &b"\n"[..]),
            (b"two words\r\n", b"two words", b"\r\n"),
        ] {
            s.write_all(req).unwrap();
            let mut reply = vec![0u8; 27 + msg.len() + end.len()];
            s.read_exact(&mut reply).unwrap();
            check(&reply, msg, end);
        }
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        check(&d.request(b"hi"), b"hi", b"");
        check(&d.request(b"hi\n"), b"hi", b"\n");
    }
}

#[test]
fn daytime_on_every_transport() {
    let (p, dir) = start_all_env("daytime", &[("TZ", "UTC")]);
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        let all = read_to_eof(&mut *s);
        assert_eq!(all.len(), 26, "one line then close: {}", show(&all));
        assert!(all.ends_with(b"\r\n"), "{}", show(&all));
        assert_ctime_now(&all[..24], 0);
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        for req in [&b""[..], b"what time is it?\n"] {
            let reply = d.request(req);
            assert_eq!(reply.len(), 26, "{}", show(&reply));
            assert!(reply.ends_with(b"\r\n"));
            assert_ctime_now(&reply[..24], 0);
        }
    }
}

#[test]
fn daytime_honours_tz() {
    // A POSIX TZ string needs no zoneinfo: three hours east of UTC.
    let (p, dir) = start_all_env("daytime", &[("TZ", "XST-3")]);
    let mut s = connect(&p.addrs[TCP]);
    let line = read_to_eof(&mut *s);
    assert_eq!(line.len(), 26, "{}", show(&line));
    assert_ctime_now(&line[..24], 3 * 3600);
    let d = Dgram::new(&p.addrs[UDP], &dir);
    assert_ctime_now(&d.request(b"")[..24], 3 * 3600);
}

#[test]
fn time_on_every_transport() {
    let (p, dir) = start_all("time");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        assert_rfc868_now(&read_to_eof(&mut *s));
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        assert_rfc868_now(&d.request(b""));
        assert_rfc868_now(&d.request(b"x"));
    }
}

#[test]
fn discard_on_every_transport() {
    let (p, dir) = start_all("discard");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        s.write_all(b"drop me\n").unwrap();
        s.write_all(&vec![7u8; 256 * 1024]).unwrap();
        s.shutdown_write();
        assert_eq!(read_to_eof(&mut *s), b"", "{}", p.addrs[i]);
    }
    // Nothing comes back on any datagram socket: send on all, watch once.
    let clients: Vec<Dgram> = DATAGRAMS
        .iter()
        .map(|&i| Dgram::new(&p.addrs[i], &dir))
        .collect();
    for d in &clients {
        d.send(b"drop me\n");
        d.send(b"");
    }
    thread::sleep(common::QUIET);
    for d in &clients {
        assert_eq!(d.recv_within(Duration::from_millis(1)), None);
    }
    // The server is still there: a stream connection is served.
    let mut s = connect(&p.addrs[TCP]);
    s.shutdown_write();
    assert_eq!(read_to_eof(&mut *s), b"");
}

#[test]
fn chargen_on_every_transport() {
    let (p, dir) = start_all("chargen");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        // Two full rotations and then some.
        let mut lines = vec![0u8; 74 * 200];
        s.read_exact(&mut lines).unwrap();
        assert_chargen_lines(&lines);
        // What the client sends is ignored; the lines keep coming.
        s.write_all(b"ignored\n").unwrap();
        let mut more = vec![0u8; 74 * 3];
        s.read_exact(&mut more).unwrap();
        // Still aligned on whole lines, and still rotating.
        assert_eq!(&more[72..74], b"\r\n");
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        for req in [&b""[..], b"x", &[b'y'; 1000]] {
            let reply = d.request(req);
            assert!(reply.len() <= 512, "{} bytes", reply.len());
            assert_chargen_lines(&reply);
        }
    }
}

#[test]
fn chargen_keeps_sending_after_the_client_half_closes() {
    // `nc host 19 < /dev/null` and `sockit connect` with stdin at EOF shut
    // down their write side first: that is not leaving (RFC 864 servers
    // such as inetd's write until the connection is gone).
    let (p, _dir) = start_all("chargen");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        s.shutdown_write();
        thread::sleep(Duration::from_millis(50));
        let mut lines = vec![0u8; 74 * 100];
        let mut n = 0;
        while n < lines.len() {
            match s.read(&mut lines[n..]) {
                Ok(0) => panic!("{}: closed after {n} bytes", p.addrs[i]),
                Ok(k) => n += k,
                Err(e) => panic!("{}: {e} after {n} bytes", p.addrs[i]),
            }
        }
        assert_chargen_lines(&lines);
    }
}

#[test]
fn ping_on_every_transport() {
    let (p, dir) = start_all("ping");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        roundtrip(&mut *s, b"ping 1\n", b"pong 1\n");
        roundtrip(&mut *s, b"ping\n", b"pong\n");
        roundtrip(&mut *s, b"anything\r\n", b"pong\r\n");
        roundtrip(&mut *s, b"ping 2 x y\n", b"pong 2 x y\n");
    }
    for i in DATAGRAMS {
        let d = Dgram::new(&p.addrs[i], &dir);
        d.expect_reply(b"ping 7", b"pong 7");
        d.expect_reply(b"ping 8\n", b"pong 8\n");
        d.expect_reply(b"ping", b"pong");
    }
}

// --- framing ----------------------------------------------------------------

#[test]
fn bare_message_is_answered_without_closing() {
    let (p, _dir) = start_all("hello");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        let start = Instant::now();
        s.write_all(b"World").unwrap();
        s.read_timeout(Duration::from_secs(2));
        expect(&mut *s, b"Hello, World\n");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // And the conversation goes on.
        roundtrip(&mut *s, b"again", b"Hello, again\n");
        roundtrip(&mut *s, b"line\n", b"Hello, line\n");
    }
}

#[test]
fn replies_keep_the_line_end_of_the_request() {
    let (p, _dir) = start_all("hello");
    for i in STREAMS {
        let mut s = connect(&p.addrs[i]);
        roundtrip(&mut *s, b"a\r\n", b"Hello, a\r\n");
        roundtrip(&mut *s, b"a\n", b"Hello, a\n");
        roundtrip(&mut *s, b"\n", b"Hello, \n");
        // Mixed line ends in one write, in order.
        roundtrip(
            &mut *s,
            b"1\r\n2\n3\r\n",
            b"Hello, 1\r\nHello, 2\nHello, 3\r\n",
        );
        // A trailing fragment at EOF gets its reply, then the server closes.
        s.write_all(b"x").unwrap();
        s.shutdown_write();
        assert_eq!(read_to_eof(&mut *s), b"Hello, x\n", "{}", p.addrs[i]);
    }
    // Lines then a fragment, all in one write before EOF.
    let mut s = connect(&p.addrs[TCP]);
    s.write_all(b"a\nb\r\nc").unwrap();
    s.shutdown_write();
    assert_eq!(
        read_to_eof(&mut *s),
        b"Hello, a\nHello, b\r\nHello, c\n".as_slice()
    );
}

/// Writes `count` ping lines in one write while this thread reads the
/// replies, then checks the server closes after our EOF.
fn pipeline(s: Box<dyn Duplex>, count: usize) {
    let mut request = Vec::new();
    for n in 0..count {
        request.extend_from_slice(format!("ping {n}\n").as_bytes());
    }
    let mut writer = s.try_clone_box();
    let w = thread::spawn(move || {
        writer.write_all(&request).unwrap();
    });
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    for n in 0..count {
        line.clear();
        reader.read_line(&mut line).expect("reply in time");
        assert_eq!(line, format!("pong {n}\n"));
    }
    w.join().unwrap();
    reader.get_ref().shutdown_write();
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap(), 0, "extra {line:?}");
}

#[test]
fn ten_thousand_pipelined_lines_in_order() {
    let (p, _dir) = start_all("ping");
    pipeline(connect(&p.addrs[TCP]), 10_000);
    pipeline(connect(&p.addrs[UNIX]), 10_000);
}

/// A deterministic pseudo-random blob (xorshift64).
fn random_blob(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends `data` on one thread and reads the echo to EOF on this one.
fn echo_through(s: Box<dyn Duplex>, data: Vec<u8>) {
    let mut writer = s.try_clone_box();
    let len = data.len();
    let w = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown_write();
        data
    });
    let mut reader = s;
    let mut got = Vec::with_capacity(len);
    got.extend(read_to_eof(&mut *reader));
    let data = w.join().unwrap();
    assert_eq!(got.len(), data.len());
    let first_diff = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "echo differs");
}

#[test]
fn echo_is_binary_exact() {
    let (p, _dir) = start_all("echo");
    for i in [TCP, UNIX] {
        let all: Vec<u8> = (0..=255u8).cycle().take(256 * 4).collect();
        echo_through(connect(&p.addrs[i]), all);
        echo_through(
            connect(&p.addrs[i]),
            random_blob(10 << 20, 0x9E37_79B9_7F4A_7C15 + i as u64),
        );
    }
}
