//! Arbitrary config text: parsed or refused with a one-line error, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::cli::{LimitArgs, TlsServerArgs};
use sockit::config::{DEFAULT_GRACE, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cli = LimitArgs {
        max_conns: None,
        idle_timeout: None,
        park_after: None,
        max_line: None,
        allow: vec![],
        deny: vec![],
        udp_rate: None,
        max_conns_per_ip: None,
    };
    if let Err(e) = ServerConfig::from_toml(text, &cli, DEFAULT_GRACE, &TlsServerArgs::default()) {
        assert!(!e.contains('\n'), "{e}");
    }
});
