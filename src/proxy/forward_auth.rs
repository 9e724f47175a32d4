//! Forward-auth: the same authenticate and authorize stages, answering a web server's
//! subrequest (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) with 200
//! plus every configured identity header (empty when unknown), or 401/403 in the error
//! shape, instead of proxying.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::{inject, sanitise};
use crate::app::App;
use crate::body::{self, Body};
use crate::config::ForwardHeaders;
use crate::context::RequestContext;
use crate::error::{Error, RequestError};
use crate::routes::{RouteTable, host};

static X_AUTH_ERROR_CODE: HeaderName = HeaderName::from_static("x-auth-error-code");

/// The request the web server is asking about, from its forwarding headers.
struct Original {
    method: Method,
    /// The matched form of the canonical path.
    path: String,
    /// The canonical host name.
    host: String,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Error> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RequestError::BadHeader("a forwarding header is repeated").into());
    }
    v.to_str().map(|s| Some(s.trim())).map_err(|_| RequestError::BadHeader("a forwarding header is not ASCII").into())
}

/// Method and URI as one proxy family describes them.
fn family<'h>(h: &'h HeaderMap, method: &str, uri: &str) -> Result<Option<(&'h str, &'h str)>, Error> {
    match (header(h, method)?, header(h, uri)?) {
        (None, None) => Ok(None),
        (Some(m), Some(u)) => Ok(Some((m, u))),
        _ => Err(RequestError::BadHeader("forward-auth needs both the original method and URI headers").into()),
    }
}

fn original<B>(req: &Request<B>, trust: ForwardHeaders, routes: &RouteTable) -> Result<Original, Error> {
    let h = req.headers();
    let nginx = || family(h, "x-original-method", "x-original-uri");
    let traefik = || family(h, "x-forwarded-method", "x-forwarded-uri");
    // A proxy overwrites only its own family and passes the client's copies of the other
    // one through, so reading the "wrong" family would let a client pick the route.
    let (method, uri) = match trust {
        ForwardHeaders::Original => nginx()?,
        ForwardHeaders::Forwarded => traefik()?,
        ForwardHeaders::Auto => match (nginx()?, traefik()?) {
            (Some(a), Some(b)) if a != b => {
                return Err(
                    RequestError::BadHeader("X-Original-* and X-Forwarded-* describe different requests").into()
                );
            }
            (a, b) => a.or(b),
        },
    }
    .ok_or(RequestError::BadHeader("forward-auth needs X-Original-Method/-URI or X-Forwarded-Method/-Uri"))?;
    let method =
        Method::from_str(method).map_err(|_| RequestError::BadHeader("the forwarded method is not an HTTP method"))?;
    let method = sanitise::method(&method).unwrap_or(method);
    // Only the path matters for routing; the query can hold anything.
    let raw_path = uri.split(['?', '#']).next().unwrap_or("/");
    let raw_path = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else if let Ok(u) = http::Uri::from_str(uri) {
        u.path().to_string()
    } else {
        return Err(crate::routes::PathError::NotAbsolute.into());
    };
    // The same canonical form the proxy path forwards: the web server in front passes the
    // raw path on, and every form an upstream could read differently is refused here.
    let path = routes.canonical_path(&raw_path)?.matched().to_string();
    let host = match header(h, "x-forwarded-host")? {
        Some(fh) => host::canonical(fh.split(',').next().unwrap_or("").trim())?.name().to_string(),
        None => host::request_host(req.version(), req.uri(), req.headers())?.name().to_string(),
    };
    Ok(Original { method, path, host })
}

pub async fn verify<B>(app: &App, req: &Request<B>, ctx: &mut RequestContext) -> Response<Body> {
    match decide(app, req, ctx).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.error = Some(e.code());
            let mut resp = e.to_response();
            // nginx's auth_request passes only the status on; the code rides in a header.
            resp.headers_mut().insert(X_AUTH_ERROR_CODE.clone(), HeaderValue::from_static(e.code()));
            resp
        }
    }
}

async fn decide<B>(app: &App, req: &Request<B>, ctx: &mut RequestContext) -> Result<Response<Body>, Error> {
    if sanitise::has_method_override(req.headers()) {
        // The web server passes it on to the app, which would run another method than the
        // one judged here.
        return Err(RequestError::BadHeader("method override headers (X-HTTP-Method-Override ...) are refused").into());
    }
    let original = original(req, app.config.forward_auth.headers, &app.config.routes)?;
    ctx.path = Some(original.path.clone());
    ctx.method = original.method.clone();
    let principal = super::admit(app, &original.host, &original.method, &original.path, req.headers(), ctx).await?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    if let Some(p) = &principal {
        inject::inject(resp.headers_mut(), p, &app.config.headers);
    }
    // Anonymous on a public route, or a field the credential does not carry.
    inject::blank_missing(resp.headers_mut(), &app.config.headers);
    Ok(resp)
}
