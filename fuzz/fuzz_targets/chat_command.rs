//! A chat member's line, from raw bytes to what the hub acts on: no panic;
//! the cleaned text is UTF-8 without control characters (and unchanged
//! when it already was); every part a command borrows comes from the
//! line; and a name the rules accept is short, printable and unique-keyed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::chat::command::{ClientLine, MAX_NAME_CHARS, check_name, name_key, parse};
use sockit::chat::text::clean;

/// Whether `part` is a slice of `whole` (not merely equal text).
fn within(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let text = clean(data);
    assert!(!text.chars().any(char::is_control), "{text:?}");
    if let Ok(s) = std::str::from_utf8(data)
        && !s.chars().any(char::is_control)
    {
        assert_eq!(&*text, s);
    }
    let line = parse(&text);
    match line {
        ClientLine::Empty => assert!(text.trim().is_empty()),
        ClientLine::Say(said) => {
            assert!(within(said, &text));
            assert!(!said.trim().is_empty());
            // Said text is the line, or the line after a doubled slash.
            assert!(said == &*text || (text.starts_with("//") && said == &text[1..]));
        }
        ClientLine::Nick(name) | ClientLine::Join(name) | ClientLine::Me(name) => {
            assert!(within(name, &text) && !name.is_empty());
        }
        ClientLine::Msg { to, text: said } => {
            assert!(within(to, &text) && within(said, &text));
            assert!(!to.is_empty() && !said.trim().is_empty());
        }
        ClientLine::Unknown(command) => {
            assert!(within(command, &text) && command.starts_with('/'));
        }
        ClientLine::Rooms
        | ClientLine::Who
        | ClientLine::Help
        | ClientLine::Quit
        | ClientLine::Usage(_) => assert!(text.starts_with('/')),
    }
    if check_name(&text).is_ok() {
        let chars = text.chars().count();
        assert!((1..=MAX_NAME_CHARS).contains(&chars));
        assert!(!text.chars().any(char::is_whitespace));
        // The uniqueness key of a key is itself (lowercasing settles).
        let key = name_key(&text);
        assert_eq!(name_key(&key), key);
    }
});
