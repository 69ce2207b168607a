//! `sockit peer` (SPEC 6) on real sockets: every test starts real nodes
//! on loopback port 0, drives them through stdin as a user or a script
//! would, and reads what they print (text, or JSON lines with `--json`).
//! Waits are bounded; nothing sleeps for a fixed time to "let things
//! settle" except where a test proves something does *not* happen.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a node may take to print its listening line.
const STARTUP: Duration = Duration::from_secs(10);
/// How long membership may take to converge (SPEC: well under this).
const CONVERGE: Duration = Duration::from_secs(20);
/// SPEC 6: a dead member is marked down everywhere within this.
const DOWN_WITHIN: Duration = Duration::from_secs(10);

/// A running node, killed on drop.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far, after the listening line.
    seen: Vec<String>,
    /// `udp://127.0.0.1:PORT`.
    addr: String,
    name: String,
}

impl Node {
    /// Starts `sockit peer -l udp://127.0.0.1:0 --name NAME EXTRA...`.
    fn start(name: &str, extra: &[&str]) -> Node {
        Self::start_on("udp://127.0.0.1:0", name, extra)
    }

    fn start_on(listen: &str, name: &str, extra: &[&str]) -> Node {
        let mut child = Command::new(common::bin())
            .args(["-q", "peer", "-l", listen, "--name", name])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sockit peer");
        let lines = common::stdout_lines(&mut child);
        let first = lines
            .recv_timeout(STARTUP)
            .unwrap_or_else(|e| panic!("{name}: no listening line ({e})"));
        let addr = common::listening_addr(&first).to_owned();
        assert!(
            addr.starts_with("udp://127.0.0.1:") && !addr.ends_with(":0"),
            "{addr}"
        );
        Node {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            addr,
            name: name.to_owned(),
        }
    }

    fn sockaddr(&self) -> SocketAddr {
        self.addr.strip_prefix("udp://").unwrap().parse().unwrap()
    }

    fn port(&self) -> u16 {
        self.sockaddr().port()
    }

    /// Writes lines to the node's stdin.
    fn type_lines(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write to node");
        stdin.flush().unwrap();
    }

    fn say(&mut self, line: &str) {
        self.type_lines(&format!("{line}\n"));
    }

