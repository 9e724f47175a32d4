//! `POST /auth/register`: create an account and start its first session (201).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Accounts;
use super::extract::{ApiResult, ClientIp, Json, rate_limit};
use super::session;
use crate::domain::users::{self, NewAccount};
use crate::error::ApiError;

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
    rate_limit(&acc, ip).await?;
    if !acc.config.accounts.registration {
        return Err(ApiError::RegistrationClosed.into());
    }
    let now = crate::clock::now_secs() as i64;
    let new = NewAccount {
        email: body.email,
        password: body.password,
        username: body.username,
        name: body.name.or(body.full_name),
        first_name: body.first_name,
        last_name: body.last_name,
        phone: body.phone,
        profile: body.profile.unwrap_or_default(),
        ..NewAccount::default()
    };
    let user = users::create(acc.store.as_ref(), &acc.passwords, &acc.config.accounts, new, now).await?;
    super::verify_email::send_later(&acc, user.clone());
    let body = session::start(&acc, &user, now).await?;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}
