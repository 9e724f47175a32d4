//! Stage 2, authorize: hold the principal (or its absence) against the route's rule.

use crate::auth::principal::Principal;
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
