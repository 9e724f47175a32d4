//! The session cookie: an opaque 256-bit random value (only its SHA-256 is stored), its
//! `Set-Cookie` attributes, finding it among a request's cookies and removing it before the
//! request is forwarded, so the app never sees it.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::SessionConfig;

/// 32 random bytes, base64url without padding.
const VALUE_LEN: usize = 43;
/// Cookies of this name looked at in one request: a browser sends one, a cookie-tossing
/// subdomain can add a few; more is not a browser.
const MAX_CANDIDATES: usize = 4;

/// A new cookie value and the digest to store for it.
pub fn new_value() -> (String, [u8; 32]) {
    let mut random = [0u8; 32];
    SystemRandom::new().fill(&mut random).expect("system randomness");
    let value = URL_SAFE_NO_PAD.encode(random);
    let digest = digest_of(&value).expect("a value just made has the right shape");
    (value, digest)
}

/// The stored digest of a cookie value; `None` for anything not shaped like one, which is
/// then refused without a lookup.
pub fn digest_of(value: &str) -> Option<[u8; 32]> {
    if value.len() != VALUE_LEN || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    digest(&SHA256, value.as_bytes()).as_ref().try_into().ok()
}

/// How the cookie is named and scoped for one configuration.
#[derive(Debug, Clone)]
pub struct CookieSpec {
    /// `__Host-<cookie_name>` over HTTPS without a domain: the browser then refuses one set
    /// by a subdomain or over plain HTTP, so it cannot be tossed or fixed by them; with a
    /// domain, `__Secure-`.
    pub name: String,
    domain: Option<String>,
    secure: bool,
    max_age: u64,
}

impl CookieSpec {
    /// `secure` is whether browsers reach Gatehouse over HTTPS (`server.public_url`).
    pub fn new(session: &SessionConfig, secure: bool) -> Self {
        let name = match (secure, &session.cookie_domain) {
            (true, None) => format!("__Host-{}", session.cookie_name),
            // Shared with subdomains, it cannot be __Host-; __Secure- still keeps plain-HTTP
            // pages of those subdomains from planting one.
            (true, Some(_)) => format!("__Secure-{}", session.cookie_name),
            (false, _) => session.cookie_name.clone(),
        };
        CookieSpec { name, domain: session.cookie_domain.clone(), secure, max_age: session.ttl.as_secs() }
    }

    /// `Set-Cookie` for a new session.
    pub fn set(&self, value: &str) -> HeaderValue {
        self.header(value, self.max_age)
    }

    /// `Set-Cookie` that makes the browser forget the cookie.
    pub fn clear(&self) -> HeaderValue {
        self.header("", 0)
    }

    fn header(&self, value: &str, max_age: u64) -> HeaderValue {
        let mut text = format!("{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax", self.name);
        if self.secure {
            text.push_str("; Secure");
        }
        if let Some(domain) = &self.domain {
            text.push_str("; Domain=");
            text.push_str(domain);
        }
        HeaderValue::from_str(&text).expect("cookie names, values and domains are validated header text")
    }

    /// The well-formed values of this cookie in the request, in the order sent, each once
    /// (a few at most): junk planted ahead of the real one cannot push it out.
    pub fn find<'a>(&self, headers: &'a HeaderMap) -> Vec<&'a str> {
        let mut found: Vec<&str> = Vec::new();
        for pair in pairs(headers) {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
            let Ok(value) = std::str::from_utf8(value) else { continue };
            if name == self.name.as_bytes() && digest_of(value).is_some() && !found.contains(&value) {
                found.push(value);
                if found.len() == MAX_CANDIDATES {
                    break;
                }
            }
        }
        found
    }

    /// Whether the request sends a cookie of this name, well-formed or not.
    pub fn present(&self, headers: &HeaderMap) -> bool {
        pairs(headers)
            .any(|pair| pair.split(|b| *b == b'=').next().is_some_and(|n| n.trim_ascii() == self.name.as_bytes()))
    }

    /// Removes this cookie from the request's `Cookie` headers, leaving every other cookie as
    /// it was sent (bytes that are not text included) in one header, or none if none is left.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let name = self.name.as_bytes();
        let named = |pair: &[u8]| {
            let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
            key.trim_ascii() == name
        };
        if !headers.get_all(COOKIE).iter().any(|v| v.as_bytes().split(|b| *b == b';').any(named)) {
            return;
        }
        // The rest in one header, as HTTP/2's split cookie fields are joined for HTTP/1.1
        // (RFC 9113 §8.2.3): the upstream is spoken to over HTTP/1.1.
        let kept: Vec<Vec<u8>> = headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .filter(|pair| !named(pair))
            .map(|pair| pair.trim_ascii().to_vec())
            .filter(|pair| !pair.is_empty())
            .collect();
        headers.remove(COOKIE);
        if let Ok(value) = HeaderValue::from_bytes(&kept.join(&b"; "[..]))
            && !value.is_empty()
        {
            headers.insert(COOKIE, value);
        }
    }
}

