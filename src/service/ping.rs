//! `ping`: every message gets `pong`; `ping REST` gets `pong REST`, so a
//! client can match replies to sequence numbers.
//!
//! This module owns both sides of that format: [`reply`] for the service,
//! and for the clients the requests (`ping SEQ abcd...\n`, padded to a
//! size) and the sequence number read back out of a reply. `sockit ping`
//! numbers its requests 1, 2, 3 ([`write_request`], [`parse_reply`]); the
//! load generator writes ten fixed-width digits into one prebuilt request
//! ([`stamped_request`], [`stamp`]) and finds them again in the reply of
//! any service that sends the request back ([`find_stamp`]).

use std::io::Write as _;

/// Appends the reply to `msg`.
pub fn reply(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"pong");
    if let Some(rest) = msg.strip_prefix(b"ping ") {
        out.push(b' ');
        out.extend_from_slice(rest);
    }
}

/// Writes the request `ping SEQ` padded with letters to `size` bytes, line
/// end included, into `out`; never shorter than `ping SEQ\n`.
///
/// ```
/// let mut r = Vec::new();
/// sockit::service::ping::write_request(7, 16, &mut r);
/// assert_eq!(r, b"ping 7 abcdefgh\n");
/// ```
pub fn write_request(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(out, "ping {seq}");
    pad(out, size);
}

