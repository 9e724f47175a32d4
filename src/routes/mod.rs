//! The route table, compiled once at load: (host, method, path) -> the access rule of the
//! first matching entry, on canonical hosts ([`host`]) and canonical paths ([`path`]).
//!
//! Matching fails closed wherever an upstream could read a request more broadly than the
//! table: a rule that protects a path also covers its case variants and Windows' trailing
//! dots and spaces (`/ADMIN./x` is under `/admin/`), while a public rule opens only the
//! exact spelling; `GET` rules cover `HEAD`; and a request whose path and host match a rule
//! but whose method no rule of that (host, path) allows is refused with 405 instead of
//! falling through to a later, looser rule (`routing.method_mismatch = "next"` restores
//! the fall-through).

pub mod host;
pub mod path;

use http::Method;

pub use host::{CanonicalHost, HostError};
pub use path::{CanonicalPath, EscapedSlashes, PathError};

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

/// One `[[routes]]` entry as validated by the config: host pattern and path prefix already
/// canonical (see [`HostPattern::parse`] and [`path::canonicalize`]).
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub host: HostPattern,
    pub path: String,
    pub methods: Vec<Method>,
    pub access: Access,
}

/// What a request whose path matches a rule but whose method does not gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodMismatch {
    /// 405, unless another rule for the same host and path allows the method.
    #[default]
    Deny,
    /// Go on to the next rule.
    Next,
}

/// How the table treats requests, from `[routing]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoutingPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub method_mismatch: MethodMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// `*`, `*.example.com` or a host name, in any case, with or without a trailing dot.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        if text == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(domain) = text.strip_prefix("*.") {
            let c = host::canonical(domain)?;
            if c.authority() != c.name() {
                return Err(HostError::Invalid);
            }
            return Ok(HostPattern::Suffix(format!(".{}", c.name())));
        }
        let c = host::canonical(text)?;
        if c.authority() != c.name() && c.authority() != format!("{}.", c.name()) {
            // A port: host rules match names, never ports.
            return Err(HostError::Invalid);
        }
        Ok(HostPattern::Exact(c.name().to_string()))
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    host: HostPattern,
    /// The canonical prefix without its trailing `/`, so `/admin/` also matches `/admin`.
    prefix: String,
    methods: Vec<Method>,
    access: Access,
}

/// Requests no rule matches need a verified caller: the table fails closed.
static DEFAULT_ACCESS: Access = Access::Authenticated { permissions: Vec::new(), roles: Vec::new() };

/// A request that matched a rule's host and path but no rule for it allows its method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodNotAllowed {
    /// Every method the rules for that host and path allow.
    pub allow: Vec<Method>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<Rule>,
    policy: RoutingPolicy,
}

impl RouteTable {
    pub fn compile(specs: Vec<RuleSpec>, policy: RoutingPolicy) -> Self {
        let rules = specs
            .into_iter()
            .map(|s| {
                let mut methods = s.methods;
                // Frameworks answer HEAD with the GET handler: a GET rule must hold for HEAD too.
                if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                    methods.push(Method::HEAD);
                }
                Rule { host: s.host, prefix: s.path.trim_end_matches('/').to_string(), methods, access: s.access }
            })
            .collect();
        RouteTable { rules, policy }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule names a host: then a request without one cannot be placed.
    pub fn has_host_rules(&self) -> bool {
        self.rules.iter().any(|r| r.host != HostPattern::Any)
    }

    pub fn policy(&self) -> RoutingPolicy {
        self.policy
    }

