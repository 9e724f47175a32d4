//! Where a browser may be sent after signing in (`rd`): a local path, or an absolute URL on
//! an allowed host. Everything else, and anything a browser could read differently, is refused.
//!
//! Parsing is the WHATWG URL parser's (the `url` crate), the same a browser applies to a
//! `Location` header, so what is checked is what the browser will follow.

use url::Url;

use crate::config::RedirectHost;

/// Decides redirect targets for one configuration.
#[derive(Debug, Clone)]
pub struct Redirects {
    /// Gatehouse's own origin (`server.public_url`): local paths resolve against it.
    public: Url,
    allowed: Vec<RedirectHost>,
}

impl Redirects {
    pub fn new(public: Url, allowed: Vec<RedirectHost>) -> Self {
        Redirects { public, allowed }
    }

    /// The target to send the browser to for `rd` (already percent-decoded once, as a query
    /// value is), or `None` when it is not allowed. An absent or empty `rd` is `/`.
    pub fn target(&self, rd: &str) -> Option<String> {
        if rd.is_empty() {
            return Some("/".into());
        }
        // Browsers drop tabs and newlines inside URLs and read `\` as `/`: refused outright,
        // so `/\evil.example` and `/%0a/evil.example` cannot turn into `//evil.example`.
        if rd.chars().any(|c| c.is_control() || c == '\\') || rd.len() > 2048 {
            return None;
        }
        if rd.starts_with('/') {
            // `//host` is a URL on another host (scheme-relative).
            if rd.starts_with("//") {
                return None;
            }
            let joined = self.public.join(rd).ok()?;
            // Dot segments can leave an empty first segment (`/.//evil.example` resolves to
            // the path `//evil.example`), which a browser reads as another host.
            if joined.origin() != self.public.origin() || joined.path().starts_with("//") {
                return None;
            }
            return Some(joined[url::Position::BeforePath..].to_string());
        }
        let url = Url::parse(rd).ok()?;
        let scheme_ok = match url.scheme() {
            "https" => true,
            // Plain http only where Gatehouse itself is served over it (development).
            "http" => self.public.scheme() == "http",
            _ => false,
        };
        if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let own = url.origin() == self.public.origin();
        (own || self.allowed.iter().any(|p| p.matches(&url))).then(|| url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirects(public: &str, allowed: &[&str]) -> Redirects {
        let allowed = allowed.iter().map(|p| RedirectHost::parse(p).unwrap()).collect();
        Redirects::new(Url::parse(public).unwrap(), allowed)
    }

    #[test]
    fn local_paths_and_allowed_hosts_pass_everything_else_is_refused() {
        let r = redirects("https://app.example.com", &["*.example.com", "docs.example.org", "wiki.example.net:8443"]);
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("/")),
            ("/", Some("/")),
            ("/orders?x=1", Some("/orders?x=1")),
            ("/orders?x=1#top", Some("/orders?x=1#top")),
            ("/a/../b", Some("/b")),
            ("/%2Fevil.example", Some("/%2Fevil.example")),
            ("https://app.example.com/x", Some("https://app.example.com/x")),
            ("https://shop.example.com/cart", Some("https://shop.example.com/cart")),
            ("https://a.b.example.com/", Some("https://a.b.example.com/")),
            ("https://docs.example.org/p", Some("https://docs.example.org/p")),
            ("https://wiki.example.net:8443/", Some("https://wiki.example.net:8443/")),
            ("HTTPS://SHOP.EXAMPLE.COM/", Some("https://shop.example.com/")),
            // Other hosts, however they are spelled.
            ("//evil.example", None),
            ("//evil.example/path", None),
            ("///evil.example", None),
            ("/.//evil.example", None),
            ("/..//evil.example", None),
            ("/a/..//evil.example", None),
            ("/%2e//evil.example", None),
            ("/%2E%2E//evil.example", None),
            ("/./%2e//evil.example/x?y", None),
            ("/\\evil.example", None),
            ("\\\\evil.example", None),
            ("https://evil.example", None),
            ("https://evil.example/", None),
            ("https:evil.example", None),
            ("https:/evil.example", None),
            ("https://example.com.evil.example/", None),
            ("https://evilexample.com/", None),
            ("https://example.com/", None),
            ("https://docs.example.org.evil.example/", None),
            ("https://app.example.com@evil.example/", None),
            ("https://user:pw@shop.example.com/", None),
            ("https://wiki.example.net/", None),
            ("https://wiki.example.net:9000/", None),
            ("https://shop.example.com:8443/", None),
            ("http://shop.example.com/", None),
            ("https://evil.example%2F@app.example.com/", None),
            ("evil.example", None),
            ("evil.example/path", None),
            ("%2F%2Fevil.example", None),
            ("%252F%252Fevil.example", None),
            // Other schemes.
            ("javascript:alert(1)", None),
            ("JaVaScRiPt:alert(1)", None),
            (" javascript:alert(1)", None),
            ("data:text/html,<script>alert(1)</script>", None),
            ("vbscript:msgbox(1)", None),
            ("ftp://shop.example.com/", None),
            // Control characters, CR/LF (header splitting), tabs.
            ("/ok\r\nSet-Cookie: a=b", None),
            ("/\n/evil.example", None),
            ("/\t/evil.example", None),
            ("https://shop.example.com/\r\n", None),
            ("/\u{0}x", None),
        ];
        for (rd, want) in cases {
            assert_eq!(r.target(rd).as_deref(), *want, "rd = {rd:?}");
        }
    }

    #[test]
    fn plain_http_targets_only_when_gatehouse_is_served_over_http() {
        let dev = redirects("http://127.0.0.1:8080", &["localhost:3000"]);
        assert_eq!(dev.target("http://127.0.0.1:8080/x").as_deref(), Some("http://127.0.0.1:8080/x"));
        assert_eq!(dev.target("http://localhost:3000/").as_deref(), Some("http://localhost:3000/"));
        assert_eq!(dev.target("http://127.0.0.1:9999/x"), None, "another port is another origin");
        assert_eq!(dev.target("/x").as_deref(), Some("/x"));
    }
}
