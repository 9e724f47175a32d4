//! The shared state of a running Gatehouse: validated config, verifiers, the upstream
//! client and metrics. Built once by [`crate::run`]; every request borrows it.

use crate::auth::Auth;
use crate::config::Config;
use crate::proxy::forward::Upstream;
use crate::telemetry::Metrics;

pub struct App {
    pub config: Config,
    pub auth: Auth,
    pub upstream: Upstream,
    pub metrics: Metrics,
}

impl App {
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let auth = Auth::build(&config)?;
        let upstream = Upstream::new(&config.upstream);
        Ok(App {
            config,
            auth,
            upstream,
            metrics: Metrics::new(),
        })
    }
}
