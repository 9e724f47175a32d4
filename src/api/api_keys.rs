//! `/auth/api-keys` and `/auth/tokens` (personal access tokens): a user creates, lists and
//! deletes their own long-lived keys. The secret is returned once, at creation, and never stored.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Accounts;
use super::extract::{ApiResult, Caller, Json};
use super::session::rfc3339;
use crate::auth::api_key::{self, ApiKeys};
use crate::clock::now_secs;
use crate::domain::validate;
use crate::error::{AccessError, ApiError};
use crate::store::{ApiKey, KeyKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    /// Defaults to all of the owner's permissions; must be a subset of them. `role:<name>`
    /// lets the key carry the owner's role (only the role the owner has); without it a key
    /// carries no role.
    scopes: Option<Vec<String>>,
    /// API keys default to no expiry; PATs to `api_keys.pat_default_days`.
    expires_in_days: Option<i64>,
}

pub async fn create_api_key(State(acc): State<Arc<Accounts>>, caller: Caller, Json(body): Json<NewKey>) -> ApiResult {
    create(acc, caller, body, KeyKind::ApiKey).await
}

pub async fn create_pat(State(acc): State<Arc<Accounts>>, caller: Caller, Json(body): Json<NewKey>) -> ApiResult {
    create(acc, caller, body, KeyKind::Pat).await
}

pub async fn list_api_keys(State(acc): State<Arc<Accounts>>, caller: Caller) -> ApiResult {
    list(acc, caller, KeyKind::ApiKey).await
}

pub async fn list_pats(State(acc): State<Arc<Accounts>>, caller: Caller) -> ApiResult {
    list(acc, caller, KeyKind::Pat).await
}

pub async fn delete_api_key(State(acc): State<Arc<Accounts>>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    delete(acc, caller, id, KeyKind::ApiKey).await
}

pub async fn delete_pat(State(acc): State<Arc<Accounts>>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    delete(acc, caller, id, KeyKind::Pat).await
}

fn keys(acc: &Accounts) -> &ApiKeys {
    &acc.keys
}

async fn create(acc: Arc<Accounts>, Caller(p): Caller, body: NewKey, kind: KeyKind) -> ApiResult {
    let cfg = &acc.config.api_keys;
    let name = validate::name(&body.name)?;
    let days = match (body.expires_in_days, kind) {
        (Some(d), _) if !(1..=cfg.max_days).contains(&d) => {
            return Err(ApiError::validation("expires_in_days", format!("must be 1 to {}", cfg.max_days)).into());
        }
        (Some(d), _) => Some(d),
        (None, KeyKind::Pat) => Some(cfg.pat_default_days),
        (None, KeyKind::ApiKey) => None,
    };
    let store = &acc.store;
    // The live account, not the token's snapshot: permissions or role may have changed since.
    let user = store.user_by_id(&p.subject).await?.ok_or(ApiError::NoAccount)?;
    let scopes = match &body.scopes {
        Some(requested) => validate::scopes("scopes", requested)?,
        None => user.permissions.iter().filter(|p| !api_key::is_role_scope(p)).cloned().collect(),
    };
    let role = api_key::role_scope(&user.role);
    let missing: Vec<String> = scopes
        .iter()
        .filter(|s| if api_key::is_role_scope(s) { **s != role } else { !user.permissions.contains(s) })
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(AccessError::InsufficientScope { missing }.into());
    }
    let limit = match kind {
        KeyKind::ApiKey => cfg.max_api_keys,
        KeyKind::Pat => cfg.pat_limit(&user.role),
    };

    let keys = keys(&acc);
    let secret = api_key::generate(keys.prefix_of(kind));
    let parsed = api_key::parse(&secret).expect("a generated key parses");
    let now = now_secs() as i64;
    let key = ApiKey {
        id: new_key_id(kind),
        kind,
        user_id: user.id.clone(),
        name,
        lookup: parsed.lookup().to_string(),
        digest: keys.pepper().digest(&secret).to_vec(),
        display: parsed.display(),
        scopes,
        created_at: now,
        expires_at: days.map(|d| now + d * 86_400),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_api_key(&key, Some(limit), now).await.map_err(|e| api_key::limit_error(kind, e))?;
    let mut out = view(&key);
    match kind {
        KeyKind::ApiKey => out["key"] = json!(secret),
        KeyKind::Pat => {
            // Seed 000's names: the secret in `token`, the id also as `token_id`.
            out["token"] = json!(secret);
            out["token_id"] = json!(key.id);
        }
    }
    let mut resp = (StatusCode::CREATED, axum::Json(out)).into_response();
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn list(acc: Arc<Accounts>, Caller(p): Caller, kind: KeyKind) -> ApiResult {
    let keys = acc.store.api_keys_of(&p.subject, kind).await?;
    Ok(axum::Json(Value::Array(keys.iter().map(view).collect())).into_response())
}

async fn delete(acc: Arc<Accounts>, Caller(p): Caller, id: String, kind: KeyKind) -> ApiResult {
    let keys = keys(&acc);
    let now = now_secs() as i64;
    let until = now + keys.revocation_window();
    let what = match kind {
        KeyKind::ApiKey => "API key",
        KeyKind::Pat => "personal access token",
    };
    // Only the caller's own keys, and only of the kind this path manages.
    let owned = acc.store.api_keys_of(&p.subject, kind).await?;
    if !owned.iter().any(|k| k.id == id) {
        return Err(ApiError::NotFound(what).into());
    }
    let revoked = acc.store.revoke_api_key(&id, Some(&p.subject), now, until).await?.ok_or(ApiError::NotFound(what))?;
    keys.revoked(&revoked, until).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A key as listed: everything but the secret.
fn view(k: &ApiKey) -> Value {
    let now = now_secs() as i64;
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.display,
        "scopes": k.scopes,
        "created_at": rfc3339(k.created_at),
        "expires_at": k.expires_at.map(rfc3339),
        "last_used_at": k.last_used_at.map(rfc3339),
        "expired": k.expires_at.is_some_and(|at| at <= now),
    })
}

fn new_key_id(kind: KeyKind) -> String {
    let tag = match kind {
        KeyKind::ApiKey => "key",
        KeyKind::Pat => "tok",
    };
    format!("{tag}_{}", uuid::Uuid::new_v4().simple())
}
