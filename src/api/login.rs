//! `POST /auth/login`: email or username plus password -> a new session. Rate-limited per
//! client IP, locked after repeated failures (in the store, so across replicas), audited.
//! The password check under the lockout, [`check_password`], is shared with change-password.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::Accounts;
use super::extract::{ApiResult, ClientIp, Json};
use super::session;
use crate::auth::password::Checked;
use crate::error::{ApiError, Error};
use crate::store::{LoginAttempt, LoginOutcome, User};

#[derive(Deserialize)]
pub struct Login {
    email: Option<String>,
    username: Option<String>,
    /// Either an email or a username.
    login: Option<String>,
    password: String,
}

pub async fn login(State(acc): State<Arc<Accounts>>, ip: ClientIp, Json(body): Json<Login>) -> ApiResult {
    let Some(identifier) = body.email.or(body.username).or(body.login).map(|s| s.trim().to_lowercase()) else {
        return Err(ApiError::validation("email", "email or username is required").into());
    };
    // Control characters (a NUL above all, which Postgres refuses in text) are in no email or
    // username: refused here rather than as a store error.
    if identifier.is_empty() || identifier.len() > 254 || identifier.chars().any(char::is_control) {
        return Err(ApiError::validation("email", "must be an email address or username").into());
    }
    if body.password.is_empty() || body.password.len() > acc.config.accounts.max_password_length {
        return Err(ApiError::validation("password", "is required").into());
    }
    let now = crate::clock::now_secs() as i64;
    let audit = |user_id: Option<String>, outcome: LoginOutcome| {
        let store = acc.store.clone();
        let attempt =
            LoginAttempt { at: now, client_ip: ip.0.to_string(), identifier: identifier.clone(), user_id, outcome };
        async move {
            if let Err(e) = store.audit_login(&attempt).await {
                tracing::warn!(error = %e, "cannot record login attempt");
            }
        }
    };

    if let Err(retry_after) = acc.limiter.check(ip.0).await {
        audit(None, LoginOutcome::RateLimited).await;
        return Err(Error::RateLimited { retry_after });
    }
    let store = &acc.store;
    let user = store.user_by_login(&identifier).await?;
    let key = lockout_key(user.as_ref(), &identifier);
    // The same argon2 work runs whether or not the account exists.
    let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let checked = match check_password(&acc, &key, &body.password, hash, now).await? {
        Attempt::Locked { retry_after } => {
            audit(None, LoginOutcome::Locked).await;
            return Err(ApiError::AccountLocked { retry_after }.into());
        }
        Attempt::Checked(checked) => checked,
    };
    let user = match user {
        Some(user) if checked.ok => user,
        other => {
            let user_id = other.map(|u| u.id);
            let outcome = if user_id.is_some() { LoginOutcome::WrongPassword } else { LoginOutcome::UnknownAccount };
            audit(user_id, outcome).await;
            return Err(ApiError::InvalidCredentials.into());
        }
    };
    if let Err(e) = super::verify_email::require_verified(&acc, &user) {
        audit(Some(user.id.clone()), LoginOutcome::EmailNotVerified).await;
        return Err(e);
    }
    if checked.needs_rehash {
        // Imported bcrypt (or weaker argon2) hashes become argon2id on the first good login.
        match acc.passwords.hash(&body.password).await {
            Ok(hash) => {
                store.set_password(&user.id, &hash, now, None).await?;
            }
            Err(_) => tracing::warn!(user = %user.id, "could not upgrade a password hash"),
        }
    }
    store.touch_login(&user.id, now).await?;
    audit(Some(user.id.clone()), LoginOutcome::Success).await;
    let mut user = user;
    user.last_login_at = Some(now);
    Ok(axum::Json(session::start(&acc, &user, now).await?).into_response())
}

/// What the lockout counts against: the account, so its email and username share one
/// counter; a name with no account is counted by itself, so a lock reveals nothing.
pub fn lockout_key(user: Option<&User>, identifier: &str) -> String {
    match user {
        Some(u) => format!("user:{}", u.id),
        None => format!("login:{identifier}"),
    }
}

/// A password check under the account lockout.
pub enum Attempt {
    /// Refused before any hashing: the key has used up its attempts.
    Locked {
        retry_after: Duration,
    },
    Checked(Checked),
}

/// Checks `password` against `hash` (a dummy hash when `None`) once the store has granted the
/// attempt: the grant and the count are one atomic store update made before the hash, so
/// parallel guesses cannot all slip past a check made before any of them was counted. A
/// right password clears the count; a wrong one stays counted. Login and change-password
/// share this, and with it one counter per account.
pub async fn check_password(
    acc: &Accounts,
    key: &str,
    password: &str,
    hash: Option<&str>,
    now: i64,
) -> ApiResult<Attempt> {
    let cfg = &acc.config.rate_limit;
    let threshold = i64::from(cfg.lockout_after);
    let lock_secs = i64::from(cfg.lockout_minutes) * 60;
    if let Some(until) = acc.store.reserve_attempt(key, now, threshold, lock_secs).await? {
        return Ok(Attempt::Locked { retry_after: Duration::from_secs((until - now).max(1) as u64) });
    }
    let checked = acc.passwords.check(password, hash).await?;
    if checked.ok {
        acc.store.clear_failures(key).await?;
    }
    Ok(Attempt::Checked(checked))
}
