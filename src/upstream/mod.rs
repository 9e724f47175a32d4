//! Stage 6, forward: send the request to the upstream over pooled keep-alive connections,
//! hop-by-hop headers removed, `X-Forwarded-*` set, bodies streamed both ways, and
//! `Upgrade` (WebSocket) connections spliced once both sides agree. An https:// upstream
//! gets its TLS from `tls`; http:// goes straight over TCP as before.

mod tls;

use std::net::IpAddr;

use anyhow::{Context, anyhow};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::peer::Peer;

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the legacy `Proxy-Connection` and `Keep-Alive`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The protected app: a pooled client and where to send requests.
pub struct Upstream {
    client: Pool,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// A path prefix from the upstream URL (`http://app:3000/base`), without a trailing `/`.
    base_path: String,
    response_timeout: std::time::Duration,
}

/// One client type per scheme, so http:// connections carry no TLS wrapper at all.
enum Pool {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector<HttpConnector>, Incoming>),
}

impl Pool {
    fn request(&self, req: Request<Incoming>) -> ResponseFuture {
        match self {
            Pool::Plain(c) => c.request(req),
            Pool::Tls(c) => c.request(req),
        }
    }
}

impl Upstream {
    /// Builds the client for `config`, reading any `[upstream.tls]` files now: calling it
    /// again (on reload) picks up replaced certificates. Errors name the key and the file.
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            // Without a timer the idle timeout is never enforced (hyper-util #186).
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle);
        let parts = config.url.clone().into_parts();
        let scheme = parts.scheme.context("upstream.url: no scheme")?;
        let client = match (scheme.as_str(), &config.tls) {
            ("http", None) => Pool::Plain(builder.build(connector)),
            ("https", tls) => {
                let tls = tls.clone().unwrap_or_default();
                Pool::Tls(builder.build(tls::connector(connector, &tls)?))
            }
            ("http", Some(_)) => return Err(anyhow!("upstream.tls: is only for an https:// upstream.url")),
            (other, _) => return Err(anyhow!("upstream.url: `{other}` is not http or https")),
        };
        Ok(Upstream {
            client,
            scheme,
            authority: parts.authority.context("upstream.url: no host")?,
            base_path: parts.path_and_query.map(|p| p.path().trim_end_matches('/').to_string()).unwrap_or_default(),
            response_timeout: config.response_timeout,
        })
    }

    /// Sends `req`, already sanitised and with its identity headers settled, to the upstream
    /// at `path_and_query` (canonical). `host` is the canonical authority the client asked
    /// for; `upgrade` the allowed protocol it asked to switch to, if any.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        path_and_query: http::uri::PathAndQuery,
        host: Option<HeaderValue>,
        upgrade: Option<HeaderValue>,
        fwd: Forwarding,
    ) -> Result<Response<Body>, UpstreamError> {
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let slot = upgrade.as_ref().and_then(|_| req.extensions_mut().remove::<ConnectionSlot>());
        let uri = if self.base_path.is_empty() {
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(path_and_query)
        } else {
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(format!(
                "{}{}",
                self.base_path,
                path_and_query.as_str()
            ))
        }
        .build()
        .map_err(|_| UpstreamError::Unavailable)?;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;

        let headers = req.headers_mut();
        set_forwarded(headers, fwd, host.as_ref());
        if let Some(h) = host {
            headers.insert(header::HOST, h);
        }
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }

        let mut resp = match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => {
                match tls::failure(&e) {
                    // A certificate or handshake problem is configuration to fix, not a blip.
                    // The host alone: an authority may carry userinfo.
                    Some(tls) => {
                        tracing::warn!(error = %tls, host = self.authority.host(), "TLS with the upstream failed")
                    }
                    None => tracing::debug!(error = %e, connect = e.is_connect(), "upstream request failed"),
                }
                return Err(UpstreamError::Unavailable);
            }
            Ok(Ok(resp)) => resp,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only the protocol that was asked for and allowed is spliced.
            let agreed = resp
                .headers()
                .get(header::UPGRADE)
                .zip(upgrade.as_ref())
                .is_some_and(|(got, asked)| got.as_bytes().eq_ignore_ascii_case(asked.as_bytes()));
            let (Some(proto), Some(client_upgrade), true) = (upgrade, client_upgrade, agreed) else {
                tracing::warn!("the upstream switched protocols without an allowed upgrade; refused");
                return Err(UpstreamError::Unavailable);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            let (mut parts, _) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, proto);
            return Ok(Response::from_parts(parts, crate::body::empty()));
        }
        remove_hop_by_hop(resp.headers_mut());
        Ok(resp.map(|b| b.map_err(|e| -> crate::body::BodyError { e.into() }).boxed_unsync()))
    }
}

/// A client connection's place under `server.max_connections`, held by whatever still uses
/// the connection: an upgraded (WebSocket) stream keeps it until the splice ends.
#[derive(Clone)]
pub struct ConnectionSlot(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

/// What the upstream is told about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    pub peer: Peer,
    /// The client's address as [`crate::peer::client_ip`] found it.
    pub client_ip: IpAddr,
}

/// The protocol of an HTTP/1.1 upgrade request (`Connection: upgrade`, one `Upgrade`
/// protocol) when it is in `allowed`. Anything else is not offered to the upstream: the
/// request goes on as a plain one (RFC 9110 §7.8 lets a server ignore `Upgrade`).
pub fn upgrade_protocol<B>(req: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    let mut values = req.headers().get_all(header::UPGRADE).iter();
    let (value, None) = (values.next()?, values.next()) else {
        return None;
    };
    let proto = value.to_str().ok()?.trim();
    let name = proto.split('/').next().unwrap_or("");
    let allowed = !proto.contains(',') && allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    // RFC 6455 §4.1: a WebSocket handshake is a GET.
    let method_ok = !name.eq_ignore_ascii_case("websocket") || req.method() == http::Method::GET;
    (allowed && method_ok).then(|| value.clone())
}

/// Drops hop-by-hop headers, including every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `X-Forwarded-For` gets the peer appended when the peer is a trusted proxy (whose
/// `X-Forwarded-Proto` stands); from anyone else (whose forwarding headers `sanitise`
/// removed) they are Gatehouse's own. `X-Forwarded-Host` is always the canonical host that was
/// matched and `X-Real-IP` the client address Gatehouse settled on.
fn set_forwarded(headers: &mut HeaderMap, fwd: Forwarding, host: Option<&HeaderValue>) {
    let peer = fwd.peer;
    let peer_ip = peer.addr.ip().to_canonical();
    if peer.trusted {
        let existing: Vec<String> =
            headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
        let mut chain = existing.join(", ");
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&peer_ip.to_string());
        headers.remove(&X_FORWARDED_FOR);
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO.clone(), proto(peer));
        }
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), ip_value(peer_ip));
        headers.insert(X_FORWARDED_PROTO.clone(), proto(peer));
    }
    // The host the rule was matched for, whoever the peer: apps that route by
    // X-Forwarded-Host must see that one and no other.
    match host {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.insert(X_REAL_IP.clone(), ip_value(fwd.client_ip));
}

fn proto(peer: Peer) -> HeaderValue {
    HeaderValue::from_static(if peer.tls { "https" } else { "http" })
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}
