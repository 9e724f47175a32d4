//! API keys and personal access tokens: their format (`<prefix>_<random>_<checksum>`), their
//! keyed digest, and the cached lookup that turns one into a [`Principal`] with no store query
//! once warm.
//!
//! A key is 32 random bytes in base62 (43 characters) after a configured prefix, then a
//! 6-character base62 CRC32 of everything before it, as GitHub's tokens are: a mistyped or
//! truncated key is refused without a lookup, and secret scanners can recognise the format.
//! The store keeps only an HMAC-SHA-256 of the whole key under a server-side pepper, found
//! through `lookup` (a public slice of the random part) and compared in constant time.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, hmac, rand::SecureRandom};
use http::HeaderName;

use super::principal::{AuthMethod, Principal, PrincipalKind};
use super::revocation::Revocations;
use crate::clock::now_secs;
use crate::config::{ApiKeysConfig, Config};
use crate::error::AuthError;
use crate::limits::Limiter;
use crate::store::{ApiKey, KeyKind, KeyOwner, Store, StoreError};

/// 32 random bytes need 43 base62 digits.
pub const RANDOM_LEN: usize = 43;
/// A CRC32 needs 6 base62 digits.
const CHECKSUM_LEN: usize = 6;
/// The slice of the random part stored in clear to find a key: 16 characters (95 bits) keep
/// lookups unique while leaving 160 secret bits.
const LOOKUP_LEN: usize = 16;
/// Characters of the random part shown in lists, after the prefix.
const DISPLAY_LEN: usize = 6;
/// Longest accepted prefix (config allows 16) plus the fixed parts.
const MAX_LEN: usize = 16 + 1 + RANDOM_LEN + 1 + CHECKSUM_LEN;
/// Stored under this name when no `api_keys.pepper_file` is configured.
const STORED_PEPPER: &str = "internal:api-key-pepper";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `bytes` as a big-endian number in base62, left-padded with `0` to `width` digits.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        digits.push(BASE62[remainder as usize]);
    }
    digits.resize(digits.len().max(width), b'0');
    digits.reverse();
    String::from_utf8(digits).expect("base62 is ASCII")
}

fn checksum(body: &str) -> String {
    base62(&crc32fast::hash(body.as_bytes()).to_be_bytes(), CHECKSUM_LEN)
}

/// A new secret with this prefix.
pub fn generate(prefix: &str) -> String {
    let mut random = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut random).expect("system randomness");
    let body = format!("{prefix}_{}", base62(&random, RANDOM_LEN));
    let sum = checksum(&body);
    format!("{body}_{sum}")
}

/// A credential whose shape and checksum are right.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub prefix: &'a str,
    pub random: &'a str,
}

impl Parsed<'_> {
    pub fn lookup(&self) -> &str {
        &self.random[..LOOKUP_LEN]
    }

    pub fn display(&self) -> String {
        format!("{}_{}", self.prefix, &self.random[..DISPLAY_LEN])
    }
}

/// Splits and checks a credential; `None` if it is not one (no store lookup needed).
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    if token.len() > MAX_LEN || !token.is_ascii() {
        return None;
    }
    let (body, sum) = token.rsplit_once('_')?;
    let (prefix, random) = body.rsplit_once('_')?;
    let base62 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if sum.len() != CHECKSUM_LEN || random.len() != RANDOM_LEN || prefix.is_empty() || !base62(sum) || !base62(random) {
        return None;
    }
    constant_time::verify_slices_are_equal(checksum(body).as_bytes(), sum.as_bytes()).ok()?;
    Some(Parsed { prefix, random })
}

/// The server-side key of every credential digest: API keys, PATs and client secrets.
pub struct Pepper(hmac::Key);

