//! Who is on the other end of a client connection: its address, whether it came over TLS
//! and is a trusted proxy, and the client address behind it that limits and logs go by.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::config::ServerConfig;

/// Facts about the client connection the proxy needs.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// Whether `addr` is a trusted proxy (its forwarding headers are believed).
    pub trusted: bool,
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client's address: the peer, or, behind trusted proxies, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy. An entry that is not an address
/// (`ip`, `ip:port`, `[v6]:port`, optionally quoted) ends the chain there: the client is then
/// the last trusted hop, never an entry further left that the client wrote itself.
pub fn client_ip(peer: Peer, headers: &HeaderMap, server: &ServerConfig) -> IpAddr {
    let peer_ip = peer.addr.ip().to_canonical();
    if !peer.trusted {
        return peer_ip;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else {
            return peer_ip;
        };
        hops.extend(text.split(','));
    }
    let mut client = peer_ip;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !server.is_trusted_proxy(ip) {
            return ip;
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let hop = hop.strip_prefix('"').and_then(|h| h.strip_suffix('"')).unwrap_or(hop);
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn forwarded_for_entries() {
        let server = crate::config::Config::from_toml(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[upstream]\nurl = \"http://127.0.0.1:1\"\n",
            Vec::new(),
        )
        .unwrap()
        .server;
        let peer = Peer { addr: "10.0.0.1:5000".parse().unwrap(), tls: false, trusted: true };
        let ip = |xff: &str| {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_str(xff).unwrap());
            client_ip(peer, &h, &server).to_string()
        };
        let table = [
            ("203.0.113.9", "203.0.113.9"),
            ("1.1.1.1, 203.0.113.9", "203.0.113.9"),
            ("1.1.1.1, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
            ("1.1.1.1, 203.0.113.9:4711", "203.0.113.9"),
            ("1.1.1.1, [2001:db8::1]:4711", "2001:db8::1"),
            ("1.1.1.1, \"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("1.1.1.1, [2001:db8::1]", "2001:db8::1"),
            ("1.1.1.1, ::ffff:203.0.113.9", "203.0.113.9"),
            // Garbage ends the trusted chain: never skip past it to a client-written entry.
            ("1.1.1.1, garbage", "10.0.0.1"),
            ("1.1.1.1, unknown, 10.0.0.7", "10.0.0.7"),
            ("1.1.1.1, 203.0.113.9:port", "10.0.0.1"),
            ("1.1.1.1, , 10.0.0.7", "10.0.0.7"),
            ("10.0.0.9", "10.0.0.9"),
        ];
        for (xff, want) in table {
            assert_eq!(ip(xff), want, "{xff}");
        }
    }
}
