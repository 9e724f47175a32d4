//! Key sets per issuer: remote JWKS (direct URL or OIDC discovery), watched JWKS files,
//! HMAC secrets and Gatehouse's own key, behind one cached (issuer, kid) -> key lookup.
//!
//! An unknown `kid` triggers at most one fetch per issuer at a time and no more than one per
//! cool-down. A failing endpoint leaves the last good keys serving for a bounded stale
//! period; the set's `Cache-Control: max-age` decides when it is fetched again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use moka::Expiry;
use moka::sync::Cache;
use serde::Deserialize;

use super::keys::VerifyKey;
use crate::config::{IssuerConfig, JwtConfig, KeySourceConfig};

/// The largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Key sets with more keys than this are cut (an IdP publishes a handful).
const MAX_KEYS_PER_SET: usize = 64;

type KeyId = Arc<str>;

#[derive(Clone)]
struct CachedKey {
    key: Arc<VerifyKey>,
    /// Past this the key stops serving (TTL plus stale period); `None` for static keys.
    valid_until: Option<Instant>,
}

struct UntilValid;

impl Expiry<KeyId, CachedKey> for UntilValid {
    fn expire_after_create(&self, _: &KeyId, value: &CachedKey, now: Instant) -> Option<Duration> {
        value.valid_until.map(|t| t.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        key: &KeyId,
        value: &CachedKey,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// The keys currently loaded for one issuer, for tokens that carry no `kid`.
struct Loaded {
    keys: Vec<Arc<VerifyKey>>,
    valid_until: Option<Instant>,
}

enum Source {
    Static,
    File { path: PathBuf, modified: std::sync::Mutex<Option<SystemTime>> },
    Remote { url: Option<String>, discovery: Option<String>, client: reqwest::Client },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("bad document: {0}")]
    Document(String),
}

/// Why a fetch is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The set's TTL ran out (or the first load); ignores the cool-down.
    Scheduled,
    /// A token named a `kid` we do not have; subject to the cool-down.
    UnknownKid,
}

/// One issuer's keys and the machinery that keeps them fresh.
pub struct KeySet {
    pub issuer: String,
    algorithms: Vec<Algorithm>,
    source: Source,
    /// kid -> key: this issuer's part of the (issuer, kid) lookup, bounded and expiring.
    cache: Cache<KeyId, CachedKey>,
    loaded: ArcSwap<Loaded>,
    ready: AtomicBool,
    /// Serialises fetches (single flight) and remembers when the last on-demand one started.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped after every fetch attempt, so waiters know one happened while they queued.
    generation: AtomicU64,
    pub fetches: AtomicU64,
    settings: JwtConfig,
}

impl KeySet {
    /// A set of fixed keys (an HMAC secret, Gatehouse's own key).
    pub fn fixed(issuer: String, keys: Vec<Arc<VerifyKey>>, settings: &JwtConfig) -> Arc<Self> {
        let set = Self::new(issuer, Vec::new(), Source::Static, settings);
        set.install(keys, None);
        Arc::new(set)
    }

    /// The set described by an `[[issuers]]` entry.
    pub fn from_config(
        cfg: &IssuerConfig,
        settings: &JwtConfig,
        client: &reqwest::Client,
    ) -> Result<Arc<Self>, String> {
        let source = match &cfg.source {
            KeySourceConfig::Secret(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let key = VerifyKey::from_secret(crate::config::trim_secret(&bytes), &cfg.algorithms);
                return Ok(Self::fixed(cfg.issuer.clone(), vec![Arc::new(key)], settings));
            }
            KeySourceConfig::JwksFile(path) => {
                Source::File { path: path.clone(), modified: std::sync::Mutex::new(None) }
            }
            KeySourceConfig::JwksUrl(url) => {
                Source::Remote { url: Some(url.clone()), discovery: None, client: client.clone() }
            }
            KeySourceConfig::Discovery => Source::Remote {
                url: None,
                discovery: Some(format!("{}/.well-known/openid-configuration", cfg.issuer.trim_end_matches('/'))),
                client: client.clone(),
            },
        };
        let set = Self::new(cfg.issuer.clone(), cfg.algorithms.clone(), source, settings);
        if let Source::File { .. } = set.source {
            // A static file must be right at start: fail fast instead of serving nothing.
            set.reload_file().map_err(|e| format!("{}: {e}", cfg.issuer))?;
        }
        Ok(Arc::new(set))
    }

