//! Observability: the tracing subscriber (JSON or text) and the Prometheus metrics served
//! at `/metrics`. The access-log line is the request context's ([`crate::context`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{LogConfig, LogFormat};
use crate::context::RequestContext;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    status: u16,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// Prometheus metrics. Label sets are small and fixed (status x error code, issuers).
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    jwks_fetches: Family<IssuerLabels, Gauge>,
    jwks_ready: Family<IssuerLabels, Gauge>,
    store_operations: Family<OpLabels, Gauge>,
    api_key_cache: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    config_last_success: Gauge,
    config_last_ok: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register("requests", "Requests handled, by status and error code", requests.clone());
        let latency = Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0]);
        registry.register("request_duration_seconds", "Time from request to response headers", latency.clone());
        let jwks_fetches = Family::<IssuerLabels, Gauge>::default();
        registry.register("jwks_fetches", "JWKS documents fetched per issuer since start", jwks_fetches.clone());
        let jwks_ready = Family::<IssuerLabels, Gauge>::default();
        registry.register("jwks_ready", "1 when the issuer's key set is loaded and fresh", jwks_ready.clone());
        let store_operations = Family::<OpLabels, Gauge>::default();
        registry.register(
            "store_operations",
            "Store operations run since start, by operation",
            store_operations.clone(),
        );
        let api_key_cache = Gauge::default();
        registry.register("api_key_cache_entries", "API keys and PATs held in the lookup cache", api_key_cache.clone());
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register("config_reloads", "Config reloads, by result (success or failure)", config_reloads.clone());
        let config_last_success = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start or the last successful reload), Unix time",
            config_last_success.clone(),
        );
        let config_last_ok = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload (or the start) succeeded, 0 when it was refused",
            config_last_ok.clone(),
        );
        // The config loaded at start is the first success.
        config_last_success.set(crate::clock::now_secs() as i64);
        config_last_ok.set(1);
        for result in ["success", "failure"] {
            config_reloads.get_or_create(&ResultLabels { result }).get();
        }
        Metrics {
            registry,
            requests,
            latency,
            jwks_fetches,
            jwks_ready,
            store_operations,
            api_key_cache,
            config_reloads,
            config_last_success,
            config_last_ok,
        }
    }

    /// Counts a reload; a success also moves the last-success timestamp.
    pub fn config_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads.get_or_create(&ResultLabels { result }).inc();
        self.config_last_ok.set(i64::from(ok));
        if ok {
            self.config_last_success.set(crate::clock::now_secs() as i64);
        }
    }

    pub fn observe(&self, log: &RequestContext, elapsed: Duration) {
        self.requests.get_or_create(&OutcomeLabels { status: log.status, code: log.error.unwrap_or("") }).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Renders the text exposition format, refreshing the key-set gauges first.
    pub fn render(&self, auth: &crate::auth::Auth) -> String {
        // Issuers a reload removed must not linger as series.
        self.jwks_fetches.clear();
        self.jwks_ready.clear();
        for issuer in auth.jwt.issuers() {
            let labels = IssuerLabels { issuer: issuer.name.clone() };
            self.jwks_fetches.get_or_create(&labels).set(issuer.keys.fetches.load(Ordering::Relaxed) as i64);
            self.jwks_ready.get_or_create(&labels).set(i64::from(issuer.keys.is_ready()));
        }
        if let Some(issued) = &auth.issued {
            for (op, n) in issued.store.query_counts() {
                self.store_operations.get_or_create(&OpLabels { op }).set(n as i64);
            }
            self.api_key_cache.set(issued.keys.cached() as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
