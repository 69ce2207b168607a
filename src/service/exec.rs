//! `sockit serve exec -l ADDR... -- CMD [ARG...]` (SPEC 8): inetd's
//! `nowait` and `ncat -e`. Each connection gets its own child process,
//! the connection's bytes as its stdin and its stdout back to the
//! connection, the peer in its environment.
//!
//! The bytes go through sockit (two pipes), not the socket itself: so the
//! same child works behind TCP, Unix and TLS listeners alike, and the
//! section 2 limits hold (`--idle-timeout` counts silence both ways,
//! `--grace` ends the child at shutdown). The child runs in a process
//! group of its own, and the whole group is killed when the connection
//! ends (the client left, the child closed its stdout, the idle timeout,
//! the end of the grace period), then reaped: nothing is left behind, not
//! even the `sleep` of a `sh -c`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::ConnContext;
use crate::net::stream::{PeerAddr, Stream};

/// Bytes per read in either direction.
const CHUNK: usize = 16 * 1024;

/// How long a killed child may take to be reaped before it is left to
/// the kernel (it cannot ignore SIGKILL; this only bounds a stuck reap).
const REAP_WAIT: Duration = Duration::from_secs(5);

/// What a client is told when its child cannot be started.
const CANNOT_START: &[u8] = b"error: cannot start the command\n";

/// The command every connection runs, its program found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    program: PathBuf,
    args: Vec<OsString>,
}

impl ExecCommand {
    /// `argv[0]` looked up as a shell would (a name with a `/` as is, else
    /// on `PATH`), the rest its arguments.
    ///
    /// # Errors
    /// No command, or a program that is not an executable file.
    pub fn new(argv: &[OsString]) -> Result<ExecCommand, String> {
        let (first, args) = argv.split_first().ok_or(
            "serve exec needs a command after --: sockit serve exec -l ADDR -- CMD [ARG...]",
        )?;
        let program = find_program(Path::new(first))
            .ok_or_else(|| format!("{}: no such executable", Path::new(first).display()))?;
        Ok(ExecCommand {
            program,
            args: args.to_vec(),
        })
    }

    /// The program, as found.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Serves one connection with a child of its own.
///
/// # Errors
/// I/O errors on the connection; they end only this connection (and its
/// child).
pub async fn serve(command: &ExecCommand, stream: Stream, ctx: &ConnContext) -> io::Result<()> {
    let mut child = match spawn(command, &ctx.peer) {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(program = %command.program.display(), error = %e, "cannot start the command");
            let mut stream = stream;
            let _ = stream.write_all(CANNOT_START).await;
            let _ = stream.shutdown().await;
            return Ok(());
        }
    };
    let (Some(to_child), Some(from_child)) = (child.stdin.take(), child.stdout.take()) else {
        end(&mut child).await;
        return Err(io::Error::other("the child's pipes are missing"));
    };
    let (from_client, to_client) = tokio::io::split(stream);
    let last = Activity::new();
    let result = relay(from_client, to_child, from_child, to_client, &last, ctx).await;
    end(&mut child).await;
    result
}

/// Starts the child: its own process group, pipes for stdin and stdout,
/// stderr shared with sockit's (the operator's log), the peer in the
/// environment as sockit and ucspi-tcp name it.
fn spawn(command: &ExecCommand, peer: &PeerAddr) -> io::Result<Child> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    match peer {
        PeerAddr::Ip(addr) => {
            let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
            cmd.env("SOCKIT_REMOTE_ADDR", &ip)
                .env("SOCKIT_REMOTE_PORT", &port)
                .env("PROTO", "TCP")
                .env("TCPREMOTEIP", &ip)
                .env("TCPREMOTEPORT", &port);
        }
        PeerAddr::Unix(_) => {
            cmd.env("SOCKIT_REMOTE_ADDR", peer.to_string())
                .env("PROTO", "UNIX");
        }
    }
    cmd.spawn()
}

/// Copies both ways until the child's output ends (or the client's side
/// fails, or the connection is idle too long, or the grace period ends).
/// The client's EOF is passed on as the child's stdin EOF; the child's
/// output is then still relayed until it ends.
async fn relay(
    from_client: impl AsyncRead + Unpin,
    to_child: impl AsyncWrite + Unpin,
    from_child: impl AsyncRead + Unpin,
    to_client: impl AsyncWrite + Unpin,
    last: &Activity,
    ctx: &ConnContext,
) -> io::Result<()> {
    let up = pump(from_client, to_child, last);
    let down = pump(from_child, to_client, last);
    tokio::pin!(up, down);
    let mut client_done = false;
    loop {
        tokio::select! {
            // The child closed its output (or the client cannot take it).
            done = &mut down => return done,
            done = &mut up, if !client_done => {
                client_done = true;
                // A client that reset the connection: nothing more to send.
                done?;
            }
            () = idle(last, ctx.idle_timeout) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
            () = ctx.force_close.cancelled() => return Ok(()),
        }
    }
}

/// Copies `from` to `to` until `from` ends, then shuts `to` down (EOF
/// for a child's stdin, FIN or close_notify for the client).
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    last: &Activity,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        last.touch();
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Ready once nothing has moved either way for `timeout`; never without
/// one.
async fn idle(last: &Activity, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let due = last.get() + timeout;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// When bytes last moved either way. Atomic only to be `Sync`: both
/// directions run in the connection's one task.
struct Activity {
    start: Instant,
    /// Since `start`, in milliseconds.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn get(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Kills the child's whole process group and reaps the child.
async fn end(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        // The group may be gone already (the child exited, and so did
        // what it started): nothing to do then.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_a_shell_finds_them() {
        let cat = ExecCommand::new(&["cat".into(), "-u".into()]).unwrap();
        assert!(cat.program().is_absolute(), "{cat:?}");
        assert_eq!(cat.args, ["-u"]);
        assert_eq!(
            ExecCommand::new(&["/bin/sh".into()]).unwrap().program(),
            Path::new("/bin/sh")
        );
        let missing = ExecCommand::new(&["no-such-program-here".into()]).unwrap_err();
        assert_eq!(missing, "no-such-program-here: no such executable");
        // A file that is not executable, or a directory, is not a program.
        let plain = std::env::temp_dir().join(format!("sockit-exec-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(ExecCommand::new(&[plain.clone().into()]).is_err());
        std::fs::remove_file(&plain).unwrap();
        assert!(ExecCommand::new(&["/tmp".into()]).is_err());
        assert!(
            ExecCommand::new(&[])
                .unwrap_err()
                .contains("needs a command")
        );
    }
}
