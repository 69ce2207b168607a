//! `hello`: each message `M` gets `Hello, M` (the tutorials' first server).

/// Appends the reply to `msg`.
pub fn reply(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Hello, ");
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        let mut out = Vec::new();
        super::reply(b"World", &mut out);
        assert_eq!(out, b"Hello, World");
    }
}
