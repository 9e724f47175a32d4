//! The route table, compiled once at load: (host, method, path) -> the access rule of the
//! first matching entry. Paths are matched in a canonical form so `/%61dmin` is `/admin`.

use http::Method;

/// Who may pass a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any verified caller holding every listed permission and, if roles are listed, one of them.
    Authenticated {
        permissions: Vec<String>,
        roles: Vec<String>,
    },
}

/// One `[[routes]]` entry as validated by the config.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub host: Option<String>,
    pub path: String,
    pub methods: Vec<Method>,
    pub access: Access,
}

#[derive(Debug, Clone)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone)]
struct Rule {
    host: HostMatch,
    /// The prefix without its trailing `/`, so `/admin/` also matches `/admin`.
    prefix: String,
    methods: Vec<Method>,
    access: Access,
}

/// Requests no rule matches need a verified caller: the table fails closed.
static DEFAULT_ACCESS: Access = Access::Authenticated { permissions: Vec::new(), roles: Vec::new() };

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<Rule>,
}

/// Why a request path cannot be matched safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `.` or `..` segments (also percent-encoded), which upstreams resolve differently.
    DotSegment,
    /// Malformed percent-encoding, NUL, or not UTF-8 once decoded.
    BadEncoding,
}

impl RouteTable {
    pub fn compile(specs: Vec<RuleSpec>) -> Self {
        let rules = specs
            .into_iter()
            .map(|s| Rule {
                host: match s.host.as_deref().map(str::to_ascii_lowercase) {
                    None => HostMatch::Any,
                    Some(h) if h == "*" => HostMatch::Any,
                    Some(h) => match h.strip_prefix('*') {
                        Some(suffix) => HostMatch::Suffix(suffix.to_string()),
                        None => HostMatch::Exact(h),
                    },
                },
                prefix: s.path.trim_end_matches('/').to_string(),
                methods: s.methods,
                access: s.access,
            })
            .collect();
        RouteTable { rules }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The access rule for a request. `host` is the Host header without port, any case;
    /// `path` must already be canonical (see [`canonical_path`]).
    pub fn access(&self, host: &str, method: &Method, path: &str) -> &Access {
        self.rules.iter().find(|r| r.matches(host, method, path)).map(|r| &r.access).unwrap_or(&DEFAULT_ACCESS)
    }
}

impl Rule {
    fn matches(&self, host: &str, method: &Method, path: &str) -> bool {
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Suffix(s) => host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s),
        };
        host_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && path.starts_with(self.prefix.as_str())
            && (path.len() == self.prefix.len() || path.as_bytes()[self.prefix.len()] == b'/')
    }
}

/// The form of a path that rules are matched against: percent-decoded (except `%2F`, which
/// stays a literal inside a segment), runs of `/` collapsed, dot segments refused.
/// Borrowed when the path needs no change, which is the common case.
pub fn canonical_path(path: &str) -> Result<std::borrow::Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let needs_work = bytes.contains(&b'%') || path.contains("//") || has_dot_segment(path);
    if !needs_work {
        return if path.starts_with('/') { Ok(path.into()) } else { Ok(format!("/{path}").into()) };
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEncoding)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEncoding)?;
            match b {
                0 => return Err(PathError::BadEncoding),
                b'/' => decoded.extend_from_slice(b"%2F"),
                b'%' => decoded.extend_from_slice(b"%25"),
                _ => decoded.push(b),
            }
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;
    if has_dot_segment(&decoded) {
        return Err(PathError::DotSegment);
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    Ok(out.into())
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == ".." || s.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let auth = |p: &[&str]| Access::Authenticated {
            permissions: p.iter().map(|s| s.to_string()).collect(),
            roles: vec![],
        };
        RouteTable::compile(vec![
            RuleSpec { host: Some("*.internal".into()), path: "/".into(), methods: vec![], access: Access::Public },
            RuleSpec { host: None, path: "/public/".into(), methods: vec![], access: Access::Public },
            RuleSpec {
                host: None,
                path: "/admin/".into(),
                methods: vec![Method::GET, Method::POST],
                access: auth(&["admin"]),
            },
            RuleSpec { host: None, path: "/admin/".into(), methods: vec![], access: auth(&["root"]) },
            RuleSpec { host: None, path: "/".into(), methods: vec![], access: auth(&[]) },
        ])
    }

    #[test]
    fn first_match_wins() {
        let t = table();
        assert_eq!(t.access("a.com", &Method::GET, "/public/x"), &Access::Public);
        assert_eq!(t.access("a.com", &Method::GET, "/public"), &Access::Public);
        assert_ne!(t.access("a.com", &Method::GET, "/publicity"), &Access::Public);
        let Access::Authenticated { permissions, .. } = t.access("a.com", &Method::GET, "/admin/users") else {
            panic!()
        };
        assert_eq!(permissions, &["admin"]);
        let Access::Authenticated { permissions, .. } = t.access("a.com", &Method::DELETE, "/admin") else { panic!() };
        assert_eq!(permissions, &["root"]);
        assert_eq!(t.access("svc.INTERNAL", &Method::GET, "/admin/x"), &Access::Public);
        assert_ne!(t.access("internal", &Method::GET, "/x"), &Access::Public);
    }

    #[test]
    fn unmatched_requires_authentication() {
        let t = RouteTable::compile(vec![]);
        assert_eq!(t.access("h", &Method::GET, "/x"), &DEFAULT_ACCESS);
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(canonical_path("/a/b").unwrap(), "/a/b");
        assert_eq!(canonical_path("/%61dmin/x").unwrap(), "/admin/x");
        assert_eq!(canonical_path("//admin//x/").unwrap(), "/admin/x/");
        assert_eq!(canonical_path("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(canonical_path("/public/../admin"), Err(PathError::DotSegment));
        assert_eq!(canonical_path("/public/%2e%2e/admin"), Err(PathError::DotSegment));
        assert_eq!(canonical_path("/public/.%2E/admin"), Err(PathError::DotSegment));
        assert_eq!(canonical_path("/a/..\\admin"), Err(PathError::DotSegment));
        assert_eq!(canonical_path("/bad%zz"), Err(PathError::BadEncoding));
        assert_eq!(canonical_path("/nul%00"), Err(PathError::BadEncoding));
        assert_eq!(canonical_path("/%ff%fe"), Err(PathError::BadEncoding));
    }
}
