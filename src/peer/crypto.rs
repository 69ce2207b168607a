//! `--secret`: every datagram authenticated and encrypted.
//!
//! The key is derived from the secret with HKDF-SHA256; the cipher is
//! XChaCha20-Poly1305 (RustCrypto), chosen for its 24-byte nonce: each node
//! puts a random 16-byte session id (drawn from the OS at start) and a
//! 64-bit counter in it, so nonces never repeat across nodes or restarts
//! without any coordination. (ChaCha20-Poly1305's 12-byte nonce leaves too
//! few random bits for that.)
//!
//! A sealed datagram is `header(kind = Sealed) || nonce || ciphertext ||
//! tag`, with the header as associated data. Replays are refused by a
//! sliding window per sender session ([`ReplayWindow`]); the window moves
//! only after a datagram authenticates, so forgeries cannot disturb it.
//! Nothing of a datagram is parsed before it authenticates.
//!
//! HKDF is not a password hash: a short passphrase can be guessed offline
//! from one captured datagram. Use a long random secret (docs say how).

use std::collections::HashMap;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::message::{HEADER_LEN, Kind, write_header};

/// Nonce bytes carried in each sealed datagram.
pub const NONCE_LEN: usize = 24;
/// Authentication tag bytes at the end of each sealed datagram.
pub const TAG_LEN: usize = 16;
/// How many counters behind the newest one a datagram may arrive and still
/// be accepted (reordering tolerance).
const WINDOW_BITS: u64 = 1024;
/// Sender sessions whose replay windows are remembered; the least recently
/// heard is forgotten first. Only holders of the key create sessions (one
/// per process start), so this is reached only by a long-lived mesh with
/// many restarts.
const MAX_SESSIONS: usize = 1024;

/// HKDF salt and info: fixed, versioned labels (the secret is the only
/// input that varies).
const HKDF_SALT: &[u8] = b"sockit peer v1";
const HKDF_INFO: &[u8] = b"sockit peer datagram key (XChaCha20-Poly1305)";

/// Why a sealed datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a nonce and a tag.
    Malformed,
    /// The tag did not verify: a wrong key, or tampering.
    Auth,
    /// Authentic, but seen before (or too old to tell).
    Replay,
}

/// Seals outgoing and opens incoming datagrams for one node.
pub struct Crypto {
    cipher: XChaCha20Poly1305,
    /// Our random session id: the first 16 bytes of every nonce we use.
    session: [u8; 16],
    /// The next counter: the last 8 bytes of the nonce.
    counter: u64,
    replay: HashMap<[u8; 16], ReplayWindow>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Crypto")
            .field("counter", &self.counter)
            .field("sessions", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl Crypto {
    /// Derives the key from `secret`; `session` must be random per process.
    pub fn new(secret: &[u8], session: [u8; 16]) -> Crypto {
        let mut key = Key::default();
        Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
            .expand(HKDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Crypto {
            cipher: XChaCha20Poly1305::new(&key),
            session,
            counter: 0,
            replay: HashMap::new(),
        }
    }

    /// Appends to `out` a sealed datagram carrying `plain` (`[kind][body]`).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        write_header(out, Kind::Sealed);
        let nonce = self.next_nonce();
        out.extend_from_slice(&nonce);
        let text_at = out.len();
        out.extend_from_slice(plain);
        let (head, text) = out[start..].split_at_mut(text_at - start);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &head[..HEADER_LEN], text.into())
            .expect("a datagram is far below the cipher's length limit");
        out.extend_from_slice(&tag);
    }

    fn next_nonce(&mut self) -> XNonce {
        if self.counter == u64::MAX {
            // 2^64 datagrams will not happen; if it did, a new session
            // keeps nonces unique rather than wrapping.
            self.session = os_random();
            self.counter = 0;
        }
        let mut nonce = XNonce::default();
        nonce[..16].copy_from_slice(&self.session);
        nonce[16..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        nonce
    }

    /// Opens a sealed datagram in place. `datagram` is the whole datagram,
    /// header included; on success the plaintext (`[kind][body]`) is
    /// returned as a slice of it.
    ///
    /// # Errors
    /// [`OpenError`]: too short, not authentic, or a replay.
    pub fn open<'a>(
        &mut self,
        datagram: &'a mut [u8],
        now: Instant,
    ) -> Result<&'a [u8], OpenError> {
        if datagram.len() < HEADER_LEN + NONCE_LEN + TAG_LEN + 1 {
            return Err(OpenError::Malformed);
        }
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let tag_at = rest.len() - TAG_LEN;
        let (text, tag) = rest.split_at_mut(tag_at);
        let session: [u8; 16] = nonce[..16].try_into().expect("16 bytes");
        let counter = u64::from_be_bytes(nonce[16..].try_into().expect("8 bytes"));
        // A cheap check first, so replayed floods cost no decryption; the
        // window itself moves only after the tag verifies.
        if self.replay.get(&session).is_some_and(|w| !w.fresh(counter)) {
            return Err(OpenError::Replay);
        }
        let nonce = XNonce::try_from(&*nonce).expect("24 bytes");
        let tag = Tag::try_from(&*tag).expect("16 bytes");
        self.cipher
            .decrypt_inout_detached(&nonce, head, (&mut *text).into(), &tag)
            .map_err(|_| OpenError::Auth)?;
        if session == self.session {
            // Our own datagram reflected back at us: authentic but never
            // something to act on.
            return Err(OpenError::Replay);
        }
        self.remember(session, counter, now)?;
        Ok(text)
    }

