//! The host a request is for, in the one form host rules compare against: lowercase, no
//! trailing dot, no port; and the authority sent upstream, the same host with its port.

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, Uri, Version, header};

/// Why the host of a request cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// More than one `Host` header.
    Repeated,
    /// `Host` and the request target (`:authority` on HTTP/2) name different hosts.
    Disagree,
    /// Not a host name or address, optionally with a port.
    Invalid,
    /// HTTP/1.1 without any host (RFC 9112 §3.2).
    Missing,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Repeated => "the request has more than one Host header",
            HostError::Disagree => "the Host header and the request target name different hosts",
            HostError::Invalid => "the request's host is not a valid host name",
            HostError::Missing => "the request has no Host header",
        })
    }
}

/// A request's host, canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalHost<'a> {
    /// Lowercase, without trailing dot, port or IPv6 brackets: what host rules match.
    name: Cow<'a, str>,
    /// `name` plus `:port` when one was given, brackets restored: what `Host` upstream says.
    authority: Cow<'a, str>,
}

impl<'a> CanonicalHost<'a> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn into_owned(self) -> CanonicalHost<'static> {
        CanonicalHost { name: self.name.into_owned().into(), authority: self.authority.into_owned().into() }
    }

    fn empty() -> Self {
        CanonicalHost { name: "".into(), authority: "".into() }
    }
}

/// The host of a request: its `Host` header and its target's authority (absolute-form on
/// HTTP/1.1, `:authority` on HTTP/2), which must agree when both are present.
pub fn request_host<'a>(
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Result<CanonicalHost<'a>, HostError> {
    let mut values = headers.get_all(header::HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(HostError::Repeated);
    }
    let header = header.map(|v| v.to_str().map_err(|_| HostError::Invalid)).transpose()?;
    let target = uri.authority().map(|a| a.as_str());
    match (header, target) {
        (Some(h), Some(t)) => {
            let (h, t) = (canonical(h)?, canonical(t)?);
            if h.name != t.name || port_of(&h.authority) != port_of(&t.authority) {
                return Err(HostError::Disagree);
            }
            Ok(t)
        }
        (Some(h), None) => canonical(h),
        (None, Some(t)) => canonical(t),
        (None, None) if version == Version::HTTP_11 => Err(HostError::Missing),
        (None, None) => Ok(CanonicalHost::empty()),
    }
}

fn port_of(authority: &str) -> Option<&str> {
    let after_host = authority.rsplit_once(']').map(|(_, rest)| rest).unwrap_or(authority);
    after_host.rsplit_once(':').map(|(_, p)| p)
}

/// Canonicalises `host[:port]` as written in a `Host` header or a forwarding header.
pub fn canonical(raw: &str) -> Result<CanonicalHost<'_>, HostError> {
    let raw = raw.trim_matches([' ', '\t']);
    let (host, port) = split_port(raw)?;
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(HostError::Invalid);
    }
    let bracketed = host.starts_with('[');
    let name = if bracketed {
        let inner = &host[1..host.len() - 1];
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| HostError::Invalid)?;
        inner
    } else {
        // One trailing dot names the same host (an absolute DNS name); more is not a name.
        let name = host.strip_suffix('.').unwrap_or(host);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(HostError::Invalid);
        }
        name
    };
    let needs_lower = name.bytes().any(|b| b.is_ascii_uppercase());
    let name: Cow<'_, str> = if needs_lower { name.to_ascii_lowercase().into() } else { name.into() };
    let unchanged = !needs_lower && !host.ends_with('.');
    let authority: Cow<'_, str> = if unchanged {
        raw.into()
    } else {
        let host = if bracketed { format!("[{name}]") } else { name.to_string() };
        match port {
            Some(p) => format!("{host}:{p}").into(),
            None => host.into(),
        }
    };
    Ok(CanonicalHost { name, authority })
}

fn split_port(raw: &str) -> Result<(&str, Option<&str>), HostError> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or(HostError::Invalid)?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest.strip_prefix(':').map(|p| (host, Some(p))).ok_or(HostError::Invalid),
        };
    }
    Ok(match raw.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (raw, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let table = [
            ("admin.example.com", "admin.example.com", "admin.example.com"),
            ("ADMIN.Example.COM", "admin.example.com", "admin.example.com"),
            ("admin.example.com.", "admin.example.com", "admin.example.com"),
            ("Admin.Example.com.:8443", "admin.example.com", "admin.example.com:8443"),
            ("admin.example.com:80", "admin.example.com", "admin.example.com:80"),
            ("[::1]:8080", "::1", "[::1]:8080"),
            ("[::1]", "::1", "[::1]"),
            ("127.0.0.1:9", "127.0.0.1", "127.0.0.1:9"),
            ("localhost", "localhost", "localhost"),
        ];
        for (raw, name, authority) in table {
            let c = canonical(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!((c.name(), c.authority()), (name, authority), "{raw}");
        }
    }

    #[test]
    fn refused_forms() {
        for raw in [
            "",
            ".",
            "admin.example.com..",
            "a..b",
            "user@admin.example.com",
            "admin.example.com:",
            "admin.example.com:99999",
            "admin.example.com:8o",
            "admin example.com",
            "admin.example.com/x",
            "[::1",
            "[nope]:80",
            "[::1]x",
            "admin.example.com\\",
            "ädmin.example.com",
        ] {
            assert_eq!(canonical(raw), Err(HostError::Invalid), "{raw}");
        }
    }

    #[test]
    fn header_and_target_must_agree() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "Admin.example.com.".parse().unwrap());
        let uri: Uri = "https://admin.example.com/x".parse().unwrap();
        assert_eq!(request_host(Version::HTTP_2, &uri, &h).unwrap().name(), "admin.example.com");
        let other: Uri = "https://public.example.com/x".parse().unwrap();
        assert_eq!(request_host(Version::HTTP_2, &other, &h), Err(HostError::Disagree));
        let port: Uri = "https://admin.example.com:444/x".parse().unwrap();
        assert_eq!(request_host(Version::HTTP_2, &port, &h), Err(HostError::Disagree));
        h.append(header::HOST, "admin.example.com".parse().unwrap());
        assert_eq!(request_host(Version::HTTP_11, &"/x".parse().unwrap(), &h), Err(HostError::Repeated));
        let none = HeaderMap::new();
        assert_eq!(request_host(Version::HTTP_11, &"/x".parse().unwrap(), &none), Err(HostError::Missing));
        assert_eq!(request_host(Version::HTTP_10, &"/x".parse().unwrap(), &none).unwrap().name(), "");
    }
}
