//! TLS session-ticket keys that several processes share: the parent of
//! `serve --workers N` makes them and hands them to every worker, so a
//! client that got its ticket from one worker resumes on any other.
//!
//! A ticket is `[key id: 4][nonce: 12][ChaCha20-Poly1305 of the session
//! state][tag: 16]`, the key id authenticated as associated data and the
//! nonce random per ticket. Keys live for one period of [`PERIOD`]
//! seconds (6 hours, rustls' own rotation) and are numbered by it: the
//! key of period `e + 1` is derived from the key of period `e` (HKDF),
//! and the key of period `e - 1` is forgotten when `e + 1` starts. So
//! every process that was handed the same key turns to the same next key
//! at the same time, with no messages between them, and a key that leaks
//! opens no ticket made before the period it belongs to (no key can be
//! derived backwards). A ticket is accepted in the period it was made
//! and the next one: between 6 and 12 hours.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use rustls::server::ProducesTickets;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Seconds a key is used to make tickets; also the lifetime told to
/// clients.
pub const PERIOD: u64 = 6 * 3600;

const ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const RATCHET_SALT: &[u8] = b"sockit tls ticket key ratchet v1";

/// The key material a process is handed: the period's number and its
/// key, and the key of the period before (its tickets are still good).
#[derive(Clone, Serialize, Deserialize)]
pub struct TicketSecret {
    /// The period the `current` key belongs to (Unix time / [`PERIOD`]).
    pub epoch: u64,
    /// The key tickets are made with now.
    pub current: [u8; 32],
    /// The previous period's key, for the tickets it made.
    pub previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TicketSecret")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl TicketSecret {
    /// A fresh random key for the period of `now` (Unix seconds).
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn random(now: u64) -> std::io::Result<TicketSecret> {
        use rand::TryRng;
        let mut current = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut current)
            .map_err(std::io::Error::other)?;
        Ok(TicketSecret {
            epoch: now / PERIOD,
            current,
            previous: None,
        })
    }

    /// Moves on to the period of `now`, deriving each key in between;
    /// a clock that went back changes nothing.
    pub fn advance(&mut self, now: u64) {
        let target = now / PERIOD;
        while self.epoch < target {
            let next = ratchet(&self.current, self.epoch + 1);
            self.previous = Some(self.current);
            self.current = next;
            self.epoch += 1;
        }
    }
}

/// The key of period `epoch`, from the key of the period before.
fn ratchet(key: &[u8; 32], epoch: u64) -> [u8; 32] {
    let mut next = [0u8; 32];
    Hkdf::<Sha256>::new(Some(RATCHET_SALT), key)
        .expand(&epoch.to_be_bytes(), &mut next)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    next
}

/// The key id in a ticket: the low 32 bits of the period (wraps after
/// three million years).
fn key_id(epoch: u64) -> [u8; ID_LEN] {
    (epoch as u32).to_be_bytes()
}

/// A [`ProducesTickets`] on a [`TicketSecret`], moved on with the clock.
pub struct SharedTicketer {
    secret: Mutex<TicketSecret>,
    clock: fn() -> u64,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTicketer").finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SharedTicketer {
    /// Makes and opens tickets with `secret`, on the system clock.
    pub fn new(secret: TicketSecret) -> SharedTicketer {
        Self::with_clock(secret, unix_now)
    }

    fn with_clock(secret: TicketSecret, clock: fn() -> u64) -> SharedTicketer {
        SharedTicketer {
            secret: Mutex::new(secret),
            clock,
        }
    }

