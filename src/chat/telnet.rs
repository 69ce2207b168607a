//! Telnet's in-band bytes, removed from a chat connection's input (SPEC 5:
//! "telnet negotiation bytes are ignored").
//!
//! A telnet client mixes commands into the data: `IAC cmd`, `IAC
//! WILL/WONT/DO/DONT option`, and subnegotiations `IAC SB ... IAC SE`; a
//! data byte 255 is sent doubled (`IAC IAC`). It ends lines with `\r\n`,
//! and sends a bare carriage return as `\r\0` (RFC 854), which some
//! clients use for Enter. [`TelnetFilter`] strips the commands, unescapes
//! `IAC IAC`, and turns `\r\0` into `\r\n`, so the line framing behind it
//! sees `\n` or `\r\n` only. It refuses nothing and answers nothing: with
//! every option left unnegotiated, a telnet client stays in its default
//! line mode with local echo, which is what a chat room wants.
//!
//! The filter works in place (its output is never longer than its input)
//! and keeps its state between reads, so a command split across two reads
//! is still removed. Subnegotiation bodies are skipped, not buffered: an
//! endless `IAC SB` costs nothing but the bytes read.

/// Interpret As Command: starts every telnet command.
const IAC: u8 = 255;
/// Subnegotiation begin.
const SB: u8 = 250;
/// Subnegotiation end.
const SE: u8 = 240;
/// WILL, WONT, DO, DONT: each is followed by one option byte.
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Where the filter is in the telnet byte grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Plain data.
    #[default]
    Data,
    /// Just passed a `\r`: a following `\0` makes it a line end.
    Cr,
    /// Just read `IAC`.
    Iac,
    /// Read `IAC WILL` (or WONT, DO, DONT): the next byte is the option.
    Option,
    /// Inside `IAC SB ...`.
    Sub,
    /// Read `IAC` inside a subnegotiation: `SE` ends it.
    SubIac,
}

/// A connection's telnet filter: strips commands and unescapes data, in
/// place, across reads.
#[derive(Debug, Default)]
pub struct TelnetFilter {
    state: State,
    /// Whether any telnet command (or `\r\0`) has been seen: the peer is a
    /// telnet client, which wants `\r\n` line ends back.
    seen_telnet: bool,
}

impl TelnetFilter {
    /// A filter at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the peer has shown itself to be a telnet client.
    pub fn seen_telnet(&self) -> bool {
        self.seen_telnet
    }

