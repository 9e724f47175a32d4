//! Stage 7, respond: every response leaves through here, with its request id, and its
//! access-log line written.

use std::time::Instant;

use http::{HeaderName, HeaderValue, Response};

use crate::app::App;
use crate::body::Body;
use crate::telemetry::AccessLog;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn finish(mut resp: Response<Body>, log: &mut AccessLog, app: &App, started: Instant) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&log.request_id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    log.status = resp.status().as_u16();
    app.metrics.observe(log, started.elapsed());
    if app.config.log.access {
        log.emit(started.elapsed());
    }
    resp
}