/// The sequence number of a `pong SEQ ...` reply (line end removed).
pub fn parse_reply(reply: &[u8]) -> Option<u64> {
    let rest = reply.strip_prefix(b"pong ")?;
    let digits = rest.split(|&b| b == b' ').next()?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Where the fixed-width sequence number sits in a stamped request
/// (`ping 0000000042 ...`).
const STAMP_AT: usize = 5;

/// How many digits a stamped sequence number has: any `u32`.
pub const STAMP_DIGITS: usize = 10;

/// The shortest request that carries a stamped sequence number: `ping `,
/// ten digits and the line end.
pub const MIN_STAMPED_REQUEST: usize = STAMP_AT + STAMP_DIGITS + 1;

/// The shortest request: `ping\n`.
pub const MIN_REQUEST: usize = 5;

/// A request of exactly `size` bytes (at least [`MIN_REQUEST`]) whose
/// sequence number can be rewritten in place: `ping 0000000000 abcd...\n`
/// when there is room for one, `ping abc\n` or `ping\n` when there is not.
/// Returns the request and where its digits are, if it has them.
///
/// Every sockit message service sends the request text back inside its
/// reply (`pong 0000000042 ...`, `Hello, ping 0000000042 ...`), so
/// [`find_stamp`] reads the number back from any of them.
pub fn stamped_request(size: usize) -> (Vec<u8>, Option<usize>) {
    let size = size.max(MIN_REQUEST);
    let mut bytes = b"ping".to_vec();
    let at = if size >= MIN_STAMPED_REQUEST {
        bytes.push(b' ');
        bytes.extend_from_slice(&[b'0'; STAMP_DIGITS]);
        Some(STAMP_AT)
    } else {
        None
    };
    pad(&mut bytes, size);
    (bytes, at)
}

/// Writes `seq` as the [`STAMP_DIGITS`] zero-padded digits at the start of
/// `digits`.
pub fn stamp(digits: &mut [u8], mut seq: u32) {
    for d in digits[..STAMP_DIGITS].iter_mut().rev() {
        *d = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
}

/// Finds the stamped sequence number a reply carries back: the ten digits
/// after the first `ng ` (`ping ` in an echo, hello or timestamp reply,
/// `pong ` in a ping reply).
pub fn find_stamp(reply: &[u8]) -> Option<u32> {
    let at = memchr::memmem::find(reply, b"ng ")? + 3;
    let digits = reply.get(at..at + STAMP_DIGITS)?;
    let mut seq: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        seq = seq * 10 + u64::from(d - b'0');
    }
    u32::try_from(seq).ok()
}

/// Pads a request to `size` bytes with a space and the letters a to z over
/// and over, then ends it with `\n` (which it always gets, even past
/// `size`). Letters only: the padding never holds a line end, nor the `ng `
/// that [`find_stamp`] looks for.
fn pad(out: &mut Vec<u8>, size: usize) {
    if out.len() + 1 < size {
        out.push(b' ');
    }
    let mut letter = b'a';
    while out.len() + 1 < size {
        out.push(letter);
        letter = if letter == b'z' { b'a' } else { letter + 1 };
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        reply(msg, &mut out);
        out
    }

    #[test]
    fn pongs() {
        assert_eq!(pong(b"ping"), b"pong");
        assert_eq!(pong(b"ping 42 x"), b"pong 42 x");
        assert_eq!(pong(b"anything"), b"pong");
        assert_eq!(pong(b""), b"pong");
        assert_eq!(pong(b"pingpong"), b"pong");
    }

    #[test]
    fn requests_are_padded_to_the_size() {
        let mut r = Vec::new();
        write_request(1, 64, &mut r);
        assert_eq!(r.len(), 64);
        assert!(r.starts_with(b"ping 1 abc"));
        assert!(r.ends_with(b"\n"));
        write_request(12345, 3, &mut r);
        assert_eq!(r, b"ping 12345\n");
        write_request(7, 8, &mut r);
        assert_eq!(r, b"ping 7 \n");
    }

    #[test]
    fn pongs_carry_the_sequence_number() {
        assert_eq!(parse_reply(b"pong 42 abc"), Some(42));
        assert_eq!(parse_reply(b"pong 42"), Some(42));
        assert_eq!(parse_reply(b"pong"), None);
        assert_eq!(parse_reply(b"pong x"), None);
        assert_eq!(parse_reply(b"ping 42"), None);
        assert_eq!(parse_reply(b"pong 99999999999999999999"), None);
        // What the service answers is what the client reads.
        let mut r = Vec::new();
        write_request(9, 32, &mut r);
        assert_eq!(parse_reply(&pong(&r[..r.len() - 1])), Some(9));
    }

    #[test]
    fn stamped_requests_have_the_asked_size() {
        assert_eq!(stamped_request(5), (b"ping\n".to_vec(), None));
        assert_eq!(stamped_request(1), (b"ping\n".to_vec(), None));
        assert_eq!(stamped_request(7), (b"ping a\n".to_vec(), None));
        assert_eq!(stamped_request(16).0, b"ping 0000000000\n");
        assert_eq!(stamped_request(17).0, b"ping 0000000000 \n");
        assert_eq!(stamped_request(20).0, b"ping 0000000000 abc\n");
        for size in [5, 15, 16, 100, 65_507] {
            let (r, at) = stamped_request(size);
            assert_eq!(r.len(), size);
            assert_eq!(memchr::memchr_iter(b'\n', &r).count(), 1);
            assert_eq!(at.is_some(), size >= MIN_STAMPED_REQUEST);
        }
    }

    #[test]
    fn stamps_come_back_in_every_reply() {
        let (mut r, at) = stamped_request(40);
        let at = at.unwrap();
        stamp(&mut r[at..], 42);
        assert!(r.starts_with(b"ping 0000000042 "));
        let text = &r[..r.len() - 1];
        assert_eq!(find_stamp(&pong(text)), Some(42));
        assert_eq!(find_stamp(text), Some(42));
        let mut hello = b"Hello, ".to_vec();
        hello.extend_from_slice(text);
        assert_eq!(find_stamp(&hello), Some(42));
        let mut stamped = b"[Sun Nov 22 01:18:03 2026] ".to_vec();
        stamped.extend_from_slice(text);
        assert_eq!(find_stamp(&stamped), Some(42));
        stamp(&mut r[at..], u32::MAX);
        assert_eq!(find_stamp(&r), Some(u32::MAX));
        assert_eq!(find_stamp(b"+PONG\r\n"), None);
        assert_eq!(find_stamp(b"pong 12"), None);
        assert_eq!(find_stamp(b"pong 99999999999"), None);
    }
}