    /// Filters `buf` in place; returns the length of what remains (at
    /// most `buf.len()`), which is `buf[..len]`.
    ///
    /// ```
    /// use sockit::chat::telnet::TelnetFilter;
    /// let mut filter = TelnetFilter::new();
    /// let mut bytes = *b"\xff\xfd\x01hi\r\0";
    /// let n = filter.filter(&mut bytes);
    /// assert_eq!(&bytes[..n], b"hi\r\n");
    /// ```
    pub fn filter(&mut self, buf: &mut [u8]) -> usize {
        let mut out = 0;
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Data {
                // Plain data up to the next IAC or CR is kept as it is
                // (moved down, once a command has been taken out), without
                // going through the grammar byte by byte.
                let run = memchr::memchr2(IAC, b'\r', &buf[i..]).unwrap_or(buf.len() - i);
                if out != i {
                    buf.copy_within(i..i + run, out);
                }
                out += run;
                i += run;
                if i == buf.len() {
                    break;
                }
            }
            let byte = buf[i];
            i += 1;
            let (next, emit) = match (self.state, byte) {
                (State::Cr, 0) => {
                    self.seen_telnet = true;
                    (State::Data, Some(b'\n'))
                }
                (State::Data | State::Cr, IAC) => (State::Iac, None),
                (State::Data | State::Cr, b'\r') => (State::Cr, Some(b'\r')),
                (State::Data | State::Cr, _) => (State::Data, Some(byte)),
                (State::Iac, IAC) => (State::Data, Some(IAC)),
                (State::Iac, SB) => (State::Sub, None),
                (State::Iac, WILL..=DONT) => (State::Option, None),
                // NOP, GA, AYT, IP, a stray SE...: a command with no
                // argument, dropped.
                (State::Iac, _) => (State::Data, None),
                (State::Option, _) => (State::Data, None),
                (State::Sub, IAC) => (State::SubIac, None),
                (State::Sub, _) => (State::Sub, None),
                (State::SubIac, SE) => (State::Data, None),
                // `IAC IAC` is a data byte of the subnegotiation; anything
                // else after IAC is malformed, and skipping on is the most
                // forgiving reading.
                (State::SubIac, _) => (State::Sub, None),
            };
            if matches!(next, State::Iac) {
                self.seen_telnet = true;
            }
            self.state = next;
            if let Some(b) = emit {
                buf[out] = b;
                out += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut filter = TelnetFilter::new();
        let mut all = Vec::new();
        for chunk in chunks {
            let mut buf = chunk.to_vec();
            let n = filter.filter(&mut buf);
            all.extend_from_slice(&buf[..n]);
        }
        all
    }

    #[test]
    fn plain_text_passes_unchanged() {
        assert_eq!(run(&[b"hello\r\nworld\n"]), b"hello\r\nworld\n");
        assert_eq!(run(&[b"caf\xc3\xa9 \t\x1b"]), b"caf\xc3\xa9 \t\x1b");
        let mut filter = TelnetFilter::new();
        filter.filter(&mut b"hi\r\n".to_vec());
        assert!(!filter.seen_telnet());
    }

    #[test]
    fn negotiation_is_stripped() {
        // What netkit telnet sends first on port 23, then a line.
        let opening = b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfb\x20\xff\xfb\x21\
                        \xff\xfb\x22\xff\xfb\x27\xff\xfd\x05hi\r\n";
        assert_eq!(run(&[opening]), b"hi\r\n");
        // NOP, AYT, IP between data bytes.
        assert_eq!(run(&[b"a\xff\xf1b\xff\xf6c\xff\xf4d"]), b"abcd");
    }

    #[test]
    fn subnegotiation_is_skipped_with_its_escapes() {
        // Terminal type "xterm", with an escaped 255 inside.
        let sub = b"x\xff\xfa\x18\x00xt\xff\xffrm\xff\xf0y";
        assert_eq!(run(&[sub]), b"xy");
        // An unterminated one swallows everything after it.
        assert_eq!(run(&[b"a\xff\xfa\x18", b"bbbb", b"\xff"]), b"a");
    }

    #[test]
    fn doubled_iac_is_one_data_byte() {
        assert_eq!(run(&[b"a\xff\xffb"]), b"a\xffb");
        assert_eq!(run(&[b"a\xff", b"\xffb"]), b"a\xffb");
    }

    #[test]
    fn cr_nul_ends_a_line() {
        assert_eq!(run(&[b"one\r\0two\r\0"]), b"one\r\ntwo\r\n");
        assert_eq!(run(&[b"one\r", b"\0"]), b"one\r\n");
        // A NUL not after CR is data (the line layer escapes it).
        assert_eq!(run(&[b"a\0b"]), b"a\0b");
        // CR then a command: the command is still removed.
        assert_eq!(run(&[b"a\r\xff\xf1\n"]), b"a\r\n");
        let mut filter = TelnetFilter::new();
        filter.filter(&mut b"x\r\0".to_vec());
        assert!(filter.seen_telnet());
    }

    #[test]
    fn whole_runs_give_what_one_byte_at_a_time_gives() {
        // Deterministic noise, mostly the bytes that mean something: a
        // read taken whole goes through the plain-data runs, one taken a
        // byte at a time through the grammar only.
        let alphabet = [b'a', b'b', b'\r', b'\n', 0, IAC, SB, SE, WILL, DONT, 241];
        let mut seed = 0x2545_f491_u32;
        for _ in 0..500 {
            let input: Vec<u8> = (0..64)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    alphabet[(seed >> 24) as usize % alphabet.len()]
                })
                .collect();
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(run(&[&input]), run(&bytes), "{input:?}");
        }
    }

    #[test]
    fn long_runs_after_a_command_move_down_whole() {
        let mut input = b"\xff\xfb\x01".to_vec();
        input.extend([b'x'; 5000]);
        input.extend(b"\r\n\xff\xff");
        input.extend([b'y'; 3000]);
        let mut want = vec![b'x'; 5000];
        want.extend(b"\r\n\xff");
        want.extend([b'y'; 3000]);
        assert_eq!(run(&[&input]), want);
    }

    #[test]
    fn any_split_gives_the_same_output() {
        let input: &[u8] = b"a\xff\xfb\x01b\xff\xfa\x18\xff\xff\xff\xf0c\r\0d\xff\xffe\r\n";
        let whole = run(&[input]);
        assert_eq!(whole, b"abc\r\nd\xffe\r\n");
        for cut in 0..=input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
        }
    }
}
