//! The terminal while the chat screen is up: raw mode (keys come one by
//! one, Ctrl-C included, and nothing is echoed), the alternate screen (the
//! shell's screen comes back untouched afterwards) and bracketed paste (a
//! paste arrives as one event, not as keys with Enters in them).
//!
//! [`Screen`] puts the terminal in that state and puts it back when
//! dropped, which covers every way out of the chat: `/quit`, Ctrl-C, an
//! error returned with `?`, and a panic unwinding. A panic hook puts it back
//! first, too, so that the panic message is printed on the normal screen
//! and not lost with the alternate one. Log lines are held back meanwhile
//! ([`crate::logging::hold`]), and written once the terminal is back.

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::logging::HeldLogs;

/// The ratatui terminal the chat screen draws on.
pub(crate) type Term = Terminal<CrosstermBackend<Stdout>>;

/// The terminal in the chat screen's state, until dropped.
pub(crate) struct Screen {
    /// What the screen is drawn on.
    pub(crate) terminal: Term,
    /// Log lines wait while the screen is up (stderr is the terminal too).
    /// Dropped after the terminal is put back, so they follow the shell's
    /// screen rather than vanish with the alternate one.
    _logs: HeldLogs,
}

impl Screen {
    /// Puts the terminal in raw mode, on the alternate screen.
    ///
    /// # Errors
    /// When the terminal cannot be set up; whatever was set up already
    /// is undone.
    pub(crate) fn enter() -> io::Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let setup = || -> io::Result<Screen> {
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(Screen {
                terminal,
                _logs: crate::logging::hold(),
            })
        };
        setup().inspect_err(|_| restore())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as the shell had it. Harmless when it is so
/// already, so the panic hook and the drop may both call it.
fn restore() {
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}
