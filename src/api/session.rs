//! Sessions: an access token (a Gatehouse JWT) plus a refresh token whose family is the
//! session. Refresh tokens are random, stored only as SHA-256 digests; a child is derived
//! from its parent with a server-side key, so a replay inside the grace window can be
//! answered with the same child without ever storing a token.

use aws_lc_rs::{digest, hmac, rand::SecureRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::Accounts;
use super::extract::ApiResult;
use crate::domain::claims::AccessClaims;
use crate::domain::new_id;
use crate::store::{NewRefresh, User};

/// Refresh tokens read `grt_<43 chars>`: recognisable to secret scanners.
const REFRESH_PREFIX: &str = "grt_";

pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut buf).expect("system randomness");
    B64.encode(buf)
}

pub fn digest_of(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

fn child_of(key: &hmac::Key, parent: &str) -> String {
    let tag = hmac::sign(key, parent.as_bytes());
    format!("{REFRESH_PREFIX}{}", B64.encode(tag.as_ref()))
}

/// RFC 3339 for a unix time.
pub fn rfc3339(ts: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// The public view of an account (never the password hash). App-specific fields stay inside
/// `profile`: they are the user's own input, so none may pose as a field Gatehouse vouches for
/// (`{"profile": {"is_admin": true}}` beside `role`). Seed 002's `skills` and
/// `experience_years` also appear at the top, only when they have their documented types.
pub fn user_json(u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "email": u.email,
        "email_verified": u.email_verified,
        "username": u.username,
        "name": u.name,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "phone": u.phone,
        "role": u.role,
        "permissions": u.permissions,
        "team_id": u.team_id,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "last_login_at": u.last_login_at.map(rfc3339),
        "profile": u.profile,
    });
    if let Some(skills) =
        u.profile.get("skills").filter(|s| s.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        v["skills"] = skills.clone();
    }
    if let Some(years) = u.profile.get("experience_years").filter(|y| y.is_u64()) {
        v["experience_years"] = years.clone();
    }
    v
}

/// Signs an access token for `user` in session `family_id`.
fn access_token(acc: &Accounts, user: &User, family_id: &str, now: i64) -> (String, i64) {
    let claims = AccessClaims::user(&acc.tokens, user, family_id, now);
    (acc.own.ring().signing.sign(&claims), acc.tokens.access_ttl.as_secs() as i64)
}

fn pair(acc: &Accounts, user: &User, family_id: &str, refresh: &str, now: i64) -> Value {
    let (access, ttl) = access_token(acc, user, family_id, now);
    json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": ttl,
        "user": user_json(user),
    })
}

/// A new session (login, register): a new refresh family.
pub async fn start(acc: &Accounts, user: &User, now: i64) -> ApiResult<Value> {
    let refresh = format!("{REFRESH_PREFIX}{}", random_b64(32));
    let family_id = new_id();
    store_refresh(acc, user, &refresh, &family_id, None, now).await?;
    Ok(pair(acc, user, &family_id, &refresh, now))
}

/// The next pair of a session after `parent` was used. With `replay`, the child exists
/// already and the same one is returned.
pub async fn next(
    acc: &Accounts,
    user: &User,
    family_id: &str,
    parent_id: &str,
    parent: &str,
    replay: bool,
    now: i64,
) -> ApiResult<Value> {
    let child = child_of(&acc.refresh_key, parent);
    if !replay {
        store_refresh(acc, user, &child, family_id, Some(parent_id), now).await?;
    }
    Ok(pair(acc, user, family_id, &child, now))
}

async fn store_refresh(
    acc: &Accounts,
    user: &User,
    token: &str,
    family_id: &str,
    parent: Option<&str>,
    now: i64,
) -> ApiResult<()> {
    let ttl = acc.tokens.refresh_ttl.as_secs() as i64;
    acc.store
        .insert_refresh(&NewRefresh {
            id: new_id(),
            hash: digest_of(token),
            user_id: user.id.clone(),
            family_id: family_id.to_string(),
            parent_id: parent.map(str::to_string),
            now,
            expires_at: now + ttl,
        })
        .await?;
    Ok(())
}

pub fn is_refresh_token(token: &str) -> bool {
    token.starts_with(REFRESH_PREFIX) && token.len() < 128
}
