//! Gatehouse: an authentication sidecar. It verifies the credential on every request,
//! enforces the route table, injects identity headers and forwards to the protected app.
//!
//! Layout, in the order a request meets it:
//! - [`server`]: listener, HTTP/1 and HTTP/2, idle limits, graceful shutdown; [`tls`]: its
//!   certificates; [`peer`]:
//!   who is on the other end; [`context`]: the per-request context and its access-log line;
//! - [`proxy`]: the pipeline, its stages listed in order in its module doc. Stage 1 sends a
//!   request to [`builtin`] (health, readiness, metrics, JWKS, discovery), to forward-auth
//!   ([`proxy::forward_auth`]), to the auth API ([`api`]) or on through stages 2 to 7;
//! - [`routes`]: the compiled route table, canonical paths and hosts; [`auth`]: credential
//!   extraction and verification, and what Gatehouse issues itself; [`upstream`]: the pooled
//!   client to the app; [`body`]: the one response body type;
//! - [`api`]: the auth API's handlers and its state; [`domain`]: accounts, clients and token
//!   claims, shared with the CLI; [`store`]: SQLite or Postgres; [`limits`]: per-IP rate
//!   limits; [`mail`]: SMTP or an outbox directory; [`session`]: browser sessions (sign-in
//!   redirects so far);
//! - [`app`]: the shared state, one generation per config; [`reload`]: SIGHUP and file
//!   changes swap in the next; [`config`]: the validated configuration;
//!   [`error`]: errors and their HTTP mapping; [`clock`]: the one reader of time;
//!   [`telemetry`]: the log subscriber and metrics.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod builtin;
pub mod clock;
pub mod config;
pub mod context;
pub mod domain;
pub mod error;
pub mod limits;
pub mod mail;
pub mod peer;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use config::Config;

/// Runs Gatehouse on an already-bound listener until `shutdown` resolves, then drains.
/// This is the seam every test uses: bind `127.0.0.1:0`, pass the listener, pass a future.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    serve(listener, config, None, shutdown).await
}

/// As [`run`], with the config following the file at `path` (see [`reload`]): `SIGHUP`, or
/// a change of the file or of the certificate files it names, swaps in its new content.
pub async fn run_reloading(
    listener: TcpListener,
    config: Config,
    path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve(listener, config, Some(path), shutdown).await
}

async fn serve(
    listener: TcpListener,
    config: Config,
    reload_from: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    install_crypto_provider();
    // Bound before anything starts, so a taken port fails the start with nothing to stop.
    let metrics = match config.server.metrics_listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("server.metrics_listen {addr}: {e}"))?)
        }
        None => None,
    };
    let first = app::App::build(config).await?;
    let process = first.process.clone();
    tracing::info!(listen = %listener.local_addr()?, upstream = %first.config.upstream.url, tls = first.tls.is_some(), "gatehouse is serving");
    let live = Arc::new(app::Live::new(first));
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(metrics) = metrics {
        tracing::info!(listen = %metrics.local_addr()?, "metrics are served on their own listener");
        let stopped = async {
            let _ = metrics_stopped.await;
        };
        process.adopt([tokio::spawn(server::serve(metrics, live.clone(), server::Role::Metrics, stopped))]);
    }
    if let Some(path) = reload_from {
        process.adopt([tokio::spawn(reload::follow(live.clone(), path))]);
    }
    // Kubernetes keeps sending traffic until the endpoint update reaches every node: say
    // "not ready" at once, keep serving for `server.shutdown_delay`, then close and drain.
    let draining = async {
        shutdown.await;
        process.start_draining();
        let delay = live.current().config.server.shutdown_delay;
        if !delay.is_zero() {
            tracing::info!(delay = ?delay, "shutting down: /readyz answers 503; serving until the delay ends");
            tokio::time::sleep(delay).await;
        }
    };
    server::serve(listener, live.clone(), server::Role::Main, draining).await;
    let _ = stop_metrics.send(());
    process.stop_tasks();
    // Key uses since the last batch would otherwise be lost with the process.
    if let Some(keys) = live.current().auth.api_keys() {
        keys.flush_usage_once().await;
    }
    Ok(())
}

/// rustls (through reqwest) needs one process-wide provider; aws-lc-rs is the only one built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
