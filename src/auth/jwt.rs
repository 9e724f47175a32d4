//! JWT verification for every trusted issuer, Gatehouse's own included: pick the issuer by
//! `iss`, the key by `kid`, check the signature with an algorithm the key allows, then
//! `exp`/`nbf`/`aud`, and build the [`Principal`]. Verified tokens are cached until `exp`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use moka::Expiry;
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{KeySet, Reason};
use super::keys::VerifyKey;
use super::principal::{AuthMethod, Principal, PrincipalKind};
use super::revocation::Revocations;
use crate::clock::now_secs;
use crate::config::{ClaimPaths, Config, RequiredClaim};
use crate::error::AuthError;

/// One trusted issuer: its policy and its keys.
pub struct Issuer {
    pub name: String,
    pub algorithms: Vec<Algorithm>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub claims: ClaimPaths,
    /// Claims every token of this issuer must carry (`required_claims`).
    pub required: Vec<RequiredClaim>,
    /// The JOSE `typ` every token must declare (Gatehouse's own: `at+jwt`); `None`: any.
    pub typ: Option<&'static str>,
    pub keys: Arc<KeySet>,
}

type TokenHash = [u8; 32];

struct CachedUntilExp;

impl Expiry<TokenHash, (Arc<Principal>, Instant)> for CachedUntilExp {
    fn expire_after_create(&self, _: &TokenHash, value: &(Arc<Principal>, Instant), now: Instant) -> Option<Duration> {
        Some(value.1.saturating_duration_since(now))
    }
}

pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    by_name: HashMap<String, usize>,
    /// `None` when `jwt.verified_cache_capacity` is 0.
    verified: Option<Cache<TokenHash, (Arc<Principal>, Instant)>>,
    verified_ttl: Duration,
    max_token_bytes: usize,
    /// Claim paths whose values become headers, in the order of `HeadersConfig::claims`.
    mapped_claims: Vec<Vec<String>>,
    max_value_bytes: usize,
    revocations: Arc<Revocations>,
    /// Gatehouse's own issuer: its tokens with `gty = client_credentials` prove a client.
    own_issuer: Option<String>,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// The `gty` claim of the tokens the client-credentials grant issues.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

fn invalid(reason: impl Into<Cow<'static, str>>) -> AuthError {
    AuthError::InvalidToken(reason.into())
}

impl JwtVerifier {
    pub fn new(config: &Config, issuers: Vec<Issuer>, revocations: Arc<Revocations>) -> Self {
        let by_name = issuers.iter().enumerate().map(|(i, iss)| (iss.name.clone(), i)).collect();
        JwtVerifier {
            issuers,
            by_name,
            verified: (config.jwt.verified_cache_capacity > 0).then(|| {
                Cache::builder().max_capacity(config.jwt.verified_cache_capacity).expire_after(CachedUntilExp).build()
            }),
            verified_ttl: config.jwt.verified_cache_ttl,
            max_token_bytes: config.jwt.max_token_bytes,
            mapped_claims: config.headers.claims.iter().map(|(path, _)| path.clone()).collect(),
            max_value_bytes: config.headers.max_value_bytes,
            revocations,
            own_issuer: config.tokens.as_ref().map(|t| t.issuer.clone()),
        }
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Verifies a compact JWS and returns the caller it proves. A revocation always wins,
    /// also over the verified-token cache.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let principal = self.verify_signed(token).await?;
        if self.revocations.is_revoked(&principal) {
            return Err(AuthError::TokenRevoked);
        }
        Ok(principal)
    }