impl Pepper {
    pub fn new(secret: &[u8; 32]) -> Self {
        Pepper(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// From `api_keys.pepper_file` (generated there if missing) or, without one, the store.
    pub async fn load(config: &Config, store: &dyn Store) -> anyhow::Result<Pepper> {
        let secret = match &config.api_keys.pepper_file {
            Some(path) => {
                let key = super::signing::SigningKey::load_or_generate(path, jsonwebtoken::Algorithm::HS256)?;
                key.derive_secret(b"gatehouse credential pepper v1")
            }
            None => super::own_keys::stored_secret(store, STORED_PEPPER).await?,
        };
        Ok(Pepper::new(&secret))
    }

    pub fn digest(&self, secret: &str) -> [u8; 32] {
        hmac::sign(&self.0, secret.as_bytes()).as_ref().try_into().expect("32 bytes")
    }

    /// Whether `secret` has this stored digest, compared in constant time.
    pub fn matches(&self, secret: &str, stored: &[u8]) -> bool {
        constant_time::verify_slices_are_equal(&self.digest(secret), stored).is_ok()
    }
}

/// A key found in the store, cached by digest.
struct Entry {
    principal: Arc<Principal>,
    expires_at: Option<i64>,
    /// Unix seconds of the last use seen here, and of the last one written to the store.
    last_used: AtomicI64,
    flushed: AtomicI64,
}

/// Why a key is not accepted; negative-cached briefly.
#[derive(Debug, Clone, Copy)]
enum Miss {
    Unknown,
    Expired,
    Revoked,
}

impl From<Miss> for AuthError {
    fn from(m: Miss) -> Self {
        match m {
            Miss::Unknown => AuthError::InvalidToken("unknown API key".into()),
            Miss::Expired => AuthError::TokenExpired,
            Miss::Revoked => AuthError::TokenRevoked,
        }
    }
}

#[derive(Debug, Clone)]
enum LookupError {
    Miss(Miss),
    Store,
}

/// Verifies API keys and PATs through a bounded cache in front of the store.
pub struct ApiKeys {
    config: ApiKeysConfig,
    issuer: String,
    pepper: Pepper,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    cache: moka::future::Cache<[u8; 32], Arc<Entry>>,
    negative: moka::sync::Cache<[u8; 32], Miss>,
    /// Failed lookups allowed per client address (IPv6 by /64), per process on purpose: it is
    /// a flood guard that keeps random keys from reaching the store, not a security quota
    /// (a key's 256-bit secret is), so a store round trip per guess to share it across
    /// replicas would cost exactly what it guards against.
    limiter: Arc<Limiter>,
    /// Addresses that used up their failed lookups, until when: they get no store lookup.
    blocked: moka::sync::Cache<IpAddr, Instant>,
    /// Empty values for the configured claim headers: keys carry no claims.
    no_claims: usize,
}

impl ApiKeys {
    pub async fn build(
        config: &Config,
        issuer: String,
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
    ) -> anyhow::Result<Self> {
        let cfg = &config.api_keys;
        Ok(ApiKeys {
            pepper: Pepper::load(config, store.as_ref()).await?,
            issuer,
            store,
            revocations,
            cache: moka::future::Cache::builder().max_capacity(cfg.cache_capacity).time_to_live(cfg.cache_ttl).build(),
            negative: moka::sync::Cache::builder()
                .max_capacity(cfg.negative_cache_capacity)
                .time_to_live(cfg.negative_cache_ttl)
                .build(),
            limiter: Limiter::per_minute(cfg.lookups_per_minute),
            blocked: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            no_claims: config.headers.claims.len(),
            config: cfg.clone(),
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.config.header
    }

    pub fn pepper(&self) -> &Pepper {
        &self.pepper
    }

    /// Whether a bearer token is meant to be one of these keys (by its prefix, so a JWT is
    /// never tried as a key nor a key as a JWT).
    pub fn recognises(&self, token: &str) -> bool {
        let has = |prefix: &str| token.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('_'));
        has(&self.config.prefix) || has(&self.config.pat_prefix)
    }

    /// The kind of key a prefix names.
    pub fn kind_of(&self, prefix: &str) -> Option<KeyKind> {
        if prefix == self.config.prefix {
            Some(KeyKind::ApiKey)
        } else if prefix == self.config.pat_prefix {
            Some(KeyKind::Pat)
        } else {
            None
        }
    }

    pub fn prefix_of(&self, kind: KeyKind) -> &str {
        match kind {
            KeyKind::ApiKey => &self.config.prefix,
            KeyKind::Pat => &self.config.pat_prefix,
        }
    }

    /// The principal a key proves. A warm key costs one HMAC and one cache read; an unknown
    /// key is remembered briefly, and failed lookups are limited per client IP, so a flood of
    /// made-up keys reaches the store only a bounded number of times while many valid keys
    /// behind one address (a NAT, an ingress) are never throttled.
    pub async fn verify(&self, token: &str, client_ip: IpAddr) -> Result<Arc<Principal>, AuthError> {
        let parsed = parse(token).ok_or(AuthError::InvalidToken("malformed API key".into()))?;
        let kind = self.kind_of(parsed.prefix).ok_or(AuthError::InvalidToken("unknown API key prefix".into()))?;
        let digest = self.pepper.digest(token);
        let now = now_secs() as i64;
        if let Some(entry) = self.cache.get(&digest).await {
            return self.admit(&entry, now);
        }
        if let Some(miss) = self.negative.get(&digest) {
            return Err(miss.into());
        }
        let address = crate::limits::bucket(client_ip);
        if let Some(until) = self.blocked.get(&address) {
            let left = until.saturating_duration_since(crate::clock::now_std());
            if !left.is_zero() {
                return Err(AuthError::Throttled { retry_after: left });
            }
        }
        let lookup = parsed.lookup().to_string();
        let found = self.cache.try_get_with(digest, self.load(token, kind, lookup)).await;
        match found {
            Ok(entry) => self.admit(&entry, now),
            Err(e) => match *e {
                LookupError::Miss(miss) => {
                    self.negative.insert(digest, miss);
                    if let Err(wait) = self.limiter.check(client_ip) {
                        self.blocked.insert(address, crate::clock::now_std() + wait);
                    }
                    Err(miss.into())
                }
                LookupError::Store => Err(AuthError::Unavailable),
            },
        }
    }

    fn admit(&self, entry: &Entry, now: i64) -> Result<Arc<Principal>, AuthError> {
        if entry.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::TokenExpired);
        }
        if self.revocations.is_revoked(&entry.principal) {
            return Err(AuthError::TokenRevoked);
        }
        // A relaxed store: the batch writer needs roughly the latest second, not ordering.
        if entry.last_used.load(Ordering::Relaxed) != now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
        Ok(entry.principal.clone())
    }

    async fn load(&self, token: &str, kind: KeyKind, lookup: String) -> Result<Arc<Entry>, LookupError> {
        let found = self.store.api_key_by_lookup(&lookup).await.map_err(|e| {
            tracing::error!(error = %e, "cannot look up an API key");
            LookupError::Store
        })?;
        let Some(owner) = found.filter(|o| o.key.kind == kind && self.pepper.matches(token, &o.key.digest)) else {
            return Err(LookupError::Miss(Miss::Unknown));
        };
        if owner.key.revoked_at.is_some() {
            return Err(LookupError::Miss(Miss::Revoked));
        }
        let now = now_secs() as i64;
        if owner.key.expires_at.is_some_and(|at| at <= now) {
            return Err(LookupError::Miss(Miss::Expired));
        }
        let last = owner.key.last_used_at.unwrap_or(0);
        Ok(Arc::new(Entry {
            expires_at: owner.key.expires_at,
            principal: Arc::new(self.principal(owner)),
            last_used: AtomicI64::new(last),
            flushed: AtomicI64::new(last),
        }))
    }

    fn principal(&self, owner: KeyOwner) -> Principal {
        let KeyOwner { key, email, name, role, team_id, email_verified, permissions: held } = owner;
        let (kind, method) = match key.kind {
            KeyKind::ApiKey => (PrincipalKind::ApiKey, AuthMethod::ApiKey),
            KeyKind::Pat => (PrincipalKind::Pat, AuthMethod::Pat),
        };
        // A key carries no more than it was created with: the owner's role only when a scope
        // named it, and only while the owner still has it (within `api_keys.cache_ttl`).
        let roles = if key.scopes.contains(&role_scope(&role)) { vec![role] } else { Vec::new() };
        Principal {
            subject: key.user_id,
            kind,
            method,
            email: Some(email),
            email_verified,
            name,
            roles,
            team_id,
            // Scopes are a snapshot taken at creation; permissions the owner has lost since
            // are dropped (within `api_keys.cache_ttl`).
            permissions: key.scopes.into_iter().filter(|s| !is_role_scope(s) && held.contains(s)).collect(),
            token_id: Some(key.id),
            session_id: None,
            issued_at: Some(key.created_at.max(0) as u64),
            issuer: self.issuer.clone(),
            expires_at: key.expires_at.map(|at| at.max(0) as u64),
            mapped_claims: vec![None; self.no_claims],
            rendered: OnceLock::new(),
        }
    }

    /// Refuses a key revoked on this replica at once (other replicas learn it from the
    /// store's revocation events).
    pub async fn revoked(&self, key: &ApiKey, until: i64) {
        self.revocations.apply(crate::store::Revocation::Token { jti: key.id.clone(), until });
        // The stored digest is the cache key.
        if let Ok(digest) = <[u8; 32]>::try_from(key.digest.as_slice()) {
            self.cache.invalidate(&digest).await;
        }
    }

    /// How long replicas must keep refusing a revoked key: as long as any of them may still
    /// hold it in its cache. At least an hour, so a replica whose `cache_ttl` is longer than
    /// this one's (during a rolling config change) is still covered; entries are tiny.
    pub fn revocation_window(&self) -> i64 {
        self.config.cache_ttl.max(Duration::from_secs(3600)).as_secs() as i64 + 60
    }

    /// Writes `last_used_at` for the keys used since the last flush, in one batch, every
    /// `api_keys.last_used_interval`.
    /// Ends once the keys are dropped (a reload that rebuilt them flushes the old ones first).
    pub async fn flush_usage(keys: std::sync::Weak<Self>) {
        loop {
            let Some(every) = keys.upgrade().map(|k| k.config.last_used_interval) else { return };
            tokio::time::sleep(every).await;
            let Some(this) = keys.upgrade() else { return };
            this.flush_usage_once().await;
        }
    }

    /// Writes the uses not yet written, in one batch.
    pub async fn flush_usage_once(&self) {
        let mut used = Vec::new();
        let mut entries = Vec::new();
        for (_, entry) in self.cache.iter() {
            let last = entry.last_used.load(Ordering::Relaxed);
            if last > entry.flushed.load(Ordering::Relaxed)
                && let Some(id) = &entry.principal.token_id
            {
                used.push((id.clone(), last));
                entries.push((entry, last));
            }
        }
        match self.store.touch_api_keys(&used).await {
            Ok(()) => {
                for (entry, last) in entries {
                    entry.flushed.store(last, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, keys = used.len(), "cannot record API key use"),
        }
    }

    /// Cache misses allowed per client IP; pruned in the background.
    pub fn limiter(&self) -> Arc<Limiter> {
        self.limiter.clone()
    }

    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// The scope that lets a key carry its owner's role `role`.
pub fn role_scope(role: &str) -> String {
    format!("{ROLE_SCOPE_PREFIX}{role}")
}

/// Whether a scope names a role (`role:<name>`) rather than a permission.
pub fn is_role_scope(scope: &str) -> bool {
    scope.starts_with(ROLE_SCOPE_PREFIX)
}

const ROLE_SCOPE_PREFIX: &str = "role:";

/// What a failed key creation means for the caller.
pub fn limit_error(kind: KeyKind, e: StoreError) -> crate::error::ApiError {
    use crate::error::{ApiError, Limited};
    match (kind, e) {
        (KeyKind::Pat, StoreError::LimitReached(limit)) => ApiError::LimitReached { what: Limited::Pats, limit },
        (KeyKind::ApiKey, StoreError::LimitReached(limit)) => ApiError::LimitReached { what: Limited::ApiKeys, limit },
        (_, e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_checksums_catch_typos() {
        let key = generate("gk");
        assert_eq!(key.len(), 2 + 1 + RANDOM_LEN + 1 + CHECKSUM_LEN, "{key}");
        let parsed = parse(&key).expect("a fresh key parses");
        assert_eq!(parsed.prefix, "gk");
        assert_eq!(parsed.lookup().len(), LOOKUP_LEN);
        assert!(parsed.display().starts_with("gk_") && parsed.display().len() == 3 + DISPLAY_LEN);

        // Every single-character change is caught by the CRC.
        let bytes = key.as_bytes();
        for i in [3, 20, 45, key.len() - 1] {
            let mut typo = bytes.to_vec();
            typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(parse(std::str::from_utf8(&typo).unwrap()), None, "typo at {i}");
        }
        assert_eq!(parse(&key[..key.len() - 1]), None, "truncated");
        assert_eq!(parse(&format!("{key}x")), None, "extended");
    }

    #[test]
    fn prefixes_with_underscores_parse_exactly() {
        for prefix in ["sk_live", "hp_pat", "a"] {
            let key = generate(prefix);
            assert_eq!(parse(&key).unwrap().prefix, prefix);
        }
        // A valid checksum under another prefix is a different body: refused.
        let key = generate("gk");
        assert_eq!(parse(&key.replacen("gk", "gz", 1)), None);
    }

    #[test]
    fn base62_is_fixed_width() {
        assert_eq!(base62(&[0; 32], RANDOM_LEN), "0".repeat(RANDOM_LEN));
        assert_eq!(base62(&[0xff; 32], RANDOM_LEN).len(), RANDOM_LEN);
        assert_eq!(base62(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62(&[0, 0, 0, 62], 6), "000010");
    }

    #[test]
    fn digests_depend_on_the_pepper() {
        let a = Pepper::new(&[1; 32]);
        let b = Pepper::new(&[2; 32]);
        let key = generate("gk");
        assert!(a.matches(&key, &a.digest(&key)));
        assert!(!b.matches(&key, &a.digest(&key)));
    }
}