    /// The secret as of now, for a process started now (a restarted
    /// worker is handed this).
    pub fn secret(&self) -> TicketSecret {
        let mut secret = self.lock();
        secret.advance((self.clock)());
        secret.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TicketSecret> {
        self.secret.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seal(key: &[u8; 32], id: [u8; ID_LEN], plain: &[u8]) -> Option<Vec<u8>> {
        use rand::TryRng;
        let mut nonce = Nonce::default();
        rand::rngs::SysRng.try_fill_bytes(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let cipher = ChaCha20Poly1305::new(&Key::from(*key));
        let tag = cipher
            .encrypt_inout_detached(&nonce, &id, out[ID_LEN + NONCE_LEN..].as_mut().into())
            .ok()?;
        out.extend_from_slice(&tag);
        Some(out)
    }

    fn open(key: &[u8; 32], ticket: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = ticket.split_at(ID_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (text, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = text.to_vec();
        let cipher = ChaCha20Poly1305::new(&Key::from(*key));
        cipher
            .decrypt_inout_detached(
                &Nonce::try_from(nonce).ok()?,
                id,
                plain.as_mut_slice().into(),
                &Tag::try_from(tag).ok()?,
            )
            .ok()?;
        Some(plain)
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let (key, id) = {
            let mut secret = self.lock();
            secret.advance((self.clock)());
            (secret.current, key_id(secret.epoch))
        };
        Self::seal(&key, id, plain)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let key = {
            let mut secret = self.lock();
            secret.advance((self.clock)());
            let id = &ticket[..ID_LEN];
            if id == key_id(secret.epoch) {
                secret.current
            } else if id == key_id(secret.epoch.wrapping_sub(1)) {
                secret.previous?
            } else {
                return None;
            }
        };
        Self::open(&key, ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    // Each test has its own clock (fn pointers cannot capture).
    static CLOCK_A: AtomicU64 = AtomicU64::new(0);
    static CLOCK_B: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn processes_with_one_secret_open_each_others_tickets() {
        let start = 1_000 * PERIOD + 5;
        CLOCK_A.store(start, Ordering::Relaxed);
        let secret = TicketSecret::random(start).unwrap();
        let one = SharedTicketer::with_clock(secret.clone(), || CLOCK_A.load(Ordering::Relaxed));
        let two = SharedTicketer::with_clock(secret, || CLOCK_A.load(Ordering::Relaxed));
        let ticket = one.encrypt(b"session state").unwrap();
        assert_eq!(ticket.len(), 4 + 12 + 13 + 16);
        assert_eq!(two.decrypt(&ticket).unwrap(), b"session state");
        // Random nonces: the same state never makes the same ticket.
        assert_ne!(one.encrypt(b"session state").unwrap(), ticket);

        // Tampering anywhere, the key id included, is refused.
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(two.decrypt(&bad).is_none(), "byte {i}");
        }
        assert!(two.decrypt(&ticket[..20]).is_none());
        assert!(two.decrypt(b"").is_none());
        let stranger = SharedTicketer::new(TicketSecret::random(start).unwrap());
        assert!(stranger.decrypt(&ticket).is_none());
    }

    #[test]
    fn keys_turn_over_together_and_old_tickets_expire() {
        let start = 2_000 * PERIOD + 100;
        CLOCK_B.store(start, Ordering::Relaxed);
        let secret = TicketSecret::random(start).unwrap();
        let old = SharedTicketer::with_clock(secret, || CLOCK_B.load(Ordering::Relaxed));
        let ticket = old.encrypt(b"state").unwrap();

        // The next period: a process started now is handed the derived
        // key, and both still open the ticket of the period before.
        CLOCK_B.store(start + PERIOD, Ordering::Relaxed);
        let late = SharedTicketer::with_clock(old.secret(), || CLOCK_B.load(Ordering::Relaxed));
        assert_eq!(late.decrypt(&ticket).unwrap(), b"state");
        assert_eq!(old.decrypt(&ticket).unwrap(), b"state");
        let newer = late.encrypt(b"newer").unwrap();
        assert_eq!(old.decrypt(&newer).unwrap(), b"newer");

        // Two periods on, the first key is gone everywhere.
        CLOCK_B.store(start + 2 * PERIOD, Ordering::Relaxed);
        assert!(old.decrypt(&ticket).is_none());
        assert!(late.decrypt(&ticket).is_none());
        assert_eq!(old.decrypt(&newer).unwrap(), b"newer");
        assert!(!format!("{:?}", old.secret()).contains('['));
    }
}
