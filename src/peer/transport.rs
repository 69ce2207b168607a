//! The node's UDP socket, with optional simulated faults for testing.
//!
//! Sends never wait: a datagram the kernel cannot take right now is
//! dropped like any lost datagram, and the delivery layer sends it again.
//! That keeps the node's loop free of `await`s on the send path.
//!
//! The hidden flags `--simulate-loss P`, `--simulate-duplicate P` and
//! `--simulate-reorder P` make this node drop, double, or hold back (by 1
//! to 30 ms, so later datagrams overtake them) that fraction of its
//! outgoing datagrams, all of them: membership, data and acks. They exist
//! so the tests can prove delivery under a bad network on loopback, where
//! nothing is ever lost; they are documented in docs/peer-protocol.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;

/// Datagrams held back for reordering at most; beyond it they go out at
/// once, so the simulation cannot grow memory.
const MAX_DELAYED: usize = 10_000;

/// Fractions of outgoing datagrams to drop, duplicate and delay.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Dropped.
    pub loss: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// Held back 1 to 30 ms.
    pub reorder: f64,
}

impl Faults {
    /// Whether any fault is asked for.
    pub fn any(&self) -> bool {
        self.loss > 0.0 || self.duplicate > 0.0 || self.reorder > 0.0
    }
}

/// Counters for `/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TransportStats {
    /// Datagrams handed to the kernel.
    pub datagrams_out: u64,
    /// Sends the kernel refused (buffer full, unreachable): lost.
    pub send_errors: u64,
    /// Datagrams dropped by `--simulate-loss`.
    pub simulated_losses: u64,
}

/// The socket and the fault simulator.
#[derive(Debug)]
pub struct Transport {
    /// The node's one socket.
    pub socket: UdpSocket,
    faults: Faults,
    rng: StdRng,
    delayed: BTreeMap<(Instant, u64), (SocketAddr, Vec<u8>)>,
    delayed_seq: u64,
    /// Counters.
    pub stats: TransportStats,
}

impl Transport {
    /// Wraps `socket`, simulating `faults`.
    pub fn new(socket: UdpSocket, faults: Faults) -> Transport {
        Transport {
            socket,
            faults,
            rng: rand::make_rng(),
            delayed: BTreeMap::new(),
            delayed_seq: 0,
            stats: TransportStats::default(),
        }
    }

    /// Sends `datagram` to `to`, through the simulated faults if any.
    pub fn send(&mut self, to: SocketAddr, datagram: &[u8], now: Instant) {
        if !self.faults.any() {
            self.send_now(to, datagram);
            return;
        }
        if self.rng.random_bool(self.faults.loss) {
            self.stats.simulated_losses += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.delayed.len() < MAX_DELAYED && self.rng.random_bool(self.faults.reorder) {
                let delay = Duration::from_millis(self.rng.random_range(1..=30));
                self.delayed_seq += 1;
                self.delayed
                    .insert((now + delay, self.delayed_seq), (to, datagram.to_vec()));
            } else {
                self.send_now(to, datagram);
            }
        }
    }

    fn send_now(&mut self, to: SocketAddr, datagram: &[u8]) {
        match self.socket.try_send_to(datagram, to) {
            Ok(_) => self.stats.datagrams_out += 1,
            Err(e) => {
                self.stats.send_errors += 1;
                tracing::debug!(peer = %to, error = %e, "send_to");
            }
        }
    }

    /// Sends the held-back datagrams that are due.
    pub fn release(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, datagram) = entry.remove();
            self.send_now(to, &datagram);
        }
    }

    /// When [`Transport::release`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.delayed.keys().next().map(|k| k.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn transport(faults: Faults) -> (Transport, UdpSocket) {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // `try_send_to` fails until tokio has seen the socket writable
        // (the node's loop has, by the time it sends).
        socket.writable().await.unwrap();
        (Transport::new(socket, faults), sink)
    }

    #[tokio::test]
    async fn simulated_loss_drops_about_its_share_and_counts_it() {
        let (mut t, sink) = transport(Faults {
            loss: 0.05,
            ..Faults::default()
        })
        .await;
        let to = sink.local_addr().unwrap();
        let now = Instant::now();
        for _ in 0..4000 {
            t.send(to, b"x", now);
        }
        let lost = t.stats.simulated_losses;
        // 200 expected; the bounds are over 6 standard deviations away.
        assert!((120..=280).contains(&lost), "{lost} of 4000 dropped");
        assert_eq!(t.stats.datagrams_out + t.stats.send_errors + lost, 4000);
    }

    #[tokio::test]
    async fn without_faults_every_datagram_goes_out_and_all_of_them_with_loss_one() {
        let (mut t, sink) = transport(Faults::default()).await;
        let to = sink.local_addr().unwrap();
        t.send(to, b"hello", Instant::now());
        let mut buf = [0u8; 16];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sink.recv_from(&mut buf))
            .await
            .expect("the datagram arrives")
            .unwrap();
        assert_eq!(&buf[..n], b"hello");
        let (mut t, _sink) = transport(Faults {
            loss: 1.0,
            ..Faults::default()
        })
        .await;
        for _ in 0..10 {
            t.send(to, b"x", Instant::now());
        }
        assert_eq!((t.stats.simulated_losses, t.stats.datagrams_out), (10, 0));
    }
}
