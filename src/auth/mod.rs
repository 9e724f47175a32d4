//! Verification primitives: JWT checking against cached key sets, the keys themselves,
//! Gatehouse's own signing key, and the [`principal::Principal`] a credential proves.

pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod principal;
pub mod revocation;
pub mod signing;

use std::sync::Arc;

use jwks::KeySet;
use jwt::{Issuer, JwtVerifier};
use signing::SigningKey;

use crate::config::{ClaimPaths, Config, TokensConfig};
use crate::store::{Store, StoredKey};
use revocation::Revocations;

/// Everything needed to check a credential.
pub struct Auth {
    pub jwt: JwtVerifier,
    /// Gatehouse's own signing key, when `[tokens]` is configured.
    pub signing: Option<Arc<SigningKey>>,
    /// Public JWKs of every own key still verifying tokens (`/.well-known/jwks.json`).
    pub published: Vec<serde_json::Value>,
    pub revocations: Arc<Revocations>,
    store: Option<Arc<dyn Store>>,
}

impl Auth {
    /// Loads (or generates) the signing keys and sets up every issuer's key set. Remote key
    /// sets start empty; [`Auth::spawn_maintenance`] fetches them.
    pub async fn build(config: &Config, store: Option<Arc<dyn Store>>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let mut issuers = Vec::new();
        let mut signing = None;
        let mut published = Vec::new();
        if let Some(tokens) = &config.tokens {
            let keys = own_keys(tokens, store.as_deref()).await?;
            published = keys.iter().filter_map(|k| k.jwk.clone()).collect();
            issuers.push(Issuer {
                name: tokens.issuer.clone(),
                algorithms: vec![tokens.algorithm],
                audiences: vec![tokens.audience.clone()],
                leeway: config.jwt.leeway,
                claims: ClaimPaths::own(),
                keys: KeySet::fixed(
                    tokens.issuer.clone(),
                    keys.iter().map(|k| k.verify_key.clone()).collect(),
                    &config.jwt,
                ),
            });
            // The newest key signs; older ones keep verifying what they signed.
            signing = keys.into_iter().last();
        }
        for cfg in &config.issuers {
            if cfg.audiences.is_empty() {
                tracing::warn!(issuer = %cfg.issuer, "no audiences configured: `aud` is not checked for this issuer");
            }
            let keys = KeySet::from_config(cfg, &config.jwt, &client).map_err(anyhow::Error::msg)?;
            issuers.push(Issuer {
                name: cfg.issuer.clone(),
                algorithms: cfg.algorithms.clone(),
                audiences: cfg.audiences.clone(),
                leeway: cfg.leeway,
                claims: cfg.claims.clone(),
                keys,
            });
        }
        let revocations = Arc::new(Revocations::new(config.tokens.as_ref().map(|t| t.issuer.clone())));
        Ok(Auth { jwt: JwtVerifier::new(config, issuers, revocations.clone()), signing, published, revocations, store })
    }

    /// Starts the tasks that keep remote and file key sets fresh and follow revocations.
    pub fn spawn_maintenance(&self, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self.jwt.issuers().iter().map(|i| tokio::spawn(i.keys.clone().maintain())).collect();
        if let (Some(store), Some(tokens)) = (&self.store, &config.tokens) {
            let max_life = tokens.access_ttl.as_secs() as i64 + config.jwt.leeway.as_secs() as i64;
            let every = std::time::Duration::from_millis(500);
            tasks.push(tokio::spawn(self.revocations.clone().follow(store.clone(), every, max_life)));
        }
        tasks
    }

    /// Every issuer has a usable key set.
    pub fn is_ready(&self) -> bool {
        self.jwt.issuers().iter().all(|i| i.keys.is_ready())
    }
}

/// Gatehouse's own keys, oldest first: from `tokens.key_file`, or from the store (the first
/// replica to start generates one and every other replica uses it).
pub async fn own_keys(tokens: &TokensConfig, store: Option<&dyn Store>) -> anyhow::Result<Vec<Arc<SigningKey>>> {
    if let Some(path) = &tokens.key_file {
        return Ok(vec![Arc::new(SigningKey::load_or_generate(path, tokens.algorithm)?)]);
    }
    let store = store.ok_or_else(|| anyhow::anyhow!("tokens: no key_file and no store for the signing key"))?;
    let alg = format!("{:?}", tokens.algorithm);
    let mut stored = store.signing_keys().await?;
    if !stored.iter().any(|k| k.algorithm == alg && k.retired_at.is_none()) {
        let pem = SigningKey::generate_bytes(tokens.algorithm).map_err(anyhow::Error::msg)?;
        let key = SigningKey::from_bytes(&pem, tokens.algorithm).map_err(anyhow::Error::msg)?;
        let row = StoredKey {
            kid: key.kid.clone(),
            algorithm: alg.clone(),
            private_key: String::from_utf8(pem).expect("PEM and base64 secrets are ASCII"),
            created_at: jwt::now_secs() as i64,
            retired_at: None,
        };
        stored = store.insert_signing_key_if_none(&row).await?;
        tracing::info!("generated a signing key in the store");
    }
    stored
        .iter()
        .filter(|k| k.algorithm == alg)
        .map(|k| {
            SigningKey::from_bytes(k.private_key.as_bytes(), tokens.algorithm).map(Arc::new).map_err(anyhow::Error::msg)
        })
        .collect()
}
