//! Path canonicalisation + route matching. Properties, for any request target:
//! - the canonical form is a fixed point: canonicalising the forwarded path accepts it and
//!   gives the same forwarded and matched forms;
//! - the rule matched for the canonical forwarded path is the rule matched for the raw path;
//! - what is forwarded holds no dot segment, `;`, backslash, control byte or `//`, and decodes
//!   to the matched form.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/routes/mod.rs"]
mod routes;

use http::Method;
use libfuzzer_sys::fuzz_target;
use routes::{Access, EscapedSlashes, HostPattern, MethodMismatch, RouteTable, RoutingPolicy, RuleSpec};

fn table(policy: RoutingPolicy) -> RouteTable {
    let auth = |p: &str| Access::Authenticated { permissions: vec![p.to_string()], roles: vec![] };
    let rule = |host: &str, path: &str, methods: &[Method], access: Access| RuleSpec {
        host: HostPattern::parse(host).unwrap(),
        path: path.to_string(),
        methods: methods.to_vec(),
        access,
    };
    RouteTable::compile(
        vec![
            rule("*", "/public/", &[], Access::Public),
            rule("*", "/public/admin/", &[], auth("admin")),
            rule("*", "/admin/", &[Method::GET, Method::POST], auth("admin")),
            rule("*", "/admin/", &[Method::DELETE], auth("root")),
            rule("*", "/a b/", &[], auth("space")),
            rule("*", "/café/", &[], Access::Public),
            rule("*.internal", "/", &[], Access::Public),
            rule("*", "/", &[], auth("any")),
        ],
        policy,
    )
}

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let h = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("forwarded escapes are valid");
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(raw) = std::str::from_utf8(rest) else { return };
    let slashes = [EscapedSlashes::Reject, EscapedSlashes::Unescape, EscapedSlashes::Keep][usize::from(selector % 3)];
    let method =
        [Method::GET, Method::HEAD, Method::POST, Method::DELETE, Method::PATCH][usize::from(selector / 3 % 5)].clone();
    let host = ["app.example.com", "svc.internal"][usize::from(selector / 15 % 2)];
    let policy = RoutingPolicy {
        escaped_slashes: slashes,
        method_mismatch: if selector >= 128 { MethodMismatch::Next } else { MethodMismatch::Deny },
    };
    let table = table(policy);
    let Ok(once) = table.canonical_path(raw) else { return };
    let again = table.canonical_path(once.forward()).expect("a forwarded path is accepted again");
    assert_eq!(again.forward(), once.forward(), "{raw:?}");
    assert_eq!(again.matched(), once.matched(), "{raw:?}");
    assert_eq!(table.access(host, &method, once.matched()), table.access(host, &method, again.matched()), "{raw:?}");

    let fwd = once.forward();
    assert!(fwd.starts_with('/') && !fwd.contains("//"), "{raw:?} -> {fwd:?}");
    assert!(!fwd.contains(';') && !fwd.contains('\\'), "{raw:?} -> {fwd:?}");
    assert!(fwd.bytes().all(|b| b.is_ascii_graphic()), "{raw:?} -> {fwd:?}");
    let decoded = if slashes == EscapedSlashes::Keep { fwd.replace("%2F", "\u{0}") } else { fwd.to_string() };
    let decoded = String::from_utf8(decode(&decoded)).expect("the forwarded path decodes to UTF-8");
    for segment in decoded.split('/') {
        assert!(segment.is_empty() || !segment.bytes().all(|b| b == b'.' || b == b' '), "{raw:?} -> {fwd:?}");
    }
    let matched = if slashes == EscapedSlashes::Keep {
        once.matched().replace("%2F", "\u{0}")
    } else {
        once.matched().to_string()
    };
    assert_eq!(decoded, matched, "{raw:?}: the forwarded path decodes to the matched one");
});
