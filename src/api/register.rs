//! `POST /auth/register`: create an account and start its first session (201).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Accounts;
use super::extract::{ApiResult, ClientIp, Json, rate_limit};
use super::{session, validate};
use crate::error::ApiError;
use crate::store::NewUser;

#[derive(Deserialize)]
pub struct Register {
    email: String,
    password: String,
    username: Option<String>,
    name: Option<String>,
    /// Seed 002 calls it `full_name`.
    full_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    profile: Option<Map<String, Value>>,
}

pub async fn register(State(acc): State<Arc<Accounts>>, ip: ClientIp, Json(body): Json<Register>) -> ApiResult {
    rate_limit(&acc, ip)?;
    let cfg = &acc.config.accounts;
    if !cfg.registration {
        return Err(ApiError::RegistrationClosed.into());
    }
    let email = validate::email(&body.email)?;
    validate::password("password", &body.password, cfg)?;
    let username = body.username.as_deref().map(validate::username).transpose()?;
    let name = validate::text("name", body.name.or(body.full_name), 200)?;
    let first_name = validate::text("first_name", body.first_name, 100)?;
    let last_name = validate::text("last_name", body.last_name, 100)?;
    let phone = validate::text("phone", body.phone, 40)?;
    let profile = body.profile.unwrap_or_default();
    if Value::Object(profile.clone()).to_string().len() > 8 * 1024 {
        return Err(ApiError::validation("profile", "is larger than 8 KiB").into());
    }
    let password_hash = acc.passwords.hash(&body.password).await.map_err(ApiError::from)?;
    let now = crate::clock::now_secs() as i64;
    let user = acc
        .store
        .create_user(NewUser {
            id: session::new_id(),
            email,
            username,
            name,
            first_name,
            last_name,
            phone,
            profile,
            password_hash,
            role: cfg.default_role.clone(),
            permissions: cfg.default_permissions.clone(),
            team_id: None,
            now,
        })
        .await
        .map_err(ApiError::from)?;
    super::verify_email::send_later(&acc, user.clone());
    let body = session::start(&acc, &user, now).await?;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}
