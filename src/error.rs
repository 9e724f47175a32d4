//! Error enums per domain and the one place they become HTTP responses: status, the JSON
//! shape `{error, code, message}`, `WWW-Authenticate` (RFC 6750) and `Retry-After`.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::body::{self, Body};

/// The caller's credential could not be accepted (401).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were sent")]
    MissingCredentials,
    /// The message names what is wrong, never the token's content.
    #[error("{0}")]
    InvalidToken(Cow<'static, str>),
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token has been revoked")]
    TokenRevoked,
    /// Too many unknown API keys from this client: refused before any store lookup.
    #[error("too many API key lookups from this address; slow down")]
    Throttled { retry_after: Duration },
    /// The credential store could not be asked; fail closed.
    #[error("the credential store is unavailable")]
    Unavailable,
}

/// The caller is known but may not do this (403).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    #[error("this route needs the permissions: {}", .missing.join(", "))]
    InsufficientScope { missing: Vec<String> },
    #[error("this route needs one of the roles: {}", .roles.join(", "))]
    MissingRole { roles: Vec<String> },
    /// `accounts.require_verified_email`, and the account's address is not verified yet.
    #[error("verify your email address first: open the link mailed to it (a password reset verifies it too)")]
    EmailNotVerified,
}

/// The request itself cannot be handled (4xx before any auth decision).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The path cannot be matched safely (see `routes::path`).
    #[error("{0}")]
    Path(crate::routes::PathError),
    #[error("{0}")]
    Host(crate::routes::HostError),
    #[error("{0}")]
    BadHeader(&'static str),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The route exists, but no rule for it allows this method.
    #[error("no rule for this route allows the {method} method")]
    RouteMethod { method: http::Method, allow: Vec<http::Method> },
    /// The request (its body, for the auth API) did not arrive in time.
    #[error("the request took too long to arrive")]
    Timeout,
    /// A request head larger than `server.max_header_bytes`.
    #[error("the request headers are too large")]
    HeadersTooLarge,
}

/// Talking to the upstream failed (5xx that Gatehouse reports on the upstream's behalf).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream could not be reached")]
    Unavailable,
    #[error("the upstream did not answer in time")]
    Timeout,
}

/// The auth API refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Bad input; `field` names what is wrong (`body` for the body as a whole).
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("invalid email, username or password")]
    InvalidCredentials,
    #[error("the account is locked after too many failed logins; try again later")]
    AccountLocked { retry_after: Duration },
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("the reset token is invalid, expired or used")]
    InvalidResetToken,
    #[error("the verification token is invalid, expired or used")]
    InvalidVerificationToken,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("no such account")]
    NoAccount,
    /// The owner holds as many credentials of a kind as their role allows.
    #[error("you already hold {limit} {what}, the most your role allows; delete one first")]
    LimitReached { what: Limited, limit: i64 },
    /// A JSON endpoint got a body that does not say it is JSON.
    #[error("the body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// A resource named in the path does not exist (or is not the caller's).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A store or hashing failure; details are logged, never sent.
    #[error("internal error")]
    Internal,
}

/// What an [`ApiError::LimitReached`] counted: each has its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    ApiKeys,
    Pats,
    /// A store limit the caller did not say the kind of.
    Credentials,
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limited::ApiKeys => "API keys",
            Limited::Pats => "personal access tokens",
            Limited::Credentials => "credentials",
        })
    }
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), message: message.into() }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(field) => ApiError::Conflict(field),
            crate::store::StoreError::NotFound => ApiError::NoAccount,
            crate::store::StoreError::LimitReached(limit) => {
                ApiError::LimitReached { what: Limited::Credentials, limit }
            }
            crate::store::StoreError::Database(msg) => {
                tracing::error!(error = %msg, "store failure");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::routes::PathError> for Error {
    fn from(e: crate::routes::PathError) -> Self {
        RequestError::Path(e).into()
    }
}

impl From<crate::routes::HostError> for Error {
    fn from(e: crate::routes::HostError) -> Self {
        RequestError::Host(e).into()
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Api(e.into())
    }
}

/// The OAuth2 endpoints (token, introspection, revocation) refused a request; the `error`
/// field carries the RFC 6749 §5.2 code instead of the status name.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// Unknown client, wrong secret, revoked client, or no client authentication at all.
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidScope(String),
    #[error("only the client_credentials grant is supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    UnauthorizedClient(Cow<'static, str>),
    /// RFC 7009 §2.2.1: Gatehouse cannot revoke this kind of token (another issuer's).
    #[error("{0}")]
    UnsupportedTokenType(Cow<'static, str>),
}

impl OAuthError {
    fn rfc_code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedTokenType(_) => "unsupported_token_type",
        }
    }
}

