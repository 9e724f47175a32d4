//! Stage 1, authenticate: find the credential a request carries and turn it into a
//! verified [`Principal`] (or say why not). No credential at all is `Ok(None)`.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::auth::Auth;
use crate::auth::principal::Principal;
use crate::error::AuthError;

pub async fn identify(auth: &Auth, headers: &HeaderMap) -> Result<Option<Arc<Principal>>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two Authorization headers: which one an upstream would read is anyone's guess.
        return Err(AuthError::InvalidToken("more than one Authorization header".into()));
    }
    let value = value.to_str().map_err(|_| AuthError::InvalidToken("the Authorization header is not ASCII".into()))?;
    let token = bearer(value)
        .ok_or_else(|| AuthError::InvalidToken("the Authorization header is not `Bearer <token>`".into()))?;
    auth.jwt.verify(token).await.map(Some)
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
