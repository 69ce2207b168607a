//! The input line of the chat screen: the text being typed, the cursor in
//! it, and the editing keys a shell's line editor has (`Ctrl-A`, `Ctrl-E`,
//! `Ctrl-U`, `Ctrl-K`, `Ctrl-W`). Pure, so the unit tests type into it.

use super::scrollback::columns;
use unicode_width::UnicodeWidthChar;

/// The most the input line holds, in bytes: more than any chat takes in
/// one line (the chat's default limit is 4 KiB), few enough that a paste
/// cannot fill memory.
pub(crate) const MAX_INPUT: usize = 16 * 1024;

/// The line being typed.
#[derive(Debug, Default)]
pub(crate) struct Editor {
    text: String,
    /// A byte offset into `text`, always on a character boundary.
    cursor: usize,
}

impl Editor {
    /// The text typed so far.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether nothing is typed.
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Types `c` at the cursor. Control characters are typed as a space
    /// (a tab) or not at all: the chat would only show them escaped.
    pub(crate) fn insert(&mut self, c: char) {
        let c = match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => return,
            c => c,
        };
        if self.text.len() + c.len_utf8() > MAX_INPUT {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Types `text` (a paste) at the cursor, its line ends as spaces: one
    /// pasted block is one line, not a burst that flood control would cut.
    pub(crate) fn paste(&mut self, text: &str) {
        for c in text.chars() {
            self.insert(c);
        }
    }

    /// Backspace: the character before the cursor goes.
    pub(crate) fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    /// Delete: the character under the cursor goes.
    pub(crate) fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub(crate) fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    pub(crate) fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    pub(crate) fn home(&mut self) {
        self.cursor = 0;
    }

    pub(crate) fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// `Ctrl-U`: everything before the cursor goes.
    pub(crate) fn kill_before(&mut self) {
        self.text.drain(..self.cursor);
        self.cursor = 0;
    }

    /// `Ctrl-K`: everything from the cursor on goes.
    pub(crate) fn kill_after(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// `Ctrl-W`: the word before the cursor goes, with the spaces after it.
    pub(crate) fn kill_word(&mut self) {
        let before = &self.text[..self.cursor];
        let word_end = before.trim_end_matches(' ').len();
        let start = before[..word_end].rfind(' ').map_or(0, |i| i + 1);
        self.text.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Enter: the line, leaving the editor empty.
    pub(crate) fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// What a field `width` columns wide shows: the text from the first
    /// byte shown, and the cursor's column. The text scrolls sideways so
    /// the cursor stays in the field, with a column to spare at the right
    /// for the cursor itself at the end.
    pub(crate) fn view(&self, width: usize) -> (&str, usize) {
        let width = width.max(1);
        let mut start = 0;
        let mut before = columns(&self.text[..self.cursor]);
        while before >= width && start < self.cursor {
            let c = self.text[start..].chars().next().unwrap_or(' ');
            start += c.len_utf8();
            before -= c.width().unwrap_or(0);
        }
        (&self.text[start..], before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Editor {
        let mut editor = Editor::default();
        editor.paste(text);
        editor
    }

    #[test]
    fn types_and_moves_by_characters() {
        let mut e = typed("héllo");
        e.left();
        e.left();
        e.insert('X');
        assert_eq!(e.text(), "hélXlo");
        e.home();
        e.delete();
        e.right();
        e.backspace();
        assert_eq!(e.text(), "lXlo");
        e.end();
        e.insert('!');
        assert_eq!(e.take(), "lXlo!");
        assert!(e.is_empty());
        e.backspace();
        e.delete();
        e.left();
        assert_eq!(e.text(), "");
    }

    #[test]
    fn control_characters_are_not_typed() {
        let e = typed("a\tb\r\nc\x1b[2Jd\u{7f}");
        assert_eq!(e.text(), "a b  c[2Jd");
    }

    #[test]
    fn kills_like_a_shell() {
        let mut e = typed("say hello  world");
        e.kill_word();
        assert_eq!(e.text(), "say hello  ");
        e.kill_word();
        assert_eq!(e.text(), "say ");
        e.insert('x');
        e.home();
        e.right();
        e.kill_after();
        assert_eq!(e.text(), "s");
        let mut e = typed("abc def");
        e.left();
        e.kill_before();
        assert_eq!(e.text(), "f");
    }

    #[test]
    fn input_is_bounded() {
        let e = typed(&"x".repeat(MAX_INPUT + 100));
        assert_eq!(e.text().len(), MAX_INPUT);
    }

    #[test]
    fn the_view_scrolls_to_keep_the_cursor_in_sight() {
        let mut e = typed("0123456789");
        assert_eq!(e.view(20), ("0123456789", 10));
        assert_eq!(e.view(5), ("6789", 4));
        e.home();
        assert_eq!(e.view(5), ("0123456789", 0));
        let e = typed("日本語");
        assert_eq!(e.view(4), ("語", 2));
    }
}
