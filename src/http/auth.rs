//! HTTP Basic authentication (`--basic-auth USER:HASH`) against an
//! Argon2 password hash, and `sockit hash-password`, which makes one.
//!
//! Passwords are never stored or given in plain text: the hash is a PHC
//! string (`$argon2id$v=19$...`) from the RustCrypto `argon2` crate.
//! Verifying one is deliberately slow (tens of milliseconds), so it runs
//! on the blocking pool, at most two at once, and a
//! credential once verified is remembered (by its SHA-256) so that the
//! requests after it on a keep-alive connection cost nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Password checks running at once; more wait their turn, so a flood of
/// wrong passwords costs at most this many cores.
const MAX_VERIFYING: usize = 2;

/// Verified credentials remembered; past this the memory starts over.
const MAX_REMEMBERED: usize = 1024;

/// Hashes a password for `--basic-auth`.
///
/// # Errors
/// An empty password, or the system's random source failing.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// `sockit hash-password`: reads one line (the password; its line end is
/// not part of it) from stdin and prints its hash.
///
/// # Errors
/// Stdin unreadable, an empty password, or the hash failing.
pub fn print_hash_of_stdin() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hash = hash_password(password).map_err(crate::error::UsageError)?;
    println!("{hash}");
    Ok(())
}

/// One user and the hash of their password.
#[derive(Debug)]
pub struct BasicAuth {
    user: String,
    hash: String,
    /// SHA-256 of `Authorization` values already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    verifying: Arc<Semaphore>,
}

impl BasicAuth {
    /// Reads `USER:HASH`.
    ///
    /// # Errors
    /// No colon, an empty user, or a hash that is not an Argon2 PHC
    /// string.
    pub fn parse(text: &str) -> Result<BasicAuth, String> {
        let (user, hash) = text.split_once(':').ok_or(
            "--basic-auth: expected USER:HASH (make the hash with `sockit hash-password`)",
        )?;
        if user.is_empty() {
            return Err("--basic-auth: the user name is empty".into());
        }
        let parsed = PasswordHash::new(hash).map_err(|e| {
            format!("--basic-auth: {e}: not a password hash (make one with `sockit hash-password`)")
        })?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(format!(
                "--basic-auth: {} hashes are not supported; use argon2 (`sockit hash-password`)",
                parsed.algorithm
            ));
        }
        Ok(BasicAuth {
            user: user.to_owned(),
            hash: hash.to_owned(),
            verified: Mutex::new(HashSet::new()),
            verifying: Arc::new(Semaphore::new(MAX_VERIFYING)),
        })
    }

    /// Whether an `Authorization` header carries this user's password.
    pub async fn permits(self: &Arc<Self>, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        if self.remembered(&digest) {
            return true;
        }
        let Some((user, password)) = decode(value) else {
            return false;
        };
        if user != self.user {
            return false;
        }
        let Ok(_turn) = self.verifying.acquire().await else {
            return false;
        };
        let me = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&me.hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }

    fn remembered(&self, digest: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.contains(digest)
    }
}

/// `Basic base64(user:password)` into its two parts.
fn decode(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(bytes).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn the_right_password_and_only_it() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let auth = Arc::new(BasicAuth::parse(&format!("alice:{hash}")).unwrap());
        assert!(auth.permits(Some(&basic("alice:s3cret"))).await);
        assert!(
            auth.permits(Some(&basic("alice:s3cret"))).await,
            "remembered"
        );
        assert!(!auth.permits(Some(&basic("alice:wrong"))).await);
        assert!(!auth.permits(Some(&basic("bob:s3cret"))).await);
        assert!(
            !auth
                .permits(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert!(!auth.permits(None).await);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(BasicAuth::parse("alice").is_err());
        assert!(BasicAuth::parse(":$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
        assert!(BasicAuth::parse("alice:plaintext").is_err());
        let bcrypt = "alice:$2b$12$abcdefghijklmnopqrstuu5w2TwfrOL7Cz8YQJ3M8jIe5Gz7cRBXy";
        assert!(BasicAuth::parse(bcrypt).is_err());
        assert!(hash_password("").is_err());
    }
}
