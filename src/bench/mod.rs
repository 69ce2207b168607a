//! `sockit bench`: the load generator (not in this build yet).

use crate::cli::BenchArgs;

/// Runs a benchmark.
///
/// # Errors
/// Always, for now: the load generator is not in this build.
pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not available in this build")
}
