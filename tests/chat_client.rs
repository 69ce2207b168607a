//! `sockit chat` on the real binary against a real `sockit serve chat`
//! (SPEC 3): plain line mode over TCP, Unix and TLS with `--nick`, its
//! errors, and the terminal screen, driven in tmux (a real terminal: the
//! keys typed, the screen read back), which is why those tests need tmux.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TempDir, bin, closed_tcp_port, run_bounded, serve};

/// How long anything awaited (a line, a screen, an exit) may take.
const LIMIT: Duration = Duration::from_secs(10);

/// A chat member over plain TCP, as nc would be, every read bounded.
struct Member {
    io: BufReader<TcpStream>,
    /// Every line received, for the failure messages.
    seen: Vec<String>,
}

impl Member {
    /// Joins the chat at `addr` (`tcp://...`) and takes the name `nick`.
    fn join(addr: &str, nick: &str) -> Member {
        let socket = TcpStream::connect(addr.strip_prefix("tcp://").unwrap()).unwrap();
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut member = Member {
            io: BufReader::new(socket),
            seen: Vec::new(),
        };
        member.wait_for("* welcome, you are ");
        member.send(&format!("/nick {nick}"));
        member.wait_for(&format!("* you are now {nick}"));
        member
    }

    fn send(&mut self, line: &str) {
        let socket = self.io.get_mut();
        socket.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Reads lines until one holds `part`, and returns it.
    fn wait_for(&mut self, part: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            let mut line = String::new();
            match self.io.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let line = line.trim_end().to_owned();
                    self.seen.push(line.clone());
                    if line.contains(part) {
                        return line;
                    }
                }
                Err(e) => panic!("no {part:?} ({e}); got {:#?}", self.seen),
            }
        }
        panic!("no {part:?}; got {:#?}", self.seen)
    }
}

/// Waits for a line from `lines` that starts with `start`.
fn wait_line(lines: &mpsc::Receiver<String>, start: &str) {
    let deadline = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(start) => return,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no {start:?} on stdout; got {seen:#?}");
}

#[test]
fn plain_lines_both_ways_over_tcp_unix_and_tls() {
    let dir = TempDir::new("chat-client");
    common::write_pki(&dir, &["127.0.0.1"]);
    let (cert, key, ca) = (
        dir.path("cert.pem"),
        dir.path("key.pem"),
        dir.path("ca.pem"),
    );
    let unix = format!("unix://{}", dir.path("chat.sock"));
    #[rustfmt::skip]
    let server = serve(&[
        "chat", "--tls-cert", &cert, "--tls-key", &key,
        "-l", "tcp://127.0.0.1:0", "-l", &unix, "-l", "tls://127.0.0.1:0",
    ], 3);
    let mut bob = Member::join(&server.addrs[0], "bob");
    for (i, addr) in server.addrs.iter().enumerate() {
        let nick = format!("alice{i}");
        let mut alice = Command::new(bin())
            .args(["chat", addr, "--nick", &nick, "--ca", &ca])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = common::stdout_lines(&mut alice);
        wait_line(&out, "* welcome, you are ");
        wait_line(&out, &format!("* you are now {nick}"));
        bob.wait_for(&format!(" is now {nick}"));
        let mut stdin = alice.stdin.take().unwrap();
        writeln!(stdin, "hello from {nick} over {addr}").unwrap();
        bob.wait_for(&format!("[{nick}] hello from {nick} over {addr}"));
        bob.send(&format!("hi {nick}"));
        // Received lines are printed as they came.
        wait_line(&out, &format!("[bob] hi {nick}"));
        // The end of stdin: the chat sees the member go, and sockit exits
        // once the server has closed.
        drop(stdin);
        bob.wait_for(&format!("* {nick} left lobby"));
        let status = common::wait_for_exit(&mut alice, LIMIT).expect("sockit chat exits");
        assert!(status.success(), "{status}");
    }
}

#[test]
fn errors_are_one_line_naming_the_address() {
    let port = closed_tcp_port();
    let refused = run_bounded(&["chat", &format!("127.0.0.1:{port}")], LIMIT);
    assert_eq!(
        refused.failure(1),
        format!("sockit: connect to tcp://127.0.0.1:{port}: connection refused")
    );
    let datagrams = run_bounded(&["chat", "udp://127.0.0.1:5000"], LIMIT);
    assert!(
        datagrams.failure(2).contains("udp://127.0.0.1:5000"),
        "{datagrams:?}"
    );
    let nick = run_bounded(&["chat", "127.0.0.1:5000", "--nick", "a b"], LIMIT);
    assert!(nick.failure(2).contains("--nick"), "{nick:?}");
}

// ---------------------------------------------------------------------------
// The screen, in tmux.

/// A tmux server of its own (`-L`, no config file) running one window,
/// killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a `width` x `height` window.
    fn start(width: u16, height: u16, command: &str) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "sockit-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&["new-session", "-d", "-x", &w, "-y", &h, command]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `C-c`, `PageUp`).
    fn press(&self, key: &str) {
        self.run(&["send-keys", key]);
    }

    fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["resize-window", "-x", &w, "-y", &h]);
    }

    /// The screen, once `ok` says it is what was awaited.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let screen = self.run(&["capture-pane", "-p"]);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// `sockit chat ARGS` in a shell that, once it has exited, writes its
