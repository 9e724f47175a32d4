//! Revoked tokens, sessions and users, held in memory on every replica and kept in step
//! with the store, so a logout on one replica is refused by all of them within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::principal::{AuthMethod, Principal};
use crate::store::{Revocation, Store};

#[derive(Default)]
struct Sets {
    /// jti -> until (unix seconds).
    tokens: HashMap<String, i64>,
    /// refresh family (`sid`) -> until.
    sessions: HashMap<String, i64>,
    /// user id -> tokens issued before this are void.
    users: HashMap<String, i64>,
}

/// How long past its `until` a revocation is kept. `until` was computed with the writing
/// replica's clock and the token's `exp` with the issuing one's; a replica whose clock runs
/// ahead of them must not drop the revocation while the token still verifies.
const CLOCK_SKEW_ALLOWANCE: i64 = 3600;

pub struct Revocations {
    /// Only Gatehouse's own sessions and users can be revoked by session or user.
    own_issuer: Option<String>,
    sets: RwLock<Sets>,
    /// Seconds a token may live (leeway included): how long a subject-wide cut-off is kept.
    /// Only ever raised, so a reload that lengthens token lifetimes never drops a cut-off
    /// while a token it covers still verifies.
    max_token_life: AtomicI64,
}

impl Revocations {
    pub fn new(own_issuer: Option<String>) -> Self {
        Revocations { own_issuer, sets: RwLock::new(Sets::default()), max_token_life: AtomicI64::new(0) }
    }

    /// Keeps cut-offs for tokens living up to `secs` (never shortens what is kept).
    pub fn keep_for(&self, secs: i64) {
        self.max_token_life.fetch_max(secs, Ordering::Relaxed);
    }

    pub fn apply(&self, r: Revocation) {
        let mut sets = self.sets.write().expect("revocation lock");
        match r {
            Revocation::Token { jti, until } => {
                sets.tokens.insert(jti, until);
            }
            Revocation::Session { family_id, until } => {
                sets.sessions.insert(family_id, until);
            }
            Revocation::User { user_id, after } => {
                let entry = sets.users.entry(user_id).or_insert(after);
                *entry = (*entry).max(after);
            }
        }
    }

    /// Whether a verified principal has since been revoked.
    pub fn is_revoked(&self, p: &Principal) -> bool {
        let sets = self.sets.read().expect("revocation lock");
        if sets.tokens.is_empty() && sets.sessions.is_empty() && sets.users.is_empty() {
            return false;
        }
        if p.token_id.as_ref().is_some_and(|jti| sets.tokens.contains_key(jti)) {
            return true;
        }
        // Sessions and user-wide cut-offs concern signed tokens; an API key or PAT dies only by
        // its own revocation (a password reset revokes them one by one).
        if self.own_issuer.as_deref() != Some(p.issuer.as_str())
            || !matches!(p.method, AuthMethod::Jwt | AuthMethod::ClientCredentials | AuthMethod::Session)
        {
            return false;
        }
        if p.session_id.as_ref().is_some_and(|sid| sets.sessions.contains_key(sid)) {
            return true;
        }
        match (sets.users.get(&p.subject), p.issued_at) {
            (Some(&after), Some(iat)) => (iat as i64) < after,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Forgets entries whose tokens have all expired.
    fn prune(&self, now: i64, max_token_life: i64) {
        let now = now - CLOCK_SKEW_ALLOWANCE;
        let mut sets = self.sets.write().expect("revocation lock");
        sets.tokens.retain(|_, until| *until > now);
        sets.sessions.retain(|_, until| *until > now);
        sets.users.retain(|_, after| *after + max_token_life > now);
    }

    /// Loads the live revocations, then follows the store's revocation events.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>, every: Duration) {
        let mut cursor = 0;
        let mut ticks: u32 = 0;
        loop {
            let now = crate::clock::now_secs() as i64;
            match store.revocations_after(cursor, now - CLOCK_SKEW_ALLOWANCE).await {
                Ok((events, next)) => {
                    for e in events {
                        self.apply(e);
                    }
                    cursor = next;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read revocations from the store"),
            }
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(120) {
                self.prune(now, self.max_token_life.load(Ordering::Relaxed));
            }
            tokio::time::sleep(every).await;
        }
    }
}
