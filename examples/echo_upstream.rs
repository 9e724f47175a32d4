//! A demo upstream for the quick start and the benchmarks: answers every request with a
//! JSON echo of its method, path and headers, so you can see what Gatehouse forwarded.
//!
//! `cargo run --release --example echo_upstream -- 127.0.0.1:3000`
//! With `--small`, it answers a fixed 2-byte body instead (for benchmarks).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

async fn echo(req: Request<Incoming>, small: bool) -> Result<Response<Full<Bytes>>, Infallible> {
    if small {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
    });
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec_pretty(&body).unwrap())));
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:3000".to_string();
    let mut small = false;
    for arg in args.by_ref() {
        if arg == "--small" {
            small = true;
        } else {
            addr = arg;
        }
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo upstream listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| echo(req, small));
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
