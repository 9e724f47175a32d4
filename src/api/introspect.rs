//! `POST /auth/introspect` (RFC 7662): an authenticated client asks whether a token is live and
//! whom it proves.

use std::sync::Arc;

use axum::extract::{Request, State};
use serde_json::{Map, Value, json};

use super::Accounts;
use super::client_auth::{self, OAuthForm, Presented};
use super::extract::{ApiResult, ClientIp};
use crate::auth::principal::{Principal, PrincipalKind};

/// Any client may introspect any token: resource servers are clients too. Tokens are judged
/// exactly as the proxy judges them (leeway, revocations, key caches), so `active` means "the
/// proxy would accept it now". Refresh tokens are reported inactive: the store can only check
/// one by using it up, and only the user's app ever holds them.
pub async fn introspect(State(acc): State<Arc<Accounts>>, ip: ClientIp, req: Request) -> ApiResult {
    let form = OAuthForm::read(&acc, req).await?;
    // `token_type_hint` is not needed: every kind of token is recognisable by its shape.
    let token = form.require("token")?;
    client_auth::authenticate(&acc, &form).await?;
    let answer = match client_auth::classify(&acc, token, ip.0).await? {
        Presented::Key(p) => {
            let mut out = common(&p);
            if let Some(exp) = p.expires_at {
                out.insert("exp".into(), json!(exp));
            }
            out.insert("iat".into(), json!(p.issued_at));
            out.insert("jti".into(), json!(p.token_id));
            Value::Object(out)
        }
        Presented::Jwt(p, claims) => {
            let mut out = common(&p);
            // The token's own values: the principal's expiry includes the verifier's leeway.
            for name in ["exp", "iat", "nbf", "aud", "jti"] {
                if let Some(v) = claims.get(name) {
                    out.insert(name.into(), v.clone());
                }
            }
            if let Some(name) = ["preferred_username", "username"].iter().find_map(|n| claims.get(*n)) {
                out.insert("username".into(), name.clone());
            }
            Value::Object(out)
        }
        Presented::Refresh(_) | Presented::Invalid => json!({"active": false}),
    };
    Ok(client_auth::no_store(answer))
}

/// The fields every live token has. `token_type` is the OAuth type (RFC 6749 §7.1), the same
/// for all; `auth_method` tells them apart with the values of the `X-Auth-Method` header.
fn common(p: &Principal) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("active".into(), json!(true));
    out.insert("sub".into(), json!(p.subject));
    out.insert("scope".into(), json!(p.permissions.join(" ")));
    out.insert("token_type".into(), json!("Bearer"));
    out.insert("auth_method".into(), json!(p.method.as_str()));
    out.insert("iss".into(), json!(p.issuer));
    if p.kind == PrincipalKind::Client {
        out.insert("client_id".into(), json!(p.subject));
    }
    if let Some(email) = &p.email {
        out.insert("email".into(), json!(email));
        out.insert("email_verified".into(), json!(p.email_verified));
    }
    out
}