    fn new(issuer: String, algorithms: Vec<Algorithm>, source: Source, settings: &JwtConfig) -> Self {
        KeySet {
            issuer,
            algorithms,
            source,
            cache: Cache::builder().max_capacity(settings.key_cache_capacity).expire_after(UntilValid).build(),
            loaded: ArcSwap::from_pointee(Loaded { keys: Vec::new(), valid_until: None }),
            ready: AtomicBool::new(false),
            gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            settings: settings.clone(),
        }
    }

    /// True once a key set has loaded and has not gone past its stale limit.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.loaded.load().valid_until.is_none_or(|t| crate::clock::now_std() < t)
    }

    /// The key named `kid`, if loaded and still valid. In a fixed set, a key without a kid
    /// (an `[[issuers]]` shared secret: the issuer's only key) answers to any kid, since the
    /// operator named the key and a kid on the token is only a hint.
    pub fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.cache.get(kid).map(|c| c.key).or_else(|| {
            if !matches!(self.source, Source::Static) {
                return None;
            }
            self.loaded.load().keys.iter().find(|k| k.kid.is_none()).cloned()
        })
    }

    /// Every valid key, for tokens without a `kid`.
    pub fn all(&self) -> Vec<Arc<VerifyKey>> {
        let loaded = self.loaded.load();
        if loaded.valid_until.is_some_and(|t| crate::clock::now_std() >= t) {
            return Vec::new();
        }
        loaded.keys.clone()
    }

    /// Replaces a fixed set's keys (Gatehouse's own, after a rotation).
    pub fn replace(&self, keys: Vec<Arc<VerifyKey>>) {
        self.install(keys, None);
    }

    fn install(&self, keys: Vec<Arc<VerifyKey>>, valid_until: Option<Instant>) {
        let previous = self.loaded.load_full();
        for old in previous.keys.iter().filter_map(|k| k.kid.as_deref()) {
            if !keys.iter().any(|k| k.kid.as_deref() == Some(old)) {
                // A key the issuer no longer publishes is withdrawn at once.
                self.cache.invalidate(old);
            }
        }
        for key in &keys {
            if let Some(kid) = &key.kid {
                self.cache.insert(Arc::from(kid.as_str()), CachedKey { key: key.clone(), valid_until });
            }
        }
        self.loaded.store(Arc::new(Loaded { keys, valid_until }));
        self.ready.store(true, Ordering::Release);
    }

    /// Fetches the set again if allowed. Returns whether new keys may now be present
    /// (a fetch ran, here or in a concurrent caller), so the caller should look again.
    pub async fn refresh(&self, reason: Reason) -> bool {
        if matches!(self.source, Source::Static) {
            return false;
        }
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if reason == Reason::UnknownKid && last.is_some_and(|t| t.elapsed() < self.settings.jwks_refresh_cooldown) {
            return false;
        }
        if reason == Reason::UnknownKid {
            // Only on-demand fetches count toward the cool-down, so a scheduled refresh
            // moments before a rotation does not delay the new key.
            *last = Some(crate::clock::now_std());
        }
        let outcome = match &self.source {
            Source::File { .. } => self.reload_file().map(|_| self.settings.jwks_file_poll),
            Source::Remote { .. } => self.fetch_remote().await,
            Source::Static => unreachable!("static sets never refresh"),
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "key set refresh failed; keeping the last good keys");
                false
            }
        }
    }

    /// Keeps a remote set fresh: refetch when the TTL ends, back off on failure. Files are
    /// polled for changes. Ends once the set is dropped (a reload that replaced its issuer):
    /// between rounds it holds only a weak reference.
    pub async fn maintain(set: Weak<Self>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(this) = set.upgrade() else { return };
            let wait = match &this.source {
                Source::Static => return,
                Source::File { .. } => {
                    if this.file_changed() {
                        this.refresh(Reason::Scheduled).await;
                    }
                    this.settings.jwks_file_poll
                }
                Source::Remote { .. } => {
                    if this.refresh(Reason::Scheduled).await {
                        backoff = Duration::from_millis(500);
                        let until = this.loaded.load().valid_until;
                        // valid_until includes the stale period; refetch when the TTL proper ends.
                        until
                            .map(|t| {
                                t.saturating_duration_since(crate::clock::now_std())
                                    .saturating_sub(this.settings.jwks_stale_ttl)
                            })
                            .unwrap_or(this.settings.jwks_default_ttl)
                            .max(Duration::from_secs(1))
                    } else {
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                }
            };
            drop(this);
            tokio::time::sleep(wait).await;
        }
    }

    fn file_changed(&self) -> bool {
        let Source::File { path, modified } = &self.source else {
            return false;
        };
        let now = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        *modified.lock().expect("mtime lock") != now
    }

    fn reload_file(&self) -> Result<(), FetchError> {
        let Source::File { path, modified } = &self.source else {
            return Ok(());
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let bytes = std::fs::read(path).map_err(|e| FetchError::Http(format!("{}: {e}", path.display())))?;
        let keys = self.parse_set(&bytes)?;
        *modified.lock().expect("mtime lock") = mtime;
        self.install(keys, None);
        tracing::info!(issuer = %self.issuer, file = %path.display(), "loaded key set from file");
        Ok(())
    }

    async fn fetch_remote(&self) -> Result<Duration, FetchError> {
        let Source::Remote { url, discovery, client } = &self.source else { unreachable!() };
        let jwks_url = match (url, discovery) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => self.discover(client, d).await?,
            (None, None) => unreachable!("a remote source has a URL or discovery"),
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (bytes, max_age) = get_document(client, &jwks_url, self.settings.jwks_fetch_timeout).await?;
        let keys = self.parse_set(&bytes)?;
        let ttl = max_age
            .unwrap_or(self.settings.jwks_default_ttl)
            .clamp(self.settings.jwks_min_ttl, self.settings.jwks_max_ttl);
        let count = keys.len();
        self.install(keys, Some(crate::clock::now_std() + ttl + self.settings.jwks_stale_ttl));
        tracing::info!(issuer = %self.issuer, keys = count, ttl_secs = ttl.as_secs(), "fetched key set");
        Ok(ttl)
    }

    async fn discover(&self, client: &reqwest::Client, url: &str) -> Result<String, FetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let (bytes, _) = get_document(client, url, self.settings.jwks_fetch_timeout).await?;
        let doc: Discovery =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Document(format!("discovery: {e}")))?;
        // OpenID Connect Discovery §4.3: the document must name exactly the issuer we asked for.
        if doc.issuer != self.issuer {
            return Err(FetchError::Document(format!("discovery names issuer `{}`", doc.issuer)));
        }
        jwks_uri_allowed(url, &doc.jwks_uri).map_err(FetchError::Document)?;
        Ok(doc.jwks_uri)
    }

    fn parse_set(&self, bytes: &[u8]) -> Result<Vec<Arc<VerifyKey>>, FetchError> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| FetchError::Document(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in set.keys.iter().take(MAX_KEYS_PER_SET) {
            match VerifyKey::from_jwk(jwk, &self.algorithms) {
                Ok(k) => keys.push(Arc::new(k)),
                Err(e) => {
                    tracing::debug!(issuer = %self.issuer, kid = ?jwk.common.key_id, "skipping key: {e}")
                }
            }
        }
        if keys.is_empty() {
            return Err(FetchError::Document("no usable keys".into()));
        }
        Ok(keys)
    }
}

