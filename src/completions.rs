//! What sockit tells the shell and `man` about itself: completion scripts
//! (`sockit completions SHELL`) and a roff man page (`sockit man`), both
//! generated from the clap definition in [`crate::cli`], so they never
//! drift from the real options.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout.
///
/// # Errors
/// Stdout cannot be written.
pub fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sockit", &mut out);
    write_stdout(&out)
}

/// Prints sockit's man page on stdout: the global options, and each
/// subcommand with its one-line summary.
///
/// # Errors
/// Stdout cannot be written.
pub fn print_man() -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .context("render the man page")?;
    write_stdout(&out)
}

/// Writes the whole text at once; a reader that stops early (`| head`)
/// is a broken pipe, which `main` takes for success.
fn write_stdout(text: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text)?;
    stdout.flush()?;
    Ok(())
}