/// exit status and the terminal's settings (`stty -a`) to files in `dir`.
fn chat_in_shell(args: &str, dir: &TempDir) -> String {
    format!(
        "'{}' chat {args}; echo $? > '{}'; stty -a > '{}'",
        bin(),
        dir.path("status"),
        dir.path("stty")
    )
}

/// Waits for the chat started by [`chat_in_shell`] to exit, and checks
/// that it exited 0 and gave the terminal back as it found it: line
/// editing and echo on.
fn assert_left_cleanly(dir: &TempDir) {
    let deadline = Instant::now() + LIMIT;
    let stty = loop {
        if let Ok(stty) = std::fs::read_to_string(dir.path("stty"))
            && !stty.is_empty()
        {
            break stty;
        }
        assert!(Instant::now() < deadline, "sockit chat did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = std::fs::read_to_string(dir.path("status")).unwrap();
    assert_eq!(status.trim(), "0");
    let flags: Vec<&str> = stty.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(flags.contains(&flag), "{flag} is off after exit: {stty}");
    }
}

/// The member list's row for `name`: after the panel's border.
fn listed(screen: &str, name: &str) -> bool {
    screen.lines().any(|row| row.contains(&format!("│ {name}")))
}

#[test]
#[ignore = "needs tmux"]
fn the_screen_sends_shows_and_lists_the_members() {
    let server = serve(&["chat", "-l", "tcp://127.0.0.1:0"], 1);
    let addr = &server.addrs[0];
    let mut bob = Member::join(addr, "bob");
    let dir = TempDir::new("chat-tmux");
    let tmux = Tmux::start(
        100,
        30,
        &chat_in_shell(&format!("{addr} --nick alice"), &dir),
    );
    let screen = tmux.wait_for("alice and bob in the member list", |s| {
        s.contains("you: alice") && listed(s, "alice (you)") && listed(s, "bob")
    });
    assert!(screen.contains("#lobby"), "{screen}");
    bob.wait_for(" is now alice");

    tmux.type_text("hello bob");
    tmux.press("Enter");
    bob.wait_for("[alice] hello bob");
    // Alice's own line is on her screen too.
    tmux.wait_for("alice's line", |s| s.contains("[alice] hello bob"));

    let long = "a line long enough to wrap: ".to_owned() + &"word ".repeat(30) + "omega";
    bob.send(&long);
    let screen = tmux.wait_for("bob's long line", |s| s.contains("word omega"));
    let rows: Vec<&str> = screen.lines().collect();
    let first = rows
        .iter()
        .position(|r| r.contains("[bob] a line long enough to wrap"))
        .unwrap_or_else(|| panic!("{screen}"));
    let last = rows
        .iter()
        .position(|r| r.contains("word omega"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(last > first, "not wrapped:\n{screen}");

    // Too narrow for the member list: it goes, and the lines wrap anew.
    tmux.resize(40, 20);
    tmux.wait_for("no member list", |s| {
        !s.contains('│') && s.contains("word omega")
    });

    // Someone new: the header counts them.
    let _carol = Member::join(addr, "carol");
    tmux.wait_for("three members", |s| s.contains("3 members"));

    tmux.press("C-c");
    assert_left_cleanly(&dir);
    bob.wait_for("* alice left lobby");
}

#[test]
#[ignore = "needs tmux"]
fn the_screen_says_when_the_server_closes_and_waits_for_a_key() {
    let mut server = serve(&["chat", "-l", "tcp://127.0.0.1:0", "--grace", "300ms"], 1);
    let dir = TempDir::new("chat-tmux");
    let tmux = Tmux::start(
        80,
        24,
        &chat_in_shell(&format!("{} -n zoe", server.addrs[0]), &dir),
    );
    tmux.wait_for("the welcome", |s| s.contains("you: zoe"));
    server.signal("TERM");
    assert_eq!(server.wait_exit(LIMIT), Some(0));
    tmux.wait_for("that the connection closed", |s| {
        s.contains("* server shutting down")
            && s.contains("* connection closed")
            && s.contains("press any key to leave")
    });
    // Still there, for the last lines to be read...
    std::thread::sleep(Duration::from_millis(300));
    assert!(!std::path::Path::new(&dir.path("status")).exists());
    // ...until a key is pressed.
    tmux.press("x");
    assert_left_cleanly(&dir);
}

#[test]
#[ignore = "needs tmux"]
fn quit_leaves_the_chat() {
    let server = serve(&["chat", "-l", "tcp://127.0.0.1:0"], 1);
    let addr = &server.addrs[0];
    let mut bob = Member::join(addr, "bob");
    let dir = TempDir::new("chat-tmux");
    let tmux = Tmux::start(80, 24, &chat_in_shell(&format!("{addr} -n ann"), &dir));
    tmux.wait_for("the member list", |s| listed(s, "bob"));
    tmux.type_text("/quit");
    tmux.press("Enter");
    bob.wait_for("* ann left lobby");
    assert_left_cleanly(&dir);
}
