//! Stage 4, forward: send the request to the upstream over pooled keep-alive connections,
//! hop-by-hop headers removed, `X-Forwarded-*` set, bodies streamed both ways, and
//! `Upgrade` (WebSocket) connections spliced once both sides agree.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::Body;
use crate::config::{ServerConfig, UpstreamConfig};
use crate::error::UpstreamError;

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the legacy `Proxy-Connection` and `Keep-Alive`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The protected app: a pooled client and where to send requests.
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// A path prefix from the upstream URL (`http://app:3000/base`), without a trailing `/`.
    base_path: String,
    response_timeout: std::time::Duration,
}

/// Facts about the client connection the proxy needs.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// Whether `addr` is a trusted proxy (its forwarding headers are believed).
    pub trusted: bool,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            // Without a timer the idle timeout is never enforced (hyper-util #186).
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .build(connector);
        let parts = config.url.clone().into_parts();
        Upstream {
            client,
            scheme: parts.scheme.expect("validated: upstream URL has a scheme"),
            authority: parts.authority.expect("validated: upstream URL has an authority"),
            base_path: parts.path_and_query.map(|p| p.path().trim_end_matches('/').to_string()).unwrap_or_default(),
            response_timeout: config.response_timeout,
        }
    }

    /// Sends `req` (whose identity headers are already settled) and returns the response.
    pub async fn forward(&self, mut req: Request<Incoming>, peer: Peer) -> Result<Response<Body>, UpstreamError> {
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let original_host = host_of(&req);

        let path_and_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri = if self.base_path.is_empty() {
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(path_and_query)
        } else {
            Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(format!("{}{}", self.base_path, path_and_query))
        }
        .build()
        .map_err(|_| UpstreamError::Unavailable)?;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;

        let headers = req.headers_mut();
        remove_hop_by_hop(headers);
        set_forwarded(headers, peer, original_host.as_ref());
        if let Some(h) = original_host {
            headers.insert(header::HOST, h);
        }
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }

        let mut resp = match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, connect = e.is_connect(), "upstream request failed");
                return Err(UpstreamError::Unavailable);
            }
            Ok(Ok(resp)) => resp,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let (Some(proto), Some(client_upgrade)) = (upgrade, client_upgrade)
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
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

/// The `Upgrade` protocol of an HTTP/1.1 upgrade request (`Connection: upgrade` present).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
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
    if wants { req.headers().get(header::UPGRADE).cloned() } else { None }
}

pub fn host_of<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

/// Drops hop-by-hop headers, including every header named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// `X-Forwarded-For` gets the peer appended when the peer is a trusted proxy; from anyone
/// else the client's own forwarding headers are dropped and replaced.
fn set_forwarded(headers: &mut HeaderMap, peer: Peer, host: Option<&HeaderValue>) {
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
        if !headers.contains_key(&X_FORWARDED_HOST)
            && let Some(h) = host
        {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
    } else {
        headers.remove(&FORWARDED);
        headers.insert(X_FORWARDED_FOR.clone(), ip_value(peer_ip));
        headers.insert(X_FORWARDED_PROTO.clone(), proto(peer));
        headers.remove(&X_FORWARDED_HOST);
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
    }
}

fn proto(peer: Peer) -> HeaderValue {
    HeaderValue::from_static(if peer.tls { "https" } else { "http" })
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// The client's address: the peer, or, behind trusted proxies, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: Peer, headers: &HeaderMap, server: &ServerConfig) -> IpAddr {
    let peer_ip = peer.addr.ip().to_canonical();
    if !peer.trusted {
        return peer_ip;
    }
    let hops: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter().rev().find(|ip| !server.is_trusted_proxy(*ip)).unwrap_or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
