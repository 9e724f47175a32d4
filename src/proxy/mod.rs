//! The request pipeline. Every request walks these stages, in this order:
//!
//! 1. **classify** (here): Gatehouse's own endpoints (health, readiness, metrics, JWKS,
//!    forward-auth) are answered directly; everything else is a proxied request.
//! 2. **sanitise** ([`inject::strip`]): every configured identity header is removed from the
//!    request, whatever happens next; the path is canonicalised for matching.
//! 3. **authenticate** ([`identify`]): credential -> verified [`Principal`].
//! 4. **authorize** ([`authorize`]): the first route rule matching (host, method, path).
//! 5. **inject** ([`inject::inject`]): verified identity headers are added.
//! 6. **forward** ([`forward`]): hop-by-hop headers dropped, `X-Forwarded-*` set, bodies
//!    streamed, upgrades spliced.
//! 7. **respond** ([`respond`]): errors become the one JSON shape; the request id is set and
//!    one access-log line written.
//!
//! [`Principal`]: crate::auth::principal::Principal

pub mod authorize;
pub mod forward;
pub mod forward_auth;
pub mod identify;
pub mod inject;
pub mod respond;

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::app::App;
use crate::body::Body;
use crate::error::Error;
use crate::routes::{Access, canonical_path};
use crate::telemetry::AccessLog;
pub use forward::Peer;

/// Handles one request from a client connection. Never fails: every error is a response.
pub async fn handle(
    app: Arc<App>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let started = Instant::now();
    let mut log = AccessLog::start(&req, peer, &app.config.server);
    let resp = match crate::api::route(&app, &req, &mut log).await {
        Some(resp) => resp,
        None if is_accounts_path(&app, req.uri().path()) => accounts(&app, req, &log).await,
        None => proxy(&app, peer, req, &mut log).await.unwrap_or_else(|e| {
            log.error = Some(e.code());
            e.to_response()
        }),
    };
    Ok(respond::finish(resp, &mut log, &app, started))
}

fn is_accounts_path(app: &App, path: &str) -> bool {
    app.accounts.is_some()
        && path
            .strip_prefix(app.config.accounts.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The auth API: handed to its axum router with the client IP attached.
async fn accounts(app: &Arc<App>, req: Request<Incoming>, log: &AccessLog) -> Response<Body> {
    use tower::ServiceExt;
    let mut req = req.map(axum::body::Body::new);
    req.extensions_mut().insert(crate::api::extract::ClientIp(log.client_ip));
    let resp = match crate::api::accounts_router(app.clone()).oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    crate::api::extract::into_body(resp)
}

/// Stages 2 to 6 for a request bound for the upstream.
async fn proxy(
    app: &App,
    peer: Peer,
    mut req: Request<Incoming>,
    log: &mut AccessLog,
) -> Result<Response<Body>, Error> {
    let headers_cfg = &app.config.headers;
    let stripped = inject::strip(req.headers_mut(), headers_cfg);
    if stripped > 0 {
        tracing::debug!(request_id = %log.request_id, stripped, "removed client-sent identity headers");
    }
    let path = canonical_path(req.uri().path())?;
    let host = request_host(&req);
    let access = app.config.routes.access(&host, req.method(), &path);

    let principal = match identify::identify(&app.auth, req.headers(), log.client_ip).await {
        Ok(p) => p,
        // On a public route a bad credential is ignored: the caller is simply anonymous.
        Err(_) if *access == Access::Public => None,
        Err(e) => return Err(e.into()),
    };
    let principal = authorize::verified_email(&app.config, access, principal)?;
    authorize::authorize(access, principal.as_deref())?;

    if let Some(p) = &principal {
        log.principal(p);
        inject::inject(req.headers_mut(), p, headers_cfg);
    }
    if !headers_cfg.forward_authorization {
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    if let Some(keys) = &app.auth.keys
        && !app.config.api_keys.forward_header
    {
        req.headers_mut().remove(keys.header());
    }
    if let Ok(v) = HeaderValue::from_str(&log.request_id) {
        req.headers_mut().insert(respond::X_REQUEST_ID.clone(), v);
    }
    Ok(app.upstream.forward(req, peer).await?)
}

/// The Host a request was sent to, lowercased, without the port.
pub fn request_host<B>(req: &Request<B>) -> String {
    let raw = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
    strip_port(raw).to_ascii_lowercase()
}

pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}
