//! The shared state of a running Gatehouse: validated config, verifiers, the upstream
//! client, the accounts machinery and metrics. Built once by [`crate::run`].

use std::sync::Arc;

use aws_lc_rs::hmac;

use crate::auth::Auth;
use crate::auth::password::Passwords;
use crate::config::Config;
use crate::limits::Limiter;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

pub struct App {
    pub config: Config,
    pub auth: Auth,
    pub upstream: Upstream,
    pub metrics: Metrics,
    /// Present when `[tokens]` is configured: the auth API and its store.
    pub accounts: Option<Accounts>,
}

pub struct Accounts {
    pub store: Arc<dyn Store>,
    pub passwords: Passwords,
    pub limiter: Arc<Limiter>,
    /// `POST /auth/token`, per client IP, at the same rate but with its own quota: machine
    /// clients fetching tokens and people logging in from one address do not starve each other.
    pub token_limiter: Arc<Limiter>,
    pub mailer: crate::mail::Mailer,
    /// Derives a refresh token's child from it (see `api::session`).
    pub refresh_key: hmac::Key,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Arc<Self>> {
        let store: Option<Arc<dyn Store>> = match &config.tokens {
            Some(_) => Some(Arc::new(crate::store::SqlStore::connect(&config.store.url).await?)),
            None => None,
        };
        let auth = Auth::build(&config, store.clone()).await?;
        let accounts = match (store, &auth.own) {
            (Some(store), Some(own)) => Some(Accounts {
                store,
                passwords: Passwords::new(config.accounts.hash_concurrency),
                limiter: Limiter::per_minute(config.rate_limit.login_per_minute),
                token_limiter: Limiter::per_minute(config.rate_limit.login_per_minute),
                mailer: crate::mail::Mailer::from_config(&config)?,
                refresh_key: hmac::Key::new(hmac::HMAC_SHA256, &own.refresh_secret().await?),
            }),
            _ => None,
        };
        let upstream = Upstream::new(&config.upstream);
        Ok(Arc::new(App { config, auth, upstream, metrics: Metrics::new(), accounts }))
    }

    /// The accounts machinery; only called from the auth API, which exists only with it.
    pub fn accounts(&self) -> &Accounts {
        self.accounts.as_ref().expect("the auth API is routed only when accounts are set up")
    }
}
