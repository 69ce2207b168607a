//! Helpers shared by the integration tests: start the real `sockit`
//! binary (a server that prints `listening on` lines, or a client run to
//! its end within a limit), talk to it over test sockets, and stand up the
//! small std-socket servers the client tests talk to. Everything is
//! bounded in time and cleaned up on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockit")
}

/// How long a server may take to print its listening lines.
pub const STARTUP: Duration = Duration::from_secs(10);

/// A running `sockit` process, killed when dropped.
pub struct Proc {
    pub child: Child,
    /// The addresses from the `listening on` lines, in order.
    pub addrs: Vec<String>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Starts `sockit ARGS...` and waits for `listeners` listening lines.
    pub fn start(args: &[&str], listeners: usize) -> Proc {
        Self::start_with(Command::new(bin()).args(args), listeners)
    }

    /// Like [`Proc::start`] with a prepared command (env, cwd, ...).
    pub fn start_with(cmd: &mut Command, listeners: usize) -> Proc {
        Self::start_stderr(cmd, listeners, Stdio::inherit())
    }

    /// Starts `cmd` with its stderr going to `stderr`, and waits for
    /// `listeners` listening lines.
    fn start_stderr(cmd: &mut Command, listeners: usize, stderr: Stdio) -> Proc {
        Self::start_own_stdio(cmd.stdin(Stdio::null()).stderr(stderr), listeners)
    }

    /// Like [`Proc::start_with`], but stdin and stderr stay as `cmd` has
    /// them (descriptors passed to the child that way).
    pub fn start_own_stdio(cmd: &mut Command, listeners: usize) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start sockit");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut addrs = Vec::new();
            while addrs.len() < listeners {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                addrs.push(listening_addr(&line).to_owned());
            }
            let _ = tx.send((addrs, reader));
        });
        let (addrs, reader) = rx.recv_timeout(STARTUP).expect("listening lines in time");
        assert_eq!(addrs.len(), listeners, "server exited before listening");
        Proc {
            child,
            addrs,
            stdout: Some(reader),
        }
    }

    /// The address of listener `i` without its scheme (`127.0.0.1:4000`,
    /// `[::1]:4000`, or a socket path).
    pub fn host_port(&self, i: usize) -> &str {
        self.addrs[i].split_once("://").unwrap().1
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Waits up to `limit` for the process to exit, returning its status
    /// code (`None` if it is still running or died of a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.wait_status(limit).and_then(|s| s.code())
    }

    /// Everything else the process printed on stdout, once it has exited.
    pub fn rest_of_stdout(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut r) = self.stdout.take() {
            let _ = r.read_to_string(&mut s);
        }
        s
    }
}

/// The address of a `listening on ADDR` line; any other line fails the test.
pub fn listening_addr(line: &str) -> &str {
    line.trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"))
}

/// Sends `sig` (`TERM`, `INT`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Waits up to `limit` for `child` to exit; `None` if it has not.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes whose parent is `pid` (from /proc), by pid, each with
/// its name and state (`sleep S`): a server's workers, an exec service's
/// commands.
pub fn children_described(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            let comm = head.split_once('(').map_or("", |(_, c)| c).to_owned();
            out.push((child, format!("{comm} {}", fields[0])));
        }
    }
    out.sort();
    out
}

/// The pids of [`children_described`].
pub fn children(pid: u32) -> Vec<u32> {
    children_described(pid)
        .into_iter()
        .map(|(child, _)| child)
        .collect()
}