    /// Reads lines until one satisfies `pred` (returned), failing the test
    /// after `limit`. Lines read are kept in `seen`.
    fn wait_line(&mut self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no {what} within {limit:?}; last lines: {:#?}",
                    self.name,
                    &self.seen[self.seen.len().saturating_sub(15)..]
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited while waiting for {what}; saw {:#?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// Like [`Node::wait_line`], but a matching line read earlier counts.
    fn wait_seen(&mut self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        self.wait_line(limit, what, pred)
    }

    /// Like [`Node::wait_line`] for `--json` nodes.
    fn wait_json(&mut self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_line(limit, what, |l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            pred(&v)
        });
        serde_json::from_str(&line).unwrap()
    }

    /// Every line that arrives within `d` (for proving something does
    /// not happen).
    fn lines_within(&mut self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }

    /// Waits until the node's JSON member list shows exactly `names`, all
    /// alive (itself included).
    fn wait_members(&mut self, names: &[&str], limit: Duration) {
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        if self.alive_names_from_peers() == want {
            return;
        }
        self.wait_json(limit, &format!("members {want:?}"), |v| {
            v["type"] == "state" && alive_names(v) == want
        });
    }

    /// Asks `/peers` (JSON) and returns the reply.
    fn peers(&mut self) -> Value {
        self.say("/peers");
        self.wait_json(Duration::from_secs(5), "a state reply", |v| {
            v["type"] == "state"
        })
    }

    fn alive_names_from_peers(&mut self) -> Vec<String> {
        let v = self.peers();
        alive_names(&v)
    }

    /// `/stats` (JSON).
    fn stats(&mut self) -> Value {
        self.say("/stats");
        self.wait_json(Duration::from_secs(5), "a stats reply", |v| {
            v["type"] == "stats"
        })
    }

    fn kill9(&mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        common::wait_for_exit(&mut self.child, limit)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive_names(state: &Value) -> Vec<String> {
    let mut names: Vec<String> = state["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["state"] == "alive")
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn member_state(state: &Value, name: &str) -> Option<String> {
    state["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["state"].as_str().unwrap().to_owned())
}

/// A plain UDP socket, as `nc -u` or the tutorials' node programs use.
fn plain_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

#[test]
fn three_nodes_join_through_one_and_every_message_arrives_once() {
    let mut a = Node::start("alice", &[]);
    let join = ["--join", &a.addr.clone()];
    let mut b = Node::start("bob", &join);
    let mut c = Node::start("carol", &join);
    let started = Instant::now();
    for (n, others) in [
        (&mut a, ["bob", "carol"]),
        (&mut b, ["alice", "carol"]),
        (&mut c, ["alice", "bob"]),
    ] {
        for other in others {
            let want = format!("* {other} joined (udp://127.0.0.1:");
            n.wait_seen(CONVERGE, &want, |l| l.starts_with(&want));
        }
    }
    eprintln!("3 nodes converged in {:?}", started.elapsed());

    for n in [&mut a, &mut b, &mut c] {
        let line = format!("hello from {}", n.name);
        n.say(&line);
    }
    b.say("/msg alice just for you");
    for (n, from) in [
        (&mut a, ["bob", "carol"]),
        (&mut b, ["alice", "carol"]),
        (&mut c, ["alice", "bob"]),
    ] {
        for f in from {
            let want = format!("[{f}] hello from {f}");
            n.wait_seen(Duration::from_secs(10), &want, |l| l == want);
        }
    }
    a.wait_seen(Duration::from_secs(10), "the /msg", |l| {
        l == "[bob -> alice] just for you"
    });

    // /peers: one line per member, NAME ADDR STATE, ourselves first.
    a.say("/peers");
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(a.wait_line(Duration::from_secs(5), "a /peers line", |l| {
            l.ends_with(" alive")
        }));
    }
    assert_eq!(peers[0], format!("alice {} alive", a.addr));
    assert!(
        peers.contains(&format!("bob {} alive", b.addr)),
        "{peers:?}"
    );
    assert!(
        peers.contains(&format!("carol {} alive", c.addr)),
        "{peers:?}"
    );

    // Exactly once: nothing more arrives, and nothing arrived twice.
    for n in [&mut a, &mut b, &mut c] {
        n.lines_within(Duration::from_millis(500));
        for f in ["alice", "bob", "carol"] {
            let want = format!("[{f}] hello from {f}");
            let count = n.seen.iter().filter(|l| **l == want).count();
            assert_eq!(count, if f == n.name { 0 } else { 1 }, "{}: {want}", n.name);
        }
    }
    assert!(
        !c.seen.iter().any(|l| l.contains("just for you")),
        "a /msg goes to one member"
    );

    // /quit leaves the mesh at once (not after failure detection).
    c.say("/quit");
    let status = c
        .wait_exit(Duration::from_secs(5))
        .expect("exits after /quit");
    assert!(status.success(), "{status}");
    a.wait_line(Duration::from_secs(3), "carol leaving", |l| {
        l.starts_with("* carol is down")
    });
}

#[test]
fn twenty_nodes_converge_and_a_broadcast_reaches_the_other_nineteen() {
    const N: usize = 20;
    let names: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    let mut nodes: Vec<Node> = Vec::new();
    let started = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let node = if i == 0 {
            Node::start(name, &["--json"])
        } else {
            // Each joins through a different earlier member (a tree), so
            // membership has to spread by gossip, not from one hub.
            let via = nodes[(i - 1) / 2].addr.clone();
            Node::start(name, &["--json", "--join", &via])
        };
        nodes.push(node);
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &mut nodes {
        node.wait_members(&all, CONVERGE);
    }
    let converged = started.elapsed();
    eprintln!("{N} nodes: full membership everywhere {converged:?} after the first start");

    nodes[7].say("hello mesh");
    let sent = Instant::now();
    for (i, node) in nodes.iter_mut().enumerate() {
        if i == 7 {
            continue;
        }
        let m = node.wait_json(Duration::from_secs(10), "the broadcast", |v| {
            v["type"] == "message" && v["text"] == "hello mesh"
        });
        assert_eq!(m["from"], "n7");
        assert_eq!(m["to"], Value::Null);
        assert_eq!(m["plain"], false);
    }
    eprintln!(
        "broadcast reached all {} others in {:?}",
        N - 1,
        sent.elapsed()
    );
    let extra = nodes[3].lines_within(Duration::from_millis(300));
    assert!(
        !extra.iter().any(|l| l.contains("hello mesh")),
        "delivered twice: {extra:?}"
    );
    assert!(
        !nodes[7].seen.iter().any(|l| l.contains("\"hello mesh\"")),
        "the sender gets no copy"
    );
}

#[test]
fn a_thousand_messages_arrive_once_and_in_order_despite_loss() {
    const COUNT: usize = 1000;
    let faults = [
        "--json",
        "--simulate-loss",
        "0.1",
        "--simulate-duplicate",
        "0.05",
        "--simulate-reorder",
        "0.1",
    ];
    let mut a = Node::start("a", &faults);
    let mut with_join = faults.to_vec();
    let a_addr = a.addr.clone();
    with_join.extend(["--join", &a_addr]);
    let mut b = Node::start("b", &with_join);
    let mut c = Node::start("c", &with_join);
    for n in [&mut a, &mut b, &mut c] {
        n.wait_members(&["a", "b", "c"], CONVERGE);
    }

    let started = Instant::now();
    let mut text = String::new();
    for i in 0..COUNT {
        text.push_str(&format!("m{i:04}\n"));
    }
    // Meanwhile b talks too, so streams cross.
    let b_lines: String = (0..100).map(|i| format!("b{i:03}\n")).collect();
    a.type_lines(&text);
    b.type_lines(&b_lines);

    for n in [&mut b, &mut c] {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < COUNT {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = n.wait_json(left, &format!("message {} of {COUNT}", got.len()), |v| {
                v["type"] == "message" && v["from"] == "a"
            });
            got.push(m["text"].as_str().unwrap().to_owned());
        }
        let want: Vec<String> = (0..COUNT).map(|i| format!("m{i:04}")).collect();
        assert!(got == want, "{}: out of order or duplicated", n.name);
    }
    let elapsed = started.elapsed();
    // b's 100 messages crossed the same lossy network to c.
    let from_b = |v: &Value| v["type"] == "message" && v["from"] == "b";
    let mut b_got: Vec<String> = c
        .seen
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(from_b)
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    while b_got.len() < 100 {
        let m = c.wait_json(Duration::from_secs(30), "b's messages", from_b);
        b_got.push(m["text"].as_str().unwrap().to_owned());
    }
    let want: Vec<String> = (0..100).map(|i| format!("b{i:03}")).collect();
    assert!(b_got == want, "b's messages out of order or duplicated");
    for n in [&mut b, &mut c] {
        let late = n.lines_within(Duration::from_millis(700));
        assert!(
            !late.iter().any(|l| l.contains("\"type\":\"message\"")),
            "{}: a message arrived twice: {late:?}",
            n.name
        );
    }
    let stats = a.stats();
    eprintln!(
        "{COUNT} messages to 2 members under 10% loss: {elapsed:?}; sender stats: {}",
        stats
    );
    assert!(
        stats["transport"]["simulated_losses"].as_u64().unwrap() > 100,
        "the faults were real: {stats}"
    );
    assert!(
        stats["delivery"]["retransmits"].as_u64().unwrap() > 0,
        "{stats}"
    );
}

#[test]
fn a_killed_node_is_marked_down_everywhere_and_rejoins_when_restarted() {
    let mut a = Node::start("a", &["--json"]);
    let join = ["--json", "--join", &a.addr.clone()];
    let mut b = Node::start("b", &join);
    let mut c = Node::start("c", &join);
    for n in [&mut a, &mut b, &mut c] {
        n.wait_members(&["a", "b", "c"], CONVERGE);
    }
    let c_port = c.port();
    c.kill9();
    let killed = Instant::now();
    for n in [&mut a, &mut b] {
        let left = DOWN_WITHIN.saturating_sub(killed.elapsed());
        n.wait_json(left, "c leaving", |v| {
            v["type"] == "leave" && v["name"] == "c"
        });
    }
    eprintln!(
        "killed node marked down on both others in {:?}",
        killed.elapsed()
    );
    assert_eq!(member_state(&a.peers(), "c").as_deref(), Some("down"));

    // Back on the same address, joining through b this time.
    let restarted = Instant::now();
    let listen = format!("udp://127.0.0.1:{c_port}");
    let mut c = Node::start_on(&listen, "c", &["--json", "--join", &b.addr.clone()]);
    for n in [&mut a, &mut b] {
        n.wait_json(CONVERGE, "c rejoining", |v| {
            v["type"] == "join" && v["name"] == "c"
        });
    }
    c.wait_members(&["a", "b", "c"], CONVERGE);
    eprintln!("restarted node rejoined in {:?}", restarted.elapsed());
    assert_eq!(member_state(&a.peers(), "c").as_deref(), Some("alive"));
    // And it is a full member again: messages reach it.
    a.say("welcome back");
    let m = c.wait_json(Duration::from_secs(10), "a message", |v| {
        v["type"] == "message"
    });
    assert_eq!(m["text"], "welcome back");
}

#[test]
fn a_plain_udp_datagram_gets_a_reply() {
    let mut a = Node::start("alice", &[]);
    let nc = plain_socket();
    nc.send_to(b"hello from nc\n", a.sockaddr()).unwrap();
    let reply = common::udp_recv_within(&nc, Duration::from_secs(5)).expect("a reply");
    assert_eq!(reply, b"ack alice\n");
    let me = nc.local_addr().unwrap();
    let want = format!("[{me}] hello from nc");
    a.wait_line(Duration::from_secs(5), &want, |l| l == want);
    // The tutorials' node programs send bare messages, without a newline.
    nc.send_to(b"bare", a.sockaddr()).unwrap();
    assert_eq!(
        common::udp_recv_within(&nc, Duration::from_secs(5)).unwrap(),
        b"ack alice\n"
    );
    let want = format!("[{me}] bare");
    a.wait_line(Duration::from_secs(5), &want, |l| l == want);
    // A node's own acknowledgement is never answered (no reply loops).
    nc.send_to(b"ack bob\n", a.sockaddr()).unwrap();
    assert_eq!(
        common::udp_recv_within(&nc, Duration::from_millis(500)),
        None
    );
}

#[test]
fn wrong_secrets_garbage_and_replays_are_dropped_and_counted() {
    let mut a = Node::start("a", &["--json", "--secret", "right"]);
    let a_addr = a.addr.clone();
    let mut b = Node::start("b", &["--json", "--secret", "right", "--join", &a_addr]);
    let mut eve = Node::start("eve", &["--json", "--secret", "wrong", "--join", &a_addr]);
    a.wait_members(&["a", "b"], CONVERGE);
    b.wait_members(&["a", "b"], CONVERGE);

    // A captured datagram: a node told to join through our socket sends
    // us its sealed announcements.
    let trap = plain_socket();
    let trap_addr = format!("udp://{}", trap.local_addr().unwrap());
    let _d = Node::start("d", &["--json", "--secret", "right", "--join", &trap_addr]);
    let captured =
        common::udp_recv_within(&trap, Duration::from_secs(5)).expect("a sealed announce");
    assert_eq!(&captured[..4], &[0xC5, 0x4B, 1, 0x80], "sealed");

    let target = a.sockaddr();
    let nc = plain_socket();
    nc.send_to(&captured, target).unwrap();
    nc.send_to(&captured, target).unwrap(); // the replay
    nc.send_to(b"plain text\n", target).unwrap();
    let mut unsealed = vec![0xC5, 0x4B, 1, 1];
    unsealed.extend_from_slice(&[0u8; 60]);
    nc.send_to(&unsealed, target).unwrap();
    // Garbage: random bytes, and random bytes behind our sealed header.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200 {
        let len = 1 + (i * 7) % 1500;
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 2 == 0 && len > 4 {
            junk[..4].copy_from_slice(&[0xC5, 0x4B, 1, 0x80]);
        }
        nc.send_to(&junk, target).unwrap();
    }
    assert_eq!(
        common::udp_recv_within(&nc, Duration::from_millis(500)),
        None,
        "no replies with --secret"
    );

    // a and b still talk; eve never got in.
    a.say("still here");
    let m = b.wait_json(Duration::from_secs(10), "a's message", |v| {
        v["type"] == "message"
    });
    assert_eq!(m["text"], "still here");
    let stats = a.stats();
    let dropped = &stats["dropped"];
    let count = |k: &str| {
        dropped[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert!(
        count("auth_failed") >= 50,
        "eve's datagrams and the junk: {stats}"
    );
    assert!(count("replayed") >= 1, "{stats}");
    assert!(count("plain_with_secret") >= 1, "{stats}");
    assert!(count("unsealed_with_secret") >= 1, "{stats}");
    assert_eq!(stats["plain_messages"], 0, "nothing shown: {stats}");
    let members = alive_names(&a.peers());
    assert!(members.contains(&"b".to_owned()), "{members:?}");
    assert!(
        !members.contains(&"eve".to_owned()),
        "eve (wrong secret) got in: {members:?}"
    );
    assert!(
        eve.alive_names_from_peers() == vec!["eve".to_owned()],
        "eve is alone"
    );
    assert!(a.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn protocol_garbage_without_a_secret_is_dropped_and_counted() {
    let mut a = Node::start("a", &["--json"]);
    let nc = plain_socket();
    let target = a.sockaddr();
    for junk in [
        &[0xC5, 0x4B, 1][..],                // too short: plain, shown
        &[0xC5, 0x4B, 9, 1, 1, 2, 3][..],    // another version
        &[0xC5, 0x4B, 1, 77, 0][..],         // unknown kind
        &[0xC5, 0x4B, 1, 2, 1, 2, 3][..],    // truncated data frame
        &[0xC5, 0x4B, 1, 3][..],             // empty ack
        &[0xC5, 0x4B, 1, 1, 0xFF, 0xFF][..], // junk for foca
        &[0xC5, 0x4B, 1, 0x80, 1, 2, 3][..], // sealed, and we have no key
    ] {
        nc.send_to(junk, target).unwrap();
    }
    let mut big = vec![0xC5, 0x4B, 1, 2];
    big.resize(3000, 0);
    nc.send_to(&big, target).unwrap();
    let replies: Vec<Vec<u8>> =
        std::iter::from_fn(|| common::udp_recv_within(&nc, Duration::from_millis(500))).collect();
    assert_eq!(
        replies,
        vec![b"ack a\n".to_vec()],
        "only the plain one is answered"
    );
    let stats = a.stats();
    let d = &stats["dropped"];
    assert_eq!(d["other_version"], 1, "{stats}");
    assert_eq!(d["sealed_without_secret"], 1, "{stats}");
    assert!(d["malformed"].as_u64().unwrap() >= 4, "{stats}");
    assert!(d["swim_refused"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["peer", "-l", "tcp://127.0.0.1:0"][..],
        &["peer", "--join", "nonsense:99999"][..],
        &["peer", "--name", "two words"][..],
        &["peer", "--secret", ""][..],
    ] {
        let out = common::run_bounded(args, Duration::from_secs(10));
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
}
