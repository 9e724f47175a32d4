//! Stage 4, authorize: hold the principal (or its absence) against the route's rule.

use std::sync::Arc;

use crate::auth::principal::{Principal, PrincipalKind};
use crate::config::Config;
use crate::error::{AccessError, AuthError, Error};
use crate::routes::Access;

/// `principal` is `None` when the request carried no credential.
pub fn authorize(access: &Access, principal: Option<&Principal>) -> Result<(), Error> {
    let Access::Authenticated { permissions, roles } = access else {
        return Ok(());
    };
    let Some(principal) = principal else {
        return Err(AuthError::MissingCredentials.into());
    };
    let missing: Vec<String> = permissions.iter().filter(|p| !principal.has_permission(p)).cloned().collect();
    if !missing.is_empty() {
        return Err(AccessError::InsufficientScope { missing }.into());
    }
    if !roles.is_empty() && !roles.iter().any(|r| principal.has_role(r)) {
        return Err(AccessError::MissingRole { roles: roles.clone() }.into());
    }
    Ok(())
}

/// `accounts.require_verified_email`: a user credential Gatehouse issued (session token, API
/// key, PAT) with an unverified email proves nothing yet. On a public route the caller is
/// then anonymous, as with any credential that is not accepted there.
pub fn verified_email(
    config: &Config,
    access: &Access,
    principal: Option<Arc<Principal>>,
) -> Result<Option<Arc<Principal>>, Error> {
    let Some(p) = principal else { return Ok(None) };
    let own = config.tokens.as_ref().is_some_and(|t| t.issuer == p.issuer);
    let unverified = p.email.is_some() && !p.email_verified && p.kind != PrincipalKind::Client;
    if !(config.accounts.require_verified_email && own && unverified) {
        return Ok(Some(p));
    }
    match access {
        Access::Public => Ok(None),
        Access::Authenticated { .. } => Err(AccessError::EmailNotVerified.into()),
    }
}
