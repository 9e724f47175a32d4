//! Field checks shared by the auth API's handlers and the CLI; each error names its field.

use crate::config::AccountsConfig;
use crate::error::ApiError;

pub fn email(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let valid = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && v.matches('@').count() == 1;
    if valid { Ok(v.to_string()) } else { Err(ApiError::validation("email", "is not a valid email address")) }
}

pub fn username(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let ok_len = (3..=32).contains(&v.chars().count());
    let ok_chars = v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok_len || !ok_chars {
        return Err(ApiError::validation("username", "must be 3 to 32 letters, digits, `_`, `.` or `-`"));
    }
    if v.contains('@') {
        return Err(ApiError::validation("username", "must not contain `@`"));
    }
    Ok(v.to_string())
}

pub fn password(field: &str, value: &str, cfg: &AccountsConfig) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < cfg.min_password_length || value.len() > cfg.max_password_length {
        return Err(ApiError::validation(
            field,
            format!("must be {} to {} characters", cfg.min_password_length, cfg.max_password_length),
        ));
    }
    Ok(())
}

/// An optional free-text field: trimmed, at most `max` characters, no control characters.
pub fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(|v| v.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(ApiError::validation(field, format!("must be at most {max} characters without control characters")))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// A required display name (of a key, token or client): 1 to 100 characters.
pub fn name(value: &str) -> Result<String, ApiError> {
    text("name", Some(value.to_string()), 100)?.ok_or_else(|| ApiError::validation("name", "must not be empty"))
}

/// A list of permission names: each becomes part of a comma-separated header and a
/// space-separated OAuth `scope`, so neither separator (nor control characters) may appear.
pub fn scopes(field: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    if values.len() > 100 {
        return Err(ApiError::validation(field, "must hold at most 100 entries"));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let ok = !v.is_empty() && v.len() <= 128 && !v.chars().any(|c| c == ',' || c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ApiError::validation(
                field,
                format!("`{v}` must be 1 to 128 characters without spaces or commas"),
            ));
        }
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}
