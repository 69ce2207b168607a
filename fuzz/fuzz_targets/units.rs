//! Arbitrary duration and size text (`0.2`, `30s`, `64KiB`, and anything
//! else a user can type): parsed or refused with a one-line error, never a
//! panic; a parsed whole number of milliseconds prints back to text that
//! parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::units::{format_duration, parse_bytes, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_duration(text) {
        Ok(d) if d.subsec_nanos() % 1_000_000 == 0 => {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text:?}");
        }
        Ok(_) => {}
        Err(e) => assert!(!e.contains('\n'), "{e}"),
    }
    if let Err(e) = parse_bytes(text) {
        assert!(!e.contains('\n'), "{e}");
    }
});
