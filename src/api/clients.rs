//! `/auth/clients`: users of the role `accounts.admin_role` create, list and delete the OAuth2
//! clients of the client-credentials grant (`gatehouse client ...` does the same offline).

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Accounts;
use super::extract::{ApiResult, Caller, Json};
use super::session::rfc3339;
use crate::auth::principal::Principal;
use crate::clock::now_secs;
use crate::domain::clients;
use crate::error::{AccessError, ApiError};
use crate::store::{Client, Revocation};

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
    let now = now_secs() as i64;
    let (client, secret) = clients::create(
        acc.store.as_ref(),
        acc.keys.pepper(),
        &acc.config,
        &body.name,
        &body.scopes,
        Some(p.subject.clone()),
        now,
    )
    .await?;
    let mut out = view(&client);
    out["client_secret"] = json!(secret);
    let mut resp = (StatusCode::CREATED, axum::Json(out)).into_response();
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub async fn list(State(acc): State<Arc<Accounts>>, Caller(p): Caller) -> ApiResult {
    require_admin(&acc, &p).await?;
    let clients = acc.store.clients().await?;
    Ok(axum::Json(Value::Array(clients.iter().map(view).collect())).into_response())
}

pub async fn delete(State(acc): State<Arc<Accounts>>, Caller(p): Caller, Path(id): Path<String>) -> ApiResult {
    require_admin(&acc, &p).await?;
    let now = now_secs() as i64;
    let cutoff =
        clients::delete(acc.store.as_ref(), &acc.config, &id, now).await?.ok_or(ApiError::NotFound("client"))?;
    // The store announces the cut-off to the other replicas; this one applies it at once.
    acc.auth.revocations.apply(Revocation::User { user_id: id, after: cutoff });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's live account must hold the admin role: a demoted admin's unexpired token must
/// not keep the power to mint credentials.
async fn require_admin(acc: &Accounts, p: &Principal) -> ApiResult<()> {
    let role = &acc.config.accounts.admin_role;
    let user = acc.store.user_by_id(&p.subject).await?.ok_or(ApiError::NoAccount)?;
    if user.role != *role {
        return Err(AccessError::MissingRole { roles: vec![role.clone()] }.into());
    }
    Ok(())
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
    use crate::auth::api_key::Pepper;

    #[test]
    fn the_listed_view_never_holds_the_secret() {
        let pepper = Pepper::new(&[7; 32]);
        let (client, secret) = clients::new_client(&pepper, "gcs", "ci".into(), vec!["read".into()], None, 0);
        let shown = view(&client).to_string();
        assert!(!shown.contains(&secret) && shown.contains(&client.id), "{shown}");
    }
}
