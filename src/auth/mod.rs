//! Verification primitives: JWT checking against cached key sets, the keys themselves,
//! Gatehouse's own signing key, and the [`principal::Principal`] a credential proves.

pub mod api_key;
pub mod identify;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod own_keys;
pub mod password;
pub mod principal;
pub mod revocation;
pub mod signing;

use std::sync::Arc;

use api_key::ApiKeys;
use jwks::KeySet;
use jwt::{Issuer, JwtVerifier};

use crate::config::{ClaimPaths, Config, TokensConfig};
use crate::store::Store;
use own_keys::OwnKeys;
use revocation::Revocations;

/// Everything needed to check a credential.
pub struct Auth {
    pub jwt: JwtVerifier,
    pub revocations: Arc<Revocations>,
    /// What Gatehouse issues itself; present exactly when `[tokens]` is configured.
    pub issued: Option<Issued>,
}

/// Gatehouse as an issuer: its token settings, the store, its own signing keys and the API
/// keys and PATs kept in that store. One value, so no part can be there without the others.
pub struct Issued {
    pub tokens: TokensConfig,
    pub store: Arc<dyn Store>,
    pub own: Arc<OwnKeys>,
    pub keys: Arc<ApiKeys>,
}

impl Auth {
    /// Loads (or generates) the signing keys and sets up every issuer's key set. Remote key
    /// sets start empty; [`Auth::spawn_maintenance`] fetches them.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .redirect(jwks::redirect_policy());
        if let Some(path) = &config.jwt.ca_file {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("jwt.ca_file {}: {e}", path.display()))?;
            client = client.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        let client = client.build()?;
        let mut issuers = Vec::new();
        let revocations = Arc::new(Revocations::new(config.tokens.as_ref().map(|t| t.issuer.clone())));
        let mut issued = None;
        if let Some(tokens) = &config.tokens {
            let store: Arc<dyn Store> = Arc::new(crate::store::SqlStore::connect(&config.store.url).await?);
            let own = Arc::new(OwnKeys::load(tokens, Some(store.clone()), config.jwt.leeway).await?);
            let verifying = own.ring().verifying.iter().map(|k| k.verify_key.clone()).collect();
            issuers.push(Issuer {
                name: tokens.issuer.clone(),
                algorithms: vec![tokens.algorithm],
                audiences: vec![tokens.audience.clone()],
                leeway: config.jwt.leeway,
                claims: ClaimPaths::own(),
                required: Vec::new(),
                typ: Some(signing::ACCESS_TOKEN_TYP),
                keys: KeySet::fixed(tokens.issuer.clone(), verifying, &config.jwt),
            });
            let keys =
                Arc::new(ApiKeys::build(config, tokens.issuer.clone(), store.clone(), revocations.clone()).await?);
            issued = Some(Issued { tokens: tokens.clone(), store, own, keys });
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
                required: cfg.required_claims.clone(),
                typ: None,
                keys,
            });
        }
        Ok(Auth { jwt: JwtVerifier::new(config, issuers, revocations.clone()), revocations, issued })
    }

    /// Starts the tasks that keep remote and file key sets fresh and follow revocations.
    pub fn spawn_maintenance(&self, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self.jwt.issuers().iter().map(|i| tokio::spawn(i.keys.clone().maintain())).collect();
        if let Some(issued) = &self.issued {
            // Client-credential tokens may outlive user access tokens: a subject-wide cut-off
            // must be kept as long as the longer of the two.
            let longest = issued.tokens.access_ttl.max(config.clients.token_ttl);
            let max_life = longest.as_secs() as i64 + config.jwt.leeway.as_secs() as i64;
            let every = std::time::Duration::from_millis(500);
            tasks.push(tokio::spawn(self.revocations.clone().follow(issued.store.clone(), every, max_life)));
            tasks.push(tokio::spawn(issued.keys.clone().flush_usage()));
            tasks.push(tokio::spawn(issued.keys.limiter().prune()));
            // Gatehouse's own issuer is always the first one.
            if let Some(issuer) = self.jwt.issuers().first() {
                tasks.push(tokio::spawn(issued.own.clone().follow(issuer.keys.clone())));
            }
        }
        tasks
    }

    /// The API keys and PATs Gatehouse checks, when it issues them.
    pub fn api_keys(&self) -> Option<&Arc<ApiKeys>> {
        self.issued.as_ref().map(|i| &i.keys)
    }

    /// Every issuer has a usable key set.
    pub fn is_ready(&self) -> bool {
        self.jwt.issuers().iter().all(|i| i.keys.is_ready())
    }
}
