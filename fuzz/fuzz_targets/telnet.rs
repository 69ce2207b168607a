//! The telnet filter on arbitrary bytes in arbitrary chunks: no panic;
//! output never longer than input; the same output however the input is
//! split; input with no IAC and no CR NUL passes unchanged; and no NUL
//! survives right after a CR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::chat::telnet::TelnetFilter;

fn run(input: &[u8], chunk: usize) -> Vec<u8> {
    let mut filter = TelnetFilter::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        let mut buf = piece.to_vec();
        let n = filter.filter(&mut buf);
        assert!(n <= piece.len());
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let chunked = run(input, usize::from(split % 7) + 1);
    assert_eq!(whole, chunked);
    assert!(whole.len() <= input.len());
    let plain = !input.contains(&255) && !input.windows(2).any(|w| w == b"\r\0");
    if plain {
        assert_eq!(whole, input);
    }
    if !input.contains(&255) {
        assert!(!whole.windows(2).any(|w| w == b"\r\0"));
    }
});
