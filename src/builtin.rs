//! Gatehouse's own endpoints, answered before anything is proxied or routed to the auth API:
//! health, readiness, metrics, the public keys of its own tokens, and discovery.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::app::App;
use crate::auth::own_keys::OwnKeys;
use crate::body::{self, Body};
use crate::config::{Config, TokensConfig};
use crate::error::{Error, RequestError};

/// One of Gatehouse's own endpoints, with what it serves from.
pub enum Builtin<'a> {
    Health,
    Ready,
    /// On the main listener only when there is no `server.metrics_listen`.
    Metrics,
    /// Gatehouse's own public keys; an empty set when it issues no tokens.
    Jwks(Option<&'a OwnKeys>),
    /// OIDC discovery and RFC 8414 metadata: one document, so resource servers and OAuth
    /// libraries find the JWKS and the client-credentials endpoints either way.
    Discovery(&'a TokensConfig),
}

impl<'a> Builtin<'a> {
    /// The endpoint at `path` in this configuration; `None` means it is not one of them.
    pub fn at(app: &'a App, path: &str) -> Option<Self> {
        let issued = app.auth.issued.as_ref();
        Some(match path {
            "/healthz" => Builtin::Health,
            "/readyz" => Builtin::Ready,
            "/metrics" if app.config.server.metrics_listen.is_none() => Builtin::Metrics,
            "/.well-known/jwks.json" => Builtin::Jwks(issued.map(|i| &*i.own)),
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
                Builtin::Discovery(&issued?.tokens)
            }
            _ => return None,
        })
    }

    /// The answer; only `GET` and `HEAD` are served.
    pub fn answer<B>(self, app: &App, req: &Request<B>) -> Result<Response<Body>, Error> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(RequestError::MethodNotAllowed.into());
        }
        Ok(match self {
            Builtin::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Builtin::Ready if app.process.is_draining() => return Err(Error::Draining),
            Builtin::Ready if app.auth.is_ready() => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Builtin::Ready => return Err(Error::NotReady),
            Builtin::Metrics => metrics(app),
            Builtin::Jwks(own) => {
                let keys = own.map(|o| o.ring().jwks.clone()).unwrap_or_default();
                let mut r = json_response(StatusCode::OK, &json!({"keys": keys}));
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                r
            }
            Builtin::Discovery(tokens) => json_response(StatusCode::OK, &metadata(&app.config, tokens)),
        })
    }
}

fn metrics(app: &App) -> Response<Body> {
    let mut r = Response::new(body::full(app.process.metrics.render(&app.auth)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// The whole of `server.metrics_listen`: `/metrics`, and 404 for anything else.
pub fn metrics_listener<B>(app: &App, req: &Request<B>) -> Result<Response<Body>, Error> {
    match req.uri().path() {
        "/metrics" => Builtin::Metrics.answer(app, req),
        _ => Err(RequestError::NotFound.into()),
    }
}

fn metadata(config: &Config, tokens: &TokensConfig) -> serde_json::Value {
    let issuer = tokens.issuer.trim_end_matches('/');
    let api = format!("{issuer}{}", config.accounts.prefix);
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

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(serde_json::to_vec(value).expect("JSON serialises")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
