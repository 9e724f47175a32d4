//! The request pipeline. Every request walks these stages, in this order:
//!
//! 1. **classify** (here): Gatehouse's own endpoints ([`crate::builtin`]: health, readiness,
//!    metrics, JWKS, discovery), forward-auth ([`forward_auth`]) and the auth API
//!    ([`crate::api`]) are answered directly; everything else walks stages 2 to 7.
//! 2. **sanitise** ([`sanitise`]): hop-by-hop headers and those `Connection` names, identity
//!    headers, method overrides and untrusted forwarding headers are removed, before anything
//!    reads the request; host, method and path are put in canonical form ([`crate::routes`]),
//!    and what cannot be is refused.
//! 3. **authenticate** ([`crate::auth::identify`]): credential -> verified [`Principal`].
//! 4. **authorize** ([`authorize`]): the first route rule matching (host, method, path).
//!    Stages 3 and 4 are [`admit`], shared with forward-auth.
//! 5. **inject** ([`inject::inject`]): verified identity headers are added.
//! 6. **forward** ([`crate::upstream`]): the canonical path and host are sent upstream with
//!    `X-Forwarded-*` set, bodies streamed, allowed upgrades spliced.
//! 7. **respond** ([`respond`]): errors become the one JSON shape; the request id is set and
//!    one access-log line written from the request's [`crate::context::RequestContext`].
//!
//! [`Principal`]: crate::auth::principal::Principal

pub mod authorize;
pub mod forward_auth;
pub mod inject;
pub mod respond;
pub mod sanitise;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::api::AuthApi;
use crate::app::App;
use crate::auth::principal::Principal;
use crate::body::Body;
use crate::builtin::Builtin;
use crate::context::RequestContext;
use crate::error::{Error, RequestError};
use crate::peer::Peer;
use crate::routes::Access;
use crate::upstream;

/// Handles one request from a client connection. Never fails: every error is a response.
pub async fn handle(
    app: Arc<App>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let mut ctx = RequestContext::start(&req, peer, &app.config.server);
    let resp = match classify(&app, &req) {
        Target::TooLarge => Err(RequestError::HeadersTooLarge.into()),
        Target::ForwardAuth => Ok(forward_auth::verify(&app, &req, &mut ctx).await),
        Target::Builtin(builtin) => builtin.answer(&app, &req),
        Target::AuthApi(api) => auth_api(&app, api, req, &ctx).await,
        Target::Upstream => proxy(&app, req, &mut ctx).await,
    };
    let resp = resp.unwrap_or_else(|e| {
        ctx.error = Some(e.code());
        e.to_response()
    });
    Ok(respond::finish(resp, &mut ctx, &app))
}

/// Stage 1: what a request is for. Decided on the raw path, before sanitising: Gatehouse's
/// own paths are exact, so no spelling of an upstream path can land on one of them.
enum Target<'a> {
    /// A head over `server.max_header_bytes`: refused before anything else reads it.
    TooLarge,
    /// `forward_auth.path`.
    ForwardAuth,
    /// Health, readiness, metrics, JWKS, discovery.
    Builtin(Builtin<'a>),
    /// Under `accounts.prefix`, when Gatehouse issues tokens.
    AuthApi(&'a AuthApi),
    /// Everything else: stages 2 to 7.
    Upstream,
}

fn classify<'a, B>(app: &'a App, req: &Request<B>) -> Target<'a> {
    let path = req.uri().path();
    if head_size(req) > app.config.server.max_header_bytes {
        Target::TooLarge
    } else if path == app.config.forward_auth.path {
        Target::ForwardAuth
    } else if let Some(builtin) = Builtin::at(app, path) {
        Target::Builtin(builtin)
    } else {
        match &app.auth_api {
            Some(api) if api.owns(path) => Target::AuthApi(api),
            _ => Target::Upstream,
        }
    }
}

