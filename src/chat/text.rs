//! What a chat line may contain once it leaves its sender: text that is
//! safe on every other member's terminal.
//!
//! A line is passed on as UTF-8 with no control characters: a tab becomes
//! a space, every other control character (C0, DEL, and the C1 range that
//! some terminals read as escape sequences) is written as `\xNN`, and each
//! byte that is not valid UTF-8 as `\xNN` too. So an `ESC [2J` typed into
//! the room clears nobody's screen, and nothing is lost: the escaped text
//! still shows what was sent.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The line's text, made safe to show: borrowed when it already was.
///
/// ```
/// use sockit::chat::text::clean;
/// assert_eq!(clean(b"hi there"), "hi there");
/// assert_eq!(clean(b"\x1b[2J\tok \xff"), "\\x1b[2J ok \\xff");
/// ```
pub fn clean(line: &[u8]) -> Cow<'_, str> {
    // Printable ASCII, most of what is typed, is fine as it is: checked
    // without an early exit, so the compiler checks many bytes at a time.
    let printable = line
        .iter()
        .fold(true, |ok, &b| ok & (b' '..=b'~').contains(&b));
    if printable && let Ok(text) = std::str::from_utf8(line) {
        return Cow::Borrowed(text);
    }
    if let Ok(text) = std::str::from_utf8(line)
        && !text.chars().any(char::is_control)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.push(' '),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(
            clean("héllo, wörld [x] *".as_bytes()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_and_bad_bytes_are_escaped() {
        assert_eq!(clean(b"a\0b\x7fc"), "a\\x00b\\x7fc");
        assert_eq!(clean("x\u{9b}y".as_bytes()), "x\\x9by");
        assert_eq!(clean(b"\xc3(\xe2\x82"), "\\xc3(\\xe2\\x82");
        assert_eq!(clean(b"caf\xc3\xa9\x07"), "caf\u{e9}\\x07");
    }

    #[test]
    fn output_has_no_controls() {
        let all: Vec<u8> = (0..=255).collect();
        let out = clean(&all);
        assert!(!out.chars().any(char::is_control), "{out}");
    }
}
