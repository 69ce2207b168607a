//! Socket plumbing shared by every service and client: the address syntax,
//! binding and accepting, bounded framing, access control and rate limits.

pub mod access;
pub mod addr;
pub mod connect;
pub mod cork;
pub mod frame;
pub mod listener;
pub mod ratelimit;
pub mod stream;
pub mod tickets;
pub mod tls;
