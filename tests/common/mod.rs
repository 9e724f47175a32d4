//! Test harness: a real echo upstream, a real JWKS/OIDC server with a hit counter, keys and
//! token minting (Rust, PyJWT, node `jose`), and Gatehouse itself on an ephemeral port.
#![allow(dead_code)]

/// Runs an async test body once per backend: `on_both!(a, b)` makes modules `a` and `b`,
/// each with a `sqlite` and a `postgres` test calling `super::a(Backend::..)`. The test file
/// needs `#[macro_use] mod common;` and `Backend` in scope (`use common::*;`).
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

pub mod process;
pub mod raw;
pub mod web_server;

#[allow(unused_imports)]
pub use process::{GatehouseProcess, spawn_gatehouse};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatehouse::auth::signing::SigningKey;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Serves `handler` on 127.0.0.1:0 (HTTP/1.1 and h2c, with upgrades) until the test ends.
async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

// === upstream ===

/// An upstream that echoes what it received as JSON: `{method, path, headers: {name: [values]}, body_len}`.
/// Special paths: `/slow/<ms>` waits before answering; `/stream/<n>` sends n chunks 50 ms
/// apart; `/gated-stream/<n>` sends its first chunk, then waits for [`Upstream::release`]
/// before the other n-1; `/ws` accepts an Upgrade and echoes bytes; `/status/<code>` answers
/// that status.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Notify>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (counter, g) = (hits.clone(), gate.clone());
        let addr = serve(move |req| {
            counter.fetch_add(1, Ordering::SeqCst);
            upstream_handler(req, g.clone())
        })
        .await;
        Upstream { addr, hits, gate }
    }

    /// Lets a `/gated-stream/<n>` response (one waiting, or the next to wait) send the rest.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn upstream_handler(mut req: Request<Incoming>, gate: Arc<tokio::sync::Notify>) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    if let Some(n) = path.split_once("/gated-stream/").map(|(_, n)| n) {
        let n: usize = n.parse().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..n {
                if tx.send(Ok(Frame::data(Bytes::from(format!("chunk{i}\n"))))).await.is_err() {
                    return;
                }
                if i == 0 {
                    gate.notified().await;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        return Response::new(StreamBody::new(stream).boxed());
    }
    if let Some(ms) = path.split_once("/slow/").map(|(_, ms)| ms) {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.split_once("/status/").map(|(_, c)| c) {
        let mut r = Response::new(full("status"));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return r;
    }
    if let Some(n) = path.split_once("/stream/").map(|(_, n)| n) {
        let n: usize = n.parse().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..n {
                if tx.send(Ok(Frame::data(Bytes::from(format!("chunk{i}\n"))))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        return Response::new(StreamBody::new(stream).boxed());
    }
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let headers = headers_json(&req);
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(full(headers.to_string()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        r.headers_mut().insert("upgrade", req.headers()["upgrade"].clone());
        return r;
    }
    let method = req.method().to_string();
    let path_q = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = headers_json(&req);
    let version = format!("{:?}", req.version());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let echo =
        json!({"method": method, "path": path_q, "headers": headers, "body_len": body.len(), "version": version});
    let mut r = Response::new(full(echo.to_string()));
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    // Hop-by-hop headers Gatehouse must not pass back to the client.
    r.headers_mut().insert("connection", "x-upstream-private".parse().unwrap());
    r.headers_mut().insert("x-upstream-private", "1".parse().unwrap());
    r
}

fn headers_json<B>(req: &Request<B>) -> Value {
    let mut map = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        map.insert(name.to_string(), Value::Array(values));
    }
    Value::Object(map)
}

/// The values the upstream saw for `name` (lowercase), from an echo response.
pub fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// === JWKS / OIDC server ===

#[derive(Clone)]
struct JwksState {
    doc: Arc<Mutex<(u16, String, Option<String>)>>,
    hits: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
    /// Key-set answers sent since the last `set_cache_control` (so carrying its value).
    served_since_cache_set: Arc<AtomicUsize>,
}

/// A JWKS endpoint at `/jwks` and an OIDC discovery document at
/// `/.well-known/openid-configuration` (issuer = this server's base URL).
pub struct JwksServer {
    pub addr: SocketAddr,
    state: JwksState,
}

impl JwksServer {
    pub async fn start(doc: Value) -> JwksServer {
        let state = JwksState {
            doc: Arc::new(Mutex::new((200, doc.to_string(), None))),
            hits: Arc::new(AtomicUsize::new(0)),
            discovery_hits: Arc::new(AtomicUsize::new(0)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            served_since_cache_set: Arc::new(AtomicUsize::new(0)),
        };
        let s = state.clone();
        let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let cell = addr_cell.clone();
        let addr = serve(move |req| {
            let s = s.clone();
            let base = format!("http://{}", cell.lock().unwrap().unwrap());
            async move {
                if req.uri().path() == "/.well-known/openid-configuration" {
                    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
                    let doc = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
                    return Response::new(full(doc.to_string()));
                }
                s.hits.fetch_add(1, Ordering::SeqCst);
                let delay = *s.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                let (status, body, cache) = {
                    let doc = s.doc.lock().unwrap();
                    s.served_since_cache_set.fetch_add(1, Ordering::SeqCst);
                    doc.clone()
                };
                let mut r = Response::new(full(body));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(c) = cache {
                    r.headers_mut().insert("cache-control", c.parse().unwrap());
                }
                r
            }
        })
        .await;
        *addr_cell.lock().unwrap() = Some(addr);
        JwksServer { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
    pub fn set(&self, status: u16, body: impl Into<String>) {
        let mut d = self.state.doc.lock().unwrap();
        d.0 = status;
        d.1 = body.into();
    }
    pub fn set_cache_control(&self, value: Option<&str>) {
        let mut doc = self.state.doc.lock().unwrap();
        doc.2 = value.map(str::to_string);
        self.state.served_since_cache_set.store(0, Ordering::SeqCst);
    }
    /// Key-set answers sent with the `Cache-Control` of the last `set_cache_control`.
    pub fn served_since_cache_set(&self) -> usize {
        self.state.served_since_cache_set.load(Ordering::SeqCst)
    }
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }
}

// === an https server ===

/// A self-signed certificate for `localhost` and `127.0.0.1`: (cert PEM, key PEM).
pub fn self_signed_cert() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// path -> (status, headers, body)
type Canned = Arc<Mutex<std::collections::HashMap<String, (u16, Vec<(String, String)>, String)>>>;

/// An HTTPS server with canned answers by path (`set`), counting hits per path; unknown
/// paths get 404. Its certificate is `cert_pem` (see [`self_signed_cert`]).
pub struct TlsServer {
    pub addr: SocketAddr,
    routes: Canned,
    hits: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    pub async fn start(cert_pem: &str, key_pem: &str) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert_pem).unwrap();
        std::fs::write(&key_file, key_pem).unwrap();
        let acceptor = gatehouse::tls::acceptor(&gatehouse::config::TlsConfig { cert_file, key_file }).unwrap();
        let routes: Canned = Default::default();
        let hits: Arc<Mutex<std::collections::HashMap<String, usize>>> = Default::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (r, h) = (routes.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, r, h) = (acceptor.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_string();
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let canned = r.lock().unwrap().get(&path).cloned();
                        let (status, headers, body) = canned.unwrap_or((404, Vec::new(), "not found".into()));
                        let mut resp = Response::new(full(body));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (k, v) in headers {
                            resp.headers_mut().insert(
                                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                v.parse().unwrap(),
                            );
                        }
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        TlsServer { addr, routes, hits, _dir: dir }
    }

    /// `https://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn set(&self, path: &str, status: u16, headers: &[(&str, &str)], body: impl Into<String>) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.routes.lock().unwrap().insert(path.to_string(), (status, headers, body.into()));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

// === keys and tokens ===

/// A key pair (or HMAC secret) made by Gatehouse's own signer, with its PEM and public JWK.
pub struct TestKey {
    pub alg: Algorithm,
    pub key: SigningKey,
    /// PKCS#8 PEM (or the raw secret for HS*).
    pub pem: String,
    pub dir: tempfile::TempDir,
}

impl TestKey {
    pub fn generate(alg: Algorithm) -> TestKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let key = SigningKey::load_or_generate(&path, alg).unwrap();
        let pem = std::fs::read_to_string(&path).unwrap();
        TestKey { alg, key, pem, dir }
    }

    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    pub fn alg_name(&self) -> String {
        format!("{:?}", self.alg)
    }

    /// The public JWK (with `kid`, `alg`, `use`).
    pub fn jwk(&self) -> Value {
        self.key.jwk.clone().expect("asymmetric key")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims)
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.key.sign_with_header(header, claims)
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

/// Standard claims for `issuer`, audience `api`, expiring in 10 minutes.
pub fn claims(issuer: &str, sub: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "aud": "api", "sub": sub, "iat": now, "exp": now + 600})
}

/// Mints a token with an external library: "python" (PyJWT) or "node" (jose).
pub fn mint_external(lib: &str, key: &TestKey, claims: &Value, kid: Option<&str>) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let (program, script) = match lib {
        "python" => ("python3", root.join("mint.py")),
        "node" => ("node", root.join("mint.mjs")),
        other => panic!("unknown minting library {other}"),
    };
    let input = json!({"alg": key.alg_name(), "key": key.pem, "kid": kid, "claims": claims});
    let mut child = std::process::Command::new(program)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it; CI does): {e}"));
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{lib} minting failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// === Gatehouse ===

/// Gatehouse running in-process on an ephemeral port. Dropping it shuts it down.
pub struct Gatehouse {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Gatehouse {
    pub async fn start(toml: &str) -> Gatehouse {
        let config = gatehouse::Config::from_toml(toml, Vec::new()).unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start_config(config).await
    }

    pub async fn start_config(config: gatehouse::Config) -> Gatehouse {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gatehouse::run(listener, config, async {
            let _ = rx.await;
        }));
        Gatehouse { addr, shutdown: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200 (key sets loaded).
    pub async fn wait_ready(&self) {
        wait_ready_at(&self.url("/readyz")).await;
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `readyz_url` until it answers 200, for up to 30 s (generous: a loaded machine is
/// slow to start, and a fast one returns at once).
pub async fn wait_ready_at(readyz_url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let c = client();
    loop {
        let last = match c.get(readyz_url).send().await {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(tokio::time::Instant::now() < deadline, "{readyz_url} never answered 200 within 30 s; last: {last}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().http1_only().build().unwrap()
}

/// A config in front of `upstream` trusting `issuers` (TOML snippets), with the usual routes.
pub fn config(upstream: &Upstream, extra: &str) -> String {
    format!(
        r#"
[upstream]
url = "{}"
response_timeout = "2s"
connect_timeout = "1s"
[headers]
claims = {{ tenant = "X-Auth-Tenant", "org.id" = "X-Auth-Org" }}
{extra}
[[routes]]
path = "/public/"
auth = "public"
[[routes]]
path = "/admin/"
permissions = ["admin"]
[[routes]]
path = "/ops/"
roles = ["ops", "sre"]
[[routes]]
path = "/"
auth = "required"
[log]
access = false
"#,
        upstream.url()
    )
}

/// An `[[issuers]]` block for a JWKS URL.
pub fn issuer_block(issuer: &str, jwks_url: &str, algs: &[&str]) -> String {
    let algs: Vec<String> = algs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[issuers]]\nissuer = \"{issuer}\"\njwks_url = \"{jwks_url}\"\naudiences = [\"api\"]\nalgorithms = [{}]\n",
        algs.join(", ")
    )
}

/// The password the auth-API tests register their users with.
pub const PW: &str = "correct horse battery";

/// Sends `method path` with an optional bearer token, extra headers and JSON body; returns
/// status, headers and the raw body. Every helper below is this with fewer knobs.
pub async fn request(
    gh: &Gatehouse,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, Bytes) {
    let mut req = client().request(method.parse().unwrap(), gh.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap())
}

/// A body as JSON, or Null if it is not JSON (an empty body, say).
pub fn json_of(body: impl AsRef<[u8]>) -> Value {
    serde_json::from_slice(body.as_ref()).unwrap_or(Value::Null)
}

/// GET `path` with a bearer token; returns status and parsed JSON body (or Null).
pub async fn get(gh: &Gatehouse, path: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    get_with(gh, path, token, &[]).await
}

/// GET with extra request headers; returns status, headers and the JSON body (or Null).
pub async fn get_with(
    gh: &Gatehouse,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers, body) = request(gh, "GET", path, token, headers, None).await;
    (status, headers, json_of(body))
}

/// Any method, an optional bearer token and JSON body; returns status and the body as text.
pub async fn send(gh: &Gatehouse, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, String) {
    let (status, _, bytes) = request(gh, method, path, token, &[], body.as_ref()).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// [`send`], the answer parsed as JSON (Null if none).
pub async fn send_json(
    gh: &Gatehouse,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, bytes) = request(gh, method, path, token, &[], body.as_ref()).await;
    (status, json_of(bytes))
}

/// The claims of a JWT, decoded without any check.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Runs the built binary with `args --config <dir>/gatehouse.toml` (written from `config`
/// first), `stdin` on its standard input; returns its output.
pub fn run_cli(config: &str, dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

// === stores ===

/// Where an auth-API test keeps its accounts: a fresh SQLite file or a fresh Postgres
/// database on 127.0.0.1:5432 (a run that cannot reach Postgres fails, never skips).
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestStore {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Backend {
    pub async fn fresh(self) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = match self {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("gatehouse.db").display()),
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = std::env::var("GATEHOUSE_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
                let mut conn = sqlx::postgres::PgConnection::connect(&format!("{admin}/postgres"))
                    .await
                    .unwrap_or_else(|e| panic!("Postgres at {admin} is required for these tests: {e}"));
                let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
                format!("{admin}/{name}")
            }
        };
        TestStore { url, dir }
    }
}

/// An auth-API config: Gatehouse's own tokens, the given store, the usual routes.
pub fn accounts_config(upstream: &Upstream, store: &TestStore, extra: &str) -> String {
    let outbox = store.dir.path().join("outbox");
    format!(
        r#"
[store]
url = "{}"
[tokens]
issuer = "https://gatehouse.test"
audience = "gatehouse"
access_ttl = "5m"
key_reload = "200ms"
[accounts]
mail_outbox = "{}"
hash_concurrency = 8
{extra}
{}"#,
        store.url,
        outbox.display(),
        config(upstream, "")
    )
}

/// POST JSON; returns status, headers and the JSON body (Null if none).
pub async fn post(
    gh: &Gatehouse,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers, bytes) = request(gh, "POST", path, token, &[], Some(body)).await;
    (status, headers, json_of(bytes))
}

/// [`post`] as if from `ip` (sent as `X-Forwarded-For`; a test that wants it believed
/// trusts 127.0.0.1 as a proxy).
pub async fn post_from(
    gh: &Gatehouse,
    path: &str,
    body: &Value,
    token: Option<&str>,
    ip: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers, bytes) = request(gh, "POST", path, token, &[("x-forwarded-for", ip)], Some(body)).await;
    (status, headers, json_of(bytes))
}

// === mail ===

/// Messages in a mail directory (the outbox, or the SMTP sink's) that contain `needle`.
pub fn mails_with(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut mails: Vec<(std::path::PathBuf, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok().map(|text| (e.path(), text)))
        .filter(|(_, text)| text.contains(needle))
        .collect();
    mails.sort();
    mails.into_iter().map(|(_, text)| text).collect()
}

/// How long a test waits for a mail: generous, since a loaded machine is slow and a fast one
/// returns as soon as the mail is there.
pub const MAIL_DEADLINE: Duration = Duration::from_secs(20);

/// Waits (up to [`MAIL_DEADLINE`]) for a message containing `needle` and returns it (one of
/// them, if many).
pub async fn wait_mail(dir: &std::path::Path, needle: &str) -> String {
    wait_mails(dir, needle, 1).await.pop().unwrap()
}

/// Waits (up to [`MAIL_DEADLINE`]) until at least `n` messages contain `needle`; returns them all.
pub async fn wait_mails(dir: &std::path::Path, needle: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    loop {
        let mails = mails_with(dir, needle);
        if mails.len() >= n {
            return mails;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} message(s) containing {needle:?} in {} after {MAIL_DEADLINE:?}, {n} expected",
            mails.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
