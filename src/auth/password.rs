//! Password hashing: argon2id with OWASP's parameters (the argon2 crate's defaults:
//! m = 19 MiB, t = 2, p = 1); bcrypt hashes of imported users verified and upgraded.
//!
//! Hashing runs on the blocking pool behind a semaphore, so a login flood cannot starve
//! the proxy's workers or exhaust memory.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::error::{ApiError, Error};

pub struct Passwords {
    permits: Semaphore,
    /// Checked against when the account does not exist, so both cases cost the same.
    dummy: String,
}

/// The result of checking a password.
pub struct Checked {
    pub ok: bool,
    /// The stored hash is bcrypt or weaker argon2 parameters: store a fresh hash.
    pub needs_rehash: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

impl From<HashError> for ApiError {
    fn from(_: HashError) -> Self {
        tracing::error!("password hashing failed");
        ApiError::Internal
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Self {
        Error::Api(e.into())
    }
}

impl Passwords {
    pub fn new(concurrency: usize) -> Self {
        let dummy = hash_now("gatehouse dummy password for unknown accounts").expect("argon2 works");
        Passwords { permits: Semaphore::new(concurrency.max(1)), dummy }
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|_| HashError)?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is none.
    pub async fn check(&self, password: &str, stored: Option<&str>) -> Result<Checked, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError)?;
        let real = stored.is_some();
        let password = password.to_string();
        let hash = stored.unwrap_or(&self.dummy).to_string();
        let (ok, needs_rehash) =
            tokio::task::spawn_blocking(move || verify_now(&password, &hash)).await.map_err(|_| HashError)?;
        Ok(Checked { ok: ok && real, needs_rehash: needs_rehash && real })
    }
}

fn hash_now(password: &str) -> Result<String, HashError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|_| HashError)
}

/// (matches, should be rehashed)
fn verify_now(password: &str, hash: &str) -> (bool, bool) {
    if hash.starts_with("$2") {
        // bcrypt reads at most 72 bytes; longer passwords are refused rather than truncated.
        let ok = password.len() <= 72 && bcrypt::verify(password, hash).unwrap_or(false);
        return (ok, true);
    }
    let Ok(parsed) = PasswordHash::new(hash) else { return (false, false) };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    let current = argon2::Params::default();
    let weaker = parsed.algorithm.as_str() != "argon2id"
        || argon2::Params::try_from(&parsed)
            .map(|p| p.m_cost() < current.m_cost() || p.t_cost() < current.t_cost())
            .unwrap_or(true);
    (ok, weaker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2_round_trip_and_bcrypt_upgrade() {
        let p = Passwords::new(2);
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        let c = p.check("correct horse", Some(&h)).await.unwrap();
        assert!(c.ok && !c.needs_rehash);
        assert!(!p.check("wrong", Some(&h)).await.unwrap().ok);
        let legacy = bcrypt::hash("imported pw", 4).unwrap();
        let c = p.check("imported pw", Some(&legacy)).await.unwrap();
        assert!(c.ok && c.needs_rehash);
        assert!(!p.check("anything", None).await.unwrap().ok);
    }
}
