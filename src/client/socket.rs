//! What the clients share beyond opening sockets (which lives in
//! [`crate::net::connect`], for every floor that opens one): ending a
//! datagram session cleanly on Ctrl-C.

use std::future::Future;

pub(crate) use crate::net::connect::{
    Cause, ClientError, ClientSocket, Connector, Datagram, RECV_BUFFER,
};

/// Runs a datagram session until it ends or Ctrl-C comes.
///
/// A unixgram client's socket file goes when its socket is dropped, and
/// dying of SIGINT would skip that and leave the file behind; so here Ctrl-C
/// ends the session with [`ClientError::Interrupted`] instead, and the
/// stack unwinds as usual.
///
/// # Errors
/// The session's error, or [`ClientError::Interrupted`].
pub(crate) async fn until_interrupted<T>(
    session: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        // Polled first so that the handler is in place before the session
        // sends anything.
        biased;
        () = crate::shutdown::interrupted() => Err(ClientError::Interrupted.into()),
        done = session => done,
    }
}