    /// Canonicalises a request path under this table's policy.
    pub fn canonical_path<'p>(&self, raw: &'p str) -> Result<CanonicalPath<'p>, PathError> {
        path::canonicalize(raw, self.policy.escaped_slashes)
    }

    /// The access rule for a request. `host` is canonical ([`CanonicalHost::name`]), `path`
    /// the matched form of a canonical path.
    pub fn access(&self, host: &str, method: &Method, path: &str) -> Result<&Access, MethodNotAllowed> {
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.host.matches(host) || !rule.path_matches(path) {
                continue;
            }
            if rule.method_matches(method) {
                return Ok(&rule.access);
            }
            if self.policy.method_mismatch == MethodMismatch::Deny {
                return self.same_route(i, host, method, path);
            }
        }
        Ok(&DEFAULT_ACCESS)
    }

    /// The rules after `first` for the same host and path decide; none allowing the method is 405.
    fn same_route(&self, first: usize, host: &str, method: &Method, path: &str) -> Result<&Access, MethodNotAllowed> {
        let anchor = &self.rules[first];
        let siblings = self.rules[first..].iter().filter(|r| r.host == anchor.host && r.prefix == anchor.prefix);
        let mut allow = Vec::new();
        for rule in siblings {
            if rule.host.matches(host) && rule.path_matches(path) && rule.method_matches(method) {
                return Ok(&rule.access);
            }
            for m in &rule.methods {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
        Err(MethodNotAllowed { allow })
    }
}

impl Rule {
    fn method_matches(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    fn path_matches(&self, path: &str) -> bool {
        match self.access {
            Access::Public => {
                path.starts_with(self.prefix.as_str())
                    && (path.len() == self.prefix.len() || path.as_bytes()[self.prefix.len()] == b'/')
            }
            Access::Authenticated { .. } => folded_prefix(path, &self.prefix),
        }
    }
}

/// Whether `path` lies under `prefix`, segment by segment, as the most lenient upstream
/// would read it: case-insensitive (also across Unicode case mappings such as `ı`/`I`, `İ`/`i`,
/// `K`/`k` (Kelvin), and fullwidth forms such as `ａ`), with trailing dots and spaces ignored
/// (Windows) and a format suffix allowed (`users.json` is `users` to Rails and Spring).
fn folded_prefix(path: &str, prefix: &str) -> bool {
    let mut segments = path.split('/').skip(1);
    for want in prefix.split('/').skip(1) {
        match segments.next() {
            Some(seg) if segment_matches(seg, want.trim_end_matches(['.', ' '])) => {}
            _ => return false,
        }
    }
    true
}

fn segment_matches(seg: &str, want: &str) -> bool {
    let mut chars = seg.chars();
    for w in want.chars() {
        match chars.next() {
            Some(c) if c == w || chars_fold_eq(c, w) => {}
            _ => return false,
        }
    }
    let rest = chars.as_str();
    rest.is_empty() || rest.starts_with('.') || rest.bytes().all(|b| b == b' ' || b == b'.')
}

fn chars_fold_eq(x: char, y: char) -> bool {
    let (x, y) = (unwiden(x), unwiden(y));
    if x.is_ascii() && y.is_ascii() {
        return x.eq_ignore_ascii_case(&y);
    }
    // Java's and .NET's simple mappings take only the first char (`İ` -> `i`).
    x.to_lowercase().eq(y.to_lowercase())
        || x.to_uppercase().eq(y.to_uppercase())
        || x.to_lowercase().next() == y.to_lowercase().next()
}

/// Fullwidth ASCII (U+FF01..U+FF5E), which NFKC and Windows best-fit turn into ASCII.
fn unwiden(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(p: &[&str]) -> Access {
        Access::Authenticated { permissions: p.iter().map(|s| s.to_string()).collect(), roles: vec![] }
    }

    fn spec(host: &str, path: &str, methods: &[Method], access: Access) -> RuleSpec {
        RuleSpec { host: HostPattern::parse(host).unwrap(), path: path.into(), methods: methods.to_vec(), access }
    }

    fn table(policy: RoutingPolicy) -> RouteTable {
        RouteTable::compile(
            vec![
                spec("*.internal", "/", &[], Access::Public),
                spec("*", "/public/", &[], Access::Public),
                spec("*", "/admin/", &[Method::GET, Method::POST], auth(&["admin"])),
                spec("*", "/admin/", &[Method::DELETE], auth(&["root"])),
                spec("admin.example.com", "/", &[], auth(&["staff"])),
                spec("*", "/", &[], auth(&[])),
            ],
            policy,
        )
    }

    fn perms(r: Result<&Access, MethodNotAllowed>) -> Vec<&str> {
        match r {
            Ok(Access::Authenticated { permissions, .. }) => permissions.iter().map(String::as_str).collect(),
            Ok(Access::Public) => vec!["<public>"],
            Err(_) => vec!["<405>"],
        }
    }

    #[test]
    fn first_match_wins() {
        let t = table(RoutingPolicy::default());
        let get = |path| perms(t.access("a.com", &Method::GET, path));
        assert_eq!(get("/public/x"), ["<public>"]);
        assert_eq!(get("/public"), ["<public>"]);
        assert_eq!(get("/publicity"), Vec::<&str>::new());
        assert_eq!(get("/admin/users"), ["admin"]);
        assert_eq!(perms(t.access("a.com", &Method::DELETE, "/admin")), ["root"]);
        assert_eq!(perms(t.access("svc.internal", &Method::GET, "/admin/x")), ["<public>"]);
        assert_eq!(perms(t.access("internal", &Method::GET, "/x")), Vec::<&str>::new());
        assert_eq!(perms(t.access("admin.example.com", &Method::GET, "/x")), ["staff"]);
    }

    #[test]
    fn protected_prefixes_cover_every_spelling_public_ones_only_their_own() {
        let t = table(RoutingPolicy::default());
        for path in [
            "/ADMIN/users",
            "/Admin/users",
            "/aDmIn",
            "/admin./users",
            "/admin ./users",
            "/adm\u{131}n/users",
            "/adm\u{130}n/users",
            "/\u{FF41}dmin/users",
            "/\u{FF21}DMIN",
            "/ADMIN.json",
            "/admin.json/x",
            "/admin .",
        ] {
            assert_eq!(perms(t.access("a.com", &Method::GET, path)), ["admin"], "{path}");
        }
        // A prefix whose segment ends in a dot still matches itself.
        let dotted = RouteTable::compile(vec![spec("*", "/v1./", &[], auth(&["v"]))], RoutingPolicy::default());
        assert_eq!(perms(dotted.access("a", &Method::GET, "/v1./x")), ["v"]);
        assert_eq!(perms(dotted.access("a", &Method::GET, "/V1/x")), ["v"]);
        // Kelvin sign lowercases to `k`.
        let k = RouteTable::compile(vec![spec("*", "/kube/", &[], auth(&["k"]))], RoutingPolicy::default());
        assert_eq!(perms(k.access("a", &Method::GET, "/\u{212A}ube/x")), ["k"]);
        for path in ["/PUBLIC/x", "/Public/x", "/public./x", "/public.json"] {
            assert_eq!(perms(t.access("a.com", &Method::GET, path)), Vec::<&str>::new(), "{path}");
        }
    }

    #[test]
    fn methods_fail_closed() {
        let t = table(RoutingPolicy::default());
        assert_eq!(perms(t.access("a.com", &Method::HEAD, "/admin/x")), ["admin"], "GET rules cover HEAD");
        let err = t.access("a.com", &Method::PATCH, "/admin/x").unwrap_err();
        assert_eq!(err.allow, [Method::GET, Method::POST, Method::HEAD, Method::DELETE]);
        let odd = Method::from_bytes(b"get").unwrap();
        assert!(t.access("a.com", &odd, "/admin/x").is_err());
        let next = table(RoutingPolicy { method_mismatch: MethodMismatch::Next, ..Default::default() });
        assert_eq!(perms(next.access("a.com", &Method::PATCH, "/admin/x")), Vec::<&str>::new());
    }

    #[test]
    fn unmatched_requires_authentication() {
        let t = RouteTable::compile(vec![], RoutingPolicy::default());
        assert_eq!(t.access("h", &Method::GET, "/x"), Ok(&DEFAULT_ACCESS));
    }

    #[test]
    fn host_patterns() {
        assert_eq!(HostPattern::parse("Admin.Example.com.").unwrap(), HostPattern::Exact("admin.example.com".into()));
        assert_eq!(HostPattern::parse("*.Example.com").unwrap(), HostPattern::Suffix(".example.com".into()));
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::Any);
        assert!(HostPattern::parse("admin.example.com:8080").is_err());
        assert!(HostPattern::parse("*admin.com").is_err());
    }
}
