//! The auth API under `accounts.prefix`: accounts, sessions, keys and OAuth2 clients, one
//! file per resource, routed by axum. [`AuthApi`] is its state, whole or absent.

pub mod api_keys;
pub mod client_auth;
pub mod clients;
pub mod extract;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod me;
pub mod password;
pub mod refresh;
pub mod register;
pub mod revoke;
pub mod session;
pub mod token;
pub mod verify_email;

use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::routing::{delete, get, post};

use crate::auth::Auth;
use crate::auth::api_key::ApiKeys;
use crate::auth::own_keys::OwnKeys;
use crate::auth::password::Passwords;
use crate::config::{Config, TokensConfig};
use crate::error::{Error, RequestError};
use crate::limits::SharedLimiter;
use crate::mail::Mailer;
use crate::store::Store;

/// Everything the auth API's handlers use. Built only beside [`crate::auth::Issued`], so no
/// handler can meet a missing part.
pub struct Accounts {
    pub config: Arc<Config>,
    /// The verifiers, for the bearer credential of a request and for revocations.
    pub auth: Arc<Auth>,
    pub tokens: TokensConfig,
    pub store: Arc<dyn Store>,
    pub own: Arc<OwnKeys>,
    pub keys: Arc<ApiKeys>,
    pub passwords: Passwords,
    /// Login, register, password reset and email verification, per client IP; across the
    /// cluster when replicas share the store.
    pub limiter: Arc<SharedLimiter>,
    /// `POST /auth/token`, per client IP, at the same rate but with its own quota: machine
    /// clients fetching tokens and people logging in from one address do not starve each other.
    pub token_limiter: Arc<SharedLimiter>,
    pub mailer: Mailer,
    /// Derives a refresh token's child from it (see [`session`]).
    pub refresh_key: hmac::Key,
}

/// The mounted auth API: its state and the router, built once at start.
pub struct AuthApi {
    pub accounts: Arc<Accounts>,
    router: axum::Router,
}

impl AuthApi {
    /// `None` when Gatehouse issues no tokens (no `[tokens]`): then there is no auth API.
    /// On a reload `previous` is the API being replaced: its limiters, and the addresses they
    /// have counted, carry over while `[rate_limit]` is unchanged.
    pub async fn build(
        config: &Arc<Config>,
        auth: &Arc<Auth>,
        previous: Option<&AuthApi>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(issued) = &auth.issued else { return Ok(None) };
        let (limiter, token_limiter) = match previous {
            Some(p) if p.accounts.config.rate_limit == config.rate_limit => {
                (p.accounts.limiter.clone(), p.accounts.token_limiter.clone())
            }
            _ => (
                SharedLimiter::new("auth", config.rate_limit.login_per_minute, &issued.store),
                SharedLimiter::new("token", config.rate_limit.login_per_minute, &issued.store),
            ),
        };
        let accounts = Arc::new(Accounts {
            config: config.clone(),
            auth: auth.clone(),
            tokens: issued.tokens.clone(),
            store: issued.store.clone(),
            own: issued.own.clone(),
            keys: issued.keys.clone(),
            passwords: Passwords::new(config.accounts.hash_concurrency),
            limiter,
            token_limiter,
            mailer: Mailer::from_config(config)?,
            refresh_key: hmac::Key::new(hmac::HMAC_SHA256, &issued.own.refresh_secret().await?),
        });
        let router = router(&config.accounts.prefix, accounts.clone());
        Ok(Some(AuthApi { accounts, router }))
    }

    /// Whether `path` is the auth API's: the prefix itself or anything below it.
    pub fn owns(&self, path: &str) -> bool {
        path.strip_prefix(self.accounts.config.accounts.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The router, to be called once per request (a clone shares the routes).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The per-IP limiters forget idle addresses (and their full buckets in a shared store);
    /// limiters carried over from `previous` already have their tasks.
    pub fn spawn_maintenance(&self, previous: Option<&AuthApi>) -> Vec<tokio::task::JoinHandle<()>> {
        let carried = |l: &Arc<SharedLimiter>| {
            previous.is_some_and(|p| Arc::ptr_eq(&p.accounts.limiter, l) || Arc::ptr_eq(&p.accounts.token_limiter, l))
        };
        [&self.accounts.limiter, &self.accounts.token_limiter]
            .into_iter()
            .filter(|l| !carried(l))
            .flat_map(|l| l.spawn_maintenance())
            .collect()
    }
}

/// The auth API's router, under `prefix`. Unknown paths and methods answer in the error
/// shape too.
fn router(p: &str, accounts: Arc<Accounts>) -> axum::Router {
    let not_found = || async { Error::from(RequestError::NotFound) };
    let not_allowed = || async { Error::from(RequestError::MethodNotAllowed) };
    axum::Router::new()
        .route(&format!("{p}/register"), post(register::register))
        .route(&format!("{p}/login"), post(login::login))
        .route(&format!("{p}/refresh"), post(refresh::refresh))
        .route(&format!("{p}/logout"), post(logout::logout))
        .route(&format!("{p}/me"), get(me::get).patch(me::patch))
        .route(&format!("{p}/forgot-password"), post(password::forgot))
        .route(&format!("{p}/reset-password"), post(password::reset))
        .route(&format!("{p}/change-password"), post(password::change))
        .route(&format!("{p}/verify-email"), post(verify_email::verify))
        .route(&format!("{p}/verify-email/resend"), post(verify_email::resend))
        .route(&format!("{p}/api-keys"), post(api_keys::create_api_key).get(api_keys::list_api_keys))
        .route(&format!("{p}/api-keys/{{id}}"), delete(api_keys::delete_api_key))
        .route(&format!("{p}/tokens"), post(api_keys::create_pat).get(api_keys::list_pats))
        .route(&format!("{p}/tokens/{{id}}"), delete(api_keys::delete_pat))
        .route(&format!("{p}/token"), post(token::token))
        .route(&format!("{p}/introspect"), post(introspect::introspect))
        .route(&format!("{p}/revoke"), post(revoke::revoke))
        .route(&format!("{p}/clients"), post(clients::create).get(clients::list))
        .route(&format!("{p}/clients/{{id}}"), delete(clients::delete))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(accounts)
}
