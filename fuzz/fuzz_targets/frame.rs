//! The line framer, fed arbitrary bytes in arbitrary chunks: no panic, no
//! line over the limit, memory bounded by the limit, and (for input that
//! never trips the limit) exactly the lines a plain split would give.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::net::frame::{Frame, LineBuffer};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_line = usize::from(data[0] % 64) + 1;
    let chunk = usize::from(data[1] % 17) + 1;
    let input = &data[2..];
    let mut buf = LineBuffer::new(max_line);
    let mut lines = Vec::new();
    let mut too_long = 0;
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let spare = buf.spare();
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            buf.filled(n);
            rest = &rest[n..];
            while let Some(frame) = buf.next_frame() {
                match frame {
                    Frame::Line(line, _) => {
                        assert!(line.len() <= max_line);
                        lines.push(line.to_vec());
                    }
                    Frame::TooLong => too_long += 1,
                }
            }
            assert!(buf.capacity() <= max_line + 2);
        }
    }
    if too_long == 0 {
        let expected: Vec<Vec<u8>> = input
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
            .map(|l| {
                let l = &l[..l.len() - 1];
                l.strip_suffix(b"\r").unwrap_or(l).to_vec()
            })
            .collect();
        assert_eq!(lines, expected);
    }
});
