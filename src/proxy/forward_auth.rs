//! Forward-auth: the same authenticate and authorize stages, answering a web server's
//! subrequest (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) with 200
//! plus identity headers, or 401/403 in the error shape, instead of proxying.

use std::str::FromStr;

use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::{authorize, identify, inject, request_host, strip_port};
use crate::app::App;
use crate::body::{self, Body};
use crate::error::{Error, RequestError};
use crate::routes::{Access, canonical_path};
use crate::telemetry::AccessLog;

/// The request the web server is asking about, from its forwarding headers.
struct Original {
    method: Method,
    path: String,
    host: String,
}

fn header<'h>(headers: &'h HeaderMap, names: &[&str]) -> Result<Option<&'h str>, Error> {
    for name in names {
        let mut values = headers.get_all(*name).iter();
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Err(RequestError::BadHeader("a forwarding header is repeated").into());
            }
            return v
                .to_str()
                .map(Some)
                .map_err(|_| RequestError::BadHeader("a forwarding header is not ASCII").into());
        }
    }
    Ok(None)
}

fn original<B>(req: &Request<B>) -> Result<Original, Error> {
    let h = req.headers();
    let method = match header(h, &["x-original-method", "x-forwarded-method"])? {
        Some(m) => Method::from_str(m.trim())
            .map_err(|_| RequestError::BadHeader("the forwarded method is not an HTTP method"))?,
        None => Method::GET,
    };
    let uri = header(h, &["x-original-uri", "x-forwarded-uri"])?.unwrap_or("/");
    // Only the path matters for routing; the query can hold anything.
    let raw_path = uri.split(['?', '#']).next().unwrap_or("/");
    let raw_path = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else if let Ok(u) = http::Uri::from_str(uri) {
        u.path().to_string()
    } else {
        return Err(RequestError::BadPath.into());
    };
    let path = canonical_path(&raw_path)
        .map_err(super::bad_path)?
        .into_owned();
    let host = match header(h, &["x-forwarded-host"])? {
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
            e.to_response()
        }
    }
}

async fn decide<B>(
    app: &App,
    req: &Request<B>,
    log: &mut AccessLog,
) -> Result<Response<Body>, Error> {
    let original = original(req)?;
    log.path = original.path.clone();
    log.method = original.method.to_string();
    let access = app
        .config
        .routes
        .access(&original.host, &original.method, &original.path);
    let principal = match identify::identify(&app.auth, req.headers()).await {
        Ok(p) => p,
        Err(_) if *access == Access::Public => None,
        Err(e) => return Err(e.into()),
    };
    authorize::authorize(access, principal.as_deref())?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    if let Some(p) = &principal {
        log.principal(p);
        inject::inject(resp.headers_mut(), p, &app.config.headers);
    }
    Ok(resp)
}
