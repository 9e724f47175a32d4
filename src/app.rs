//! The shared state of a running Gatehouse: validated config, verifiers, the upstream
//! client, the auth API (when `[tokens]` is configured) and metrics. Built once by [`crate::run`].

use std::sync::Arc;

use crate::api::AuthApi;
use crate::auth::Auth;
use crate::config::Config;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

pub struct App {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub upstream: Upstream,
    pub metrics: Metrics,
    /// The auth API, its state and its router: present exactly when Gatehouse issues tokens.
    pub auth_api: Option<AuthApi>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(config);
        let auth = Arc::new(Auth::build(&config).await?);
        let auth_api = AuthApi::build(&config, &auth).await?;
        let upstream = Upstream::new(&config.upstream)?;
        Ok(Arc::new(App { config, auth, upstream, metrics: Metrics::new(), auth_api }))
    }
}
