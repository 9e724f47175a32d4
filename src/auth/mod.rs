//! Verification primitives: JWT checking against cached key sets, the keys themselves,
//! Gatehouse's own signing key, and the [`principal::Principal`] a credential proves.

pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod principal;
pub mod signing;

use std::sync::Arc;

use jwks::KeySet;
use jwt::{Issuer, JwtVerifier};
use signing::SigningKey;

use crate::config::{ClaimPaths, Config};

/// Everything needed to check a credential.
pub struct Auth {
    pub jwt: JwtVerifier,
    /// Gatehouse's own key, when `[tokens]` is configured.
    pub signing: Option<Arc<SigningKey>>,
}

impl Auth {
    /// Loads (or generates) the signing key and sets up every issuer's key set. Remote key
    /// sets start empty; [`Auth::spawn_maintenance`] fetches them.
    pub fn build(config: &Config) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let mut issuers = Vec::new();
        let mut signing = None;
        if let Some(tokens) = &config.tokens {
            let key = Arc::new(SigningKey::load_or_generate(
                &tokens.key_file,
                tokens.algorithm,
            )?);
            issuers.push(Issuer {
                name: tokens.issuer.clone(),
                algorithms: vec![tokens.algorithm],
                audiences: vec![tokens.audience.clone()],
                leeway: config.jwt.leeway,
                claims: ClaimPaths::own(),
                keys: KeySet::fixed(
                    tokens.issuer.clone(),
                    vec![key.verify_key.clone()],
                    &config.jwt,
                ),
            });
            signing = Some(key);
        }
        for cfg in &config.issuers {
            if cfg.audiences.is_empty() {
                tracing::warn!(issuer = %cfg.issuer, "no audiences configured: `aud` is not checked for this issuer");
            }
            let keys =
                KeySet::from_config(cfg, &config.jwt, &client).map_err(anyhow::Error::msg)?;
            issuers.push(Issuer {
                name: cfg.issuer.clone(),
                algorithms: cfg.algorithms.clone(),
                audiences: cfg.audiences.clone(),
                leeway: cfg.leeway,
                claims: cfg.claims.clone(),
                keys,
            });
        }
        Ok(Auth {
            jwt: JwtVerifier::new(config, issuers),
            signing,
        })
    }

    /// Starts the tasks that keep remote and file key sets fresh.
    pub fn spawn_maintenance(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.jwt
            .issuers()
            .iter()
            .map(|i| tokio::spawn(i.keys.clone().maintain()))
            .collect()
    }

    /// Every issuer has a usable key set.
    pub fn is_ready(&self) -> bool {
        self.jwt.issuers().iter().all(|i| i.keys.is_ready())
    }
}