/// Any error that ends a request early.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    #[error("Gatehouse is not ready yet")]
    NotReady,
    #[error("Gatehouse is shutting down")]
    Draining,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
    message: String,
    /// RFC 6749 §5.2, on the OAuth2 endpoints only.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl Error {
    /// Stable machine code, as in DESIGN.md.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Auth(AuthError::MissingCredentials) => "missing_credentials",
            Error::Auth(AuthError::InvalidToken(_)) => "invalid_token",
            Error::Auth(AuthError::TokenExpired) => "token_expired",
            Error::Auth(AuthError::TokenRevoked) => "token_revoked",
            Error::Auth(AuthError::Throttled { .. }) => "rate_limited",
            Error::Auth(AuthError::Unavailable) => "store_unavailable",
            Error::Access(AccessError::InsufficientScope { .. }) => "insufficient_scope",
            Error::Access(AccessError::MissingRole { .. }) => "insufficient_role",
            Error::Access(AccessError::EmailNotVerified) => "email_not_verified",
            Error::Request(RequestError::Path(_)) => "invalid_path",
            Error::Request(RequestError::Host(_)) => "invalid_host",
            Error::Request(RequestError::RouteMethod { .. }) => "method_not_allowed",
            Error::Request(RequestError::HeadersTooLarge) => "headers_too_large",
            Error::Request(RequestError::Timeout) => "request_timeout",
            Error::Request(RequestError::BadHeader(_)) => "invalid_header",
            Error::Request(RequestError::NotFound) => "not_found",
            Error::Request(RequestError::MethodNotAllowed) => "method_not_allowed",
            Error::Upstream(UpstreamError::Unavailable) => "upstream_unavailable",
            Error::Upstream(UpstreamError::Timeout) => "upstream_timeout",
            Error::RateLimited { .. } => "rate_limited",
            Error::NotReady => "not_ready",
            Error::Draining => "draining",
            Error::Api(e) => match e {
                ApiError::Validation { .. } => "validation_error",
                ApiError::Conflict(_) => "conflict",
                ApiError::InvalidCredentials => "invalid_credentials",
                ApiError::AccountLocked { .. } => "account_locked",
                ApiError::InvalidRefreshToken => "invalid_token",
                ApiError::InvalidResetToken => "invalid_token",
                ApiError::InvalidVerificationToken => "invalid_verification_token",
                ApiError::RegistrationClosed => "registration_closed",
                ApiError::NoAccount => "invalid_token",
                ApiError::LimitReached { what: Limited::ApiKeys, .. } => "api_key_limit_reached",
                ApiError::LimitReached { what: Limited::Pats, .. } => "pat_limit_reached",
                ApiError::LimitReached { what: Limited::Credentials, .. } => "limit_reached",
                ApiError::NotFound(_) => "not_found",
                ApiError::UnsupportedMediaType => "unsupported_media_type",
                ApiError::Internal => "internal_error",
            },
            Error::OAuth(e) => e.rfc_code(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Auth(AuthError::Throttled { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Error::Auth(AuthError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Auth(_) => StatusCode::UNAUTHORIZED,
            Error::Access(_) => StatusCode::FORBIDDEN,
            Error::Request(RequestError::NotFound) => StatusCode::NOT_FOUND,
            Error::Request(RequestError::MethodNotAllowed | RequestError::RouteMethod { .. }) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            Error::Request(RequestError::HeadersTooLarge) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Request(RequestError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Error::Request(_) => StatusCode::BAD_REQUEST,
            Error::Upstream(UpstreamError::Unavailable) => StatusCode::BAD_GATEWAY,
            Error::Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NotReady | Error::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Error::Api(e) => match e {
                ApiError::Validation { .. } | ApiError::InvalidResetToken | ApiError::InvalidVerificationToken => {
                    StatusCode::BAD_REQUEST
                }
                ApiError::Conflict(_) => StatusCode::CONFLICT,
                ApiError::InvalidCredentials
                | ApiError::AccountLocked { .. }
                | ApiError::InvalidRefreshToken
                | ApiError::NoAccount => StatusCode::UNAUTHORIZED,
                ApiError::RegistrationClosed | ApiError::LimitReached { .. } => StatusCode::FORBIDDEN,
                ApiError::NotFound(_) => StatusCode::NOT_FOUND,
                ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::OAuth(OAuthError::InvalidClient) => StatusCode::UNAUTHORIZED,
            Error::OAuth(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The short `error` field: the status's name in snake case.
    fn kind(status: StatusCode) -> &'static str {
        match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::BAD_GATEWAY => "bad_gateway",
            StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            StatusCode::CONFLICT => "conflict",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request_header_fields_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::INTERNAL_SERVER_ERROR => "internal_error",
            _ => "error",
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        // RFC 6750 §3: no error attribute when the request carried no credential at all.
        let (code, description) = match self {
            Error::Auth(AuthError::MissingCredentials) => {
                return Some(r#"Bearer realm="gatehouse""#.into());
            }
            Error::Auth(AuthError::Throttled { .. } | AuthError::Unavailable) => return None,
            Error::Auth(e) => ("invalid_token", e.to_string()),
            Error::Api(ApiError::InvalidRefreshToken | ApiError::NoAccount) => ("invalid_token", self.to_string()),
            Error::Api(ApiError::InvalidCredentials | ApiError::AccountLocked { .. }) => {
                return Some(r#"Bearer realm="gatehouse""#.into());
            }
            // Not a token problem: no new token with other scopes would help.
            Error::Access(AccessError::EmailNotVerified) => return None,
            Error::Access(e) => ("insufficient_scope", e.to_string()),
            // RFC 6749 §5.2: a client authenticating with HTTP Basic is answered in kind.
            Error::OAuth(OAuthError::InvalidClient) => return Some(r#"Basic realm="gatehouse""#.into()),
            _ => return None,
        };
        let mut value =
            format!(r#"Bearer realm="gatehouse", error="{code}", error_description="{}""#, quote_safe(&description));
        if let Error::Access(AccessError::InsufficientScope { missing }) = self {
            value.push_str(&format!(r#", scope="{}""#, quote_safe(&missing.join(" "))));
        }
        Some(value)
    }

    /// The one mapping from an error to the response the client sees.
    pub fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let message = self.to_string();
        let (error, error_description) = match self {
            Error::OAuth(e) => (e.rfc_code(), Some(message.as_str())),
            _ => (Self::kind(status), None),
        };
        let json =
            serde_json::to_vec(&ErrorBody { error, code: self.code(), message: message.clone(), error_description })
                .expect("error body serialises");
        let mut resp = Response::new(body::full(Bytes::from(json)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Error::OAuth(_) = self {
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        if let Some(value) = self.www_authenticate()
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Error::RateLimited { retry_after }
        | Error::Auth(AuthError::Throttled { retry_after })
        | Error::Api(ApiError::AccountLocked { retry_after }) = self
        {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Error::Request(RequestError::RouteMethod { allow, .. }) = self {
            let list: Vec<&str> = allow.iter().map(http::Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                h.insert(header::ALLOW, v);
            }
        }
        resp
    }
}

/// Keeps a description inside an RFC 7230 quoted-string: printable ASCII, no `"` or `\`.
fn quote_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_has_bare_challenge() {
        let r = Error::from(AuthError::MissingCredentials).to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="gatehouse""#);
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let e = Error::from(AccessError::InsufficientScope { missing: vec!["admin".into(), "write".into()] });
        let r = e.to_response();
        assert_eq!(r.status(), 403);
        let v = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(v.contains(r#"error="insufficient_scope""#) && v.contains(r#"scope="admin write""#), "{v}");
    }

    #[test]
    fn rate_limited_rounds_retry_after_up() {
        let r = Error::RateLimited { retry_after: Duration::from_millis(1500) }.to_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
