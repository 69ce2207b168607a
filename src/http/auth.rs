//! HTTP Basic authentication (`--basic-auth USER:HASH`) against an
//! Argon2 or bcrypt password hash, and `sockit hash-password`, which
//! makes an Argon2 one.
//!
//! Passwords are never stored or given in plain text: the hash is an
//! Argon2 PHC string (`$argon2id$v=19$...`, RustCrypto's `argon2`) or a
//! bcrypt one (`$2y$...`, what `htpasswd -B` writes; the `bcrypt` crate),
//! so an existing htpasswd entry can be used as it is.
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

/// A password hash of a kind sockit verifies.
#[derive(Debug, Clone)]
enum Hash {
    /// A PHC string, `$argon2id$...` (or argon2i, argon2d).
    Argon2(String),
    /// `$2a$`, `$2b$` or `$2y$`, cost and salt included.
    Bcrypt(String),
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            text.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("--basic-auth: not a bcrypt hash: {e}"))?;
            return Ok(Hash::Bcrypt(text.to_owned()));
        }
        let parsed = PasswordHash::new(text).map_err(|e| {
            format!("--basic-auth: {e}: not a password hash (make one with `sockit hash-password`)")
        })?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(format!(
                "--basic-auth: {} hashes are not supported; use argon2 (`sockit hash-password`) or bcrypt",
                parsed.algorithm
            ));
        }
        Ok(Hash::Argon2(text.to_owned()))
    }

    /// Slow on purpose: run it on the blocking pool.
    fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Argon2(hash) => PasswordHash::new(hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// One user and the hash of their password.
#[derive(Debug)]
pub struct BasicAuth {
    user: String,
    hash: Hash,
    /// SHA-256 of `Authorization` values already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    verifying: Arc<Semaphore>,
}

impl BasicAuth {
    /// Reads `USER:HASH`.
    ///
    /// # Errors
    /// No colon, an empty user, or a hash that is neither an Argon2 PHC
    /// string nor a bcrypt hash.
    pub fn parse(text: &str) -> Result<BasicAuth, String> {
        let (user, hash) = text.split_once(':').ok_or(
            "--basic-auth: expected USER:HASH (make the hash with `sockit hash-password`)",
        )?;
        if user.is_empty() {
            return Err("--basic-auth: the user name is empty".into());
        }
        Ok(BasicAuth {
            user: user.to_owned(),
            hash: Hash::parse(hash)?,
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
        let ok = tokio::task::spawn_blocking(move || me.hash.verify(&password))
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

    #[tokio::test]
    async fn bcrypt_hashes_as_htpasswd_writes_them() {
        // `htpasswd -nbB alice s3cret` writes $2y$; the crate makes $2b$.
        let made = bcrypt::hash("s3cret", 4).unwrap();
        let htpasswd = made.replacen("$2b$", "$2y$", 1);
        for hash in [made, htpasswd] {
            let auth = Arc::new(BasicAuth::parse(&format!("alice:{hash}")).unwrap());
            assert!(auth.permits(Some(&basic("alice:s3cret"))).await, "{hash}");
            assert!(!auth.permits(Some(&basic("alice:s3cre"))).await, "{hash}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(BasicAuth::parse("alice").is_err());
        assert!(BasicAuth::parse(":$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
        assert!(BasicAuth::parse("alice:plaintext").is_err());
        assert!(BasicAuth::parse("alice:$2y$12$tooshort").is_err());
        assert!(BasicAuth::parse("alice:$5$rounds=5000$salt$hash").is_err());
        assert!(hash_password("").is_err());
    }
}
