//! Gatehouse's own endpoints, answered before anything is proxied: health, readiness,
//! metrics, the public keys of its own tokens and discovery, and the auth API (one file
//! per resource, routed by axum). Forward-auth is the proxy's (`proxy::forward_auth`).

pub mod api_keys;
pub mod clients;
pub mod extract;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod me;
pub mod oauth;
pub mod password;
pub mod refresh;
pub mod register;
pub mod revoke;
pub mod session;
pub mod token;
pub mod validate;
pub mod verify_email;

use std::sync::Arc;

use axum::routing::{delete, get, post};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::app::App;
use crate::body::{self, Body};
use crate::error::{Error, RequestError};
use crate::telemetry::AccessLog;

/// Answers `req` if it is for one of Gatehouse's own endpoints; `None` means proxy it.
pub async fn route<B>(app: &App, req: &Request<B>, log: &mut AccessLog) -> Option<Response<Body>> {
    let resp = match req.uri().path() {
        "/healthz" => only_get(req, || json_response(StatusCode::OK, &json!({"status": "ok"}))),
        "/readyz" => only_get(req, || {
            if app.auth.is_ready() {
                json_response(StatusCode::OK, &json!({"status": "ready"}))
            } else {
                Error::NotReady.to_response()
            }
        }),
        "/metrics" if app.config.server.metrics_listen.is_none() => only_get(req, || metrics(app)),
        "/.well-known/jwks.json" => only_get(req, || {
            let keys = app.auth.own.as_ref().map(|o| o.ring().jwks.clone()).unwrap_or_default();
            let mut r = json_response(StatusCode::OK, &json!({"keys": keys}));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }),
        // OIDC discovery and RFC 8414 metadata: one document, so resource servers and OAuth
        // libraries find the JWKS and the client-credentials endpoints either way.
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server"
            if app.config.tokens.is_some() =>
        {
            only_get(req, || json_response(StatusCode::OK, &metadata(app)))
        }
        _ => return None,
    };
    if let Some(code) = (!resp.status().is_success()).then(|| error_code(&resp)) {
        log.error = code;
    }
    Some(resp)
}

fn metrics(app: &App) -> Response<Body> {
    let mut r = Response::new(body::full(app.metrics.render(&app.auth)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// The whole of `server.metrics_listen`: `/metrics`, and 404 for anything else.
pub fn metrics_listener<B>(app: &App, req: &Request<B>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => only_get(req, || metrics(app)),
        _ => Error::from(RequestError::NotFound).to_response(),
    }
}

fn metadata(app: &App) -> serde_json::Value {
    let tokens = app.config.tokens.as_ref().expect("metadata is served only with [tokens]");
    let issuer = tokens.issuer.trim_end_matches('/');
    let api = format!("{issuer}{}", app.config.accounts.prefix);
    let client_auth = ["client_secret_basic", "client_secret_post"];
    json!({
        "issuer": tokens.issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{api}/token"),
        "introspection_endpoint": format!("{api}/introspect"),
        "revocation_endpoint": format!("{api}/revoke"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "id_token_signing_alg_values_supported": [format!("{:?}", tokens.algorithm)],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    })
}

fn error_code(resp: &Response<Body>) -> Option<&'static str> {
    match resp.status() {
        StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
        StatusCode::SERVICE_UNAVAILABLE => Some("not_ready"),
        _ => None,
    }
}

fn only_get<B>(req: &Request<B>, f: impl FnOnce() -> Response<Body>) -> Response<Body> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        f()
    } else {
        Error::from(RequestError::MethodNotAllowed).to_response()
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(serde_json::to_vec(value).expect("JSON serialises")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The auth API's router, under `accounts.prefix`. Unknown paths and methods answer in
/// the error shape too.
pub fn accounts_router(app: Arc<App>) -> axum::Router {
    let p = app.config.accounts.prefix.clone();
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
        .with_state(app)
}
