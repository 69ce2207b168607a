//! How the chat screen looks, drawn with ratatui from an [`App`]:
//!
//! ```text
//!  sockit chat  #lobby  3 members  you: alice  tcp://127.0.0.1:5000
//! * welcome, you are 127.0.0.1:4000 in lobby (...)  │ #lobby (3)
//! [bob] hi all                                      │ alice
//! [alice] hello                                     │ bob
//!                                                   │ carol
//!  Enter send · PgUp/PgDn scroll · /help · Ctrl-C quit
//! > typing here_
//! ```
//!
//! Each name has its own colour, the same wherever it appears, from a
//! hash of the name (the one the chat page uses) into the terminal's own
//! palette, so it suits light and dark themes alike. Notices are grey, the
//! client's own notices yellow, and a line that mentions you is bold. The
//! member list goes when the terminal is too narrow for it.

use std::ops::Range;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, Link};
use super::room::RoomView;
use super::scrollback::{Entry, Source, columns};
use crate::chat::server_line::ServerLine;

/// The colours names are given: the terminal's basic ones, less black,
/// white and blue (dark blue is hard to read on many dark themes).
const PALETTE: [Color; 11] = [
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Cyan,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
];

/// The key hints under the lines, the longest that fits.
const HINTS: [&str; 3] = [
    " Enter send · PgUp/PgDn scroll · /help commands · Ctrl-C quit",
    " PgUp/PgDn scroll · /help · Ctrl-C quit",
    " /help · Ctrl-C quit",
];

/// Below this many columns the member list is left out.
const MIN_WIDTH_WITH_MEMBERS: u16 = 50;

/// The member list's width, border included, at least and at most.
const MEMBERS_WIDTH: Range<usize> = 12..27;

const NOTICE: Style = Style::new().fg(Color::DarkGray);
const LOCAL: Style = Style::new().fg(Color::Yellow);
const PROMPT: &str = "> ";
/// After the client's own name in the member list.
const YOU: &str = " (you)";

/// The colour of `name`: `h = h * 31 + c` over its characters, as the
/// chat page (`chat.html`) computes it, into [`PALETTE`].
pub(crate) fn colour(name: &str) -> Color {
    let hash = name
        .chars()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
    PALETTE[hash as usize % PALETTE.len()]
}

fn nick(name: &str) -> Style {
    Style::new().fg(colour(name)).add_modifier(Modifier::BOLD)
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &mut App) {
    let [header, body, status, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    let lines = if body.width >= MIN_WIDTH_WITH_MEMBERS {
        let width = members_width(&app.room);
        let [lines, members] =
            Layout::horizontal([Constraint::Min(1), Constraint::Length(width as u16)]).areas(body);
        draw_members(frame, members, &app.room);
        lines
    } else {
        body
    };
    draw_lines(frame, lines, app);
    draw_status(frame, status, app);
    draw_input(frame, input, app);
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::styled(" sockit chat  ", bold)];
    if let Some(room) = app.room.room() {
        spans.push(Span::styled(format!("#{room}"), bold));
        let n = app.room.members().len();
        let s = if n == 1 { "" } else { "s" };
        spans.push(Span::raw(format!("  {n} member{s}")));
    }
    if let Some(me) = app.room.me() {
        spans.push(Span::raw("  you: "));
        spans.push(Span::styled(me.to_owned(), bold));
    }
    spans.push(Span::raw(format!("  {}", app.addr)));
    let header =
        Paragraph::new(Line::from(spans)).style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(header, area);
}

/// The member list's width: its widest row (a space, the name, ` (you)`
/// after the client's own), the border and a column to spare, within
/// [`MEMBERS_WIDTH`].
fn members_width(room: &RoomView) -> usize {
    let widest = room
        .members()
        .map(|name| {
            columns(name)
                + if Some(name) == room.me() {
                    YOU.len()
                } else {
                    0
                }
        })
        .max()
        .unwrap_or(0);
    (widest + 3).clamp(MEMBERS_WIDTH.start, MEMBERS_WIDTH.end - 1)
}

