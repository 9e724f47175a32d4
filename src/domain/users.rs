//! Creating an account: the one path behind `POST /auth/register` and `gatehouse user
//! create`, so both check the same fields and store the same hash.

use serde_json::{Map, Value};

use super::{DomainError, validate};
use crate::auth::password::Passwords;
use crate::config::AccountsConfig;
use crate::error::ApiError;
use crate::store::{NewUser, Store, User};

/// The largest `profile` object kept: app data, not a document store.
const MAX_PROFILE_BYTES: usize = 8 * 1024;

/// An account as asked for, unchecked. `role` and `permissions` default to
/// `accounts.default_role` and `accounts.default_permissions`.
#[derive(Default)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub profile: Map<String, Value>,
    pub role: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub team_id: Option<String>,
}

/// Checks every field (errors name it), hashes the password and stores the account.
pub async fn create(
    store: &dyn Store,
    passwords: &Passwords,
    cfg: &AccountsConfig,
    new: NewAccount,
    now: i64,
) -> Result<User, DomainError> {
    let email = validate::email(&new.email)?;
    validate::password("password", &new.password, cfg)?;
    let username = new.username.as_deref().map(validate::username).transpose()?;
    let name = validate::text("name", new.name, 200)?;
    let first_name = validate::text("first_name", new.first_name, 100)?;
    let last_name = validate::text("last_name", new.last_name, 100)?;
    let phone = validate::text("phone", new.phone, 40)?;
    if Value::Object(new.profile.clone()).to_string().len() > MAX_PROFILE_BYTES {
        return Err(ApiError::validation("profile", "is larger than 8 KiB").into());
    }
    let password_hash = passwords.hash(&new.password).await?;
    let user = store
        .create_user(NewUser {
            id: super::new_id(),
            email,
            username,
            name,
            first_name,
            last_name,
            phone,
            profile: new.profile,
            password_hash,
            role: new.role.unwrap_or_else(|| cfg.default_role.clone()),
            permissions: new.permissions.unwrap_or_else(|| cfg.default_permissions.clone()),
            team_id: new.team_id,
            now,
        })
        .await?;
    Ok(user)
}
