//! The chat room (SPEC 5), `sockit serve chat`: what is said on a chat
//! connection. [`hub`] holds the members, names and rooms and fans lines
//! out; [`session`] is one member on a stream connection; [`telnet`]
//! strips telnet's in-band commands; [`command`] parses a member's line;
//! [`text`] makes a line safe to show; [`notice`] has every line the
//! server says itself, and [`server_line`] reads those lines back for a
//! client (`sockit chat`); [`web`] serves `--web` (the page, the upgrade)
//! and [`ws`] is one member on a WebSocket; with `--redis`, [`link`] joins
//! servers into one chat, exchanging the [`cluster`] events. The line
//! protocol is in docs/chat-protocol.md.

pub mod cluster;
pub mod command;
pub mod hub;
pub mod link;
pub mod notice;
pub mod server_line;
pub mod session;
pub mod telnet;
pub mod text;
pub mod web;
pub mod ws;

pub use hub::{ChatConfig, Hub};
pub use link::RedisConfig;
