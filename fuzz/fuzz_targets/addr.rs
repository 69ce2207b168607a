//! Any string given as an address parses or fails with a short one-line
//! error; a parsed address prints back to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::net::addr::{DefaultScheme, Endpoint};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Endpoint::parse(text, DefaultScheme::Tcp) {
        Ok(endpoint) => {
            let again = Endpoint::parse(&endpoint.to_string(), DefaultScheme::Tcp)
                .expect("a printed address parses");
            assert_eq!(again.to_string(), endpoint.to_string());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'));
            assert!(msg.len() < 1024);
        }
    }
});
