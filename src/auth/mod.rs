//! Verification primitives: JWT checking against cached key sets, the keys themselves,
//! Gatehouse's own signing key, and the [`principal::Principal`] a credential proves.

pub mod api_key;
pub mod browser;
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

use crate::config::{ClaimPaths, Config, IssuerConfig, KeySourceConfig, TokensConfig};
use crate::store::Store;
use own_keys::OwnKeys;
use revocation::Revocations;

/// Everything needed to check a credential.
pub struct Auth {
    pub jwt: JwtVerifier,
    pub revocations: Arc<Revocations>,
    /// What Gatehouse issues itself; present exactly when `[tokens]` is configured.
    pub issued: Option<Issued>,
    /// `jwt.ca_file` as read: remote key sets fetch through a client trusting it, so a
    /// reload that changes its content builds them anew.
    ca_bundle: Option<Vec<u8>>,
}

/// Gatehouse as an issuer: its token settings, the store, its own signing keys (and the key
/// set that verifies them) and the API keys and PATs kept in that store. One value, so no
/// part can be there without the others.
pub struct Issued {
    pub tokens: TokensConfig,
    pub store: Arc<dyn Store>,
    pub own: Arc<OwnKeys>,
    /// The verifying half of `own`, followed across key rotations.
    pub own_set: Arc<KeySet>,
    pub keys: Arc<ApiKeys>,
    /// Session cookies, with `[session]`.
    pub sessions: Option<Arc<browser::BrowserSessions>>,
}

