//! HTTP (SPEC 4): what `sockit serve http` says on a connection, on hyper.
//! [`Site`] is what a request gets (the hello page, or files under
//! `--root`); [`conn`] serves one connection of any HTTP version; [`path`]
//! maps a request's URL path to a file or directory under the root, or
//! refuses it: it is the one place that decides what may leave the root.

pub mod access;
pub mod auth;
pub mod body;
pub mod cache;
pub mod conditional;
pub mod conn;
pub mod encoding;
pub mod path;
pub mod range;
pub mod site;

pub use site::{Site, SiteConfig};
