//! Stage 2, sanitise: before anything reads a proxied request, remove what a client must
//! not be able to send through — hop-by-hop headers and every header `Connection` names,
//! identity headers, method overrides, and forwarding headers from peers that are not trusted.
//!
//! It runs before injection, so no client header can remove or shadow one Gatehouse sets.

use http::Method;
use http::header::{HeaderMap, HeaderName};

use super::inject;
use crate::config::HeadersConfig;
pub use crate::upstream::remove_hop_by_hop;

/// Headers apps take as the request's real URL or method (IIS URL Rewrite, ASP.NET, Laminas,
/// Express method-override, Symfony, Laravel, Spring's filter). Gatehouse matched the rule on
/// the request line, so they go, whoever the peer.
const ALWAYS: [&str; 11] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-method",
    "x-envoy-original-path",
];

/// Headers an upstream reads as the client's address, scheme, host, port, prefix or
/// certificate, or as an identity another auth proxy vouched for (oauth2-proxy, Authelia,
/// Azure, Google IAP, AWS ALB). Only a trusted proxy may state them; Gatehouse sets its own.
const UNTRUSTED_PREFIXES: [&str; 7] = [
    "x-forwarded",
    "x-envoy-",
    "x-auth-request-",
    "x-ms-client-principal",
    "x-goog-authenticated-user-",
    "x-amzn-oidc-",
    "x-ssl-client-",
];

const UNTRUSTED: [&str; 19] = [
    "forwarded",
    "forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-host",
    "x-host",
    "x-url-scheme",
    "x-scheme",
    "front-end-https",
    "x-arr-ssl",
    "x-arr-clientcert",
    "remote-user",
    "x-remote-user",
    "x-webauth-user",
];

/// Sanitises a client request's headers in place. Returns how many identity headers were
/// stripped (spoofing attempts, counted in the log).
pub fn request(headers: &mut HeaderMap, config: &HeadersConfig, trusted_peer: bool) -> usize {
    remove_hop_by_hop(headers);
    let stripped = inject::strip(headers, config);
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| is_doomed(k.as_str(), trusted_peer)).cloned().collect();
    for key in doomed {
        headers.remove(key);
    }
    stripped
}

/// Whether a client's header must go, in any spelling: `_` for `-` too, since CGI, WSGI and
/// PHP read `X_Real_IP` as `X-Real-IP`.
fn is_doomed(name: &str, trusted_peer: bool) -> bool {
    // Most request headers are standard ones (host, accept, user-agent ...): none of these.
    if !(name.starts_with(['x', 'f', 'c', 't', 'r'])) {
        return false;
    }
    let dashed;
    let name = if name.contains('_') {
        dashed = name.replace('_', "-");
        dashed.as_str()
    } else {
        name
    };
    ALWAYS.contains(&name)
        || (!trusted_peer && (UNTRUSTED.contains(&name) || UNTRUSTED_PREFIXES.iter().any(|p| name.starts_with(p))))
}

/// Whether a request carries a header that asks the app to use another method than the
/// request line's. Forward-auth cannot remove it from what the web server forwards, so it refuses.
pub fn has_method_override(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| ALWAYS[..3].contains(&k.as_str().replace('_', "-").as_str()))
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
    use http::{HeaderValue, header};

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
        let fill = |h: &mut HeaderMap| {
            for name in ALWAYS.iter().chain(&UNTRUSTED) {
                h.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            }
            for p in UNTRUSTED_PREFIXES {
                h.insert(
                    HeaderName::from_bytes(format!("{p}anything").as_bytes()).unwrap(),
                    HeaderValue::from_static("x"),
                );
            }
            h.insert("x-forwarded-user", HeaderValue::from_static("admin"));
            h.insert("x_real_ip", HeaderValue::from_static("1.2.3.4"));
            h.insert("x_http_method_override", HeaderValue::from_static("DELETE"));
            h.insert("x_original_url", HeaderValue::from_static("/admin"));
            h.insert("x-app", HeaderValue::from_static("keep"));
        };
        let mut h = HeaderMap::new();
        fill(&mut h);
        request(&mut h, &cfg.headers, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);

        let mut h = HeaderMap::new();
        fill(&mut h);
        request(&mut h, &cfg.headers, true);
        assert!(h.contains_key("x-real-ip") && h.contains_key("x-forwarded-user"), "a trusted proxy's stay");
        for gone in ALWAYS {
            assert!(!h.contains_key(gone), "{gone} goes whoever sends it");
        }
        assert!(!h.contains_key("x_original_url") && !h.contains_key("x_http_method_override"));
    }

    #[test]
    fn lowercase_methods_are_uppercased() {
        assert_eq!(method(&Method::from_bytes(b"get").unwrap()), Some(Method::GET));
        assert_eq!(method(&Method::from_bytes(b"Delete").unwrap()), Some(Method::DELETE));
        assert_eq!(method(&Method::GET), None);
    }
}
