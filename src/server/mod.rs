//! The listener: accept loop, optional TLS (rustls, ALPN h2 + http/1.1), HTTP/1.1 and
//! HTTP/2 (h2c too) on one port, a connection cap, timeouts that free idle slots
//! (`idle`), a cap on request heads, and graceful drain.

mod idle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::app::Live;
use crate::config::ServerConfig;
use crate::peer::Peer;
use crate::proxy;
use crate::upstream::ConnectionSlot;
use idle::{Activity, Tracked};

/// Which endpoints a listener answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The proxy, the auth API and every built-in endpoint.
    Main,
    /// Only `/metrics` (`server.metrics_listen`).
    Metrics,
}

/// After an idle connection is asked to close (HTTP/2 GOAWAY), how long it has to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// for up to `server.shutdown_grace`. Each connection is set up from the generation live
/// when it is accepted (TLS, timeouts, limits on heads) and each request is served by the
/// generation live when it arrives, so a reload reaches kept-alive connections too.
pub async fn serve(listener: TcpListener, live: Arc<Live>, role: Role, shutdown: impl Future<Output = ()>) {
    let first = live.current();
    let (drain, draining) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(first.config.server.max_connections));
    let mut built = (first.config.clone(), builder(&first.config.server));
    drop(first);
    tokio::pin!(shutdown);

    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = live.current();
        if !Arc::ptr_eq(&built.0, &app.config) {
            built = (app.config.clone(), builder(&app.config.server));
        }
        let server = &app.config.server;
        let tls = match role {
            Role::Main => app.tls.clone(),
            Role::Metrics => None,
        };
        let peer = Peer { addr, tls: tls.is_some(), trusted: false };
        let timeouts = Timeouts::of(server);
        drop(app);
        let live = live.clone();
        let builder = built.1.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            // Shared with any WebSocket spliced off this connection, so it keeps the slot.
            let slot = ConnectionSlot(Arc::new(permit));
            match tls {
                None => connection(stream, live, peer, role, &builder, timeouts, draining, slot).await,
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await else {
                        return;
                    };
                    connection(stream, live, peer, role, &builder, timeouts, draining, slot).await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = drain.send(true);
    let grace = live.current().config.server.shutdown_grace;
    // server.max_connections cannot change on a reload, so every slot is the first one's.
    let all = u32::try_from(built.0.server.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, limit.acquire_many(all)).await.is_err() {
        tracing::warn!("shutdown grace period ended with connections still open");
    }
}

/// HTTP/1 and HTTP/2 settings for new connections.
fn builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Heads past max_header_bytes get a JSON 431 from the proxy; hyper's own limit (a bare
    // 431) only stops heads too large to be worth reading at all.
    let hard_head_limit = server.max_header_bytes.saturating_mul(2).max(16 * 1024);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_headers(server.max_header_count)
        .max_buf_size(hard_head_limit);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(hard_head_limit as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    /// Until the first request arrives.
    first_request: Duration,
    /// With no request in flight and no byte moving.
    idle: Duration,
}

impl Timeouts {
    fn of(server: &ServerConfig) -> Self {
        Timeouts {
            handshake: server.handshake_timeout,
            first_request: server.header_read_timeout,
            idle: server.idle_timeout,
        }
    }
}

/// Serves one connection until it ends, the server drains, or it sits idle: no request
/// within `header_read_timeout` of the start (this also bounds the HTTP/2 preface, which
/// hyper itself waits for forever), or no request in flight and none new for
/// `idle_timeout`. Idle connections are asked to close, then cut.
#[allow(clippy::too_many_arguments)]
async fn connection<I>(
    io: I,
    live: Arc<Live>,
    peer: Peer,
    role: Role,
    builder: &auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    mut draining: watch::Receiver<bool>,
    slot: ConnectionSlot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = activity.request();
            if req.headers().contains_key(http::header::UPGRADE) {
                req.extensions_mut().insert(slot.clone());
            }
            let app = live.current();
            // Per request, not per connection: a reload that stops trusting a proxy must not
            // leave its kept-alive connections believed.
            let peer = Peer { trusted: app.config.server.is_trusted_proxy(peer.addr.ip()), ..peer };
            async move {
                let resp = match role {
                    Role::Main => proxy::handle(app, peer, req).await?,
                    Role::Metrics => crate::builtin::metrics_listener(&app, &req).unwrap_or_else(|e| e.to_response()),
                };
                Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked::new(b, in_flight)))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    let mut seen = activity.requests();
    let mut deadline = crate::clock::now() + timeouts.first_request;
    if *draining.borrow() {
        conn.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = draining.changed(), if !closing => {
                if changed.is_err() || *draining.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let requests = activity.requests();
                // Before the first request any byte trickling in is no excuse; after it, only
                // a request is (HTTP/2 PINGs and keep-alive chatter are not).
                let idle = activity.started() && !activity.busy() && requests == seen || !activity.started();
                seen = requests;
                if !idle {
                    deadline = crate::clock::now() + timeouts.idle;
                } else if !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = crate::clock::now() + CLOSE_GRACE;
                } else if !activity.busy() {
                    return;
                } else {
                    deadline = crate::clock::now() + timeouts.idle;
                }
            }
        }
    }
}
