//! Logging to stderr with `tracing`: text or JSON lines, with the level set
//! by `-v`/`-q` (or `RUST_LOG`, which wins when set).
//!
//! While a full-screen program owns the terminal (`sockit chat`), a log
//! line on stderr would be drawn over its screen; [`hold`] keeps the lines
//! back until it is done.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};

/// Installs the global subscriber. Stdout is left alone: it carries the
/// `listening on` lines and client data.
pub fn init(args: &LogArgs) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A second init (tests call into the library repeatedly) is harmless.
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The most log text held back by [`hold`]; lines past it are counted,
/// not kept.
const MAX_HELD: usize = 64 * 1024;

/// The log lines held back, while a [`HeldLogs`] is alive.
static HELD: Mutex<Option<Held>> = Mutex::new(None);

#[derive(Default)]
struct Held {
    text: Vec<u8>,
    dropped: usize,
}

/// Stderr, or the held lines while [`hold`] is in force. The subscriber
/// formats each event whole and writes it in one `write_all`, so one
/// write is one line.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(held) if held.text.len() + buf.len() <= MAX_HELD => {
                held.text.extend_from_slice(buf);
            }
            Some(held) => held.dropped += 1,
            None => {
                drop(held);
                return io::stderr().write(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// While the terminal is not stderr's to write to: log lines from now on
/// are held (up to 64 KiB) and written when the returned guard is dropped.
pub fn hold() -> HeldLogs {
    *HELD.lock().unwrap_or_else(PoisonError::into_inner) = Some(Held::default());
    HeldLogs(())
}

/// Holds log lines back until dropped (see [`hold`]).
#[must_use = "the lines are held only while the guard lives"]
pub struct HeldLogs(());

impl Drop for HeldLogs {
    fn drop(&mut self) {
        let held = HELD.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(held) = held {
            let mut stderr = io::stderr().lock();
            let _ = stderr.write_all(&held.text);
            if held.dropped > 0 {
                let _ = writeln!(
                    stderr,
                    "sockit: {} more log lines came while the screen was up, and were dropped",
                    held.dropped
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_are_bounded() {
        let guard = hold();
        let line = vec![b'x'; 1000];
        for _ in 0..100 {
            LogWriter.write_all(&line).unwrap();
        }
        {
            let held = HELD.lock().unwrap();
            let held = held.as_ref().unwrap();
            assert_eq!(held.text.len(), 65 * 1000);
            assert_eq!(held.dropped, 35);
        }
        drop(guard);
        assert!(HELD.lock().unwrap().is_none());
    }
}
