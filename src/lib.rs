//! Gatehouse: an authentication sidecar. It verifies the credential on every request,
//! enforces the route table, injects identity headers and forwards to the protected app.
//!
//! Layout, in the order a request meets it:
//! - [`server`]: listener, TLS, HTTP/1 and HTTP/2, idle limits, graceful shutdown; [`peer`]:
//!   who is on the other end; [`context`]: the per-request context and its access-log line;
//! - [`proxy`]: the pipeline, its stages listed in order in its module doc. Stage 1 sends a
//!   request to [`builtin`] (health, readiness, metrics, JWKS, discovery), to forward-auth
//!   ([`proxy::forward_auth`]), to the auth API ([`api`]) or on through stages 2 to 7;
//! - [`routes`]: the compiled route table, canonical paths and hosts; [`auth`]: credential
//!   extraction and verification, and what Gatehouse issues itself; [`upstream`]: the pooled
//!   client to the app; [`body`]: the one response body type;
//! - [`api`]: the auth API's handlers and its state; [`domain`]: accounts, clients and token
//!   claims, shared with the CLI; [`store`]: SQLite or Postgres; [`limits`]: per-IP rate
//!   limits; [`mail`]: SMTP or an outbox directory;
//! - [`app`]: the shared state, built once; [`config`]: the validated configuration;
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
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use tokio::net::TcpListener;

pub use config::Config;

/// Runs Gatehouse on an already-bound listener until `shutdown` resolves, then drains.
/// This is the seam every test uses: bind `127.0.0.1:0`, pass the listener, pass a future.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    install_crypto_provider();
    let tls = config.server.tls.as_ref().map(server::tls_acceptor).transpose()?;
    let app = app::App::build(config).await?;
    let mut maintenance = app.auth.spawn_maintenance(&app.config);
    if let Some(api) = &app.auth_api {
        maintenance.extend(api.spawn_maintenance());
    }
    tracing::info!(listen = %listener.local_addr()?, upstream = %app.config.upstream.url, tls = tls.is_some(), "gatehouse is serving");
    let keys = app.auth.api_keys().cloned();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = app.config.server.metrics_listen {
        let metrics =
            TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("server.metrics_listen {addr}: {e}"))?;
        tracing::info!(listen = %metrics.local_addr()?, "metrics are served on their own listener");
        let stopped = async {
            let _ = metrics_stopped.await;
        };
        maintenance.push(tokio::spawn(server::serve(metrics, app.clone(), None, server::Role::Metrics, stopped)));
    }
    server::serve(listener, app, tls, server::Role::Main, shutdown).await;
    let _ = stop_metrics.send(());
    for task in maintenance {
        task.abort();
    }
    // Key uses since the last batch would otherwise be lost with the process.
    if let Some(keys) = keys {
        keys.flush_usage_once().await;
    }
    Ok(())
}

/// rustls (through reqwest) needs one process-wide provider; aws-lc-rs is the only one built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
