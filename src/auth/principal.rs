//! The verified caller: who they are, how they proved it, what they may do. Built once per
//! credential and shared (`Arc`) by the caches and every request that presents it.

use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};

/// How the caller authenticated; the value of the `X-Auth-Method` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Pat,
    ClientCredentials,
    /// A browser session cookie (`[session]`).
    Session,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Pat => "pat",
            AuthMethod::ClientCredentials => "client_credentials",
            AuthMethod::Session => "session",
        }
    }
}

/// What sort of party the subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ApiKey,
    Pat,
    Client,
}

#[derive(Debug)]
pub struct Principal {
    pub subject: String,
    pub kind: PrincipalKind,
    pub method: AuthMethod,
    pub email: Option<String>,
    /// Whether the issuer vouches that the subject controls `email` (Gatehouse: a verification
    /// link or a password reset; other issuers: their `email_verified` claim).
    pub email_verified: bool,
    pub name: Option<String>,
    /// The role claim; a list when the issuer sends several (Keycloak, Azure AD).
    pub roles: Vec<String>,
    pub team_id: Option<String>,
    pub permissions: Vec<String>,
    pub token_id: Option<String>,
    /// The refresh family (`sid` claim) of a Gatehouse session, for session-wide revocation.
    pub session_id: Option<String>,
    /// `iat`, unix seconds.
    pub issued_at: Option<u64>,
    pub issuer: String,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// Values of the configured claim -> header mappings, in config order.
    pub mapped_claims: Vec<Option<String>>,
    /// The identity headers, rendered by the inject stage the first time they are needed.
    pub rendered: OnceLock<Vec<(HeaderName, HeaderValue)>>,
}

impl Principal {
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}
