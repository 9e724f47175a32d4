//! The OAuth2 clients of the client-credentials grant: created and deleted the same way by
//! `/auth/clients` and `gatehouse client`, so a client made on either side works on both.

use aws_lc_rs::rand::SecureRandom;

use super::{DomainError, validate};
use crate::Config;
use crate::auth::api_key::{self, Pepper};
use crate::store::{Client, Store};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Client ids longer than this are not looked up (ours are 25 characters).
const MAX_CLIENT_ID: usize = 128;

/// Checks `name` and `scopes` and stores a new client. Returns it with its secret, which
/// exists only here: the store keeps its peppered digest.
pub async fn create(
    store: &dyn Store,
    pepper: &Pepper,
    config: &Config,
    name: &str,
    scopes: &[String],
    created_by: Option<String>,
    now: i64,
) -> Result<(Client, String), DomainError> {
    let name = validate::name(name)?;
    let scopes = validate::scopes("scopes", scopes)?;
    let (client, secret) = new_client(pepper, &config.clients.secret_prefix, name, scopes, created_by, now);
    store.create_client(&client).await?;
    Ok((client, secret))
}

/// Deletes the live client `id`. Returns the cut-off its tokens are refused before, which the
/// store announces to every replica (the caller may apply it at once); `None` if there is no
/// such live client.
pub async fn delete(store: &dyn Store, config: &Config, id: &str, now: i64) -> Result<Option<i64>, DomainError> {
    if !is_client_id(id) {
        return Ok(None);
    }
    let cutoff = client_cutoff(config, now);
    Ok(store.revoke_client(id, now, cutoff).await?.then_some(cutoff))
}

/// Whether `id` could be a client id at all: short, and letters, digits, `_` or `-` (so a NUL
/// or other junk never reaches the store, where Postgres would refuse it as text).
pub fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The cut-off that voids a deleted client's tokens: every token it could ever have been issued,
/// including one signed by a request that read the client just before the delete committed
/// (a deleted client can get no new token, so the cut-off may lie in the future).
pub fn client_cutoff(config: &Config, now: i64) -> i64 {
    now + (config.clients.token_ttl + config.jwt.leeway).as_secs() as i64 + 1
}

/// A new client and its secret. `name` and `scopes` must be validated already.
pub fn new_client(
    pepper: &Pepper,
    secret_prefix: &str,
    name: String,
    scopes: Vec<String>,
    created_by: Option<String>,
    now: i64,
) -> (Client, String) {
    let secret = api_key::generate(secret_prefix);
    let client = Client {
        id: new_client_id(),
        name,
        secret_digest: pepper.digest(&secret).to_vec(),
        scopes,
        created_at: now,
        created_by,
        revoked_at: None,
    };
    (client, secret)
}

/// `gc_` and 128 random bits in 22 base62 digits: public, but unguessable and recognisable.
pub fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system randomness");
    let mut n = u128::from_be_bytes(bytes);
    let mut id = String::with_capacity(25);
    id.push_str("gc_");
    // 62^22 > 2^128: 22 digits hold every value.
    for _ in 0..22 {
        id.push(BASE62[(n % 62) as usize] as char);
        n /= 62;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_fixed_width_base62() {
        let a = new_client_id();
        assert_eq!(a.len(), 25, "{a}");
        assert!(a.starts_with("gc_") && a[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, new_client_id());
    }

    #[test]
    fn secrets_are_stored_as_digests_only() {
        let pepper = Pepper::new(&[7; 32]);
        let (client, secret) = new_client(&pepper, "gcs", "ci".into(), vec!["read".into()], None, 0);
        assert!(secret.starts_with("gcs_") && api_key::parse(&secret).is_some(), "{secret}");
        assert!(pepper.matches(&secret, &client.secret_digest));
    }
}
