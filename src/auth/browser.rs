//! The session cookie as a credential (`[session]`): the session it names, looked up by
//! digest through a short cache, held to its absolute and idle ends, and its use recorded in
//! the store at most every few minutes, so sliding expiry costs no write per request.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::HeaderMap;

use crate::auth::principal::{AuthMethod, Principal, PrincipalKind};
use crate::auth::revocation::Revocations;
use crate::clock::now_secs;
use crate::config::{Config, SessionConfig};
use crate::error::AuthError;
use crate::limits::Limiter;
use crate::session::cookie::{self, CookieSpec};
use crate::store::{BrowserSession, Store, User};

/// How long a looked-up session is trusted without asking the store again. Ends reach this
/// replica sooner, through the revocation events every replica follows.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Verifies session cookies for one configuration.
pub struct BrowserSessions {
    pub spec: CookieSpec,
    config: SessionConfig,
    issuer: String,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    claim_headers: usize,
    cache: moka::future::Cache<[u8; 32], Arc<Cached>>,
    /// Failed lookups (no such live session) per client address: past the quota a cookie
    /// not in the cache is refused without a lookup, until `blocked` says.
    misses: Arc<Limiter>,
    blocked: moka::sync::Cache<IpAddr, std::time::Instant>,
}

struct Cached {
    principal: Arc<Principal>,
    session: BrowserSession,
    /// The latest use this replica knows of, and the latest it wrote.
    seen: AtomicI64,
    written: AtomicI64,
}

impl BrowserSessions {
    pub fn new(
        config: &Config,
        session: &SessionConfig,
        issuer: String,
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
    ) -> Self {
        let secure = config.server.public_url.as_ref().is_some_and(|u| u.scheme() == "https");
        BrowserSessions {
            spec: CookieSpec::new(session, secure),
            config: session.clone(),
            issuer,
            store,
            revocations,
            claim_headers: config.headers.claims.len(),
            cache: moka::future::Cache::builder().max_capacity(100_000).time_to_live(CACHE_TTL).build(),
            misses: Limiter::per_minute(config.api_keys.lookups_per_minute),
            blocked: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }

    /// The session the request's cookie proves; `Ok(None)` when it sends none.
    pub async fn verify(&self, headers: &HeaderMap, client_ip: IpAddr) -> Result<Option<Arc<Principal>>, AuthError> {
        let digests: Vec<[u8; 32]> = self.spec.find(headers).into_iter().filter_map(cookie::digest_of).collect();
        if digests.is_empty() {
            // Only junk under the cookie's name: no session, and no lookup.
            return match self.spec.present(headers) {
                true => Err(AuthError::InvalidToken("the session cookie is malformed; sign in again".into())),
                false => Ok(None),
            };
        }
        let now = now_secs() as i64;
        // Cached sessions first: a live one answers without the store, whatever else was sent.
        for digest in &digests {
            if let Some(cached) = self.cache.get(digest).await
                && let Some(principal) = self.admit(digest, &cached, now).await
            {
                return Ok(Some(principal));
            }
        }
        let address = crate::limits::bucket(client_ip);
        if let Some(until) = self.blocked.get(&address) {
            let left = until.saturating_duration_since(crate::clock::now_std());
            if !left.is_zero() {
                return Err(AuthError::Throttled { retry_after: left });
            }
        }
        for digest in &digests {
            if self.cache.contains_key(digest) {
                continue;
            }
            let found = self.store.browser_session(digest, now).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot look up a browser session");
                AuthError::Unavailable
            })?;
            let Some((session, user)) = found else {
                // Only lookups that find nothing count: a flood of made-up cookies from one
                // address is cut off, while live sessions behind it (a NAT) are not.
                if let Err(wait) = self.misses.check(client_ip) {
                    self.blocked.insert(address, crate::clock::now_std() + wait);
                }
                continue;
            };
            let cached = Arc::new(Cached {
                principal: Arc::new(self.principal(&session, &user)),
                seen: AtomicI64::new(session.last_seen_at),
                written: AtomicI64::new(session.last_seen_at),
                session,
            });
            self.cache.insert(*digest, cached.clone()).await;
            if let Some(principal) = self.admit(digest, &cached, now).await {
                return Ok(Some(principal));
            }
        }
        Err(AuthError::InvalidToken("the session has ended; sign in again".into()))
    }

    /// A cached session held to its ends and revocations at `now`; its use is recorded.
    async fn admit(&self, digest: &[u8; 32], cached: &Arc<Cached>, now: i64) -> Option<Arc<Principal>> {
        let idle = self.config.idle_timeout.as_secs() as i64;
        if now >= cached.session.expires_at
            || now - cached.seen.load(Ordering::Relaxed) >= idle
            || self.revocations.is_revoked(&cached.principal)
        {
            self.cache.invalidate(digest).await;
            return None;
        }
        cached.seen.fetch_max(now, Ordering::Relaxed);
        // Written when a tenth of the idle timeout (at most a minute) has passed since the last
        // write: other replicas then see the session as used well before it would idle out.
        let every = (idle / 10).clamp(1, 60);
        let written = cached.written.load(Ordering::Relaxed);
        if now - written >= every
            && cached.written.compare_exchange(written, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let (store, id) = (self.store.clone(), cached.session.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_browser_session(&id, now).await {
                    tracing::warn!(error = %e, "cannot record a browser session's use");
                }
            });
        }
        Some(cached.principal.clone())
    }

    fn principal(&self, session: &BrowserSession, user: &User) -> Principal {
        Principal {
            subject: user.id.clone(),
            kind: PrincipalKind::User,
            method: AuthMethod::Session,
            email: Some(user.email.clone()),
            email_verified: user.email_verified,
            name: user.name.clone(),
            roles: vec![user.role.clone()],
            team_id: user.team_id.clone(),
            permissions: user.permissions.clone(),
            token_id: None,
            // Ended sessions are announced by id, like refresh families; a password change's
            // user-wide cut-off catches the rest through `issued_at`.
            session_id: Some(session.id.clone()),
            issued_at: Some(session.created_at as u64),
            issuer: self.issuer.clone(),
            expires_at: Some(session.expires_at as u64),
            mapped_claims: vec![None; self.claim_headers],
            rendered: Default::default(),
        }
    }
}
