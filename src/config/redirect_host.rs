//! Hosts of `session.allowed_redirect_hosts`: `app.example.com`, `*.example.com`,
//! optionally with a port; parsed once at load, matched against URLs the browser will follow.

use url::Url;

/// `session.allowed_redirect_hosts` entries: `app.example.com`, `*.example.com` (any
/// subdomain, not the domain itself), either with `:port` (else only the default port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHost {
    /// Lowercase ASCII (IDNA), without the `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl RedirectHost {
    /// Parses one entry; the error says why it is not a host pattern. Hosts are written in
    /// ASCII (an international name as its `xn--` form), compared without case.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = || format!("`{text}` is not a host name (`app.example.com`, `*.example.com`, optionally `:port`)");
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(refuse)?)),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(refuse());
        }
        // `*.com` would allow every site under a public suffix.
        if wildcard && !host.contains('.') {
            return Err(format!("`{text}`: a wildcard needs a domain of two labels or more (`*.example.com`)"));
        }
        Ok(RedirectHost { host: host.to_ascii_lowercase(), wildcard, port })
    }

    /// Whether `url`'s host and port are this pattern's.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        // `Url::port` is `None` for the scheme's default port.
        host_ok && url.port() == self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_checked() {
        for good in ["app.example.com", "*.example.com", "localhost:3000", "*.corp.example:8443"] {
            assert!(RedirectHost::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a*.example.com",
            "app.*.com",
            "https://app.example.com",
            "app.example.com/x",
            "user@app.example.com",
            "app.example.com:99999",
            "exa mple.com",
            "*.com",
            "*.localhost",
        ] {
            assert!(RedirectHost::parse(bad).is_err(), "{bad}");
        }
    }
}