/// Waits (up to `limit`) until `pid` has `n` children, and returns them.
pub fn wait_for_children(pid: u32, n: usize, limit: Duration) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let found = children(pid);
        if found.len() == n {
            return found;
        }
        assert!(
            start.elapsed() < limit,
            "{pid} has children {found:?}, not {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `child`'s stdout line by line (line ends removed), read on a thread;
/// the channel closes when stdout does.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sockit serve ARGS...` and waits for `listeners` listening lines.
pub fn serve(args: &[&str], listeners: usize) -> Proc {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    Proc::start(&full, listeners)
}

/// [`serve`] with the server on CPU 0 alone (`taskset -c 0`), as the
/// benchmarks run it: its runtime then has one thread, where everything
/// the server does takes turns.
pub fn serve_on_one_cpu(args: &[&str], listeners: usize) -> Proc {
    Proc::start_with(
        Command::new("taskset")
            .args(["-c", "0", bin(), "serve"])
            .args(args),
        listeners,
    )
}

/// One loopback listener of each kind, for `-l`: TCP, UDP, Unix
/// (`DIR/s.sock`) and unixgram (`DIR/g.sock`), in that order.
pub fn every_transport(dir: &TempDir) -> [String; 4] {
    [
        "tcp://127.0.0.1:0".to_owned(),
        "udp://127.0.0.1:0".to_owned(),
        format!("unix://{}", dir.path("s.sock")),
        format!("unixgram://{}", dir.path("g.sock")),
    ]
}

/// Starts `sockit serve ARGS...` with a `-l` for each of `listen`, and
/// waits for their listening lines.
pub fn serve_on(args: &[&str], listen: &[String]) -> Proc {
    let mut full = args.to_vec();
    for l in listen {
        full.extend(["-l", l]);
    }
    serve(&full, listen.len())
}

/// A fresh temporary directory for socket files, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sockit-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Sockets and bounded runs for the service and server tests.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The longest any single read or write on a test socket may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long "nothing comes back" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

/// A client stream socket (TCP or Unix), as a test uses it.
pub trait Duplex: Read + Write + Send {
    /// Half-closes: shutdown(Write).
    fn shutdown_write(&self);
    /// A second handle on the same socket (for a reader thread).
    fn try_clone_box(&self) -> Box<dyn Duplex>;
    /// Sets how long a read may block.
    fn read_timeout(&self, limit: Duration);
}

/// TCP and Unix streams have the same methods under the same names.
macro_rules! impl_duplex {
    ($($stream:ty),*) => {$(
        impl Duplex for $stream {
            fn shutdown_write(&self) {
                self.shutdown(Shutdown::Write).expect("shutdown(Write)");
            }
            fn try_clone_box(&self) -> Box<dyn Duplex> {
                Box::new(self.try_clone().expect("clone socket"))
            }
            fn read_timeout(&self, limit: Duration) {
                self.set_read_timeout(Some(limit)).unwrap();
            }
        }
    )*};
}

impl_duplex!(TcpStream, UnixStream);

/// Connects to a listening address as printed by the server
/// (`tcp://127.0.0.1:4000`, `tcp://[::1]:4000`, `unix:///path`), with
/// [`IO_TIMEOUT`] on reads and writes.
pub fn try_connect(addr: &str) -> std::io::Result<Box<dyn Duplex>> {
    let (scheme, rest) = addr.split_once("://").expect("scheme://");
    match scheme {
        "tcp" => {
            let sa: std::net::SocketAddr = rest.parse().expect("socket address");
            let s = TcpStream::connect_timeout(&sa, IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        "unix" => {
            let s = UnixStream::connect(rest)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(Box::new(s))
        }
        other => panic!("not a stream address: {other}://{rest}"),
    }
}

/// [`try_connect`], failing the test on error.
pub fn connect(addr: &str) -> Box<dyn Duplex> {
    try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Shows bytes readably in assertion messages.
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    if bytes.len() > 300 {
        format!("{text:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// Reads exactly `want.len()` bytes (each read bounded by the socket's
/// timeout) and asserts they are `want`.
pub fn expect(s: &mut (impl Read + ?Sized), want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    let mut n = 0;
    while n < got.len() {
        match s.read(&mut got[n..]) {
            Ok(0) => panic!(
                "EOF after {} of {} bytes: got {}, want {}",
                n,
                want.len(),
                show(&got[..n]),
                show(want)
            ),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read after {n} bytes ({e}): got {}, want {}",
                show(&got[..n]),
                show(want)
            ),
        }
    }
    assert!(got == want, "got {}, want {}", show(&got), show(want));
}

/// Writes `send` and expects `want` back.
pub fn roundtrip(s: &mut (impl Read + Write + ?Sized), send: &[u8], want: &[u8]) {
    s.write_all(send).expect("write");
    expect(s, want);
}

/// Reads until EOF; a reset counts as EOF. Panics on a timeout.
pub fn read_to_eof(s: &mut (impl Read + ?Sized)) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("no EOF ({e}) after {}", show(&all)),
        }
    }
}

/// A client datagram socket (UDP, or unixgram bound to its own path so
/// replies can reach it), connected to the server.
pub enum Dgram {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Dgram {
    /// A socket for the server at `addr` (`udp://...`, `unixgram:///...`);
    /// a unixgram client binds a fresh path inside `dir`.
    pub fn new(addr: &str, dir: &TempDir) -> Dgram {
        let (scheme, rest) = addr.split_once("://").expect("scheme://");
        match scheme {
            "udp" => {
                let sa: std::net::SocketAddr = rest.parse().expect("socket address");
                let local = if sa.is_ipv6() {
                    "[::1]:0"
                } else {
                    "127.0.0.1:0"
                };
                Self::udp_from(local, sa)
            }
            "unixgram" => {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let own = dir.path(&format!("c{}.sock", N.fetch_add(1, Ordering::Relaxed)));
                let s = UnixDatagram::bind(&own).expect("bind client path");
                s.connect(rest).expect("connect unixgram");
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                // A server that stopped reading must fail the test, not hang it.
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                Dgram::Unix(s)
            }
            other => panic!("not a datagram address: {other}://{rest}"),
        }
    }

    /// A UDP socket bound to `local`, connected to `server`.
    pub fn udp_from(local: &str, server: std::net::SocketAddr) -> Dgram {
        let s = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
        s.connect(server).expect("connect udp");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Dgram::Udp(s)
    }

    pub fn send(&self, data: &[u8]) {
        let n = match self {
            Dgram::Udp(s) => s.send(data),
            Dgram::Unix(s) => s.send(data),
        }
        .expect("send datagram");
        assert_eq!(n, data.len());
    }

    /// The next datagram, or `None` when none comes within `limit`.
    pub fn recv_within(&self, limit: Duration) -> Option<Vec<u8>> {
        match self {
            Dgram::Udp(s) => udp_recv_within(s, limit),
            Dgram::Unix(s) => {
                s.set_read_timeout(Some(limit)).unwrap();
                let mut buf = vec![0u8; 65_536];
                let r = s.recv(&mut buf);
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                received(r, buf)
            }
        }
    }

    /// The next datagram; fails the test after [`IO_TIMEOUT`].
    pub fn recv(&self) -> Vec<u8> {
        self.recv_within(IO_TIMEOUT)
            .expect("a reply datagram in time")
    }

    /// Sends `data` and returns the reply.
    pub fn request(&self, data: &[u8]) -> Vec<u8> {
        self.send(data);
        self.recv()
    }

    /// Sends `data` and asserts the reply is exactly `want`.
    pub fn expect_reply(&self, data: &[u8], want: &[u8]) {
        let got = self.request(data);
        assert!(
            got == want,
            "sent {}: got {}, want {}",
            show(data),
            show(&got),
            show(want)
        );
    }

    /// Sends `data` and asserts nothing comes back within [`QUIET`].
    pub fn expect_silence(&self, data: &[u8]) {
        self.send(data);
        if let Some(got) = self.recv_within(QUIET) {
            panic!("sent {}: unexpected reply {}", show(data), show(&got));
        }
    }
}

/// The next datagram on `s` (from anyone, if it is not connected), or
/// `None` when none comes within `limit`; reads then block for
/// [`IO_TIMEOUT`] again.
pub fn udp_recv_within(s: &UdpSocket, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = vec![0u8; 65_536];
    let r = s.recv(&mut buf);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    received(r, buf)
}

/// The datagram of a receive into `buf`; `None` for a timeout.
fn received(r: std::io::Result<usize>, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    match r {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// What a bounded run of the binary left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit status; `None` if it had to be killed at the limit.
    pub code: Option<i32>,
    /// Stdout as text (invalid UTF-8 replaced).
    pub stdout: String,
    /// Stdout byte for byte.
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    /// From the start to the exit (or the kill).
    pub elapsed: Duration,
}

impl Output {
    /// Asserts the run failed with `code` and exactly one line on stderr,
    /// and returns that line.
    pub fn failure(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.ends_with('\n') && self.stderr.lines().count() == 1,
            "want one stderr line, got {:?}",
            self.stderr
        );
        self.stderr.trim_end()
    }
}

/// Runs `sockit ARGS...` with stdin closed, killing it after `limit`.
pub fn run_bounded(args: &[&str], limit: Duration) -> Output {
    run_bounded_with(Command::new(bin()).args(args), limit)
}

/// Like [`run_bounded`] with a prepared command.
pub fn run_bounded_with(cmd: &mut Command, limit: Duration) -> Output {
    run_child(cmd.stdin(Stdio::null()), limit, None)
}

/// Runs `sockit ARGS...` with its stdin a pipe that `feed` gets, on a
/// thread of its own, with the process id (to signal it); the process is
/// killed after `limit`.
pub fn run_feeding(
    args: &[&str],
    limit: Duration,
    feed: impl FnOnce(ChildStdin, u32) + Send + 'static,
) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::piped());
    run_child(&mut cmd, limit, Some(Box::new(feed)))
}

/// Runs `sockit ARGS...`, writing `stdin` to it and then closing its stdin.
pub fn run_with_stdin(args: &[&str], stdin: impl Into<Vec<u8>>, limit: Duration) -> Output {
    let stdin = stdin.into();
    run_feeding(args, limit, move |mut pipe, _| {
        let _ = pipe.write_all(&stdin);
    })
}

/// Runs `sockit ARGS...` with its stdin left open until it has exited.
pub fn run_stdin_open(args: &[&str], limit: Duration) -> Output {
    let (done, wait) = mpsc::channel::<()>();
    let out = run_feeding(args, limit, move |pipe, _| {
        let _ = wait.recv_timeout(limit);
        drop(pipe);
    });
    let _ = done.send(());
    out
}

/// What gets a child's stdin pipe and its process id.
type Feed = Box<dyn FnOnce(ChildStdin, u32) + Send>;

fn run_child(cmd: &mut Command, limit: Duration, feed: Option<Feed>) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockit");
    if let Some(feed) = feed {
        let stdin = child.stdin.take().expect("stdin piped");
        let pid = child.id();
        std::thread::spawn(move || feed(stdin, pid));
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let code = match wait_for_exit(&mut child, limit) {
        Some(status) => status.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let elapsed = start.elapsed();
    let stdout_bytes = out.join().unwrap();
    Output {
        code,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        elapsed,
    }
}

impl Proc {
    /// Like [`Proc::start_with`], with stderr written to the file `log`
    /// instead of inherited.
    pub fn start_logged(cmd: &mut Command, listeners: usize, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("create log file");
        Self::start_stderr(cmd, listeners, file.into())
    }

    /// The process id, for `/proc` and signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A path inside a [`TempDir`], as `PathBuf`.
pub fn temp_path(dir: &TempDir, name: &str) -> PathBuf {
    dir.0.join(name)
}

impl Proc {
    /// Waits up to `limit` for the process to exit; `None` if it has not.
    /// Unlike [`Proc::wait_exit`], tells an exit code from a death by signal.
    pub fn wait_status(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for_exit(&mut self.child, limit)
    }

    /// Asserts the process exits with status 0 within `limit`.
    pub fn assert_exits_0(&mut self, limit: Duration) {
        use std::os::unix::process::ExitStatusExt;
        match self.wait_status(limit) {
            None => panic!("still running after {limit:?}"),
            Some(s) if s.code() == Some(0) => {}
            Some(s) if s.signal().is_some() => panic!(
                "killed by signal {} instead of shutting down (handler not installed?)",
                s.signal().unwrap()
            ),
            Some(s) => panic!("exited with {s}, want status 0"),
        }
    }
}

// ---------------------------------------------------------------------------
// Small std-socket servers on port 0, for tests that pin down a client.

/// The longest a test server waits for its client, and lives.
pub const SERVER_WAIT: Duration = Duration::from_secs(20);

/// Serves one TCP connection on a fresh loopback port with `serve`, on a
/// thread; reads and writes time out after [`SERVER_WAIT`]. Returns
/// `127.0.0.1:PORT` and the thread.
pub fn tcp_server<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, std::thread::JoinHandle<T>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + SERVER_WAIT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(SERVER_WAIT)).unwrap();
        stream.set_write_timeout(Some(SERVER_WAIT)).unwrap();
        serve(stream)
    });
    (addr.to_string(), handle)
}