    fn remember(&mut self, session: [u8; 16], counter: u64, now: Instant) -> Result<(), OpenError> {
        if !self.replay.contains_key(&session) && self.replay.len() >= MAX_SESSIONS {
            let oldest = self
                .replay
                .iter()
                .min_by_key(|(_, w)| w.last_seen)
                .map(|(k, _)| *k)
                .expect("the table is full, so not empty");
            self.replay.remove(&oldest);
        }
        let window = self.replay.entry(session).or_insert_with(|| ReplayWindow {
            top: 0,
            bits: [0; (WINDOW_BITS / 64) as usize],
            empty: true,
            last_seen: now,
        });
        window.last_seen = now;
        if window.accept(counter) {
            Ok(())
        } else {
            Err(OpenError::Replay)
        }
    }

    /// How many sender sessions are remembered (for tests and stats).
    pub fn sessions(&self) -> usize {
        self.replay.len()
    }
}

/// The anti-replay window of one sender session (the RFC 4303 / RFC 6479
/// scheme): the highest counter seen and a bitmap of the ones just below it.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; (WINDOW_BITS / 64) as usize],
    empty: bool,
    last_seen: Instant,
}

impl ReplayWindow {
    fn slot(counter: u64) -> (usize, u64) {
        let i = counter % WINDOW_BITS;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `counter` is new: above the window, or inside it and unseen.
    fn fresh(&self, counter: u64) -> bool {
        if self.empty || counter > self.top {
            return true;
        }
        if self.top - counter >= WINDOW_BITS {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter`; false if it was not fresh.
    fn accept(&mut self, counter: u64) -> bool {
        if !self.fresh(counter) {
            return false;
        }
        if self.empty {
            self.empty = false;
            self.top = counter;
        } else if counter > self.top {
            // Clear the slots the window slides over.
            let shift = counter - self.top;
            if shift >= WINDOW_BITS {
                self.bits = [0; (WINDOW_BITS / 64) as usize];
            } else {
                for c in self.top + 1..=counter {
                    let (word, bit) = Self::slot(c);
                    self.bits[word] &= !bit;
                }
            }
            self.top = counter;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= bit;
        true
    }
}

/// `N` random bytes from the operating system.
///
/// # Panics
/// If the OS has no randomness to give, which leaves no safe way on.
pub(crate) fn os_random<const N: usize>() -> [u8; N] {
    use rand::TryRng;
    let mut bytes = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random number generator failed");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Crypto, Crypto) {
        (
            Crypto::new(b"correct horse", [1; 16]),
            Crypto::new(b"correct horse", [2; 16]),
        )
    }

    fn sealed(c: &mut Crypto, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.seal(plain, &mut out);
        out
    }

    #[test]
    fn seal_then_open() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let mut d = sealed(&mut a, b"\x02hello");
        assert_eq!(&d[..4], &[0xC5, 0x4B, 1, 0x80]);
        assert_eq!(d.len(), 4 + NONCE_LEN + 6 + TAG_LEN);
        assert!(!d.windows(5).any(|w| w == b"hello"), "encrypted");
        assert_eq!(b.open(&mut d, now).unwrap(), b"\x02hello");
    }

    #[test]
    fn wrong_key_tampering_and_truncation_fail() {
        let (mut a, _) = pair();
        let mut other = Crypto::new(b"wrong", [3; 16]);
        let now = Instant::now();
        let d = sealed(&mut a, b"\x02hello");
        assert_eq!(other.open(&mut d.clone(), now), Err(OpenError::Auth));
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 1;
            let (_, mut b) = pair();
            assert!(b.open(&mut t, now).is_err(), "flipped byte {i}");
        }
        let (_, mut b) = pair();
        assert_eq!(b.open(&mut d.clone()[..20], now), Err(OpenError::Malformed));
        assert_eq!(other.sessions(), 0, "failures leave no state");
    }

    #[test]
    fn replays_are_refused_and_reordering_is_not() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let ds: Vec<Vec<u8>> = (0..100u8).map(|i| sealed(&mut a, &[2, i])).collect();
        // Out of order, inside the window: all accepted once.
        for i in (0..100).rev() {
            assert!(b.open(&mut ds[i].clone(), now).is_ok(), "{i}");
        }
        for d in &ds {
            assert_eq!(b.open(&mut d.clone(), now), Err(OpenError::Replay));
        }
        // Far ahead, then something older than the window: refused.
        for _ in 0..2000 {
            sealed(&mut a, b"\x02x");
        }
        let mut late = sealed(&mut a, b"\x02x");
        let mut old = ds[0].clone();
        assert!(b.open(&mut late, now).is_ok());
        assert_eq!(b.open(&mut old, now), Err(OpenError::Replay));
    }

    #[test]
    fn our_own_datagrams_are_not_accepted() {
        let (mut a, _) = pair();
        let mut d = sealed(&mut a, b"\x02x");
        assert_eq!(a.open(&mut d, Instant::now()), Err(OpenError::Replay));
    }

    #[test]
    fn the_session_table_is_bounded() {
        let now = Instant::now();
        let mut b = Crypto::new(b"k", [0xFF; 16]);
        for i in 0..(MAX_SESSIONS + 10) {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let mut a = Crypto::new(b"k", s);
            assert!(b.open(&mut sealed(&mut a, b"\x02x"), now).is_ok());
        }
        assert_eq!(b.sessions(), MAX_SESSIONS);
    }

    #[test]
    fn window_slides() {
        let mut w = ReplayWindow {
            top: 0,
            bits: [0; 16],
            empty: true,
            last_seen: Instant::now(),
        };
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(w.accept(5 + WINDOW_BITS));
        assert!(!w.accept(5), "fell out of the window");
        assert!(w.accept(4 + WINDOW_BITS), "inside the window, unseen");
        assert!(w.accept(10 * WINDOW_BITS));
        assert!(!w.accept(10 * WINDOW_BITS));
    }
}