fn draw_members(frame: &mut Frame<'_>, area: Rect, room: &RoomView) {
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(NOTICE)
        .title(Line::styled(
            format!(
                " #{} ({})",
                room.room().unwrap_or("?"),
                room.members().len()
            ),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = usize::from(inner.height);
    let total = room.members().len();
    // When they do not all fit, the last row says how many are left out.
    let fit = if total > rows {
        rows.saturating_sub(1)
    } else {
        total
    };
    let mut lines: Vec<Line<'_>> = room
        .members()
        .take(fit)
        .map(|name| {
            let mut line = vec![Span::raw(" "), Span::styled(name, nick(name))];
            if Some(name) == room.me() {
                line.push(Span::styled(YOU, NOTICE));
            }
            Line::from(line)
        })
        .collect();
    if total > fit {
        lines.push(Line::styled(format!(" … {} more", total - fit), NOTICE));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_lines(frame: &mut Frame<'_>, area: Rect, app: &mut App) {
    let App {
        scrollback, room, ..
    } = app;
    let height = usize::from(area.height);
    let rows = scrollback.view(usize::from(area.width), height);
    let mut lines = vec![Line::default(); height.saturating_sub(rows.len())];
    for (entry, range) in rows {
        lines.push(row(entry, range, room));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// One row of an entry: the part of its text in `range`, coloured.
fn row<'a>(entry: &'a Entry, range: Range<usize>, room: &RoomView) -> Line<'a> {
    let spans = styles(entry, room)
        .into_iter()
        .filter_map(|(part, style)| {
            let start = part.start.max(range.start);
            let end = part.end.min(range.end);
            (start < end).then(|| Span::styled(&entry.text[start..end], style))
        })
        .collect::<Vec<_>>();
    Line::from(spans)
}

/// How an entry is coloured: styles for consecutive byte ranges that
/// cover its text.
fn styles(entry: &Entry, room: &RoomView) -> Vec<(Range<usize>, Style)> {
    let text = entry.text.as_str();
    let all = |style| vec![(0..text.len(), style)];
    // Where `part`, a slice of `text`, starts in it.
    let at = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
    if entry.source == Source::Local {
        return all(LOCAL);
    }
    let mentions = |said: &str| {
        entry.source == Source::Server
            && room
                .me()
                .is_some_and(|me| said.to_lowercase().contains(&me.to_lowercase()))
    };
    let said_style = |said: &str| {
        if mentions(said) {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        }
    };
    match ServerLine::parse(text) {
        ServerLine::Said { name, text: said } => {
            let name_end = at(name) + name.len() + 1;
            vec![
                (0..name_end, nick(name)),
                (name_end..text.len(), said_style(said)),
            ]
        }
        ServerLine::Private {
            from,
            to,
            text: said,
        } => {
            let (from_at, to_at) = (at(from), at(to));
            let italic = said_style(said).add_modifier(Modifier::ITALIC);
            vec![
                (0..from_at, NOTICE),
                (from_at..from_at + from.len(), nick(from)),
                (from_at + from.len()..to_at, NOTICE),
                (to_at..to_at + to.len(), nick(to)),
                (to_at + to.len()..at(said), NOTICE),
                (at(said)..text.len(), italic),
            ]
        }
        // An action: `* NAME text`, NAME in the room.
        ServerLine::Star(rest) => match rest.split_once(' ') {
            Some((name, said)) if room.is_member(name) => {
                let name_at = at(name);
                vec![
                    (0..name_at, NOTICE),
                    (name_at..name_at + name.len(), nick(name)),
                    (
                        name_at + name.len()..text.len(),
                        said_style(said).add_modifier(Modifier::ITALIC),
                    ),
                ]
            }
            _ => all(NOTICE),
        },
        ServerLine::Notice(_) => all(NOTICE),
        ServerLine::Other(_) => all(Style::new()),
    }
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let alert = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    let (text, style) = match &app.link {
        Link::Closed(None) => (
            " connection closed: press any key to leave".to_owned(),
            alert,
        ),
        Link::Closed(Some(_)) => (" connection lost: press any key to leave".to_owned(), alert),
        Link::Quitting { .. } => (" leaving…".to_owned(), NOTICE),
        Link::Open if app.scrollback.is_scrolled() => {
            let unseen = match app.scrollback.unseen() {
                0 => String::new(),
                1 => " 1 new line below ·".to_owned(),
                n => format!(" {n} new lines below ·"),
            };
            (
                format!(" scrolled up ·{unseen} PgDn or Esc to follow"),
                alert,
            )
        }
        Link::Open => {
            let hint = HINTS
                .iter()
                .find(|hint| columns(hint) <= usize::from(area.width))
                .unwrap_or(&"");
            ((*hint).to_owned(), NOTICE)
        }
    };
    frame.render_widget(Paragraph::new(Span::styled(text, style)), area);
}

fn draw_input(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let prompt = PROMPT.len() as u16;
    let width = usize::from(area.width.saturating_sub(prompt));
    let (shown, cursor) = app.editor.view(width);
    let line = Line::from(vec![
        Span::styled(PROMPT, Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(shown),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    if !matches!(app.link, Link::Closed(_)) {
        frame.set_cursor_position(Position::new(area.x + prompt + cursor as u16, area.y));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_colour() {
        assert_eq!(colour("alice"), colour("alice"));
        let colours: std::collections::HashSet<_> = ["alice", "bob", "carol", "dave", "eve"]
            .into_iter()
            .map(colour)
            .collect();
        assert!(colours.len() > 2, "{colours:?}");
    }

    fn entry(text: &str, source: Source) -> Entry {
        Entry {
            text: text.to_owned(),
            source,
        }
    }

    fn parts(text: &str, source: Source, room: &RoomView) -> Vec<String> {
        let entry = entry(text, source);
        styles(&entry, room)
            .into_iter()
            .map(|(range, _)| text[range].to_owned())
            .collect()
    }

    #[test]
    fn styles_cover_the_whole_line() {
        let room = RoomView::default();
        assert_eq!(
            parts("[bob] hi there", Source::Server, &room),
            ["[bob]", " hi there"]
        );
        assert_eq!(
            parts("[a -> b] psst", Source::Server, &room),
            ["[", "a", " -> ", "b", "] ", "psst"]
        );
        assert_eq!(
            parts("* bob joined lobby", Source::Server, &room),
            ["* bob joined lobby"]
        );
        assert_eq!(parts("* x y", Source::Local, &room), ["* x y"]);
    }

    #[test]
    fn a_row_is_cut_along_the_styles() {
        let room = RoomView::default();
        let e = entry("[bob] hi there", Source::Server);
        let line = row(&e, 3..9, &room);
        let texts: Vec<&str> = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(texts, ["b]", " hi "]);
    }
}
