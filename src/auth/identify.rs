//! Authenticate (stage 3 of the proxy, and the auth API's bearer check): find the credential
//! a request carries and turn it into a verified [`Principal`]. No credential is `Ok(None)`.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::Auth;
use crate::auth::principal::Principal;
use crate::error::AuthError;

/// A request carries at most one credential: a Bearer token (JWT, or an API key or PAT
/// recognised by its prefix), an API key header, or else a session cookie. `client_ip` bounds the store lookups that
/// unknown API keys cause.
pub async fn identify(
    auth: &Auth,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Result<Option<Arc<Principal>>, AuthError> {
    identify_with(auth, headers, client_ip, true).await
}

/// [`identify`] without the session cookie, for the auth API: it takes explicit credentials
/// only (a cookie rides along on requests other sites make), and a cookie it would refuse
/// anyway must cost no lookup.
pub async fn identify_explicit(
    auth: &Auth,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Result<Option<Arc<Principal>>, AuthError> {
    identify_with(auth, headers, client_ip, false).await
}

async fn identify_with(
    auth: &Auth,
    headers: &HeaderMap,
    client_ip: IpAddr,
    cookie: bool,
) -> Result<Option<Arc<Principal>>, AuthError> {
    let keys = auth.api_keys();
    let key_header = match keys {
        Some(keys) => single(headers, keys.header())?.map(|value| (keys, value)),
        None => None,
    };
    match (key_header, single(headers, &AUTHORIZATION)?) {
        // A browser sends its session cookie, and no other credential.
        (None, None) => match auth.issued.as_ref().and_then(|i| i.sessions.as_ref()) {
            Some(sessions) if cookie => sessions.verify(headers, client_ip).await,
            _ => Ok(None),
        },
        (Some(_), Some(_)) => {
            Err(AuthError::InvalidToken("send either an API key header or an Authorization header, not both".into()))
        }
        (Some((keys, value)), None) => {
            let key = value.to_str().map_err(|_| AuthError::InvalidToken("the API key header is not ASCII".into()))?;
            keys.verify(key.trim_matches(' '), client_ip).await.map(Some)
        }
        (None, Some(value)) => {
            let value =
                value.to_str().map_err(|_| AuthError::InvalidToken("the Authorization header is not ASCII".into()))?;
            let token = bearer(value)
                .ok_or_else(|| AuthError::InvalidToken("the Authorization header is not `Bearer <token>`".into()))?;
            match keys {
                Some(keys) if keys.recognises(token) => keys.verify(token, client_ip).await.map(Some),
                _ => auth.jwt.verify(token).await.map(Some),
            }
        }
    }
}

/// The one value of a credential header; two copies are refused, since which one an
/// upstream would read is anyone's guess.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::InvalidToken(format!("more than one {name} header").into()));
    }
    Ok(first)
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer a b"), None);
    }
}
