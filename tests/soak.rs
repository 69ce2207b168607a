//! The soak test: `benchmarks/soak.py` against this build for ten
//! minutes (`SOCKIT_SOAK_SECONDS` to change it): mixed load on every kind
//! of service, zero errors and bounded memory, or it fails. Too long for
//! CI (`.ci/run` skips it); run it with
//! `cargo test --test soak -- --ignored --nocapture`.

mod common;

use std::process::Command;

#[test]
#[ignore = "soak: ten minutes of mixed load"]
fn ten_minutes_of_mixed_load() {
    let seconds = std::env::var("SOCKIT_SOAK_SECONDS").unwrap_or_else(|_| "600".into());
    let status = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benchmarks/soak.py"))
        .args(["--duration", &seconds])
        .env("SOCKIT_BIN", common::bin())
        .status()
        .expect("run python3 benchmarks/soak.py");
    assert!(status.success(), "the soak failed: see its tables above");
}
