//! The claims of Gatehouse's own access tokens, one type for every kind it signs: a user's
//! session, a client-credentials grant and the operator's `gatehouse token`.

use std::time::Duration;

use serde::Serialize;

use crate::auth::jwt::CLIENT_CREDENTIALS;
use crate::config::TokensConfig;
use crate::store::{Client, User};

/// An access token's claims: the registered ones (RFC 7519 §4.1) and what kind of caller
/// it names. The verifier reads them back through `ClaimPaths::own()`.
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(flatten)]
    pub caller: Caller<'a>,
}

/// Who the token is for; each kind serialises exactly the claims it has always carried.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Caller<'a> {
    /// A signed-in user, in session `sid`. Profile claims are present even when empty
    /// (`null`), so a resource server sees the same shape for every user.
    User {
        email: &'a str,
        email_verified: bool,
        name: Option<&'a str>,
        role: &'a str,
        permissions: &'a [String],
        team_id: Option<&'a str>,
        sid: &'a str,
    },
    /// An OAuth2 client: `sub` is its id, and `gty` makes the verifier treat it as one
    /// (X-Auth-Method: client_credentials).
    Client { client_id: &'a str, gty: &'static str, scope: String, permissions: &'a [String] },
    /// Minted by the operator: only what they gave, and an email they put in is vouched for.
    Operator {
        permissions: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        email_verified: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        team_id: Option<&'a str>,
    },
}

impl<'a> AccessClaims<'a> {
    /// A user's access token in session `sid`, valid for `tokens.access_ttl`.
    pub fn user(tokens: &'a TokensConfig, user: &'a User, sid: &'a str, now: i64) -> Self {
        AccessClaims {
            iss: &tokens.issuer,
            aud: &tokens.audience,
            sub: &user.id,
            iat: now,
            exp: now + tokens.access_ttl.as_secs() as i64,
            jti: Some(super::new_id()),
            caller: Caller::User {
                email: &user.email,
                email_verified: user.email_verified,
                name: user.name.as_deref(),
                role: &user.role,
                permissions: &user.permissions,
                team_id: user.team_id.as_deref(),
                sid,
            },
        }
    }

    /// A client's token for `scopes` (already checked against the client's), valid `ttl` s.
    pub fn client(tokens: &'a TokensConfig, client: &'a Client, scopes: &'a [String], ttl: i64, now: i64) -> Self {
        AccessClaims {
            iss: &tokens.issuer,
            aud: &tokens.audience,
            sub: &client.id,
            iat: now,
            exp: now + ttl,
            jti: Some(super::new_id()),
            caller: Caller::Client {
                client_id: &client.id,
                gty: CLIENT_CREDENTIALS,
                scope: scopes.join(" "),
                permissions: scopes,
            },
        }
    }

    /// What the operator puts in a token of their own (`gatehouse token`), valid for `ttl`.
    pub fn operator(
        tokens: &'a TokensConfig,
        sub: &'a str,
        permissions: &'a [String],
        facts: OperatorFacts<'a>,
        ttl: Duration,
        now: i64,
    ) -> Self {
        AccessClaims {
            iss: &tokens.issuer,
            aud: &tokens.audience,
            sub,
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: None,
            caller: Caller::Operator {
                permissions,
                email: facts.email,
                // The operator who mints the token vouches for the address they put in it.
                email_verified: facts.email.map(|_| true),
                role: facts.role,
                team_id: facts.team_id,
            },
        }
    }
}

/// The optional claims of an operator's token.
pub struct OperatorFacts<'a> {
    pub email: Option<&'a str>,
    pub role: Option<&'a str>,
    pub team_id: Option<&'a str>,
}
