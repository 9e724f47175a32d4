//! What the OAuth2 endpoints (token, introspection, revocation) share: the form body, client
//! authentication, and telling what a presented token is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderValue, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::Accounts;
use crate::auth::principal::Principal;
use crate::error::{AuthError, Error, OAuthError};
use crate::store::Client;

/// Compared against when the client does not exist, so an unknown client costs the same HMAC
/// and comparison as a known one.
const NO_DIGEST: [u8; 32] = [0; 32];

fn invalid(message: impl Into<Cow<'static, str>>) -> OAuthError {
    OAuthError::InvalidRequest(message.into())
}

/// A form body whose parameters each appear once, and the client credentials it (or its
/// `Authorization` header) carries.
///
/// Every OAuth2 endpoint checks in one order: the request's shape (`invalid_request`), then the
/// client (`invalid_client`), then the grant or token. A client authenticates once per request,
/// by HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1: id and secret form-urlencoded, then
/// base64) or by `client_id` and `client_secret` in the body (`client_secret_post`).
pub struct OAuthForm {
    params: HashMap<String, String>,
    /// `None`: no client authentication at all, or one that is not Basic (`invalid_client`).
    credentials: Option<(String, String)>,
}

impl OAuthForm {
    /// Reads `req`: `application/x-www-form-urlencoded` only, at most `accounts.max_body_bytes`.
    pub async fn read(acc: &Accounts, req: Request) -> Result<OAuthForm, OAuthError> {
        let (parts, body) = req.into_parts();
        let authorization = authorization(&parts.headers)?;
        if !is_form(&parts.headers) {
            return Err(invalid("the body must be application/x-www-form-urlencoded"));
        }
        let limit = acc.config.accounts.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| invalid(format!("the body is larger than {} KiB or unreadable", limit / 1024)))?;
        let params = parse(&bytes)?;
        let form_id = params.get("client_id");
        let credentials = match (authorization, params.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(invalid("authenticate the client once: HTTP Basic or client_secret in the body, not both"));
            }
            (Some(Some((id, _))), None) if form_id.is_some_and(|f| *f != id) => {
                return Err(invalid("client_id in the body differs from the one in HTTP Basic"));
            }
            (Some(basic), None) => basic,
            (None, Some(secret)) => form_id.map(|id| (id.clone(), secret.clone())),
            (None, None) => None,
        };
        Ok(OAuthForm { params, credentials })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| invalid(format!("the `{name}` parameter is missing")))
    }
}

/// The one `Authorization` header: `Some(Some(..))` for Basic credentials, `Some(None)` for
/// anything else (it fails client authentication, never silently ignored).
fn authorization(headers: &HeaderMap) -> Result<Option<Option<(String, String)>>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    Ok(Some(basic(value)))
}

fn basic(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id).ok()?, form_decode(secret).ok()?))
}

fn is_form(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let media_type = value.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// RFC 6749 §3.2: a parameter without a value counts as omitted, and none may appear twice.
fn parse(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not valid UTF-8"))?;
    let mut params = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (form_decode(name)?, form_decode(value)?);
        if value.is_empty() {
            continue;
        }
        if params.contains_key(&name) {
            let shown: String = name.chars().take(64).collect();
            return Err(invalid(format!("the `{shown}` parameter is sent more than once")));
        }
        params.insert(name, value);
    }
    Ok(params)
}

fn form_decode(s: &str) -> Result<String, OAuthError> {
    let s = s.replace('+', " ");
    percent_decode_str(&s)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| invalid("a form parameter is not valid UTF-8 once decoded"))
}

/// The client the request authenticates, live. Unknown, wrong secret and revoked all answer
/// `invalid_client`, after the same digest comparison.
pub async fn authenticate(acc: &Accounts, form: &OAuthForm) -> Result<Client, Error> {
    let Some((id, secret)) = &form.credentials else { return Err(OAuthError::InvalidClient.into()) };
    let pepper = acc.keys.pepper();
    let client = match crate::domain::clients::is_client_id(id) {
        true => acc.store.client_by_id(id).await?,
        false => None,
    };
    let matches = pepper.matches(secret, client.as_ref().map_or(&NO_DIGEST[..], |c| c.secret_digest.as_slice()));
    match client {
        Some(c) if matches && c.revoked_at.is_none() => Ok(c),
        Some(c) => {
            tracing::info!(client_id = %c.id, revoked = c.revoked_at.is_some(), "client authentication failed");
            Err(OAuthError::InvalidClient.into())
        }
        None => Err(OAuthError::InvalidClient.into()),
    }
}

/// What a presented token turned out to be.
pub enum Presented {
    /// An API key or PAT, live.
    Key(Arc<Principal>),
    /// A JWT Gatehouse accepts (its own or an external issuer's), live, with its claims.
    Jwt(Arc<Principal>, Map<String, Value>),
    /// Shaped like a Gatehouse refresh token; not checked, since the store can only check one by
    /// using it up.
    Refresh(String),
    /// Unknown, malformed, expired or revoked.
    Invalid,
}

/// Sorts a token the way the proxy does (keys by prefix, else JWT) and verifies it. Only a
/// failure to decide (store down, lookups throttled) is an error.
pub async fn classify(acc: &Accounts, token: &str, ip: IpAddr) -> Result<Presented, Error> {
    let undecided = |e: AuthError| match e {
        AuthError::Throttled { .. } | AuthError::Unavailable => Err(Error::from(e)),
        _ => Ok(Presented::Invalid),
    };
    match &acc.keys {
        keys if keys.recognises(token) => match keys.verify(token, ip).await {
            Ok(p) => Ok(Presented::Key(p)),
            Err(e) => undecided(e),
        },
        _ if crate::api::session::is_refresh_token(token) => Ok(Presented::Refresh(token.to_string())),
        _ => match acc.auth.jwt.verify(token).await {
            // The signature is good, so the payload decodes; its exact claims are reported.
            Ok(p) => Ok(Presented::Jwt(p, payload(token).unwrap_or_default())),
            Err(e) => undecided(e),
        },
    }
}

fn payload(token: &str) -> Option<Map<String, Value>> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `p` was signed by Gatehouse itself.
pub fn is_own(acc: &Accounts, p: &Principal) -> bool {
    acc.tokens.issuer == p.issuer
}

/// A JSON answer that no cache may keep (RFC 6749 §5.1).
pub fn no_store(value: Value) -> Response {
    let mut resp = axum::Json(value).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let p = parse(b"grant_type=client_credentials&scope=read+write%3Aall&empty=&x").unwrap();
        assert_eq!(p["grant_type"], "client_credentials");
        assert_eq!(p["scope"], "read write:all");
        assert!(!p.contains_key("empty") && !p.contains_key("x"), "valueless parameters count as omitted");
        assert!(matches!(parse(b"scope=a&scope=b"), Err(OAuthError::InvalidRequest(_))));
        assert!(parse(b"scope=&scope=b").is_ok(), "an empty one is omitted, so not a repeat");
        assert!(parse(b"a=%FF").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("gc%5Fabc:s%3Ae+t");
        let value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap();
        assert_eq!(basic(&value), Some(("gc_abc".into(), "s:e t".into())));
        assert_eq!(basic(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(basic(&HeaderValue::from_static("Basic !!!")), None);
    }
}
