//! What `sockit chat` makes of a line from the server: any text parses
//! (no panic), every part borrows from the line, and writing the parsed
//! line back gives the line itself, so the client never shows a line
//! other than what came.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::chat::server_line::ServerLine;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = ServerLine::parse(line);
    assert_eq!(parsed.to_string(), line, "{parsed:?}");
});
