//! `GET /auth/me` and `PATCH /auth/me`: the caller's own profile.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Accounts;
use super::extract::{ApiResult, Caller, Holder, Json};
use super::session;
use crate::domain::validate;
use crate::error::ApiError;
use crate::store::ProfileUpdate;

pub async fn get(State(acc): State<Arc<Accounts>>, Holder(p): Holder) -> ApiResult {
    let user = acc.store.user_by_id(&p.subject).await?.ok_or(ApiError::NoAccount)?;
    Ok(axum::Json(session::user_json(&user)).into_response())
}

/// Fields a user may change. `null` clears an optional field. Email, role and permissions
/// are not self-service.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    #[serde(default, deserialize_with = "nullable")]
    username: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    full_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    profile: Option<Map<String, Value>>,
    /// Seed 002's profile fields, kept in `profile`.
    skills: Option<Vec<String>>,
    experience_years: Option<u32>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn text(field: &str, v: Option<Option<String>>, max: usize) -> Result<Option<Option<String>>, ApiError> {
    v.map(|inner| validate::text(field, inner, max)).transpose()
}

pub async fn patch(State(acc): State<Arc<Accounts>>, Caller(p): Caller, Json(body): Json<Patch>) -> ApiResult {
    let username = match body.username {
        Some(Some(u)) => Some(Some(validate::username(&u)?)),
        other => other,
    };
    let mut profile = body.profile;
    if body.skills.is_some() || body.experience_years.is_some() {
        let map = profile.get_or_insert_with(Map::new);
        if let Some(skills) = body.skills {
            map.insert("skills".into(), Value::from(skills));
        }
        if let Some(years) = body.experience_years {
            map.insert("experience_years".into(), Value::from(years));
        }
    }
    if profile.as_ref().is_some_and(|p| Value::Object(p.clone()).to_string().len() > 8 * 1024) {
        return Err(ApiError::validation("profile", "is larger than 8 KiB").into());
    }
    let update = ProfileUpdate {
        username,
        name: text("name", body.name.or(body.full_name), 200)?,
        first_name: text("first_name", body.first_name, 100)?,
        last_name: text("last_name", body.last_name, 100)?,
        phone: text("phone", body.phone, 40)?,
        profile,
    };
    let now = crate::clock::now_secs() as i64;
    let user = acc.store.update_profile(&p.subject, &update, now).await?;
    Ok(axum::Json(session::user_json(&user)).into_response())
}
