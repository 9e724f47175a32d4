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

use crate::config::{ClaimPaths, Config};
use crate::store::Store;
use own_keys::OwnKeys;
use revocation::Revocations;

/// Everything needed to check a credential.
pub struct Auth {
    pub jwt: JwtVerifier,
    /// Gatehouse's own keys, when `[tokens]` is configured.
    pub own: Option<Arc<OwnKeys>>,
    pub revocations: Arc<Revocations>,
    /// API keys and PATs, when `[tokens]` (and so the store) is configured.
    pub keys: Option<Arc<ApiKeys>>,
    store: Option<Arc<dyn Store>>,
}

impl Auth {
    /// Loads (or generates) the signing keys and sets up every issuer's key set. Remote key
    /// sets start empty; [`Auth::spawn_maintenance`] fetches them.
    pub async fn build(config: &Config, store: Option<Arc<dyn Store>>) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .redirect(jwks::redirect_policy());
        if let Some(path) = &config.jwt.ca_file {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("jwt.ca_file {}: {e}", path.display()))?;
            client = client.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        let client = client.build()?;
        let mut issuers = Vec::new();
        let mut own = None;
        if let Some(tokens) = &config.tokens {
            let keys = Arc::new(OwnKeys::load(tokens, store.clone(), config.jwt.leeway).await?);
            let verifying = keys.ring().verifying.iter().map(|k| k.verify_key.clone()).collect();
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
            own = Some(keys);
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
        let revocations = Arc::new(Revocations::new(config.tokens.as_ref().map(|t| t.issuer.clone())));
        let keys = match (&store, &config.tokens) {
            (Some(store), Some(tokens)) => {
                Some(Arc::new(ApiKeys::build(config, tokens.issuer.clone(), store.clone(), revocations.clone()).await?))
            }
            _ => None,
        };
        Ok(Auth { jwt: JwtVerifier::new(config, issuers, revocations.clone()), own, revocations, keys, store })
    }

    /// Starts the tasks that keep remote and file key sets fresh and follow revocations.
    pub fn spawn_maintenance(&self, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self.jwt.issuers().iter().map(|i| tokio::spawn(i.keys.clone().maintain())).collect();
        if let (Some(store), Some(tokens)) = (&self.store, &config.tokens) {
            // Client-credential tokens may outlive user access tokens: a subject-wide cut-off
            // must be kept as long as the longer of the two.
            let longest = tokens.access_ttl.max(config.clients.token_ttl);
            let max_life = longest.as_secs() as i64 + config.jwt.leeway.as_secs() as i64;
            let every = std::time::Duration::from_millis(500);
            tasks.push(tokio::spawn(self.revocations.clone().follow(store.clone(), every, max_life)));
        }
        if let Some(keys) = &self.keys {
            tasks.push(tokio::spawn(keys.clone().flush_usage()));
            tasks.push(tokio::spawn(keys.limiter().prune()));
        }
        if let (Some(own), Some(issuer)) = (&self.own, self.jwt.issuers().first()) {
            // Gatehouse's own issuer is always the first one.
            tasks.push(tokio::spawn(own.clone().follow(issuer.keys.clone())));
        }
        tasks
    }

    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Every issuer has a usable key set.
    pub fn is_ready(&self) -> bool {
        self.jwt.issuers().iter().all(|i| i.keys.is_ready())
    }
}
