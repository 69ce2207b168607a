//! `serve chat --redis` on the real binary against a real `redis-server`
//! (SPEC 5, scale-out): two servers are one chat (lines, notices, `/who`,
//! `/rooms`, `/msg`, names and history across them), a dead server's
//! members go, an outage of Redis is told and survived, `rediss://`, and
//! prefixes that keep two chats apart on one Redis.
//!
//! Each test starts its own `redis-server` on a free loopback port
//! (nothing saved to disk) and kills it at the end; they are ignored
//! without one (`.ci/run` installs it).

mod common;
#[path = "common/chat.rs"]
mod member;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, TempDir, run_bounded, serve};
use member::Member;

/// A `redis-server` of the test's own, on a free loopback port; killed
/// when dropped.
struct Redis {
    child: Child,
    port: u16,
    /// The extra arguments it was started with (TLS), for a restart.
    args: Vec<String>,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(free_port(), Vec::new())
    }

    fn start_with(port: u16, args: Vec<String>) -> Redis {
        let mut command = Command::new("redis-server");
        if args.is_empty() {
            command.args(["--port", &port.to_string()]);
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let redis = Redis { child, port, args };
        if redis.args.is_empty() {
            redis.wait_ready();
        } else {
            // TLS: wait for the port; a PING would need a TLS client.
            wait_for_port(port);
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut reply = [0; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} not ready", self.port);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it and starts it again, empty, on the same port.
    fn restart(&mut self) {
        self.stop();
        *self = Redis::start_with(self.port, std::mem::take(&mut self.args));
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A chat server on the given Redis.
fn chat_on(url: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["chat", "-l", "tcp://127.0.0.1:0", "--redis", url];
    args.extend_from_slice(extra);
    serve(&args, 1)
}

/// Reads lines until one equals `want`, within `limit`; what came before.
fn wait_for(member: &mut Member, want: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut before = Vec::new();
    while Instant::now() < deadline {
        if let Some(line) = member.try_line(Duration::from_millis(200)) {
            if line == want {
                return before;
            }
            before.push(line);
        }
    }
    panic!(
        "{}: no {want:?} within {limit:?}; got {before:?}",
        member.name
    );
}

/// Asks `/who` until the answer is `want` (the other servers' events
/// come when they come), within [`WAIT`].
fn until_who(member: &mut Member, want: &str) {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        member.send("/who");
        while let Some(line) = member.try_line(Duration::from_millis(100)) {
            if line == want {
                return;
            }
            got.push(line);
        }
    }
    panic!("{}: /who never said {want:?}; got {got:?}", member.name);
}

/// Joins `server` and takes the name `nick`, with everything before the
/// name notice read.
fn named(server: &Proc, nick: &str) -> Member {
    let mut member = Member::join(&server.addrs[0]);
    member.send(&format!("/nick {nick}"));
    wait_for(&mut member, &format!("* you are now {nick}"), WAIT);
    member.name = nick.to_owned();
    member
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
#[ignore = "needs redis-server"]
fn two_servers_are_one_chat() {
    let redis = Redis::start();
    let (a, b) = (chat_on(&redis.url(), &[]), chat_on(&redis.url(), &[]));
    let mut alice = named(&a, "alice");
    let mut bob = Member::join(&b.addrs[0]);
    // A join, a rename and lines, each way.
    alice.expect(&format!("* {} joined lobby", bob.name));
    let old = bob.name.clone();
    bob.send("/nick bob");
    // (alice's own rename may reach B after bob joined.)
    wait_for(&mut bob, "* you are now bob", WAIT);
    bob.name = "bob".into();
    alice.expect(&format!("* {old} is now bob"));
    alice.send("hello from a");
    bob.expect("[alice] hello from a");
    bob.send("hello from b");
    alice.expect("[bob] hello from b");
    alice.quiet();

    // A name is unique across servers, whatever the case.
    bob.send("/nick ALICE");
    bob.expect("* nick ALICE is taken");
    // /who and /rooms count every server; /msg crosses.
    bob.send("/who");
    bob.expect("* in lobby: alice, bob");
    bob.send("/msg alice psst");
    alice.expect("[bob -> alice] psst");
    bob.quiet();
    alice.send("/join dev");
    alice.expect("* you are now in dev");
    bob.expect("* alice left lobby");
    alice.send("in dev");
    bob.send("/rooms");
    bob.expect("* rooms: dev (1), lobby (1)");

    // History is shared: a newcomer on B gets what was said on A.
    let mut carol = Member::join(&b.addrs[0]);
    carol.expect("[alice] hello from a");
    carol.expect("[bob] hello from b");
    carol.send("/join dev");
    carol.expect("* you are now in dev");
    carol.expect("[alice] in dev");
    alice.expect(&format!("* {} joined dev", carol.name));

    // Leaving is seen on the other server, and frees the name there.
    alice.send("/quit");
    alice.expect("* bye");
    carol.expect("* alice left dev");
    bob.send("/nick alice");
    wait_for(&mut bob, "* you are now alice", WAIT);
}

#[test]
#[ignore = "needs redis-server"]
fn a_dead_servers_members_and_names_go_within_15s() {
    let redis = Redis::start();
    let a = chat_on(&redis.url(), &[]);
    let b = chat_on(&redis.url(), &[]);
    let mut alice = named(&a, "alice");
    let _bob = named(&b, "bob");
    until_who(&mut alice, "* in lobby: alice, bob");

    b.signal("KILL");
    let killed = Instant::now();
    wait_for(&mut alice, "* bob left lobby", Duration::from_secs(15));
    let gone = killed.elapsed();
    assert!(gone < Duration::from_secs(15), "{gone:?}");
    alice.send("/who");
    alice.expect("* in lobby: alice");
    // Its name is free again.
    let mut other = Member::join(&a.addrs[0]);
    other.send("/nick bob");
    wait_for(&mut other, "* you are now bob", WAIT);
}

#[test]
#[ignore = "needs redis-server"]
fn an_outage_of_redis_is_told_and_survived() {
    let mut redis = Redis::start();
    let (a, b) = (chat_on(&redis.url(), &[]), chat_on(&redis.url(), &[]));
    let mut alice = named(&a, "alice");
    let mut amy = named(&a, "amy");
    let mut bob = named(&b, "bob");
    until_who(&mut alice, "* in lobby: alice, amy, bob");

    redis.stop();
    const OUT: &str =
        "* the other servers are out of reach: lines reach this server's members only";
    for member in [&mut alice, &mut amy, &mut bob] {
        wait_for(member, OUT, WAIT);
    }
    // Local members still talk; the other server does not get it.
    alice.send("while apart");
    wait_for(&mut amy, "[alice] while apart", WAIT);
    alice.send("/nick alicia");
    alice.expect("* names cannot change while the other servers are out of reach");
    bob.quiet();

    redis.restart();
    let back = Instant::now();
    const BACK: &str = "* the other servers are back in reach";
    for member in [&mut alice, &mut amy, &mut bob] {
        let before = wait_for(member, BACK, Duration::from_secs(10));
        assert!(
            !before.iter().any(|l| l.contains("left")),
            "{}: {before:?}",
            member.name
        );
    }
    // Within 10 s lines flow again, both ways, and nobody is lost.
    loop {
        alice.send("are you there");
        if bob.try_line(Duration::from_millis(500)).as_deref() == Some("[alice] are you there") {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no lines after 10 s"
        );
    }
    bob.send("yes");
    wait_for(&mut alice, "[bob] yes", WAIT);
    until_who(&mut bob, "* in lobby: alice, amy, bob");
    // Names are unique across servers again.
    bob.send("/nick amy");
    wait_for(&mut bob, "* nick amy is taken", WAIT);
}

#[test]
#[ignore = "needs redis-server"]
fn default_names_stay_unique_across_servers() {
    let redis = Redis::start();
    let dir = TempDir::new("chat-redis");
    let servers: Vec<Proc> = ["a.sock", "b.sock"]
        .iter()
        .map(|sock| {
            let unix = format!("unix://{}", dir.path(sock));
            serve(&["chat", "-l", &unix, "--redis", &redis.url()], 1)
        })
        .collect();
    let first = Member::join(&servers[0].addrs[0]);
    assert_eq!(first.name, "unix-1");
    let second = Member::join(&servers[1].addrs[0]);
    assert_eq!(second.name, "unix-1-2");
}

#[test]
#[ignore = "needs redis-server"]
fn prefixes_keep_chats_apart_and_rediss_works() {
    let dir = TempDir::new("chat-rediss");
    let (cert, key, ca) = (
        dir.path("cert.pem"),
        dir.path("key.pem"),
        dir.path("ca.pem"),
    );
    common::write_pki(&dir, &["localhost"]);
    let port = free_port();
    let tls = [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ];
    let _redis = Redis::start_with(port, tls.iter().map(|s| s.to_string()).collect());
    let url = format!("rediss://localhost:{port}");
    let with = |prefix: &str| chat_on(&url, &["--redis-ca", &ca, "--redis-prefix", prefix]);
    let (one_a, one_b, two) = (with("one:"), with("one:"), with("two:"));
    let mut alice = named(&one_a, "alice");
    let mut bob = named(&one_b, "bob");
    let mut other = named(&two, "other");
    until_who(&mut alice, "* in lobby: alice, bob");
    alice.send("over tls");
    wait_for(&mut bob, "[alice] over tls", WAIT);
    // The chat under another prefix sees none of it, and has its own
    // names.
    other.quiet();
    other.send("/nick alice");
    other.expect("* you are now alice");
    bob.quiet();
}

/// No Redis needed: a server whose Redis is not there yet still serves
/// its own members, and says so.
#[test]
fn a_server_starts_without_its_redis_and_says_so() {
    let server = chat_on(&format!("redis://127.0.0.1:{}", free_port()), &[]);
    let mut member = Member::join(&server.addrs[0]);
    member.expect("* the other servers are out of reach: lines reach this server's members only");
    let mut other = Member::join(&server.addrs[0]);
    wait_for(&mut member, &format!("* {} joined lobby", other.name), WAIT);
    other.send("/who");
    wait_for(
        &mut other,
        "* the other servers are out of reach: lines reach this server's members only",
        WAIT,
    );
}

#[test]
fn a_bad_redis_url_is_a_usage_error() {
    let out = run_bounded(
        &["serve", "chat", "--redis", "http://127.0.0.1:6379"],
        Duration::from_secs(10),
    );
    let err = out.failure(2);
    assert!(err.contains("--redis http://127.0.0.1:6379"), "{err}");
    let out = run_bounded(
        &["serve", "echo", "--redis", "redis://127.0.0.1:6379"],
        Duration::from_secs(10),
    );
    assert!(out.failure(2).contains("are for the chat"));
}

#[test]
#[ignore = "needs redis-server"]
fn the_workers_of_one_server_are_one_chat() {
    let redis = Redis::start();
    let server = serve(
        &[
            "chat",
            "--workers",
            "2",
            "-l",
            "tcp://127.0.0.1:0",
            "--redis",
            &redis.url(),
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    // Eight members: the kernel spreads them over both workers.
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let mut members: Vec<Member> = names.iter().map(|n| named(&server, n)).collect();
    let everyone = format!("* in lobby: {}", names.join(", "));
    until_who(&mut members[7], &everyone);
    members[0].send("hello, workers");
    for member in &mut members[1..] {
        wait_for(member, "[m0] hello, workers", WAIT);
    }

    // The merged metrics: every member once, nobody elsewhere.
    let addr = server.addrs[1].strip_prefix("http://").unwrap();
    let labels = format!("{{service=\"chat\",listener=\"{}\"}}", server.addrs[0]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    for want in [
        format!("sockit_chat_members{labels} 8\n"),
        format!("sockit_chat_remote_members{labels} 0\n"),
        format!("sockit_chat_redis_up{labels} 1\n"),
    ] {
        assert!(text.contains(&want), "{want} in {text}");
    }
}
