//! `sockit serve chat` on the real binary (SPEC 5): the line protocol over
//! TCP, Unix and TLS, names, rooms, commands, history, telnet bytes, bad
//! input, flood control, shutdown, and a stuck member among a hundred
//! busy ones.

mod common;
#[path = "common/chat.rs"]
mod member;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Proc, TempDir, run_bounded, serve};
use member::{Member, TlsStream, WELCOME};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

fn chat(extra: &[&str]) -> Proc {
    let mut args = vec!["chat", "-l", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    serve(&args, 1)
}

/// Two members of the lobby, each having seen the other arrive.
fn pair(server: &Proc) -> (Member, Member) {
    let mut a = Member::join(&server.addrs[0]);
    let b = Member::join(&server.addrs[0]);
    a.expect(&format!("* {} joined lobby", b.name));
    (a, b)
}

#[test]
fn lines_reach_everyone_else_over_tcp_unix_and_tls() {
    let dir = TempDir::new("chat");
    let unix = format!("unix://{}", dir.path("chat.sock"));
    let server = serve(
        &[
            "chat",
            "-l",
            "tcp://127.0.0.1:0",
            "-l",
            &unix,
            "-l",
            "tls://127.0.0.1:0",
        ],
        3,
    );
    let mut tcp = Member::join(&server.addrs[0]);
    let mut unix = Member::join(&server.addrs[1]);
    tcp.expect(&format!("* {} joined lobby", unix.name));
    let tls = Member::over(Box::new(tls_connect(server.host_port(2))));
    tcp.expect(&format!("* {} joined lobby", tls.name));
    unix.expect(&format!("* {} joined lobby", tls.name));

    // Default names: the address, or unix-N.
    assert!(tcp.name.starts_with("127.0.0.1:"), "{}", tcp.name);
    assert!(tls.name.starts_with("127.0.0.1:"), "{}", tls.name);
    let n = unix.name.strip_prefix("unix-").expect("unix-N");
    assert!(n.parse::<u64>().is_ok(), "{}", unix.name);

    let mut all = [tcp, unix, tls];
    for (who, text) in [(0, "over tcp"), (1, "over unix"), (2, "over tls")] {
        let name = all[who].name.clone();
        all[who].send(text);
        for (i, member) in all.iter_mut().enumerate() {
            if i != who {
                member.expect(&format!("[{name}] {text}"));
            }
        }
        // The sender gets no copy.
        all[who].quiet();
    }
    let [mut tcp, _unix, mut tls] = all;
    tls.send("/quit");
    tls.expect("* bye");
    assert_eq!(tls.until_closed(), "");
    tcp.expect(&format!("* {} left lobby", tls.name));
}

#[test]
fn an_ipv6_member_is_named_with_brackets() {
    let server = serve(&["chat", "-l", "tcp://[::1]:0"], 1);
    let member = Member::join(&server.addrs[0]);
    assert!(member.name.starts_with("[::1]:"), "{}", member.name);
}

#[test]
fn nicks_are_unique_whatever_the_case_and_checked() {
    let server = chat(&[]);
    let (mut a, mut b) = pair(&server);
    let old = a.name.clone();
    a.send("/nick alice");
    a.expect("* you are now alice");
    b.expect(&format!("* {old} is now alice"));
    a.name = "alice".into();

    b.send("/nick Alice");
    b.expect("* nick Alice is taken");
    b.send(&format!("/nick {}", "x".repeat(33)));
    b.expect(&format!(
        "* bad nick {}: 1 to 32 printable characters, no spaces",
        "x".repeat(33)
    ));
    b.send("/nick two words");
    b.expect("* bad nick two words: 1 to 32 printable characters, no spaces");
    b.send("/nick 10.1.2.3:4000");
    b.expect("* bad nick 10.1.2.3:4000: it looks like an address");
    b.send("/nick unix-7");
    b.expect("* bad nick unix-7: it looks like an address");
    b.send("/nick");
    b.expect("* usage: /nick NAME");
    b.send(&format!("/nick {}", "é".repeat(32)));
    b.expect(&format!("* you are now {}", "é".repeat(32)));
    a.line();
    // A name is free again once its owner changes it.
    a.send("/nick ALICE");
    a.expect("* you are now ALICE");
    b.expect("* alice is now ALICE");
    b.send("/nick alicia");
    b.expect("* you are now alicia");
    a.expect(&format!("* {} is now alicia", "é".repeat(32)));
    a.send("hi");
    b.expect("[ALICE] hi");
}

#[test]
fn rooms_keep_their_lines_and_who_and_rooms_list_them() {
    let server = chat(&[]);
    let (mut a, mut b) = pair(&server);
    let mut c = Member::join(&server.addrs[0]);
    a.line();
    b.line();
    for (m, nick) in [(&mut a, "ann"), (&mut b, "ben"), (&mut c, "cat")] {
        m.send(&format!("/nick {nick}"));
        m.line();
        m.name = nick.into();
    }
    a.line();
    a.line();
    b.line();
    b.line();
    c.line();
    c.line();

    c.send("/join dev");
    c.expect("* you are now in dev");
    a.expect("* cat left lobby");
    b.expect("* cat left lobby");
    b.send("/join dev");
    b.expect("* you are now in dev");
    c.expect("* ben joined dev");
    a.expect("* ben left lobby");
    b.send("/join dev");
    b.expect("* you are already in dev");
    b.send("/join two words");
    b.expect("* bad room two words: 1 to 32 printable characters, no spaces");

    c.send("in dev only");
    b.expect("[cat] in dev only");
    a.quiet();
    a.send("in the lobby only");
    b.quiet();
    c.quiet();

    b.send("/who");
    b.expect("* in dev: ben, cat");
    a.send("/who");
    a.expect("* in lobby: ann");
    a.send("/rooms");
    a.expect("* rooms: dev (2), lobby (1)");
    c.send("/join lobby");
    c.expect("* you are now in lobby");
    a.expect("* cat joined lobby");
    b.expect("* cat left dev");
    b.send("/join lobby");
    b.line();
    a.line();
    c.line();
    // The empty room is gone.
    a.send("/rooms");
    a.expect("* rooms: lobby (3)");
}

#[test]
fn private_messages_actions_help_and_unknown_commands() {
    let server = chat(&[]);
    let (mut a, mut b) = pair(&server);
    let mut c = Member::join(&server.addrs[0]);
    a.line();
    b.line();
    a.send("/nick alice");
    a.line();
    b.line();
    c.line();
    b.send("/nick bob");
    b.line();
    a.line();
    c.line();

    a.send("/msg BOB are you there?");
    b.expect("[alice -> bob] are you there?");
    a.quiet();
    c.quiet();
    a.send("/msg nobody hello");
    a.expect("* no one is called nobody");
    a.send("/msg bob");
    a.expect("* usage: /msg NAME text");

    a.send("/me waves");
    b.expect("* alice waves");
    c.expect("* alice waves");
    a.quiet();

    a.send("//slash at the start");
    b.expect("[alice] /slash at the start");
    c.line();

    a.send("/dance now");
    a.expect("* unknown command /dance, see /help");
    a.send("/help");
    let help: Vec<String> = (0..8).map(|_| a.line()).collect();
    for command in ["/nick", "/join", "/rooms", "/who", "/msg", "/me", "/quit"] {
        assert!(
            help.iter().any(|l| l.starts_with(&format!("* {command} "))),
            "{command} missing from {help:?}"
        );
    }
    a.quiet();
    b.quiet();
}

#[test]
fn history_is_replayed_on_join_unless_turned_off() {
    let server = chat(&["--history", "3"]);
    let mut a = Member::join(&server.addrs[0]);
    for i in 1..=5 {
        a.send(&format!("line {i}"));
    }
    a.send("/me stretches");
    // Wait until the hub has them all: a /who is answered after them.
    a.send("/who");
    a.line();
    let mut b = Member::join(&server.addrs[0]);
    let name = a.name.clone();
    b.expect(&format!("[{name}] line 4"));
    b.expect(&format!("[{name}] line 5"));
    b.expect(&format!("* {name} stretches"));
    b.quiet();

    let server = chat(&["--history", "0"]);
    let mut a = Member::join(&server.addrs[0]);
    a.send("nobody will see this");
    a.send("/who");
    a.line();
    let mut b = Member::join(&server.addrs[0]);
    b.quiet();

    // The default is 20 lines.
    let server = chat(&[]);
    let mut a = Member::join(&server.addrs[0]);
    for i in 1..=25 {
        a.send(&format!("line {i}"));
        // Under the default flood limit.
        std::thread::sleep(Duration::from_millis(60));
    }
    a.send("/who");
    a.line();
    let mut b = Member::join(&server.addrs[0]);
    for i in 6..=25 {
        b.expect(&format!("[{}] line {i}", a.name));
    }
    b.quiet();
}

#[test]
fn telnet_commands_are_ignored_and_cr_nul_ends_a_line() {
    let server = chat(&[]);
    let (mut a, mut telnet) = pair(&server);
    // What a telnet client sends first, then a line ended with CR NUL, a
    // subnegotiation inside a line, an escaped 255 and an AYT.
    telnet.send_bytes(b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1fhello\r\0");
    a.expect(&format!("[{}] hello", telnet.name));
    telnet.send_bytes(b"wor\xff\xfa\x18\x00xterm\xff\xf0ld\xff\xf6\r\n");
    a.expect(&format!("[{}] world", telnet.name));
    telnet.send_bytes(b"byte \xff\xff\r\n");
    a.expect(&format!("[{}] byte \\xff", telnet.name));
    // A telnet client gets CRLF line ends back; a plain one LF.
    a.send("back");
    assert_eq!(telnet.raw_line(), format!("[{}] back\r\n", a.name));
    telnet.send_bytes(b"over\r\n");
    assert_eq!(a.raw_line(), format!("[{}] over\n", telnet.name));
}

#[test]
fn long_lines_bad_utf8_and_control_characters_are_handled() {
    let server = chat(&[]);
    let (mut a, mut b) = pair(&server);
    let long = "x".repeat(5000);
    a.send(&long);
    a.expect("* line too long (max 4096 bytes), dropped");
    b.quiet();
    // The connection is still usable, and a line at the limit passes.
    let max = "y".repeat(4096);
    a.send(&max);
    b.expect(&format!("[{}] {max}", a.name));

    // (0xff would be telnet's IAC.)
    a.send_bytes(b"caf\xc3\xa9 \xfe\xc3 done\n");
    b.expect(&format!("[{}] caf\u{e9} \\xfe\\xc3 done", a.name));
    a.send_bytes(b"\x1b[2J\x07bell\ttab\0nul\n");
    b.expect(&format!("[{}] \\x1b[2J\\x07bell tab\\x00nul", a.name));

    // --max-line applies to chat too.
    let server = chat(&["--max-line", "10"]);
    let (mut a, mut b) = pair(&server);
    a.send("0123456789");
    b.expect(&format!("[{}] 0123456789", a.name));
    a.send("0123456789a");
    a.expect("* line too long (max 10 bytes), dropped");
}

#[test]
fn flood_control_drops_the_extra_lines_with_one_notice() {
    let server = chat(&[]);
    let (mut a, mut b) = pair(&server);
    let burst: String = (1..=30).map(|i| format!("flood {i}\n")).collect();
    a.send_bytes(burst.as_bytes());
    for i in 1..=20 {
        b.expect(&format!("[{}] flood {i}", a.name));
    }
    b.quiet();
    a.expect("* slow down: at most 10 lines a second, extra lines dropped");
    a.quiet();
    // After a pause, lines pass again.
    std::thread::sleep(Duration::from_millis(300));
    a.send("calm");
    b.expect(&format!("[{}] calm", a.name));

    // The limits are settable, and --flood-rate 0 turns it off.
    let server = chat(&["--flood-rate", "1", "--flood-burst", "2"]);
    let (mut a, mut b) = pair(&server);
    a.send_bytes(b"one\ntwo\nthree\n");
    b.expect(&format!("[{}] one", a.name));
    b.expect(&format!("[{}] two", a.name));
    a.expect("* slow down: at most 1 lines a second, extra lines dropped");
    b.quiet();
    let server = chat(&["--flood-rate", "0"]);
    let (mut a, mut b) = pair(&server);
    let burst: String = (1..=500).map(|i| format!("f {i}\n")).collect();
    a.send_bytes(burst.as_bytes());
    for i in 1..=500 {
        b.expect(&format!("[{}] f {i}", a.name));
    }
    a.quiet();
}

#[test]
fn sigterm_tells_every_member_and_waits_for_them() {
    let mut server = chat(&["--grace", "20s"]);
    let (mut a, mut b) = pair(&server);
    server.signal("TERM");
    a.expect("* server shutting down");
    b.expect("* server shutting down");
    // Members already in keep talking during the grace period.
    a.send("still here");
    b.expect(&format!("[{}] still here", a.name));
    let gone = a.name.clone();
    drop(a);
    b.expect(&format!("* {gone} left lobby"));
    drop(b);
    server.assert_exits_0(Duration::from_secs(5));
}

#[test]
fn the_grace_period_ends_lingering_members() {
    let mut server = chat(&["--grace", "300ms"]);
    let mut a = Member::join(&server.addrs[0]);
    server.signal("TERM");
    a.expect("* server shutting down");
    let start = Instant::now();
    assert_eq!(a.until_closed(), "");
    assert!(start.elapsed() < Duration::from_secs(4));
    server.assert_exits_0(Duration::from_secs(5));
}

#[test]
fn lines_cut_across_reads_and_pauses_arrive_whole() {
    // A quiet member reads through a stack buffer: what a read leaves of a
    // line must be kept for the next one, and a line longer than that
    // buffer (4 KiB) must arrive whole.
    let server = chat(&["--flood-rate", "0"]);
    let (mut a, mut b) = pair(&server);
    for _ in 0..3 {
        b.send_bytes(b"hel");
        std::thread::sleep(Duration::from_millis(50));
        b.send_bytes(b"lo\nwor");
        std::thread::sleep(Duration::from_millis(50));
        b.send_bytes(b"ld\n");
        a.expect(&format!("[{}] hello", b.name));
        a.expect(&format!("[{}] world", b.name));
        std::thread::sleep(Duration::from_millis(50));
    }
    let long = "x".repeat(4096 - b.name.len() - 10);
    let mut burst = String::new();
    for i in 0..20 {
        burst.push_str(&format!("{i} {long}\n"));
    }
    b.send_bytes(burst.as_bytes());
    for i in 0..20 {
        a.expect(&format!("[{}] {i} {long}", b.name));
    }
    a.quiet();
}

/// The listeners of [`lines_in_one_write_arrive_in_order`]'s server.
const TCP_AND_TLS: [&str; 7] = [
    "chat",
    "-l",
    "tcp://127.0.0.1:0",
    "-l",
    "tls://127.0.0.1:0",
    "--flood-rate",
    "0",
];

#[test]
fn lines_sent_in_one_write_arrive_in_order_with_each_members_line_ends() {
    lines_in_one_write_arrive_in_order(&serve(&TCP_AND_TLS, 2));
}

/// The same on one CPU, where the server's runtime has one thread (as
/// in the benchmarks) and every member's writer runs on it.
#[test]
fn lines_sent_in_one_write_arrive_in_order_on_one_cpu() {
    lines_in_one_write_arrive_in_order(&common::serve_on_one_cpu(&TCP_AND_TLS, 2));
}

fn lines_in_one_write_arrive_in_order(server: &Proc) {
    // One write of several lines goes to the room as one run: every line
    // must still arrive on its own, in order, after a command in between
    // is answered, with CRLF for a telnet member, and over TLS.
    let (mut plain, mut sender) = pair(server);
    let mut telnet = Member::join(&server.addrs[0]);
    for member in [&mut plain, &mut sender] {
        member.expect(&format!("* {} joined lobby", telnet.name));
    }
    let mut tls = Member::over(Box::new(tls_connect(server.host_port(1))));
    for member in [&mut plain, &mut sender, &mut telnet] {
        member.expect(&format!("* {} joined lobby", tls.name));
    }
    telnet.send_bytes(b"crlf please\r\n");
    for member in [&mut plain, &mut sender, &mut tls] {
        member.expect(&format!("[{}] crlf please", telnet.name));
    }
    // The lines before a command are said before it acts: before the
    // rename, under the old name.
    sender.send_bytes(b"one\n/me waves\n/nick zed\ntwo\nthree\n");
    let n = sender.name.clone();
    let said = [
        format!("[{n}] one"),
        format!("* {n} waves"),
        format!("* {n} is now zed"),
        "[zed] two".to_owned(),
        "[zed] three".to_owned(),
    ];
    for line in &said {
        assert_eq!(plain.raw_line(), format!("{line}\n"));
        assert_eq!(telnet.raw_line(), format!("{line}\r\n"));
        tls.expect(line);
    }
    sender.expect("* you are now zed");
    sender.quiet();
    let n = "zed";
    // A burst of more than one read's worth (16 KiB) arrives whole and
    // in order: fewer lines than `--queue`, so however the server's
    // writers are scheduled no member can be taken for one falling behind
    // while this test reads the others a line at a time.
    let pad = "x".repeat(24);
    let burst: String = (0..700).map(|i| format!("burst {i} {pad}\n")).collect();
    assert!(burst.len() > 16 * 1024);
    sender.send_bytes(burst.as_bytes());
    for i in 0..700 {
        let want = format!("[{n}] burst {i} {pad}");
        assert_eq!(plain.line(), want);
        assert_eq!(telnet.raw_line(), format!("{want}\r\n"));
        assert_eq!(tls.line(), want);
    }
    plain.quiet();
    sender.quiet();
}

#[test]
fn a_member_that_reads_late_gets_every_line_whole_and_in_order() {
    member_reading_late(&chat(&["--flood-rate", "0"]));
}

/// The same on one CPU (one thread): the late member's writer finds its
/// socket full part-way through a run and must go on from that byte.
#[test]
fn a_member_that_reads_late_gets_every_line_whole_and_in_order_on_one_cpu() {
    member_reading_late(&common::serve_on_one_cpu(
        &["chat", "-l", "tcp://127.0.0.1:0", "--flood-rate", "0"],
        1,
    ));
}

fn member_reading_late(server: &Proc) {
    // More than the late member's socket holds (its receive buffer, the
    // server's 64 KiB send buffer), fewer lines than `--queue`.
    const LINES: usize = 900;
    let addr: std::net::SocketAddr = server.host_port(0).parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    socket.connect(&addr.into()).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut late = Member::over(Box::new(Box::new(tcp) as Box<dyn common::Duplex>));
    let (mut watcher, mut sender) = pair(server);
    late.expect(&format!("* {} joined lobby", watcher.name));
    late.expect(&format!("* {} joined lobby", sender.name));
    let pad = "y".repeat(220);
    let n = sender.name.clone();
    let burst: String = (0..LINES).map(|i| format!("late {i} {pad}\n")).collect();
    for piece in burst.as_bytes().chunks(10_000) {
        sender.send_bytes(piece);
    }
    // Once the watcher has the last line, the server has handed every
    // line to the late member's socket or queue.
    for i in 0..LINES {
        assert_eq!(watcher.line(), format!("[{n}] late {i} {pad}"));
    }
    for i in 0..LINES {
        assert_eq!(late.raw_line(), format!("[{n}] late {i} {pad}\n"));
    }
    late.quiet();
}

#[test]
fn quiet_joins_keeps_joins_and_leaves_from_big_rooms() {
    let server = chat(&["--quiet-joins", "2"]);
    let (mut a, mut b) = pair(&server);
    // A third member makes the lobby bigger than 2: nobody hears it come
    // or go, but its lines and renames are heard.
    let mut c = Member::join(&server.addrs[0]);
    c.send("/nick carol");
    c.expect("* you are now carol");
    a.expect(&format!("* {} is now carol", c.name));
    c.send("hello");
    b.expect(&format!("* {} is now carol", c.name));
    b.expect("[carol] hello");
    c.send("/quit");
    c.expect("* bye");
    // Back to two: a leave is told again.
    b.send("/quit");
    b.expect("* bye");
    a.expect("[carol] hello");
    a.expect(&format!("* {} left lobby", b.name));
    let out = run_bounded(
        &["serve", "echo", "--quiet-joins", "5"],
        Duration::from_secs(10),
    );
    assert!(out.failure(2).contains("are for the chat service"));
}

#[test]
fn chat_options_are_refused_for_other_services() {
    let out = run_bounded(
        &["serve", "echo", "--history", "5"],
        Duration::from_secs(10),
    );
    let err = out.failure(2);
    assert!(err.contains("are for the chat service, not echo"), "{err}");
    let out = run_bounded(
        &["serve", "chat", "-l", "udp://127.0.0.1:0"],
        Duration::from_secs(10),
    );
    let err = out.failure(2);
    assert!(err.contains("chat does not serve datagrams"), "{err}");
    let out = run_bounded(&["serve", "chat", "--queue", "0"], Duration::from_secs(10));
    out.failure(2);
}

/// A TLS client that accepts any certificate (the development one); the
/// handshake's signatures are still checked.
fn tls_connect(addr: &str) -> TlsStream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(common::AnyCert(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    StreamOwned::new(conn, tcp)
}

/// One member that never reads, among a hundred that talk at twice the
/// default flood rate (flood control off) and read everything: the stuck
/// one is dropped with the notice, the others' lines keep arriving fast,
/// and the server's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_member_is_dropped_and_never_slows_the_room() {
    stuck_member_among_talkers(chat(&["--flood-rate", "0"])).await;
}

/// The same on one CPU, the server's one thread serving the hundred
/// talkers and the stuck member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_member_is_dropped_and_never_slows_the_room_on_one_cpu() {
    stuck_member_among_talkers(common::serve_on_one_cpu(
        &["chat", "-l", "tcp://127.0.0.1:0", "--flood-rate", "0"],
        1,
    ))
    .await;
}

async fn stuck_member_among_talkers(server: Proc) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    const TALKERS: usize = 100;
    const LINES: usize = 100;
    const EVERY: Duration = Duration::from_millis(50);
    const PAD: usize = 150;
    let addr: std::net::SocketAddr = server.host_port(0).parse().unwrap();
    let pid = server.child.id();

    // The stuck member: a tiny receive buffer, and never a read.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    stuck.connect(&addr.into()).unwrap();
    let stuck_name = stuck.local_addr().unwrap().as_socket().unwrap().to_string();
    let dropped_notice = format!("* {stuck_name} dropped (too slow)");

    let base = Instant::now();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::channel::<()>(TALKERS);
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    for _ in 0..TALKERS {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (read, mut write) = tcp.into_split();
        let joined = joined_tx.clone();
        let dropped_notice = dropped_notice.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut latencies = Vec::with_capacity((TALKERS - 1) * LINES);
            let mut saw_drop = false;
            let mut others_dropped = Vec::new();
            let welcome = lines.next_line().await.unwrap().unwrap();
            assert!(welcome.starts_with(WELCOME), "{welcome}");
            joined.send(()).await.unwrap();
            while latencies.len() < (TALKERS - 1) * LINES {
                let Some(line) = lines.next_line().await.unwrap() else {
                    panic!("closed after {} lines", latencies.len());
                };
                if let Some((_, said)) = line.split_once("] t ") {
                    let sent: u64 = said.split(' ').next().unwrap().parse().unwrap();
                    let now = base.elapsed().as_micros() as u64;
                    latencies.push(now.saturating_sub(sent));
                } else if line == dropped_notice {
                    saw_drop = true;
                } else if line.ends_with("dropped (too slow)") {
                    others_dropped.push(line);
                }
            }
            (latencies, saw_drop, others_dropped)
        }));
        let mut go = go_rx.clone();
        writers.push(tokio::spawn(async move {
            go.wait_for(|go| *go).await.unwrap();
            let mut tick = tokio::time::interval(EVERY);
            for _ in 0..LINES {
                tick.tick().await;
                let sent = base.elapsed().as_micros();
                let line = format!("t {sent} {}\n", "x".repeat(PAD));
                write.write_all(line.as_bytes()).await.unwrap();
            }
            write
        }));
    }
    for _ in 0..TALKERS {
        tokio::time::timeout(IO_TIMEOUT, joined_rx.recv())
            .await
            .expect("every talker welcomed in time");
    }
    let rss_before = common::rss_kib(pid);
    go_tx.send(true).unwrap();

    let deadline = Duration::from_secs(60);
    let mut all = Vec::new();
    let mut saw_drop = 0;
    for reader in readers {
        let (latencies, dropped, others) = tokio::time::timeout(deadline, reader)
            .await
            .expect("every talker got every line in time")
            .unwrap();
        assert!(
            others.is_empty(),
            "a reading member was dropped: {others:?}"
        );
        saw_drop += usize::from(dropped);
        all.extend(latencies);
    }
    let rss_after = common::rss_kib(pid);
    for writer in writers {
        drop(writer.await.unwrap());
    }
    drop(stuck);

    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    let (p50, p99, max) = (pick(0.5), pick(0.99), *all.last().unwrap());
    println!(
        "stuck member: {} deliveries, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         server VmRSS {rss_before} KiB before, {rss_after} KiB after",
        all.len(),
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
    );
    assert_eq!(all.len(), TALKERS * (TALKERS - 1) * LINES);
    assert_eq!(
        saw_drop, TALKERS,
        "every talker is told the stuck member was dropped"
    );
    // A room held up by its stuck member would stall for seconds (until
    // the drop, or for good); the bound leaves room for a debug build on
    // two shared cores.
    assert!(p99 < 1_500_000, "p99 {p99} us");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "server grew from {rss_before} to {rss_after} KiB"
    );
}
