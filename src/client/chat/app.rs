//! The chat screen's session: the connection, the keyboard and the clock
//! feeding one [`App`], which `ui` draws after each change.
//!
//! Three tasks: a reader turns the server's bytes into lines (bounded,
//! made safe to show) and queues them; a writer sends the lines the user
//! enters; the loop here waits on both, on key events and on the
//! client's own timers, and redraws. The server's lines are taken in
//! batches before a redraw, so a burst (the history of a room) costs one
//! frame, not one per line.
//!
//! How it ends: Ctrl-C, Ctrl-D on an empty line, SIGTERM or SIGHUP leave at
//! once; `/quit` waits (a little) for the server's `* bye` and close. When
//! the server closes first, the screen says so and stays until a key is
//! pressed, so that the last lines can still be read; a connection that
//! failed rather than closed then ends sockit with its error (exit status
//! 1). The terminal is put back on every path ([`Screen`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::editor::Editor;
use super::room::{Asker, Refresh, RoomView};
use super::scrollback::{Scrollback, Source};
use super::terminal::Screen;
use super::ui;
use crate::chat::command::{self, ClientLine};
use crate::chat::server_line::ServerLine;
use crate::chat::text::clean;
use crate::net::connect::ClientError;
use crate::net::frame::{Frame, LineBuffer};
use crate::net::stream::Stream;

/// The longest line taken from the server: far over what a chat sends
/// (4 KiB by default, four times that once escaped), and a bound on what
/// a server that is not a chat can make the client hold.
pub(crate) const MAX_SERVER_LINE: usize = 1 << 20;

/// Lines from the server waiting for the screen. When the screen falls
/// behind, the reader stops reading, and it is the server's queue for
/// this member that fills (and the server that decides).
const NET_QUEUE: usize = 1024;

/// Lines typed waiting for the socket; past it a line is refused with a
/// notice, rather than the screen freezing on a stuck connection.
const OUT_QUEUE: usize = 64;

/// How long after a change of members the client checks them with
/// `/who`. Changes in that time share one check, and the chat's flood
/// control (10 lines a second by default) counts these lines too.
const REFRESH_DELAY: Duration = Duration::from_secs(1);

/// How long `/quit` waits for the server to close.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// How long the lines still queued get to go out when leaving.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What the reader tells the loop.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A line, safe to show.
    Line(String),
    /// A line over [`MAX_SERVER_LINE`], left out.
    TooLong,
    /// The server closed the connection, or it failed.
    Closed(Option<ClientError>),
}

/// The state of the connection, as the screen shows it.
#[derive(Debug)]
pub(crate) enum Link {
    /// Lines go both ways.
    Open,
    /// `/quit` was sent; the server closes soon, or sockit leaves at
    /// `until` anyway.
    Quitting {
        /// When to stop waiting.
        until: Instant,
    },
    /// The server closed (with the error, if it failed); the next key
    /// leaves.
    Closed(Option<ClientError>),
}

/// Everything the screen shows, and what the keys and lines do to it.
pub(crate) struct App {
    /// The address, as the header shows it.
    pub(crate) addr: String,
    pub(crate) room: RoomView,
    pub(crate) scrollback: Scrollback,
    pub(crate) editor: Editor,
    pub(crate) link: Link,
    /// The writer's queue. Dropped on the way out, which lets the writer
    /// send what is left, shut its side, and end.
    outbox: mpsc::Sender<String>,
    /// When to ask `/who`, after a change of members.
    refresh_at: Option<Instant>,
    /// Ctrl-L: clear and draw the whole screen anew.
    pub(crate) redraw: bool,
    done: bool,
}

