//! `POST /auth/token`: the OAuth2 client-credentials grant (RFC 6749 §4.4). A client proves
//! itself with its secret and gets a Gatehouse JWT for its scopes; never a refresh token.

use std::sync::Arc;

use axum::extract::{Request, State};
use serde_json::json;

use super::Accounts;
use super::client_auth::{self, OAuthForm};
use super::extract::{ApiResult, ClientIp};
use crate::auth::jwt::CLIENT_CREDENTIALS;
use crate::clock::now_secs;
use crate::domain::claims::AccessClaims;
use crate::error::{Error, OAuthError};

pub async fn token(State(acc): State<Arc<Accounts>>, ip: ClientIp, req: Request) -> ApiResult {
    // Counted before anything is read, so malformed requests use up the quota too.
    if let Err(retry_after) = acc.token_limiter.check(ip.0).await {
        return Err(Error::RateLimited { retry_after });
    }
    let form = OAuthForm::read(&acc, req).await?;
    let grant_type = form.require("grant_type")?;
    // Taken before the client is read: a token signed after a concurrent delete still carries
    // an `iat` inside the delete's cut-off, so it is refused.
    let now = now_secs() as i64;
    let client = client_auth::authenticate(&acc, &form).await?;
    if grant_type != CLIENT_CREDENTIALS {
        return Err(OAuthError::UnsupportedGrantType.into());
    }
    let scopes = match form.get("scope") {
        None => client.scopes.clone(),
        Some(requested) => {
            let mut scopes: Vec<String> = Vec::new();
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.iter().any(|have| have == s) {
                    scopes.push(s.to_string());
                }
            }
            let refused: Vec<&str> = scopes.iter().filter(|s| !client.scopes.contains(s)).map(String::as_str).collect();
            if !refused.is_empty() {
                return Err(OAuthError::InvalidScope(format!(
                    "scopes not granted to this client: {}",
                    refused.join(" ")
                ))
                .into());
            }
            scopes
        }
    };
    let ttl = acc.config.clients.token_ttl.as_secs() as i64;
    let claims = AccessClaims::client(&acc.tokens, &client, &scopes, ttl, now);
    let access_token = acc.own.ring().signing.sign(&claims);
    let scope = scopes.join(" ");
    Ok(client_auth::no_store(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    })))
}
