//! `POST /auth/revoke` (RFC 7009): an authenticated client revokes its own tokens, or, holding
//! `clients.admin_scope`, any token Gatehouse issued.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::Accounts;
use super::client_auth::{self, OAuthForm, Presented};
use super::extract::{ApiResult, ClientIp};
use super::session;
use crate::auth::principal::{Principal, PrincipalKind};
use crate::clock::now_secs;
use crate::error::OAuthError;
use crate::store::{Client, RefreshUse, Revocation};

/// A client may revoke the tokens issued to itself; an admin client also users' access tokens
/// (with their session), refresh tokens (their session), API keys and PATs. RFC 7009 §2.2:
/// unknown, expired and already revoked tokens answer 200, as a success. A live token that is
/// not the client's own is refused (§2.1) with `unauthorized_client`; a refresh token from a
/// non-admin client is left alone with 200 (none is ever issued to a client, and checking one
/// would use it up); an external issuer's token gets `unsupported_token_type`: only its issuer
/// can revoke it.
pub async fn revoke(State(acc): State<Arc<Accounts>>, ip: ClientIp, req: Request) -> ApiResult {
    let form = OAuthForm::read(&acc, req).await?;
    // `token_type_hint` only speeds up a search; here the token's shape already tells.
    let token = form.require("token")?;
    let client = client_auth::authenticate(&acc, &form).await?;
    let admin = client.scopes.contains(&acc.config.clients.admin_scope);
    match client_auth::classify(&acc, token, ip.0).await? {
        Presented::Invalid => {}
        Presented::Key(p) => {
            allowed(admin, "API keys and personal access tokens belong to users")?;
            revoke_key(&acc, &p).await?;
        }
        // Not checked for a non-admin: that would use the token up. RFC 7009 §2.2 answers 200
        // for invalid tokens, and a refresh-shaped string may be one, so no refusal either.
        Presented::Refresh(token) if admin => revoke_refresh(&acc, &token).await?,
        Presented::Refresh(_) => {}
        Presented::Jwt(p, _) => {
            if !client_auth::is_own(&acc, &p) {
                return Err(
                    OAuthError::UnsupportedTokenType("only the issuer of this token can revoke it".into()).into()
                );
            }
            if !issued_to(&p, &client) {
                allowed(admin, "this token was not issued to this client")?;
            }
            revoke_jwt(&acc, &p).await?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

fn issued_to(p: &Principal, client: &Client) -> bool {
    p.kind == PrincipalKind::Client && p.subject == client.id
}

fn allowed(admin: bool, why: &'static str) -> Result<(), OAuthError> {
    if admin { Ok(()) } else { Err(OAuthError::UnauthorizedClient(why.into())) }
}

async fn revoke_jwt(acc: &Accounts, p: &Principal) -> ApiResult<()> {
    let store = &acc.store;
    let now = now_secs() as i64;
    // Tokens signed by `gatehouse token` carry no jti: there is nothing to name them by.
    let Some(jti) = &p.token_id else {
        return Err(
            OAuthError::UnsupportedTokenType("this token has no jti, so it cannot be revoked alone".into()).into()
        );
    };
    let until = p.expires_at.map_or(now, |e| e as i64);
    store.revoke_token(jti, until, now).await?;
    acc.auth.revocations.apply(Revocation::Token { jti: jti.clone(), until });
    if let Some(sid) = &p.session_id {
        // A user's access token ends its session too, as logout does.
        let access_ttl = acc.tokens.access_ttl.as_secs() as i64;
        store.revoke_family(sid, now, access_ttl).await?;
        acc.auth.revocations.apply(Revocation::Session { family_id: sid.clone(), until: now + access_ttl });
    }
    Ok(())
}

async fn revoke_refresh(acc: &Accounts, token: &str) -> ApiResult<()> {
    let store = &acc.store;
    let now = now_secs() as i64;
    let access_ttl = acc.tokens.access_ttl.as_secs() as i64;
    // Using the token is the only way to find its family; the family dies right after, so the
    // use has no other effect. A token used before names its family all the same (the store
    // revokes that family itself).
    let family_id = match store.use_refresh(&session::digest_of(token), now, 0, access_ttl).await? {
        RefreshUse::Rotated { family_id, .. } | RefreshUse::Replayed { family_id, .. } => {
            store.revoke_family(&family_id, now, access_ttl).await?;
            family_id
        }
        RefreshUse::Reused { family_id } => family_id,
        RefreshUse::Invalid => return Ok(()),
    };
    acc.auth.revocations.apply(Revocation::Session { family_id, until: now + access_ttl });
    Ok(())
}

async fn revoke_key(acc: &Accounts, p: &Principal) -> ApiResult<()> {
    let keys = &acc.keys;
    let Some(id) = &p.token_id else { return Ok(()) };
    let now = now_secs() as i64;
    let until = now + keys.revocation_window();
    if let Some(key) = acc.store.revoke_api_key(id, None, now, until).await? {
        keys.revoked(&key, until).await;
    }
    Ok(())
}
