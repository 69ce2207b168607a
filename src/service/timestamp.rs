//! `timestamp`: each message `M` gets `[Sun Nov 22 01:18:03 2026] M`, the
//! date in ctime format and local time.

use crate::service::clock::Clock;

/// Appends the reply to `msg`.
pub fn reply(msg: &[u8], out: &mut Vec<u8>, clock: &mut Clock) {
    out.push(b'[');
    out.extend_from_slice(clock.ctime());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps() {
        let mut out = Vec::new();
        super::reply(b"hi", &mut out, &mut super::Clock::new());
        assert_eq!(out.len(), 1 + 24 + 2 + 2);
        assert!(out.starts_with(b"[") && out.ends_with(b"] hi"));
    }
}
