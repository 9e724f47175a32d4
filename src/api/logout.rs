//! `POST /auth/logout` (Bearer access token, empty or `{}` body) -> 204: the access token is
//! refused from now until it expires, and its session's refresh family is revoked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::Accounts;
use super::extract::{ApiResult, Caller};
use crate::store::Revocation;

pub async fn logout(State(acc): State<Arc<Accounts>>, Caller(p): Caller) -> ApiResult {
    let store = &acc.store;
    let now = crate::clock::now_secs() as i64;
    let until = p.expires_at.map(|e| e as i64).unwrap_or(now);
    let access_ttl = acc.tokens.access_ttl.as_secs() as i64;
    if let Some(jti) = &p.token_id {
        store.revoke_token(jti, until, now).await?;
        // This replica refuses it at once; others learn it from the store.
        acc.auth.revocations.apply(Revocation::Token { jti: jti.clone(), until });
    }
    if let Some(sid) = &p.session_id {
        store.revoke_family(sid, now, access_ttl).await?;
        acc.auth.revocations.apply(Revocation::Session { family_id: sid.clone(), until: now + access_ttl });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
