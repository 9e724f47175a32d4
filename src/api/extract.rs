//! What the auth API's handlers take from a request: a size-limited JSON body (declared as
//! JSON) whose errors name the field, the client IP, and the caller proven by a Gatehouse
//! access token.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::Accounts;
use crate::auth::principal::Principal;
use crate::body::Body;
use crate::error::{ApiError, AuthError, Error};

/// Handlers return this; every error leaves through `Error::to_response`.
pub type ApiResult<T = Response> = Result<T, Error>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.to_response().map(axum::body::Body::new)
    }
}

/// Converts axum's response into the proxy's body type.
pub fn into_body(resp: Response) -> http::Response<Body> {
    use http_body_util::BodyExt;
    resp.map(|b| b.map_err(|e| -> crate::body::BodyError { e.into() }).boxed_unsync())
}

/// The client address, put in the request's extensions before the router runs.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIp>().copied().unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// A JSON body: at most `accounts.max_body_bytes`, UTF-8, and every error names its field.
///
/// The body must say it is JSON (`application/json` or `…/…+json`); only an empty body may
/// come without a `Content-Type` (read as `{}`). A browser sends `text/plain`, form and
/// multipart bodies, or a body with no type, cross-site without asking (no CORS preflight): a
/// page on any site could otherwise post to these endpoints with the visitor's cookies and
/// address. Refused with 415 before the body is read.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Accounts>> for Json<T> {
    type Rejection = Error;
    async fn from_request(req: Request, acc: &Arc<Accounts>) -> Result<Self, Self::Rejection> {
        let declared = match req.headers().get(http::header::CONTENT_TYPE) {
            None => false,
            Some(value) if is_json(value) => true,
            Some(_) => return Err(ApiError::UnsupportedMediaType.into()),
        };
        let limit = acc.config.accounts.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
            ApiError::validation("body", format!("the body is larger than {} KiB or unreadable", limit / 1024))
        })?;
        if !declared && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::UnsupportedMediaType.into());
        }
        parse(&bytes).map(Json)
    }
}

/// `application/json` or a structured `+json` type (RFC 6839), parameters allowed.
fn is_json(value: &http::HeaderValue) -> bool {
    let Ok(text) = value.to_str() else { return false };
    let media_type = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.split_once('/') {
        Some(("application", "json")) => true,
        Some((kind, subtype)) => !kind.is_empty() && subtype.len() > "+json".len() && subtype.ends_with("+json"),
        None => false,
    }
}

/// Parses JSON, treating an empty body as `{}` (for endpoints whose fields are all optional).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::validation("body", "the body is not valid UTF-8").into());
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde reports a missing field at its parent: take the name from the message.
        let field = match message.split('`').nth(1) {
            Some(name) if message.starts_with("missing field") => name.to_string(),
            _ if inner.is_syntax() || inner.is_eof() || path == "." || path == "?" => "body".to_string(),
            _ => path,
        };
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        ApiError::validation(field, message).into()
    })
}

/// The caller, proven by a Gatehouse access token (`Authorization: Bearer`).
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<Arc<Accounts>> for Caller {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, acc: &Arc<Accounts>) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, acc).await?;
        let principal = crate::auth::identify::identify_explicit(&acc.auth, &parts.headers, ip)
            .await?
            .ok_or(AuthError::MissingCredentials)?;
        // A user's session only: a key cannot mint keys, and a client token has no user.
        if principal.issuer != acc.tokens.issuer
            || principal.method != crate::auth::principal::AuthMethod::Jwt
            || principal.kind != crate::auth::principal::PrincipalKind::User
        {
            return Err(AuthError::InvalidToken("this endpoint takes a Gatehouse access token".into()).into());
        }
        Ok(Caller(principal))
    }
}

/// The user behind the request: a session's access token, or one of the user's own API keys
/// or PATs (seed 000: "PATs work exactly like JWT tokens"). For reading the profile; anything
/// that creates or changes credentials takes a [`Caller`].
pub struct Holder(pub Arc<Principal>);

impl FromRequestParts<Arc<Accounts>> for Holder {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, acc: &Arc<Accounts>) -> Result<Self, Self::Rejection> {
        use crate::auth::principal::AuthMethod;
        let ClientIp(ip) = ClientIp::from_request_parts(parts, acc).await?;
        let principal = crate::auth::identify::identify_explicit(&acc.auth, &parts.headers, ip)
            .await?
            .ok_or(AuthError::MissingCredentials)?;
        let user = match principal.method {
            AuthMethod::ApiKey | AuthMethod::Pat => true,
            AuthMethod::Jwt => principal.kind == crate::auth::principal::PrincipalKind::User,
            // The cookie rides along on any request the browser makes: the auth API takes
            // explicit credentials only, so no other site can use a session through it.
            AuthMethod::ClientCredentials | AuthMethod::Session => false,
        };
        if principal.issuer != acc.tokens.issuer || !user {
            return Err(AuthError::InvalidToken("this endpoint takes a Gatehouse access token or key".into()).into());
        }
        Ok(Holder(principal))
    }
}

/// Refuses the request with 429 when the client IP has used its quota (across the cluster,
/// on a shared store).
pub async fn rate_limit(acc: &Accounts, ip: ClientIp) -> ApiResult<()> {
    match acc.limiter.check(ip.0).await {
        Ok(()) => Ok(()),
        Err(retry_after) => Err(Error::RateLimited { retry_after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_media_types_are_json() {
        let cases = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/vnd.api+json", true),
            ("application/merge-patch+json ; q=1", true),
            ("text/plain", false),
            ("text/plain; charset=utf-8", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonp", false),
            ("application/+json", false),
            ("json", false),
            ("", false),
        ];
        for (value, json) in cases {
            assert_eq!(is_json(&http::HeaderValue::from_static(value)), json, "{value}");
        }
    }
}
