//! The lines the chat screen shows, and which of them fit: [`Scrollback`]
//! keeps the last [`MAX_ENTRIES`] lines and the scroll position, and
//! wraps lines to the screen's width ([`wrap`]), at spaces where it can.
//!
//! Wrapping works on the plain text and yields byte ranges, so that how a
//! line is coloured (`ui`) and how many rows it takes are decided apart:
//! the colours are cut along the same ranges.

use std::collections::VecDeque;
use std::ops::Range;

use unicode_width::UnicodeWidthChar;

/// Lines kept; older ones are forgotten.
pub(crate) const MAX_ENTRIES: usize = 5000;

/// Where a line in the scrollback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Received from the server.
    Server,
    /// Said by the user, shown as the others see it (the server sends the
    /// sender no copy).
    Own,
    /// Said by the client itself: `* connection closed` and the like.
    Local,
}

/// One line of the scrollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The line, safe to show (no control characters).
    pub text: String,
    /// Who wrote it.
    pub source: Source,
}

/// The scrollback: its lines, and how far up the view is scrolled.
#[derive(Debug, Default)]
pub(crate) struct Scrollback {
    entries: VecDeque<Entry>,
    /// Rows between the bottom of the view and the last row; 0 follows
    /// new lines as they come.
    offset: usize,
    /// Lines that came while scrolled up, not yet scrolled to.
    unseen: usize,
    /// The width and height of the last view, for paging and for keeping
    /// the view still while lines come in.
    width: usize,
    height: usize,
}

impl Scrollback {
    /// Adds a line at the bottom. While scrolled up the view stays where it
    /// is, and the line counts as unseen.
    pub(crate) fn push(&mut self, text: String, source: Source) {
        if self.offset > 0 {
            self.offset += wrap(&text, self.width.max(1)).len();
            self.unseen += 1;
        }
        if self.entries.len() == MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry { text, source });
    }

    /// Lines that came while scrolled up.
    pub(crate) fn unseen(&self) -> usize {
        self.unseen
    }

    /// Whether the view is scrolled up from the bottom.
    pub(crate) fn is_scrolled(&self) -> bool {
        self.offset > 0
    }

    /// Scrolls up `rows` (the view stops at the first line when drawn).
    pub(crate) fn up(&mut self, rows: usize) {
        self.offset = self.offset.saturating_add(rows);
    }

    /// Scrolls down `rows`, to the bottom at most.
    pub(crate) fn down(&mut self, rows: usize) {
        self.offset = self.offset.saturating_sub(rows);
        if self.offset == 0 {
            self.unseen = 0;
        }
    }

    /// Back to following new lines.
    pub(crate) fn follow(&mut self) {
        self.down(usize::MAX);
    }

    /// A page: the last view's height less a row of overlap.
    pub(crate) fn page(&self) -> usize {
        self.height.saturating_sub(1).max(1)
    }

    /// The rows a `width` x `height` view shows, top to bottom: each as
    /// its entry and the byte range of the entry's text on that row. Fewer
    /// than `height` when there are not that many. A scroll position past
    /// the first line is pulled back to it.
    pub(crate) fn view(&mut self, width: usize, height: usize) -> Vec<(&Entry, Range<usize>)> {
        self.width = width;
        self.height = height;
        let want = self.offset.saturating_add(height);
        // From the bottom up, until the rows above the view are reached.
        let mut rows = Vec::with_capacity(want.min(4 * height + 16));
        for entry in self.entries.iter().rev() {
            for range in wrap(&entry.text, width.max(1)).into_iter().rev() {
                rows.push((entry, range));
            }
            if rows.len() >= want {
                break;
            }
        }
        if rows.len() < want {
            // Scrolled past the top: show the first page.
            self.offset = rows.len().saturating_sub(height);
            if self.offset == 0 {
                self.unseen = 0;
            }
        }
        let end = (self.offset + height).min(rows.len());
        let mut shown: Vec<_> = rows.drain(self.offset..end).collect();
        shown.reverse();
        shown
    }
}

