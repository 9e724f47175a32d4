//! Stage 7, respond: every response leaves through here, with its request id, and its
//! access-log line written.

use http::{HeaderName, HeaderValue, Response};

use crate::app::App;
use crate::body::Body;
use crate::context::RequestContext;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn finish(mut resp: Response<Body>, ctx: &mut RequestContext, app: &App) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    ctx.status = resp.status().as_u16();
    let elapsed = ctx.started.elapsed();
    app.process.metrics.observe(ctx, elapsed);
    if app.config.log.access {
        ctx.emit(elapsed);
    }
    resp
}
