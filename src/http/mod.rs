//! HTTP: what `sockit serve http` says on a connection (SPEC 4).
//!
//! [`path`] maps a request's URL path to a file or directory under the
//! served root, or refuses it; it is the one place that decides what may
//! leave the root, and the responder builds on its answer.

pub mod path;