    async fn verify_signed(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(invalid("the token is too large"));
        }
        let Some(cache) = &self.verified else {
            return self.verify_uncached(token).await.map(|(p, _)| Arc::new(p));
        };
        let hash: TokenHash =
            digest::digest(&digest::SHA256, token.as_bytes()).as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Some((principal, _)) = cache.get(&hash) {
            // The entry expires with the token, but moka's clock is coarse: check exp exactly.
            if principal.expires_at.is_none_or(|exp| now_secs() < exp) {
                return Ok(principal);
            }
        }
        let (principal, exp) = self.verify_uncached(token).await?;
        let principal = Arc::new(principal);
        let remaining = Duration::from_secs(exp.saturating_sub(now_secs()));
        cache.insert(hash, (principal.clone(), crate::clock::now_std() + remaining.min(self.verified_ttl)));
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("the token is not a compact JWS (three base64url parts)"));
        };
        let header: JoseHeader =
            decode_json(h64).ok_or_else(|| invalid("the token header is not valid base64url JSON"))?;
        if header.crit.is_some() {
            return Err(invalid("the token has critical header parameters this server does not understand"));
        }
        let claims: Map<String, Value> =
            decode_json(c64).ok_or_else(|| invalid("the token claims are not valid base64url JSON"))?;
        let signature = B64.decode(s64).map_err(|_| invalid("the token signature is not valid base64url"))?;

        let iss = claims.get("iss").and_then(Value::as_str).ok_or_else(|| invalid("the token has no issuer (iss)"))?;
        let issuer = self
            .by_name
            .get(iss)
            .map(|&i| &self.issuers[i])
            .ok_or_else(|| invalid("the token's issuer is not trusted"))?;
        let alg = Algorithm::from_str(&header.alg).map_err(|_| invalid("the token's algorithm is not allowed"))?;
        if !issuer.algorithms.contains(&alg) {
            return Err(invalid("the token's algorithm is not allowed for its issuer"));
        }
        if let Some(want) = issuer.typ
            && !header.typ.as_deref().is_some_and(|t| typ_is(t, want))
        {
            return Err(invalid(format!("the token is not an access token (its header must say typ: {want})")));
        }

        let message = &token.as_bytes()[..h64.len() + 1 + c64.len()];
        let verified = match &header.kid {
            Some(kid) => {
                let key = match issuer.keys.get(kid) {
                    Some(k) => k,
                    None => {
                        // Unknown kid: maybe the issuer rotated. One fetch per cool-down, shared.
                        issuer.keys.refresh(Reason::UnknownKid).await;
                        issuer.keys.get(kid).ok_or_else(|| invalid("the token's key id (kid) is unknown"))?
                    }
                };
                check(&key, alg, message, &signature)?
            }
            None => {
                let candidates = issuer.keys.all();
                let mut usable = candidates.iter().filter(|k| k.allows(alg)).peekable();
                if usable.peek().is_none() {
                    return Err(invalid("no key of the issuer can verify this token"));
                }
                usable.any(|k| k.verify(alg, message, &signature))
            }
        };
        if !verified {
            return Err(invalid("the token signature is invalid"));
        }

        let now = now_secs();
        let leeway = issuer.leeway.as_secs();
        let exp = numeric(&claims, "exp")?.ok_or_else(|| invalid("the token has no expiry (exp)"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(AuthError::TokenExpired);
        }
        if let Some(nbf) = numeric(&claims, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(invalid("the token is not valid yet (nbf)"));
        }
        if !issuer.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
                Some(Value::Array(list)) => {
                    list.iter().filter_map(Value::as_str).any(|a| issuer.audiences.iter().any(|x| x == a))
                }
                _ => false,
            };
            if !ok {
                return Err(invalid("the token's audience (aud) is not accepted"));
            }
        }
        check_required(&issuer.required, &claims)?;
        let principal = self.principal(issuer, &claims, exp.saturating_add(leeway))?;
        Ok((principal, exp.saturating_add(leeway)))
    }

    fn principal(&self, issuer: &Issuer, claims: &Map<String, Value>, expires_at: u64) -> Result<Principal, AuthError> {
        let paths = &issuer.claims;
        let subject = match lookup(claims, &paths.subject) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(invalid("the token has no subject (sub)")),
        };
        let scalar = |path: &[String]| lookup(claims, path).and_then(scalar_string);
        let permissions = match lookup(claims, &paths.permissions) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => {
                string_list(items).ok_or_else(|| invalid("the permissions claim must hold strings"))?
            }
            Some(_) => {
                return Err(invalid("the permissions claim must be a string or a list of strings"));
            }
        };
        let roles = match lookup(claims, &paths.role) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                string_list(items).ok_or_else(|| invalid("the role claim must hold strings"))?
            }
            Some(_) => {
                return Err(invalid("the role claim must be a string or a list of strings"));
            }
        };
        let mapped_claims: Vec<Option<String>> =
            self.mapped_claims.iter().map(|path| lookup(claims, path).and_then(header_string)).collect();
        let client = self.own_issuer.as_deref() == Some(issuer.name.as_str())
            && claims.get("gty").and_then(Value::as_str) == Some(CLIENT_CREDENTIALS);
        let (kind, method) = if client {
            (PrincipalKind::Client, AuthMethod::ClientCredentials)
        } else {
            (PrincipalKind::User, AuthMethod::Jwt)
        };
        let principal = Principal {
            subject,
            kind,
            method,
            email: scalar(&paths.email),
            // OIDC says boolean; some issuers (AWS Cognito) send the string.
            email_verified: match lookup(claims, &paths.email_verified) {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            },
            name: scalar(&paths.name),
            roles,
            team_id: scalar(&paths.team),
            permissions,
            token_id: claims.get("jti").and_then(scalar_string),
            session_id: claims.get("sid").and_then(scalar_string),
            issued_at: numeric(claims, "iat").ok().flatten(),
            issuer: issuer.name.clone(),
            expires_at: Some(expires_at),
            mapped_claims,
            rendered: OnceLock::new(),
        };
        self.check_header_safety(&principal)?;
        Ok(principal)
    }

    /// Identity values become headers and comma-joined lists, so a value that could split a
    /// header or a list, or blow past the size cap, makes the whole token unacceptable.
    fn check_header_safety(&self, p: &Principal) -> Result<(), AuthError> {
        let singles = [Some(&p.subject), p.email.as_ref(), p.name.as_ref(), p.team_id.as_ref()];
        let all_singles = singles.into_iter().flatten().chain(p.mapped_claims.iter().flatten());
        for value in all_singles {
            if value.chars().any(char::is_control) {
                return Err(invalid("an identity claim contains control characters"));
            }
            if value.len() > self.max_value_bytes {
                return Err(invalid("an identity claim is too large for a header"));
            }
        }
        for list in [&p.permissions, &p.roles] {
            if list.iter().any(|v| v.is_empty() || v.contains(',') || v.chars().any(char::is_control)) {
                return Err(invalid("a permission or role is empty or contains a comma or control character"));
            }
            if list.iter().map(|v| v.len() + 1).sum::<usize>() > self.max_value_bytes {
                return Err(invalid("the permissions or roles are too large for a header"));
            }
        }
        Ok(())
    }
}

