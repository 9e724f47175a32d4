//! `/auth/clients`: users of the role `accounts.admin_role` create, list and delete the OAuth2
//! clients of the client-credentials grant (`gatehouse client ...` does the same offline).

use std::sync::Arc;

use aws_lc_rs::rand::SecureRandom;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Accounts;
use super::extract::{ApiResult, Caller, Json};
use super::session::rfc3339;
use super::validate;
use crate::auth::api_key::{self, Pepper};
use crate::auth::principal::Principal;
use crate::clock::now_secs;
use crate::error::{AccessError, ApiError};
use crate::store::{Client, Revocation};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    name: String,
    scopes: Vec<String>,
}

/// The secret is returned once, here; the store keeps only its peppered digest.
pub async fn create(State(acc): State<Arc<Accounts>>, Caller(p): Caller, req: Request) -> ApiResult {
    require_admin(&acc, &p).await?;
    // Read after the role check: a non-admin learns nothing from validation errors.
    let Json(body) = Json::<NewClient>::from_request(req, &acc).await?;
    let name = validate::name(&body.name)?;
    let scopes = validate::scopes("scopes", &body.scopes)?;
    let pepper = acc.keys.pepper();
    let now = now_secs() as i64;
    let (client, secret) =
        new_client(pepper, &acc.config.clients.secret_prefix, name, scopes, Some(p.subject.clone()), now);
    acc.store.create_client(&client).await.map_err(ApiError::from)?;
    let mut out = view(&client);
    out["client_secret"] = json!(secret);
    let mut resp = (StatusCode::CREATED, axum::Json(out)).into_response();
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub async fn list(State(acc): State<Arc<Accounts>>, Caller(p): Caller) -> ApiResult {
    require_admin(&acc, &p).await?;
    let clients = acc.store.clients().await.map_err(ApiError::from)?;
    Ok(axum::Json(Value::Array(clients.iter().map(view).collect())).into_response())
}

pub async fn delete(State(acc): State<Arc<Accounts>>, Caller(p): Caller, Path(id): Path<String>) -> ApiResult {
    require_admin(&acc, &p).await?;
    if !crate::api::client_auth::is_client_id(&id) {
        return Err(ApiError::NotFound("client").into());
    }
    let now = now_secs() as i64;
    let cutoff = crate::api::client_auth::client_cutoff(&acc.config, now);
    if !acc.store.revoke_client(&id, now, cutoff).await.map_err(ApiError::from)? {
        return Err(ApiError::NotFound("client").into());
    }
    // The store announces the cut-off to the other replicas; this one applies it at once.
    acc.auth.revocations.apply(Revocation::User { user_id: id, after: cutoff });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's live account must hold the admin role: a demoted admin's unexpired token must
/// not keep the power to mint credentials.
async fn require_admin(acc: &Accounts, p: &Principal) -> ApiResult<()> {
    let role = &acc.config.accounts.admin_role;
    let user = acc.store.user_by_id(&p.subject).await.map_err(ApiError::from)?.ok_or(ApiError::NoAccount)?;
    if user.role != *role {
        return Err(AccessError::MissingRole { roles: vec![role.clone()] }.into());
    }
    Ok(())
}

/// A new client and its secret. `name` and `scopes` must be validated already.
pub fn new_client(
    pepper: &Pepper,
    secret_prefix: &str,
    name: String,
    scopes: Vec<String>,
    created_by: Option<String>,
    now: i64,
) -> (Client, String) {
    let secret = api_key::generate(secret_prefix);
    let client = Client {
        id: new_client_id(),
        name,
        secret_digest: pepper.digest(&secret).to_vec(),
        scopes,
        created_at: now,
        created_by,
        revoked_at: None,
    };
    (client, secret)
}

/// `gc_` and 128 random bits in 22 base62 digits: public, but unguessable and recognisable.
pub fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system randomness");
    let mut n = u128::from_be_bytes(bytes);
    let mut id = String::with_capacity(25);
    id.push_str("gc_");
    // 62^22 > 2^128: 22 digits hold every value.
    for _ in 0..22 {
        id.push(BASE62[(n % 62) as usize] as char);
        n /= 62;
    }
    id
}

/// A client as listed: never its secret or digest.
pub fn view(c: &Client) -> Value {
    json!({
        "client_id": c.id,
        "name": c.name,
        "scopes": c.scopes,
        "created_at": rfc3339(c.created_at),
        "created_by": c.created_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_fixed_width_base62() {
        let a = new_client_id();
        assert_eq!(a.len(), 25, "{a}");
        assert!(a.starts_with("gc_") && a[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, new_client_id());
    }

    #[test]
    fn secrets_are_stored_as_digests_only() {
        let pepper = Pepper::new(&[7; 32]);
        let (client, secret) = new_client(&pepper, "gcs", "ci".into(), vec!["read".into()], None, 0);
        assert!(secret.starts_with("gcs_") && api_key::parse(&secret).is_some(), "{secret}");
        assert!(pepper.matches(&secret, &client.secret_digest));
        assert!(!view(&client).to_string().contains(&secret));
    }
}
