//! Errors that decide how sockit exits.
//!
//! Protocol and parsing errors live next to their parsers
//! ([`crate::net::addr::AddrError`], [`crate::net::frame`]); this module holds
//! the one distinction `main` needs: a usage mistake (exit 2) versus a
//! failure at run time (exit 1).

use crate::net::addr::AddrError;

/// A mistake in how sockit was invoked: a bad address, option or config
/// file. `main` prints it as one line and exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<AddrError> for UsageError {
    fn from(e: AddrError) -> Self {
        UsageError(e.to_string())
    }
}

/// The exit status for an error that ended the program: 2 for usage
/// mistakes, 1 for everything else (refused, unknown host, timeout, I/O).
pub fn exit_status(err: &anyhow::Error) -> i32 {
    let usage = err
        .chain()
        .any(|e| e.is::<UsageError>() || e.is::<AddrError>());
    if usage { 2 } else { 1 }
}