/// The size of a request head as it came in: the target and every header line.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(1);
    req.headers().iter().fold(target, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// The auth API: handed to its router with the client IP attached.
async fn auth_api(
    app: &App,
    api: &AuthApi,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<Body>, Error> {
    use tower::ServiceExt;
    let mut req = req.map(axum::body::Body::new);
    req.extensions_mut().insert(crate::api::extract::ClientIp(ctx.client_ip));
    // A body that never arrives must not hold a hashing slot or a connection forever.
    let call = api.router().oneshot(req);
    match tokio::time::timeout(app.config.accounts.request_timeout, call).await {
        Ok(Ok(resp)) => Ok(crate::api::extract::into_body(resp)),
        Ok(Err(never)) => match never {},
        Err(_) => Err(RequestError::Timeout.into()),
    }
}

/// Stages 2 to 6 for a request bound for the upstream.
async fn proxy(app: &App, req: Request<Incoming>, ctx: &mut RequestContext) -> Result<Response<Body>, Error> {
    let upgrade = upstream::upgrade_protocol(&req, &app.config.upstream.upgrades);
    let (mut parts, body) = req.into_parts();
    let headers_cfg = &app.config.headers;
    let stripped = sanitise::request(&mut parts.headers, headers_cfg, ctx.peer.trusted);
    if stripped > 0 {
        tracing::debug!(request_id = %ctx.request_id, stripped, "removed client-sent identity headers");
    }
    if let Some(m) = sanitise::method(&parts.method) {
        parts.method = m;
    }
    let host = crate::routes::host::request_host(parts.version, &parts.uri, &parts.headers)?;
    let path = app.config.routes.canonical_path(parts.uri.path())?;
    let principal = admit(app, host.name(), &parts.method, path.matched(), &parts.headers, ctx).await?;
    let upstream_host = match host.authority() {
        "" => None,
        // The client's own Host, when it was canonical already: shared, not copied.
        a if parts.headers.get(header::HOST).is_some_and(|h| h.as_bytes() == a.as_bytes()) => {
            parts.headers.get(header::HOST).cloned()
        }
        a => HeaderValue::from_str(a).ok(),
    };

    if let Some(p) = &principal {
        inject::inject(&mut parts.headers, p, headers_cfg);
    }
    // A credential that was not accepted (ignored on a public route) is never passed on.
    if !headers_cfg.forward_authorization || principal.is_none() {
        parts.headers.remove(header::AUTHORIZATION);
    }
    if let Some(keys) = app.auth.api_keys()
        && (!app.config.api_keys.forward_header || principal.is_none())
    {
        parts.headers.remove(keys.header());
    }
    // The session cookie is Gatehouse's credential, not the app's: it never reaches the app,
    // whose own cookies pass untouched.
    if let Some(sessions) = app.auth.issued.as_ref().and_then(|i| i.sessions.as_ref()) {
        sessions.spec.strip(&mut parts.headers);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        parts.headers.insert(respond::X_REQUEST_ID.clone(), v);
    }
    // Unchanged, the client's target is shared with the upstream request, not copied.
    let path_and_query = match (path.is_unchanged(), parts.uri.query()) {
        (true, _) => parts.uri.path_and_query().cloned(),
        (false, Some(q)) => format!("{}?{q}", path.forward()).parse().ok(),
        (false, None) => path.forward().parse().ok(),
    }
    .ok_or(crate::routes::PathError::BadEncoding)?;
    let req = Request::from_parts(parts, body);
    let fwd = upstream::Forwarding { peer: ctx.peer, client_ip: ctx.client_ip };
    Ok(app.upstream.forward(req, path_and_query, upstream_host, upgrade, fwd).await?)
}

/// Stages 3 and 4, the one admission decision for the proxy and forward-auth alike: the
/// rule for (host, method, path), the credential, and the rule held against it. `Ok(None)`
/// is an anonymous caller on a public route.
pub async fn admit(
    app: &App,
    host: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    ctx: &mut RequestContext,
) -> Result<Option<Arc<Principal>>, Error> {
    if host.is_empty() && app.config.routes.has_host_rules() {
        // HTTP/1.0 without Host: which host rule applies is unknown, so none can be skipped.
        return Err(crate::routes::HostError::Missing.into());
    }
    let access = app
        .config
        .routes
        .access(host, method, path)
        .map_err(|e| RequestError::RouteMethod { method: method.clone(), allow: e.allow })?;
    let principal = match crate::auth::identify::identify(&app.auth, headers, ctx.client_ip).await {
        Ok(p) => p,
        // On a public route a bad credential is ignored: the caller is simply anonymous.
        Err(_) if *access == Access::Public => None,
        Err(e) => return Err(e.into()),
    };
    let principal = authorize::verified_email(&app.config, access, principal)?;
    authorize::authorize(access, principal.as_deref())?;
    if let Some(p) = &principal {
        ctx.principal(p);
    }
    Ok(principal)
}
