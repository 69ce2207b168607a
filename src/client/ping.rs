//! `sockit ping` (not in this build yet).

use crate::cli::PingArgs;

/// Runs ping.
///
/// # Errors
/// Always, for now: ping is not in this build.
pub async fn run(_args: &PingArgs) -> anyhow::Result<()> {
    anyhow::bail!("ping is not available in this build")
}