impl Auth {
    /// Loads (or generates) the signing keys and sets up every issuer's key set. Remote key
    /// sets start empty; [`Auth::spawn_maintenance`] fetches them.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let revocations = Arc::new(Revocations::new(config.tokens.as_ref().map(|t| t.issuer.clone())));
        let issued = match &config.tokens {
            None => None,
            Some(tokens) => {
                let store: Arc<dyn Store> = Arc::new(crate::store::SqlStore::connect(&config.store.url).await?);
                let own = Arc::new(OwnKeys::load(tokens, Some(store.clone()), config.jwt.leeway).await?);
                let verifying = own.ring().verifying.iter().map(|k| k.verify_key.clone()).collect();
                let own_set = KeySet::fixed(tokens.issuer.clone(), verifying, &config.jwt);
                let keys =
                    Arc::new(ApiKeys::build(config, tokens.issuer.clone(), store.clone(), revocations.clone()).await?);
                let sessions = sessions(config, tokens, &store, &revocations);
                Some(Issued { tokens: tokens.clone(), store, own, own_set, keys, sessions })
            }
        };
        let ca_bundle = read_ca_bundle(config)?;
        Self::assemble(config, revocations, issued, ca_bundle, |_| None)
    }

    /// The verifiers for `new`, a reload of `old` that [`crate::config::fixed_changes`]
    /// passed. The store, the signing keys and the revocations carry over; so do the key sets
    /// of issuers whose keys are found the same way (their cached and fetched keys survive),
    /// and the API key cache while `[api_keys]` is unchanged. Secret files are read again.
    pub async fn next(&self, old: &Config, new: &Config) -> anyhow::Result<Self> {
        let issued = match (&self.issued, &new.tokens) {
            (None, None) => None,
            (Some(was), Some(tokens)) => {
                // Cached principals hold their identity headers rendered under `[headers]`, and
                // were admitted under the verified-email rule: a change to either starts afresh.
                let same_keys = old.api_keys == new.api_keys
                    && old.headers == new.headers
                    && old.accounts.require_verified_email == new.accounts.require_verified_email;
                let keys = if same_keys {
                    was.keys.clone()
                } else {
                    // Uses since the last batch would be lost with the old cache.
                    was.keys.flush_usage_once().await;
                    let issuer = tokens.issuer.clone();
                    Arc::new(ApiKeys::build(new, issuer, was.store.clone(), self.revocations.clone()).await?)
                };
                Some(Issued {
                    tokens: tokens.clone(),
                    store: was.store.clone(),
                    own: was.own.clone(),
                    own_set: was.own_set.clone(),
                    keys,
                    sessions: sessions(new, tokens, &was.store, &self.revocations),
                })
            }
            _ => anyhow::bail!("tokens: the auth API cannot be turned on or off without a restart"),
        };
        let ca_bundle = read_ca_bundle(new)?;
        let same_ca = ca_bundle == self.ca_bundle;
        let reuse = |cfg: &IssuerConfig| {
            let found_alike =
                |o: &&IssuerConfig| o.issuer == cfg.issuer && o.source == cfg.source && o.algorithms == cfg.algorithms;
            let secret = matches!(cfg.source, KeySourceConfig::Secret(_));
            if old.jwt != new.jwt || !same_ca || secret || !old.issuers.iter().any(|o| found_alike(&o)) {
                return None;
            }
            let own = self.issued.as_ref().map(|i| &i.own_set);
            self.jwt
                .issuers()
                .iter()
                .find(|i| i.name == cfg.issuer && own.is_none_or(|o| !Arc::ptr_eq(o, &i.keys)))
                .map(|i| i.keys.clone())
        };
        Self::assemble(new, self.revocations.clone(), issued, ca_bundle, reuse)
    }

    fn assemble(
        config: &Config,
        revocations: Arc<Revocations>,
        issued: Option<Issued>,
        ca_bundle: Option<Vec<u8>>,
        reuse: impl Fn(&IssuerConfig) -> Option<Arc<KeySet>>,
    ) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .redirect(jwks::redirect_policy());
        if let Some(pem) = &ca_bundle {
            client = client.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        let client = client.build()?;
        let mut issuers = Vec::new();
        if let Some(issued) = &issued {
            let tokens = &issued.tokens;
            issuers.push(Issuer {
                name: tokens.issuer.clone(),
                algorithms: vec![tokens.algorithm],
                audiences: vec![tokens.audience.clone()],
                leeway: config.jwt.leeway,
                claims: ClaimPaths::own(),
                required: Vec::new(),
                typ: Some(signing::ACCESS_TOKEN_TYP),
                keys: issued.own_set.clone(),
            });
        }
        for cfg in &config.issuers {
            if cfg.audiences.is_empty() {
                tracing::warn!(issuer = %cfg.issuer, "no audiences configured: `aud` is not checked for this issuer");
            }
            let keys = match reuse(cfg) {
                Some(keys) => keys,
                None => KeySet::from_config(cfg, &config.jwt, &client).map_err(anyhow::Error::msg)?,
            };
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
        Ok(Auth { jwt: JwtVerifier::new(config, issuers, revocations.clone()), revocations, issued, ca_bundle })
    }

    /// Starts the tasks that keep key sets fresh, record key use and follow revocations and
    /// rotations. After a reload (`previous` is the generation it replaces) only the parts
    /// built anew get tasks; those of dropped parts end by themselves.
    pub fn spawn_maintenance(&self, config: &Config, previous: Option<&Auth>) -> Vec<tokio::task::JoinHandle<()>> {
        let known =
            |set: &Arc<KeySet>| previous.is_some_and(|p| p.jwt.issuers().iter().any(|i| Arc::ptr_eq(&i.keys, set)));
        let mut tasks: Vec<_> = self
            .jwt
            .issuers()
            .iter()
            .filter(|i| !known(&i.keys))
            .map(|i| tokio::spawn(KeySet::maintain(Arc::downgrade(&i.keys))))
            .collect();
        if let Some(issued) = &self.issued {
            // Client-credential tokens may outlive user access tokens: a subject-wide cut-off
            // must be kept as long as the longer of the two. Raised on every reload, never lowered.
            let longest = issued.tokens.access_ttl.max(config.clients.token_ttl);
            self.revocations.keep_for(longest.as_secs() as i64 + config.jwt.leeway.as_secs() as i64);
            issued.own.cover(issued.tokens.access_ttl, config.jwt.leeway);
            if previous.is_none() {
                let every = std::time::Duration::from_millis(500);
                tasks.push(tokio::spawn(self.revocations.clone().follow(issued.store.clone(), every)));
                tasks.push(tokio::spawn(issued.own.clone().follow(issued.own_set.clone())));
            }
            if previous.and_then(Auth::api_keys).is_none_or(|k| !Arc::ptr_eq(k, &issued.keys)) {
                tasks.push(tokio::spawn(ApiKeys::flush_usage(Arc::downgrade(&issued.keys))));
                tasks.push(tokio::spawn(crate::limits::Limiter::prune(Arc::downgrade(&issued.keys.limiter()))));
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

fn read_ca_bundle(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &config.jwt.ca_file else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("jwt.ca_file {}: {e}", path.display()))?;
    Ok(Some(pem))
}

/// The session-cookie verifier for `[session]`; rebuilt with every generation (its cache
/// refills from the store in one lookup per session).
fn sessions(
    config: &Config,
    tokens: &TokensConfig,
    store: &Arc<dyn Store>,
    revocations: &Arc<Revocations>,
) -> Option<Arc<browser::BrowserSessions>> {
    let session = config.session.as_ref()?;
    let issuer = tokens.issuer.clone();
    Some(Arc::new(browser::BrowserSessions::new(config, session, issuer, store.clone(), revocations.clone())))
}