/// Serves UDP on a fresh loopback port with `serve`, on a thread; reads
/// time out after [`SERVER_WAIT`].
pub fn udp_server<T: Send + 'static>(
    serve: impl FnOnce(UdpSocket) -> T + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<T>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(SERVER_WAIT)).unwrap();
    (
        socket.local_addr().unwrap(),
        std::thread::spawn(move || serve(socket)),
    )
}

/// A UDP server on a fresh loopback port (`udp://127.0.0.1:PORT`) that
/// hands every datagram it gets, numbered from 1, to `answer` with a
/// function that sends a reply to its source; it stops once the flag it
/// returns is set, or after [`SERVER_WAIT`].
pub fn udp_answering(
    mut answer: impl FnMut(u64, &[u8], &dyn Fn(&[u8])) + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let (addr, _) = udp_server(move |socket| {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 2048];
        let mut count = 0u64;
        while !stopped.load(Ordering::Relaxed) && started.elapsed() < SERVER_WAIT {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            count += 1;
            answer(count, &buf[..n], &|reply| {
                let _ = socket.send_to(reply, from);
            });
        }
    });
    (format!("udp://{addr}"), stop)
}

/// What the ping service answers to `request`: `ping REST` gets `pong REST`.
pub fn pong(request: &[u8]) -> Vec<u8> {
    let mut reply = b"pong".to_vec();
    reply.extend_from_slice(request.strip_prefix(b"ping").unwrap_or(request));
    reply
}

/// A loopback TCP port that nothing listens on (it was free a moment ago).
pub fn closed_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A loopback UDP port that nothing listens on (it was free a moment ago).
pub fn closed_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A TCP connection to `server` from `local`, another loopback address
/// (`127.0.0.2`), with [`IO_TIMEOUT`] on reads.
pub fn tcp_from(local: &str, server: &str) -> TcpStream {
    let server: std::net::SocketAddr = server.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{local}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// GET /metrics from a `--metrics` endpoint (`http://HOST:PORT`): every
/// sample as `name{labels}` → value. Asserts a 200 and a complete
/// exposition (`# EOF`).
pub fn scrape_metrics(url: &str) -> std::collections::HashMap<String, f64> {
    use std::io::Write;
    let addr = url.strip_prefix("http://").expect("an http:// URL");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// A process's resident memory in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A TLS client verifier that accepts any certificate (its signatures are
/// still checked): for tests that talk to the development certificate.
#[derive(Debug)]
pub struct AnyCert(pub std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A test CA and a certificate it signed for `names`, written into `dir`
/// as `ca.pem`, `cert.pem` and `key.pem`.
pub fn write_pki(dir: &TempDir, names: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sockit test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path("key.pem"), key.serialize_pem()).unwrap();
}