/// Redirects of JWKS and discovery fetches: at most 3, and never from https to http, which
/// would let whoever sits on the plain-text hop hand us keys for an https issuer.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| match redirect_allowed(attempt.previous(), attempt.url()) {
        Ok(()) => attempt.follow(),
        Err(why) => attempt.error(why),
    })
}

fn redirect_allowed(previous: &[reqwest::Url], next: &reqwest::Url) -> Result<(), String> {
    if previous.len() >= 3 {
        return Err("more than 3 redirects".into());
    }
    if next.scheme() != "https" && previous.iter().any(|u| u.scheme() == "https") {
        return Err(format!("refusing a redirect from https to {}", next.scheme()));
    }
    Ok(())
}

/// A discovered `jwks_uri` must be an http(s) URL no weaker than the discovery document's
/// own: an https issuer's keys never come over plain http.
fn jwks_uri_allowed(discovery_url: &str, jwks_uri: &str) -> Result<(), String> {
    let https = |u: &str| u.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    let http = |u: &str| u.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if !(https(jwks_uri) || http(jwks_uri)) {
        return Err("discovery's jwks_uri is not an http(s) URL".into());
    }
    if https(discovery_url) && !https(jwks_uri) {
        return Err("discovery names an http jwks_uri for an https issuer".into());
    }
    Ok(())
}