/// Runs the chat screen on an open connection to `addr`, taking the name
/// `nick` first if given.
///
/// # Errors
/// The terminal cannot be set up or read; the connection failed (and the
/// user has seen it).
pub(crate) async fn run(stream: Stream, addr: String, nick: Option<&str>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let (reader, writer) = tokio::io::split(stream);
    let (lines_in, mut net) = mpsc::channel(NET_QUEUE);
    let reading = tokio::spawn(read_lines(reader, lines_in, addr.clone()));
    let (outbox, lines_out) = mpsc::channel(OUT_QUEUE);
    let writing = tokio::spawn(write_lines(writer, lines_out));

    let mut screen = Screen::enter().context("set up the terminal")?;
    let mut keys = EventStream::new();
    let mut app = App::new(addr, outbox);
    app.local(format!("* connected to {}", app.addr));
    if let Some(nick) = nick {
        app.send(&format!("/nick {nick}"), Asker::User, Instant::now());
    }
    while !app.done {
        if std::mem::take(&mut app.redraw) {
            screen.terminal.clear()?;
        }
        screen
            .terminal
            .draw(|frame| ui::draw(frame, &mut app))
            .context("draw the screen")?;
        let wake = app.wake_at().map(tokio::time::Instant::from_std);
        let open = !matches!(app.link, Link::Closed(_));
        tokio::select! {
            event = keys.next() => match event {
                Some(Ok(event)) => app.on_event(event, Instant::now()),
                Some(Err(e)) => return Err(e).context("read the terminal"),
                None => break,
            },
            event = net.recv(), if open => {
                let now = Instant::now();
                app.on_net(event.unwrap_or(NetEvent::Closed(None)), now);
                while let Ok(event) = net.try_recv() {
                    app.on_net(event, now);
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)),
                if wake.is_some() => app.on_timer(Instant::now()),
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(screen);
    reading.abort();
    let App { outbox, link, .. } = app;
    drop(outbox);
    let _ = tokio::time::timeout(CLOSE_WAIT, writing).await;
    match link {
        Link::Closed(Some(error)) => Err(error.into()),
        _ => Ok(()),
    }
}

impl App {
    fn new(addr: String, outbox: mpsc::Sender<String>) -> App {
        App {
            addr,
            room: RoomView::default(),
            scrollback: Scrollback::default(),
            editor: Editor::default(),
            link: Link::Open,
            outbox,
            refresh_at: None,
            redraw: false,
            done: false,
        }
    }

    /// A line of the client's own in the scrollback.
    fn local(&mut self, text: impl Into<String>) {
        self.scrollback.push(text.into(), Source::Local);
    }

    /// The next time [`App::on_timer`] has something to do.
    fn wake_at(&self) -> Option<Instant> {
        match self.link {
            Link::Open => self.refresh_at,
            Link::Quitting { until } => Some(until),
            Link::Closed(_) => None,
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if let Link::Quitting { until } = self.link
            && now >= until
        {
            self.done = true;
        }
        if self.refresh_at.is_some_and(|at| now >= at) {
            self.refresh_at = None;
            self.send("/who", Asker::Client, now);
        }
    }

    fn on_net(&mut self, event: NetEvent, now: Instant) {
        match event {
            NetEvent::Line(line) => {
                let seen = self.room.observe(&line, now);
                if seen.show {
                    self.scrollback.push(line, Source::Server);
                }
                match seen.refresh {
                    Refresh::No => {}
                    Refresh::Now => {
                        self.refresh_at = None;
                        self.send("/who", Asker::Client, now);
                    }
                    Refresh::Soon => {
                        self.refresh_at.get_or_insert(now + REFRESH_DELAY);
                    }
                }
            }
            NetEvent::TooLong => self.local(format!(
                "* a line over {} KiB came from the server and was left out",
                MAX_SERVER_LINE / 1024
            )),
            NetEvent::Closed(error) => {
                if let Link::Quitting { .. } = self.link {
                    self.done = true;
                    return;
                }
                match &error {
                    None => self.local("* connection closed"),
                    Some(error) => self.local(format!("* connection lost: {error}")),
                }
                self.link = Link::Closed(error);
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key, now),
            Event::Paste(text) => self.editor.paste(&text),
            // A resize needs nothing but the redraw that follows every event.
            _ => {}
        }
    }

    fn on_key(&mut self, key: KeyEvent, now: Instant) {
        if let Link::Closed(_) = self.link {
            self.done = true;
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let editor = &mut self.editor;
        match key.code {
            KeyCode::Char('c') if ctrl => self.done = true,
            KeyCode::Char('d') if ctrl && editor.is_empty() => self.done = true,
            KeyCode::Char('d') if ctrl => editor.delete(),
            KeyCode::Char('a') if ctrl => editor.home(),
            KeyCode::Char('e') if ctrl => editor.end(),
            KeyCode::Char('b') if ctrl => editor.left(),
            KeyCode::Char('f') if ctrl => editor.right(),
            KeyCode::Char('h') if ctrl => editor.backspace(),
            KeyCode::Char('u') if ctrl => editor.kill_before(),
            KeyCode::Char('k') if ctrl => editor.kill_after(),
            KeyCode::Char('w') if ctrl => editor.kill_word(),
            KeyCode::Char('l') if ctrl => self.redraw = true,
            KeyCode::Char(c) if !ctrl && !alt => editor.insert(c),
            KeyCode::Backspace => editor.backspace(),
            KeyCode::Delete => editor.delete(),
            KeyCode::Left => editor.left(),
            KeyCode::Right => editor.right(),
            KeyCode::Home => editor.home(),
            KeyCode::End => editor.end(),
            KeyCode::Enter => self.submit(now),
            KeyCode::Up => self.scrollback.up(1),
            KeyCode::Down => self.scrollback.down(1),
            KeyCode::PageUp => self.scrollback.up(self.scrollback.page()),
            KeyCode::PageDown => self.scrollback.down(self.scrollback.page()),
            KeyCode::Esc => self.scrollback.follow(),
            _ => {}
        }
    }

    /// Enter: sends the line typed, and shows it as the others will see
    /// it when it is said to someone.
    fn submit(&mut self, now: Instant) {
        let line = self.editor.take();
        if line.trim().is_empty() {
            return;
        }
        self.scrollback.follow();
        let request = command::parse(&line);
        if !self.send(&line, Asker::User, now) {
            return;
        }
        let me = self.room.me().unwrap_or("you").to_owned();
        let shown = match request {
            ClientLine::Say(text) => ServerLine::Said { name: &me, text }.to_string(),
            ClientLine::Msg { to, text } => ServerLine::Private {
                from: &me,
                to,
                text,
            }
            .to_string(),
            ClientLine::Me(text) => ServerLine::Star(&format!("{me} {text}")).to_string(),
            ClientLine::Quit => {
                self.link = Link::Quitting {
                    until: now + QUIT_WAIT,
                };
                return;
            }
            _ => return,
        };
        self.scrollback.push(shown, Source::Own);
    }

    /// Queues `line` for the server and notes what it asks for; false,
    /// with a notice to the user who typed it, when it cannot go.
    fn send(&mut self, line: &str, asker: Asker, now: Instant) -> bool {
        let refused = match self.link {
            Link::Open => match self.outbox.try_send(line.to_owned()) {
                Ok(()) => {
                    self.room.sent(&command::parse(line), asker, now);
                    return true;
                }
                Err(TrySendError::Full(_)) => "* not sent: the connection is not taking lines",
                Err(TrySendError::Closed(_)) => "* not sent: not connected",
            },
            Link::Quitting { .. } => "* not sent: leaving",
            Link::Closed(_) => "* not sent: not connected",
        };
        if asker == Asker::User {
            self.local(refused);
        }
        false
    }
}

/// Reads the server's lines into `lines` until it closes, or the loop
/// goes away.
async fn read_lines(
    mut reader: impl AsyncRead + Unpin,
    lines: mpsc::Sender<NetEvent>,
    addr: String,
) {
    let mut buf = LineBuffer::new(MAX_SERVER_LINE);
    loop {
        let n = match reader.read(buf.spare()).await {
            Ok(n) => n,
            Err(cause) => {
                let error = ClientError::io("read from", &addr, cause);
                let _ = lines.send(NetEvent::Closed(Some(error))).await;
                return;
            }
        };
        if n == 0 {
            if let Some(Frame::Line(bytes, _)) = buf.take_partial() {
                let _ = lines.send(NetEvent::Line(clean(bytes).into_owned())).await;
            }
            let _ = lines.send(NetEvent::Closed(None)).await;
            return;
        }
        buf.filled(n);
        while let Some(frame) = buf.next_frame() {
            let event = match frame {
                Frame::Line(bytes, _) => NetEvent::Line(clean(bytes).into_owned()),
                Frame::TooLong => NetEvent::TooLong,
            };
            if lines.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Sends the lines entered until the queue closes, then shuts the write
/// side (over TLS, close_notify first), so the server sees the member go.
async fn write_lines(mut writer: impl AsyncWrite + Unpin, mut lines: mpsc::Receiver<String>) {
    while let Some(line) = lines.recv().await {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        // TLS holds written records until flushed.
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
