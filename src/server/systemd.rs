//! The systemd notify protocol (`Type=notify`): `READY=1` once every
//! socket is bound and announced, `STOPPING=1` when shutdown begins. Outside
//! systemd (`NOTIFY_SOCKET` unset) each call does nothing; a failure to
//! notify is logged, never fatal: the server serves either way.

use sd_notify::NotifyState;

/// Tells systemd the server is up, serving `sockets` sockets.
pub fn ready(sockets: usize) {
    let status = format!("serving on {sockets} socket(s)");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the server is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// `sd_notify::notify` does nothing itself when `NOTIFY_SOCKET` is unset.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
