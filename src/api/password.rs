//! Password reset and change. `forgot-password` answers the same whether or not the email
//! exists (the work happens after the response); a reset token is 48 URL-safe characters,
//! stored hashed, single use, short-lived, and a reset ends every session of the user.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::Accounts;
use super::extract::{ApiResult, Caller, ClientIp, Json, rate_limit};
use super::login::{self, Attempt};
use super::session;
use crate::domain::validate;
use crate::error::ApiError;
use crate::store::Revocation;

#[derive(Deserialize)]
pub struct Forgot {
    email: String,
}

pub async fn forgot(State(acc): State<Arc<Accounts>>, ip: ClientIp, Json(body): Json<Forgot>) -> ApiResult {
    rate_limit(&acc, ip).await?;
    let email = validate::email(&body.email)?;
    // Look-up, token and delivery run after the answer, so its timing says nothing.
    let task_app = acc.clone();
    tokio::spawn(async move {
        if let Err(e) = send_reset(&task_app, &email).await {
            tracing::warn!(error = %e, "password reset could not be prepared");
        }
    });
    Ok(axum::Json(json!({
        "success": true,
        "message": "If that email is registered, a password reset link has been sent.",
    }))
    .into_response())
}

async fn send_reset(acc: &Accounts, email: &str) -> Result<(), ApiError> {
    let Some(user) = acc.store.user_by_login(email).await? else { return Ok(()) };
    if !user.email.eq_ignore_ascii_case(email) {
        return Ok(());
    }
    let token = session::random_b64(36);
    let now = crate::clock::now_secs() as i64;
    let ttl = acc.config.accounts.reset_ttl.as_secs() as i64;
    acc.store.create_reset(&session::digest_of(&token), &user.id, now, now + ttl).await?;
    let link = match &acc.config.accounts.reset_url {
        Some(base) => format!("{base}{}token={token}", if base.contains('?') { '&' } else { '?' }),
        None => token.clone(),
    };
    let body = format!("Use this link within {} minutes to choose a new password:\n{link}\n", ttl / 60);
    acc.mailer.send(&user.email, "Reset your password", &body).await.map_err(|e| {
        tracing::error!(error = %e, user = %user.id, "password reset mail not delivered");
        ApiError::Internal
    })
}

#[derive(Deserialize)]
pub struct Reset {
    token: String,
    new_password: String,
}

pub async fn reset(State(acc): State<Arc<Accounts>>, ip: ClientIp, Json(body): Json<Reset>) -> ApiResult {
    rate_limit(&acc, ip).await?;
    let cfg = &acc.config.accounts;
    if body.token.len() < 48 || body.token.len() > 128 {
        return Err(ApiError::InvalidResetToken.into());
    }
    validate::password("new_password", &body.new_password, cfg)?;
    let hash = acc.passwords.hash(&body.new_password).await?;
    let now = crate::clock::now_secs() as i64;
    let user_id =
        acc.store.consume_reset(&session::digest_of(&body.token), now).await?.ok_or(ApiError::InvalidResetToken)?;
    let ended = acc.store.set_password(&user_id, &hash, now, Some(access_ttl(&acc))).await?;
    // The reset link reached the mailbox, which is all a verification link proves.
    acc.store.set_email_verified(&user_id, true, now).await?;
    // A reset is account recovery: keys minted by whoever held the account before go too.
    if acc.config.api_keys.revoke_on_password_reset {
        let keys = &acc.keys;
        let until = now + keys.revocation_window();
        for key in acc.store.revoke_user_keys(&user_id, now, until).await? {
            keys.revoked(&key, until).await;
        }
    }
    end_sessions(&acc, user_id, ended, now);
    Ok(axum::Json(json!({"success": true, "message": "Password updated. Sign in with the new password."}))
        .into_response())
}

#[derive(Deserialize)]
pub struct Change {
    current_password: String,
    new_password: String,
}

/// `POST /auth/change-password`: needs the current password; ends every other session and
/// returns a fresh one. A stolen session must not make this a password oracle: it has the
/// login's per-IP limit, and wrong current passwords count towards the account's lockout
/// (the login's counter, so guesses cannot be split between the two).
pub async fn change(
    State(acc): State<Arc<Accounts>>,
    ip: ClientIp,
    Caller(p): Caller,
    Json(body): Json<Change>,
) -> ApiResult {
    rate_limit(&acc, ip).await?;
    let cfg = &acc.config.accounts;
    validate::password("new_password", &body.new_password, cfg)?;
    if body.current_password.is_empty() || body.current_password.len() > cfg.max_password_length {
        return Err(ApiError::validation("current_password", "is not correct").into());
    }
    let user = acc.store.user_by_id(&p.subject).await?.ok_or(ApiError::NoAccount)?;
    let now = crate::clock::now_secs() as i64;
    let key = login::lockout_key(Some(&user), &user.email);
    match login::check_password(&acc, &key, &body.current_password, user.password_hash.as_deref(), now).await? {
        Attempt::Locked { retry_after } => return Err(ApiError::AccountLocked { retry_after }.into()),
        Attempt::Checked(checked) if !checked.ok => {
            return Err(ApiError::validation("current_password", "is not correct").into());
        }
        Attempt::Checked(_) => {}
    }
    let hash = acc.passwords.hash(&body.new_password).await?;
    let ended = acc.store.set_password(&user.id, &hash, now, Some(access_ttl(&acc))).await?;
    end_sessions(&acc, user.id.clone(), ended, now);
    Ok(axum::Json(session::start(&acc, &user, now).await?).into_response())
}

fn access_ttl(acc: &Accounts) -> i64 {
    acc.tokens.access_ttl.as_secs() as i64
}

/// Applies a password change's revocations on this replica at once (others follow the store).
fn end_sessions(acc: &Accounts, user_id: String, families: Vec<String>, now: i64) {
    let until = now + access_ttl(acc);
    for family_id in families {
        acc.auth.revocations.apply(Revocation::Session { family_id, until });
    }
    acc.auth.revocations.apply(Revocation::User { user_id, after: now });
}