/// Every `name=value` pair of every `Cookie` header (HTTP/2 may split them into several),
/// as bytes: an app's cookie that is not ASCII must not hide the session's beside it.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|b| *b == b';'))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RedirectMode;

    fn spec(domain: Option<&str>, secure: bool) -> CookieSpec {
        let session = SessionConfig {
            cookie_name: "gh_session".into(),
            ttl: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
            cookie_domain: domain.map(str::to_string),
            allowed_redirect_hosts: Vec::new(),
            redirect: RedirectMode::Html,
        };
        CookieSpec::new(&session, secure)
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn values_are_random_and_only_well_formed_ones_have_a_digest() {
        let (a, da) = new_value();
        let (b, db) = new_value();
        assert_ne!(a, b);
        assert_ne!(da, db);
        assert_eq!(digest_of(&a), Some(da));
        for bad in ["", "short", &a[1..], &format!("{a}x"), &a.replace(|_: char| true, "+"), &format!("{}=", &a[..42])]
        {
            assert_eq!(digest_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn attributes_follow_the_scheme_and_domain() {
        let cases = [
            (None, true, "__Host-gh_session=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure"),
            (None, false, "gh_session=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
            (
                Some("example.com"),
                true,
                "__Secure-gh_session=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure; Domain=example.com",
            ),
        ];
        for (domain, secure, want) in cases {
            assert_eq!(spec(domain, secure).set("v"), want);
        }
        assert_eq!(spec(None, true).clear(), "__Host-gh_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_only_it_is_stripped() {
        let s = spec(None, true);
        let (v1, v2) = ("A".repeat(43), "b_-".repeat(14) + "c");
        let sent_found_forwarded: Vec<(Vec<String>, Vec<&str>, Vec<&str>)> = vec![
            (vec![format!("__Host-gh_session={v1}")], vec![&v1], vec![]),
            (vec![format!("a=1; __Host-gh_session={v1}; b=2")], vec![&v1], vec!["a=1; b=2"]),
            (vec!["a=1".into(), format!("__Host-gh_session={v1}"), "b=2".into()], vec![&v1], vec!["a=1; b=2"]),
            (vec![format!("__Host-gh_session={v1}; __Host-gh_session={v2}")], vec![&v1, &v2], vec![]),
            (vec![format!("__Host-gh_session={v1}; __Host-gh_session={v1}")], vec![&v1], vec![]),
            (vec![format!("gh_session={v1}; x=1")], vec![], vec![]),
            (vec!["__Host-gh_session_other=1".into()], vec![], vec!["__Host-gh_session_other=1"]),
            (vec![format!("a=1;b=2;  __Host-gh_session=\"{v1}\" ;c")], vec![&v1], vec!["a=1; b=2; c"]),
            (vec!["__Host-gh_session=abc; theme=dark".into()], vec![], vec!["theme=dark"]),
            (vec!["theme=dark".into()], vec![], vec!["theme=dark"]),
        ];
        for (sent, found, forwarded) in sent_found_forwarded {
            let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
            let mut h = headers(&sent);
            assert_eq!(s.find(&h), found, "{sent:?}");
            s.strip(&mut h);
            let left: Vec<&str> = h.get_all(COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
            if sent[0].starts_with("gh_session=") {
                // Not this cookie's name (no prefix): the app's, left alone.
                assert_eq!(left, sent, "{sent:?}");
            } else {
                assert_eq!(left, forwarded, "{sent:?}");
            }
        }
        // Junk planted ahead of the real value does not push it out.
        let junk = "__Host-gh_session=x; ".repeat(20);
        let h = headers(&[&format!("{junk}__Host-gh_session={v1}")]);
        assert_eq!(s.find(&h), vec![v1.as_str()]);
        // A non-ASCII cookie of the app's in the same header does not hide the session's.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(format!("a=caf\u{e9}; __Host-gh_session={v1}").as_bytes()).unwrap());
        assert_eq!(s.find(&h), vec![v1.as_str()]);
        // Bytes that are not text in another cookie: that cookie is forwarded as it was sent.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(b"a=caf\xe9; __Host-gh_session=abc").unwrap());
        s.strip(&mut h);
        assert_eq!(h.get(COOKIE).unwrap().as_bytes(), b"a=caf\xe9");
        let many: String = (0..20).map(|i| format!("__Host-gh_session={i:0>43}; ")).collect();
        assert_eq!(s.find(&headers(&[&many])).len(), MAX_CANDIDATES, "a flood of copies is not looked up");
    }
}
