//! Gatehouse's own signing keys: from `tokens.key_file`, or kept in the store and shared by
//! every replica. Rotation publishes a new key before anyone signs with it: the new key
//! becomes active a short while after it is stored, replicas reload every few seconds, and
//! the old key keeps verifying (and stays in the JWKS) until its last token has expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;

use super::jwks::KeySet;
use super::signing::SigningKey;
use crate::clock::now_secs;
use crate::config::TokensConfig;
use crate::store::{Store, StoredKey};

/// The store row holding the secret that refresh-token children are derived from.
const REFRESH_SECRET: &str = "internal:refresh-secret";

/// The keys in use at one moment.
pub struct KeyRing {
    pub signing: Arc<SigningKey>,
    /// Every key whose tokens may still be live, the signing key included.
    pub verifying: Vec<Arc<SigningKey>>,
    /// Their public JWKs, for `/.well-known/jwks.json`.
    pub jwks: Vec<Value>,
}

pub struct OwnKeys {
    ring: ArcSwap<KeyRing>,
    store: Option<Arc<dyn Store>>,
    tokens: TokensConfig,
    /// Retired keys verify this long after retirement (access TTL plus leeway); only ever
    /// raised, so a reload that lengthens the TTL keeps old keys for the tokens they signed.
    grace: AtomicI64,
}

impl OwnKeys {
    pub async fn load(tokens: &TokensConfig, store: Option<Arc<dyn Store>>, leeway: Duration) -> anyhow::Result<Self> {
        let grace = (tokens.access_ttl + leeway).as_secs() as i64;
        let ring = match &tokens.key_file {
            Some(path) => {
                let key = Arc::new(SigningKey::load_or_generate(path, tokens.algorithm)?);
                KeyRing { jwks: key.jwk.iter().cloned().collect(), verifying: vec![key.clone()], signing: key }
            }
            None => {
                let store = store.as_deref().ok_or_else(|| anyhow::anyhow!("tokens: no key_file and no store"))?;
                ring_from_store(store, tokens, grace).await?
            }
        };
        let store = if tokens.key_file.is_some() { None } else { store };
        Ok(OwnKeys { ring: ArcSwap::from_pointee(ring), store, tokens: tokens.clone(), grace: AtomicI64::new(grace) })
    }

    /// Keeps retired keys for tokens living `access_ttl + leeway` (never shortens it).
    pub fn cover(&self, access_ttl: Duration, leeway: Duration) {
        self.grace.fetch_max((access_ttl + leeway).as_secs() as i64, Ordering::Relaxed);
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Follows rotations in the store, replacing the issuer's verification keys as they change.
    pub async fn follow(self: Arc<Self>, keys: Arc<KeySet>) {
        let Some(store) = self.store.clone() else { return };
        loop {
            tokio::time::sleep(self.tokens.key_reload).await;
            match ring_from_store(store.as_ref(), &self.tokens, self.grace.load(Ordering::Relaxed)).await {
                Ok(ring) => {
                    let old = self.ring.load();
                    let kids = |r: &KeyRing| r.verifying.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
                    if kids(&old) != kids(&ring) || old.signing.kid != ring.signing.kid {
                        tracing::info!(signing = %ring.signing.kid, keys = ring.verifying.len(), "own signing keys changed");
                        keys.replace(ring.verifying.iter().map(|k| k.verify_key.clone()).collect());
                        self.ring.store(Arc::new(ring));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot reload signing keys from the store"),
            }
        }
    }

    /// The secret refresh-token children are derived from: stable across key rotations.
    pub async fn refresh_secret(&self) -> anyhow::Result<[u8; 32]> {
        match &self.store {
            Some(store) => stored_secret(store.as_ref(), REFRESH_SECRET).await,
            None => Ok(self.ring().signing.derive_secret(b"gatehouse refresh-token children v1")),
        }
    }
}

/// A 32-byte secret kept in the store under `name` (created by the first replica to ask),
/// so every replica derives the same values from it.
pub async fn stored_secret(store: &dyn Store, name: &str) -> anyhow::Result<[u8; 32]> {
    let mut rows = store.signing_keys().await?;
    if !rows.iter().any(|k| k.algorithm == name) {
        let secret =
            super::signing::SigningKey::generate_bytes(jsonwebtoken::Algorithm::HS256).map_err(anyhow::Error::msg)?;
        let row = StoredKey {
            kid: name.into(),
            algorithm: name.into(),
            private_key: String::from_utf8(secret).expect("base64 is ASCII"),
            created_at: now_secs() as i64,
            retired_at: None,
        };
        rows = store.insert_signing_key_if_none(&row).await?;
    }
    let row = rows.iter().find(|k| k.algorithm == name).expect("just ensured");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, row.private_key.as_bytes());
    Ok(digest.as_ref().try_into().expect("32 bytes"))
}

/// Loads the live keys of the configured algorithm, generating the first one if none exists.
async fn ring_from_store(store: &dyn Store, tokens: &TokensConfig, grace: i64) -> anyhow::Result<KeyRing> {
    let alg = format!("{:?}", tokens.algorithm);
    let now = now_secs() as i64;
    let mut rows = store.signing_keys().await?;
    if !rows.iter().any(|k| k.algorithm == alg && k.retired_at.is_none()) {
        rows = store.insert_signing_key_if_none(&new_key(tokens, now)?).await?;
        tracing::info!("generated a signing key in the store");
    }
    let live: Vec<&StoredKey> =
        rows.iter().filter(|k| k.algorithm == alg && k.retired_at.is_none_or(|r| r + grace > now)).collect();
    let mut verifying = Vec::new();
    let mut signing = None;
    for row in &live {
        let key =
            Arc::new(SigningKey::from_bytes(row.private_key.as_bytes(), tokens.algorithm).map_err(anyhow::Error::msg)?);
        // The newest active key signs: active once its time has come, until retired.
        if row.created_at <= now && row.retired_at.is_none_or(|r| r > now) {
            signing = Some(key.clone());
        }
        verifying.push(key);
    }
    // Before a rotation's activation the previous key is still the signing one; if none is
    // active at all (clock skew between replicas), the oldest live key signs.
    let signing = signing.or_else(|| verifying.first().cloned()).ok_or_else(|| anyhow::anyhow!("no signing key"))?;
    Ok(KeyRing { jwks: verifying.iter().filter_map(|k| k.jwk.clone()).collect(), verifying, signing })
}

fn new_key(tokens: &TokensConfig, created_at: i64) -> anyhow::Result<StoredKey> {
    let pem = SigningKey::generate_bytes(tokens.algorithm).map_err(anyhow::Error::msg)?;
    let key = SigningKey::from_bytes(&pem, tokens.algorithm).map_err(anyhow::Error::msg)?;
    Ok(StoredKey {
        kid: key.kid.clone(),
        algorithm: format!("{:?}", tokens.algorithm),
        private_key: String::from_utf8(pem).expect("PEM and base64 secrets are ASCII"),
        created_at,
        retired_at: None,
    })
}

/// `gatehouse keys rotate`: stores a new key that starts signing after `activate_after`
/// and retires the current one at the same moment. Returns the new key's id.
pub async fn rotate(store: &dyn Store, tokens: &TokensConfig, activate_after: Duration) -> anyhow::Result<String> {
    let switch_at = now_secs() as i64 + activate_after.as_secs() as i64;
    let key = new_key(tokens, switch_at)?;
    store.rotate_signing_key(&key, switch_at).await?;
    Ok(key.kid)
}
