//! Stage 2, sanitise: before anything reads a proxied request, remove what a client must
//! not be able to send through — hop-by-hop headers and every header `Connection` names,
//! identity headers, method overrides, and forwarding headers from peers that are not trusted.
//!
//! It runs before injection, so no client header can remove or shadow one Gatehouse sets.

use http::Method;
use http::header::{self, HeaderMap, HeaderName};

use super::inject;
use crate::config::HeadersConfig;

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

/// Headers an upstream reads as the client's address, scheme, host, port, prefix or
/// original URL. Only a trusted proxy may state them; Gatehouse sets its own.
const FORWARDING: [HeaderName; 30] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-protocol"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-path"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-envoy-original-path"),
    HeaderName::from_static("x-envoy-external-address"),
];

/// Headers frameworks (Express method-override, Symfony, Laravel, Spring's filter) take as
/// the real method: the route was checked against the request line's method, so they go.
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Sanitises a client request's headers in place. Returns how many identity headers were
/// stripped (spoofing attempts, counted in the log).
pub fn request(headers: &mut HeaderMap, config: &HeadersConfig, trusted_peer: bool) -> usize {
    remove_hop_by_hop(headers);
    let stripped = inject::strip(headers, config);
    let lists: &[&[HeaderName]] = if trusted_peer { &[&METHOD_OVERRIDES] } else { &[&METHOD_OVERRIDES, &FORWARDING] };
    remove_spellings(headers, lists);
    stripped
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

/// Removes every header named in `lists`, and its `_` spellings (CGI, WSGI and PHP read
/// `X_Real_IP` as `X-Real-IP`). One pass over the request's few headers: most are standard
/// names, which compare against these custom ones without looking at their bytes.
fn remove_spellings(headers: &mut HeaderMap, lists: &[&[HeaderName]]) {
    let listed = |name: &str| lists.iter().any(|l| l.iter().any(|n| n.as_str() == name));
    let mut doomed: Vec<HeaderName> = Vec::new();
    for key in headers.keys() {
        let hit = if key.as_str().contains('_') {
            listed(&key.as_str().replace('_', "-"))
        } else {
            lists.iter().any(|l| l.contains(key))
        };
        if hit {
            doomed.push(key.clone());
        }
    }
    for key in doomed {
        headers.remove(key);
    }
}

/// The method as rules see it and the upstream gets it: methods are case-sensitive, but
/// Express and others match `get` as `GET`, so a lowercase spelling is the uppercase method.
pub fn method(method: &Method) -> Option<Method> {
    let s = method.as_str();
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Method::from_bytes(s.to_ascii_uppercase().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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

    #[test]
    fn untrusted_forwarding_headers_and_overrides_go() {
        let cfg = crate::config::Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n", Vec::new()).unwrap();
        let mut h = HeaderMap::new();
        for name in FORWARDING.iter().chain(&METHOD_OVERRIDES) {
            h.insert(name.clone(), HeaderValue::from_static("x"));
        }
        h.insert("x_real_ip", HeaderValue::from_static("1.2.3.4"));
        h.insert("x_http_method_override", HeaderValue::from_static("DELETE"));
        h.insert("x-app", HeaderValue::from_static("keep"));
        request(&mut h, &cfg.headers, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);

        let mut h = HeaderMap::new();
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        request(&mut h, &cfg.headers, true);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-real-ip"], "a trusted proxy's stay");
    }

    #[test]
    fn lowercase_methods_are_uppercased() {
        assert_eq!(method(&Method::from_bytes(b"get").unwrap()), Some(Method::GET));
        assert_eq!(method(&Method::from_bytes(b"Delete").unwrap()), Some(Method::DELETE));
        assert_eq!(method(&Method::GET), None);
    }
}
