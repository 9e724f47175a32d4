//! `POST /auth/refresh` `{refresh_token}`: single-use rotation. Reusing a used token revokes
//! its whole family, except a replay of the newest used one within the grace window (two
//! tabs refreshing at once), which gets the child already issued.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::{ApiResult, Json};
use super::session;
use crate::app::App;
use crate::error::ApiError;
use crate::store::RefreshUse;

#[derive(Deserialize)]
pub struct Refresh {
    refresh_token: String,
}

pub async fn refresh(State(app): State<Arc<App>>, Json(body): Json<Refresh>) -> ApiResult {
    let token = body.refresh_token.trim();
    if !session::is_refresh_token(token) {
        return Err(ApiError::InvalidRefreshToken.into());
    }
    let accounts = app.accounts();
    let now = crate::clock::now_secs() as i64;
    let grace = app.config.accounts.refresh_grace.as_secs() as i64;
    let access_ttl = app.config.tokens.as_ref().map(|t| t.access_ttl.as_secs() as i64).unwrap_or(0);
    let outcome =
        accounts.store.use_refresh(&session::digest_of(token), now, grace, access_ttl).await.map_err(ApiError::from)?;
    let (id, user_id, family_id, replay) = match outcome {
        RefreshUse::Rotated { id, user_id, family_id } => (id, user_id, family_id, false),
        RefreshUse::Replayed { id, user_id, family_id } => (id, user_id, family_id, true),
        RefreshUse::Reused { family_id } => {
            tracing::warn!(family = %family_id, "refresh token reused: session revoked");
            app.auth.revocations.apply(crate::store::Revocation::Session { family_id, until: now + access_ttl });
            return Err(ApiError::InvalidRefreshToken.into());
        }
        RefreshUse::Invalid => return Err(ApiError::InvalidRefreshToken.into()),
    };
    let user =
        accounts.store.user_by_id(&user_id).await.map_err(ApiError::from)?.ok_or(ApiError::InvalidRefreshToken)?;
    super::verify_email::require_verified(&app, &user)?;
    Ok(axum::Json(session::next(&app, &user, &family_id, &id, token, replay, now).await?).into_response())
}
