//! Forward-auth: the same authenticate and authorize stages, answering a web server's
//! subrequest (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) with 200
//! plus identity headers, or 401/403 in the error shape, instead of proxying.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::{authorize, identify, inject, request_host, strip_port};
use crate::app::App;
use crate::body::{self, Body};
use crate::config::ForwardHeaders;
use crate::error::{Error, RequestError};
use crate::routes::{Access, canonical_path};
use crate::telemetry::AccessLog;

static X_AUTH_ERROR_CODE: HeaderName = HeaderName::from_static("x-auth-error-code");

/// The request the web server is asking about, from its forwarding headers.
struct Original {
    method: Method,
    path: String,
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

fn original<B>(req: &Request<B>, trust: ForwardHeaders) -> Result<Original, Error> {
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
    // Only the path matters for routing; the query can hold anything.
    let raw_path = uri.split(['?', '#']).next().unwrap_or("/");
    let raw_path = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else if let Ok(u) = http::Uri::from_str(uri) {
        u.path().to_string()
    } else {
        return Err(RequestError::BadPath.into());
    };
    let path = canonical_path(&raw_path)?.into_owned();
    let host = match header(h, "x-forwarded-host")? {
        Some(fh) => strip_port(fh.split(',').next().unwrap_or("").trim()).to_ascii_lowercase(),
        None => request_host(req),
    };
    Ok(Original { method, path, host })
}

pub async fn verify<B>(app: &App, req: &Request<B>, log: &mut AccessLog) -> Response<Body> {
    match decide(app, req, log).await {
        Ok(resp) => resp,
        Err(e) => {
            log.error = Some(e.code());
            let mut resp = e.to_response();
            // nginx's auth_request passes only the status on; the code rides in a header.
            resp.headers_mut().insert(X_AUTH_ERROR_CODE.clone(), HeaderValue::from_static(e.code()));
            resp
        }
    }
}

async fn decide<B>(app: &App, req: &Request<B>, log: &mut AccessLog) -> Result<Response<Body>, Error> {
    let original = original(req, app.config.forward_auth.headers)?;
    log.path = Some(original.path.clone());
    log.method = original.method.clone();
    let access = app.config.routes.access(&original.host, &original.method, &original.path);
    let principal = match identify::identify(&app.auth, req.headers(), log.client_ip).await {
        Ok(p) => p,
        Err(_) if *access == Access::Public => None,
        Err(e) => return Err(e.into()),
    };
    let principal = authorize::verified_email(&app.config, access, principal)?;
    authorize::authorize(access, principal.as_deref())?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    if let Some(p) = &principal {
        log.principal(p);
        inject::inject(resp.headers_mut(), p, &app.config.headers);
    }
    Ok(resp)
}