/// Cuts `text` into rows of at most `width` columns (not counting the
/// spaces a row ends with): the byte range of each, in order. A row breaks
/// after its last space when it has one and in the middle of a word when
/// not; a character wider than the whole row gets a row of its own. Empty
/// text is one empty row.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<Range<usize>> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    let mut col = 0;
    // Where the row could break: just after its last space.
    let mut after_space = None;
    for (i, c) in text.char_indices() {
        let w = c.width().unwrap_or(0);
        // A space never starts a row: it may hang past the edge, where it
        // is not seen, and the row breaks after it.
        while col + w > width && i > start && c != ' ' {
            match after_space.take().filter(|&at| at > start && at <= i) {
                Some(at) => {
                    rows.push(start..at);
                    start = at;
                    col = columns(&text[at..i]);
                }
                None => {
                    rows.push(start..i);
                    start = i;
                    col = 0;
                }
            }
        }
        col += w;
        if c == ' ' {
            after_space = Some(i + c.len_utf8());
        }
    }
    rows.push(start..text.len());
    rows
}

/// The columns `text` takes on a terminal.
pub(crate) fn columns(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, width: usize) -> Vec<&str> {
        wrap(text, width).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn wraps_at_spaces_where_it_can() {
        assert_eq!(rows("hello world", 80), ["hello world"]);
        assert_eq!(rows("hello world", 8), ["hello ", "world"]);
        assert_eq!(rows("hello world", 6), ["hello ", "world"]);
        assert_eq!(rows("hello world", 5), ["hello ", "world"]);
        assert_eq!(rows("[bob] a b c d e f", 7), ["[bob] a ", "b c d e ", "f"]);
        assert_eq!(rows("a    b", 2), ["a    ", "b"]);
        assert_eq!(rows("", 10), [""]);
    }

    #[test]
    fn cuts_words_longer_than_a_row() {
        assert_eq!(rows("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(rows("ab abcdefghij", 4), ["ab ", "abcd", "efgh", "ij"]);
        assert_eq!(rows("abc", 1), ["a", "b", "c"]);
    }

    #[test]
    fn counts_columns_not_bytes() {
        // Each of these takes two columns.
        assert_eq!(rows("日本語テキスト", 6), ["日本語", "テキス", "ト"]);
        assert_eq!(rows("日本", 1), ["日", "本"]);
        assert_eq!(rows("ééééé", 2), ["éé", "éé", "é"]);
        assert_eq!(columns("a日é"), 4);
    }

    fn texts(view: &[(&Entry, Range<usize>)]) -> Vec<String> {
        view.iter()
            .map(|(entry, range)| entry.text[range.clone()].to_owned())
            .collect()
    }

    fn filled(n: usize) -> Scrollback {
        let mut back = Scrollback::default();
        for i in 0..n {
            back.push(format!("line {i}"), Source::Server);
        }
        back
    }

    #[test]
    fn the_view_follows_the_bottom() {
        let mut back = filled(10);
        assert_eq!(texts(&back.view(20, 3)), ["line 7", "line 8", "line 9"]);
        back.push("a long line that wraps".into(), Source::Own);
        assert_eq!(texts(&back.view(10, 3)), ["a long ", "line that ", "wraps"]);
        assert_eq!(texts(&back.view(10, 4))[0], "line 9");
        assert_eq!(texts(&filled(2).view(20, 5)), ["line 0", "line 1"]);
    }

    #[test]
    fn scrolled_up_the_view_stays_put() {
        let mut back = filled(10);
        back.view(20, 3);
        back.up(2);
        assert_eq!(texts(&back.view(20, 3)), ["line 5", "line 6", "line 7"]);
        back.push("new".into(), Source::Server);
        back.push("newer".into(), Source::Server);
        assert_eq!(texts(&back.view(20, 3)), ["line 5", "line 6", "line 7"]);
        assert_eq!(back.unseen(), 2);
        back.down(back.page());
        assert_eq!(texts(&back.view(20, 3)), ["line 7", "line 8", "line 9"]);
        back.follow();
        assert_eq!(back.unseen(), 0);
        assert_eq!(texts(&back.view(20, 3)), ["line 9", "new", "newer"]);
    }

    #[test]
    fn scrolling_stops_at_the_first_line() {
        let mut back = filled(5);
        back.up(1000);
        assert_eq!(texts(&back.view(20, 3)), ["line 0", "line 1", "line 2"]);
        assert!(back.is_scrolled());
        back.down(1);
        assert_eq!(texts(&back.view(20, 3)), ["line 1", "line 2", "line 3"]);
        // Everything fits: nowhere to scroll.
        let mut short = filled(2);
        short.up(5);
        short.view(20, 3);
        assert!(!short.is_scrolled());
    }

    #[test]
    fn old_lines_are_forgotten() {
        let mut back = filled(MAX_ENTRIES + 10);
        assert_eq!(back.entries.len(), MAX_ENTRIES);
        back.up(usize::MAX);
        assert_eq!(texts(&back.view(20, 1)), ["line 10"]);
    }
}