async fn get_document(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let mut resp =
        client.get(url).timeout(timeout).send().await.map_err(|e| FetchError::Http(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(FetchError::Http(format!("status {}", resp.status())));
    }
    let max_age = resp.headers().get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(parse_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Http(e.without_url().to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::Document("larger than 1 MiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// `max-age` from a Cache-Control value; `no-store` / `no-cache` count as zero.
fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            max_age = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_downgrade_to_http() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(redirect_allowed(&[u("https://idp/jwks")], &u("https://cdn/jwks")).is_ok());
        assert!(redirect_allowed(&[u("http://idp/jwks")], &u("http://cdn/jwks")).is_ok());
        assert!(redirect_allowed(&[u("http://idp/jwks")], &u("https://cdn/jwks")).is_ok());
        assert!(redirect_allowed(&[u("https://idp/jwks")], &u("http://cdn/jwks")).is_err());
        // Once https, always https: bouncing through another https hop does not launder it.
        assert!(redirect_allowed(&[u("https://idp/a"), u("https://idp/b")], &u("http://cdn/jwks")).is_err());
        let hops = [u("http://a/"), u("http://b/"), u("http://c/")];
        assert!(redirect_allowed(&hops, &u("http://d/")).is_err(), "at most 3");
    }

    #[test]
    fn discovered_jwks_uri_is_no_weaker_than_the_issuer() {
        let d = "https://idp/.well-known/openid-configuration";
        assert!(jwks_uri_allowed(d, "https://idp/jwks").is_ok());
        assert!(jwks_uri_allowed(d, "HTTPS://idp/jwks").is_ok());
        assert!(jwks_uri_allowed(d, "http://idp/jwks").is_err());
        assert!(jwks_uri_allowed(d, "file:///etc/jwks").is_err());
        assert!(jwks_uri_allowed("http://idp/.well-known/openid-configuration", "http://idp/jwks").is_ok());
    }

    #[test]
    fn cache_control() {
        assert_eq!(parse_max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    /// The stale limit follows the process clock: moved with `tokio::time::advance`, the
    /// set stops answering exactly when its TTL plus `jwks_stale_ttl` is over, without a sleep.
    #[tokio::test(start_paused = true)]
    async fn a_fetched_set_goes_stale_on_the_clock() {
        let config = crate::config::Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:3000\"\n", []).unwrap();
        let source = Source::Remote { url: None, discovery: None, client: reqwest::Client::new() };
        let set = KeySet::new("https://idp.test".into(), vec![Algorithm::HS256], source, &config.jwt);
        let mut key = VerifyKey::from_secret(&[7; 32], &[Algorithm::HS256]);
        key.kid = Some("k1".into());
        let life = Duration::from_secs(600);
        set.install(vec![Arc::new(key)], Some(crate::clock::now_std() + life));
        assert!(set.is_ready() && set.get("k1").is_some() && set.all().len() == 1);

        tokio::time::advance(life - Duration::from_secs(1)).await;
        assert!(set.is_ready() && set.all().len() == 1, "still inside its life");

        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!set.is_ready(), "past its stale limit the issuer is not ready");
        assert!(set.all().is_empty(), "and its keys verify nothing");
    }
}
