//! `POST /auth/refresh` `{refresh_token}`: single-use rotation. Reusing a used token revokes
//! its whole family, except a replay of the newest used one within the grace window (two
//! tabs refreshing at once), which gets the child already issued.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::Accounts;
use super::extract::{ApiResult, Json};
use super::session;
use crate::error::ApiError;
use crate::store::RefreshUse;

#[derive(Deserialize)]
pub struct Refresh {
    refresh_token: String,
}

pub async fn refresh(State(acc): State<Arc<Accounts>>, Json(body): Json<Refresh>) -> ApiResult {
    let token = body.refresh_token.trim();
    if !session::is_refresh_token(token) {
        return Err(ApiError::InvalidRefreshToken.into());
    }
    let now = crate::clock::now_secs() as i64;
    let grace = acc.config.accounts.refresh_grace.as_secs() as i64;
    let access_ttl = acc.tokens.access_ttl.as_secs() as i64;
    let outcome = acc.store.use_refresh(&session::digest_of(token), now, grace, access_ttl).await?;
    let (id, user_id, family_id, replay) = match outcome {
        RefreshUse::Rotated { id, user_id, family_id } => (id, user_id, family_id, false),
        RefreshUse::Replayed { id, user_id, family_id } => (id, user_id, family_id, true),
        RefreshUse::Reused { family_id } => {
            tracing::warn!(family = %family_id, "refresh token reused: session revoked");
            acc.auth.revocations.apply(crate::store::Revocation::Session { family_id, until: now + access_ttl });
            return Err(ApiError::InvalidRefreshToken.into());
        }
        RefreshUse::Invalid => return Err(ApiError::InvalidRefreshToken.into()),
    };
    let user = acc.store.user_by_id(&user_id).await?.ok_or(ApiError::InvalidRefreshToken)?;
    super::verify_email::require_verified(&acc, &user)?;
    Ok(axum::Json(session::next(&acc, &user, &family_id, &id, token, replay, now).await?).into_response())
}
