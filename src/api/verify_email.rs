//! Email verification: registration (and `verify-email/resend`) mails a single-use link,
//! and `verify-email` with its token marks the address verified. Tokens are stored as digests.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::Accounts;
use super::extract::{ApiResult, Caller, ClientIp, Json, rate_limit};
use super::session;
use crate::error::{AccessError, ApiError, Error};
use crate::store::User;

#[derive(Deserialize)]
pub struct Verify {
    token: String,
}

/// `POST /auth/verify-email {token}`.
pub async fn verify(State(acc): State<Arc<Accounts>>, ip: ClientIp, Json(body): Json<Verify>) -> ApiResult {
    rate_limit(&acc, ip).await?;
    let token = body.token.trim();
    if token.len() < 48 || token.len() > 128 {
        return Err(ApiError::InvalidVerificationToken.into());
    }
    let now = crate::clock::now_secs() as i64;
    let user = acc
        .store
        .consume_email_verification(&session::digest_of(token), now)
        .await?
        .ok_or(ApiError::InvalidVerificationToken)?;
    Ok(axum::Json(json!({
        "success": true,
        "message": "Email address verified.",
        "user": session::user_json(&user),
    }))
    .into_response())
}

/// `POST /auth/verify-email/resend`: a new link for the signed-in user; older links stop working.
pub async fn resend(State(acc): State<Arc<Accounts>>, ip: ClientIp, Caller(p): Caller) -> ApiResult {
    rate_limit(&acc, ip).await?;
    let user = acc.store.user_by_id(&p.subject).await?.ok_or(ApiError::NoAccount)?;
    if user.email_verified {
        return Ok(axum::Json(json!({
            "success": true,
            "email_verified": true,
            "message": "The email address is already verified.",
        }))
        .into_response());
    }
    send_link(&acc, &user).await?;
    Ok(axum::Json(json!({
        "success": true,
        "email_verified": false,
        "message": "A new verification link has been sent.",
    }))
    .into_response())
}

/// Mails `user` a verification link, after the caller has answered (registration should not
/// wait for, or fail because of, an SMTP server).
pub fn send_later(acc: &Arc<Accounts>, user: User) {
    let acc = acc.clone();
    tokio::spawn(async move {
        if let Err(e) = send_link(&acc, &user).await {
            tracing::warn!(error = %e, user = %user.id, "verification mail could not be prepared");
        }
    });
}

async fn send_link(acc: &Accounts, user: &User) -> Result<(), ApiError> {
    if !acc.mailer.delivers() {
        // The log must never hold a token, so without SMTP or an outbox nothing is created.
        tracing::warn!(
            user = %user.id,
            "verification mail not sent: mail is not configured (set [smtp] or accounts.mail_outbox)"
        );
        return Ok(());
    }
    let token = session::random_b64(36);
    let now = crate::clock::now_secs() as i64;
    let ttl = acc.config.accounts.verify_ttl.as_secs() as i64;
    acc.store.create_email_verification(&session::digest_of(&token), &user.id, &user.email, now, now + ttl).await?;
    let link = match &acc.config.accounts.verify_url {
        Some(base) => format!("{base}{}token={token}", if base.contains('?') { '&' } else { '?' }),
        None => token,
    };
    let body = format!("Confirm your email address by opening this link within {}:\n{link}\n", for_humans(ttl));
    acc.mailer.send(&user.email, "Verify your email address", &body).await.map_err(|e| {
        tracing::error!(error = %e, user = %user.id, "verification mail not delivered");
        ApiError::Internal
    })
}

fn for_humans(secs: i64) -> String {
    match secs {
        s if s >= 7200 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// `accounts.require_verified_email` at sign-in (login, refresh).
pub fn require_verified(acc: &Accounts, user: &User) -> Result<(), Error> {
    if acc.config.accounts.require_verified_email && !user.email_verified {
        return Err(AccessError::EmailNotVerified.into());
    }
    Ok(())
}
