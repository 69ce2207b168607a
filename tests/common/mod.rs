//! Launchers shared by the integration tests: start the real `sockit`
//! binary, read its `listening on` lines, and clean up on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
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
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sockit");
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
                let addr = line
                    .trim_end()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"));
                addrs.push(addr.to_owned());
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
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit, returning its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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

impl Duplex for TcpStream {
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

impl Duplex for UnixStream {
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
        let mut buf = vec![0u8; 65_536];
        let r = match self {
            Dgram::Udp(s) => {
                s.set_read_timeout(Some(limit)).unwrap();
                let r = s.recv(&mut buf);
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                r
            }
            Dgram::Unix(s) => {
                s.set_read_timeout(Some(limit)).unwrap();
                let r = s.recv(&mut buf);
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                r
            }
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("recv: {e}"),
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

/// What a bounded run of the binary left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit status; `None` if it had to be killed at the limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sockit ARGS...` with stdin closed, killing it after `limit`.
pub fn run_bounded(args: &[&str], limit: Duration) -> Output {
    run_bounded_with(Command::new(bin()).args(args), limit)
}

/// Like [`run_bounded`] with a prepared command.
pub fn run_bounded_with(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockit");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

impl Proc {
    /// Like [`Proc::start_with`], with stderr written to the file `log`
    /// instead of inherited.
    pub fn start_logged(cmd: &mut Command, listeners: usize, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("create log file");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("start sockit");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            while lines.len() < listeners {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                lines.push(line);
            }
            let _ = tx.send((lines, reader));
        });
        let (lines, reader) = rx.recv_timeout(STARTUP).expect("listening lines in time");
        assert_eq!(lines.len(), listeners, "server exited before listening");
        let addrs = lines
            .iter()
            .map(|l| {
                l.trim_end()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected stdout line {l:?}"))
                    .to_owned()
            })
            .collect();
        Proc {
            child,
            addrs,
            stdout: Some(reader),
        }
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
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
