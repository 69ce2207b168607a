//! `ping`: every message gets `pong`; `ping REST` gets `pong REST`, so a
//! client can match replies to sequence numbers.

/// Appends the reply to `msg`.
pub fn reply(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"pong");
    if let Some(rest) = msg.strip_prefix(b"ping ") {
        out.push(b' ');
        out.extend_from_slice(rest);
    }
}

#[cfg(test)]
mod tests {
    fn pong(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        super::reply(msg, &mut out);
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
}