fn check(key: &VerifyKey, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<bool, AuthError> {
    if !key.allows(alg) {
        // The key's type pins its algorithms: e.g. an RSA key never verifies HS256.
        return Err(invalid("the token's algorithm does not match its key"));
    }
    Ok(key.verify(alg, message, signature))
}

/// `required_claims`: an issuer trusted for its signature alone may mint tokens for anyone
/// (GitHub Actions signs for every repository), so these claims pin whose tokens count.
/// The messages name the claim, never the token's value.
fn check_required(required: &[RequiredClaim], claims: &Map<String, Value>) -> Result<(), AuthError> {
    for rule in required {
        let same = |v: &Value| {
            rule.accepted.iter().any(|a| match (a, v) {
                (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
                _ => a == v,
            })
        };
        let ok = match lookup(claims, &rule.path) {
            None | Some(Value::Null) => {
                return Err(invalid(format!("the token lacks the required claim `{}`", rule.name)));
            }
            Some(Value::Array(items)) => items.iter().any(same),
            Some(v) => same(v),
        };
        if !ok {
            return Err(invalid(format!("the token's `{}` claim does not have a required value", rule.name)));
        }
    }
    Ok(())
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, with the
/// `application/` prefix optional.
fn typ_is(typ: &str, want: &str) -> bool {
    let typ = typ.get(..12).filter(|p| p.eq_ignore_ascii_case("application/")).map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case(want)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = B64.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
            _ => Err(invalid(format!("the `{name}` claim is not a valid time"))),
        },
        Some(_) => Err(invalid(format!("the `{name}` claim is not a number"))),
    }
}

/// Follows a dot path (`realm_access.roles`); a top-level claim whose name contains dots
/// is found too (`https://example.com/roles`).
fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    if path.len() > 1
        && let Some(v) = claims.get(&path.join("."))
    {
        return Some(v);
    }
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim value as one header value: scalars as text, lists joined with commas.
fn header_string(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(scalar_string).collect();
            Some(parts.join(","))
        }
        Value::Object(_) => Some(v.to_string()),
        other => scalar_string(other),
    }
}

fn string_list(items: &[Value]) -> Option<Vec<String>> {
    items.iter().map(|v| v.as_str().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_a_media_type() {
        for t in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
            assert!(typ_is(t, "at+jwt"), "{t}");
        }
        for t in ["JWT", "at+jwt ", "application/jwt", "text/at+jwt", "", "applicatio"] {
            assert!(!typ_is(t, "at+jwt"), "{t}");
        }
    }
}
