//! Identity headers are overwrite-or-remove: every configured name is stripped from every
//! incoming request (all copies, any case), then only verified values are inserted.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::principal::Principal;
use crate::config::HeadersConfig;

/// Removes every reserved identity header, also when spelled with `_` for `-` (some
/// servers and frameworks read `X_Auth_User_Id` as `X-Auth-User-Id`). Returns how many
/// copies were stripped, so spoofing attempts can be counted and logged.
pub fn strip(headers: &mut HeaderMap, config: &HeadersConfig) -> usize {
    let mut stripped = 0;
    for name in &config.reserved {
        // Removes every value of the name; HeaderMap names are already lowercase.
        if let http::header::Entry::Occupied(e) = headers.entry(name) {
            stripped += e.remove_entry_mult().1.count();
        }
    }
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_') && is_reserved(&k.as_str().replace('_', "-"), config))
        .cloned()
        .collect();
    for name in underscored {
        if let http::header::Entry::Occupied(e) = headers.entry(name) {
            stripped += e.remove_entry_mult().1.count();
        }
    }
    stripped
}

fn is_reserved(name: &str, config: &HeadersConfig) -> bool {
    config.reserved.iter().any(|r| r.as_str() == name)
}

/// Inserts the principal's identity headers (rendered once per principal and reused).
pub fn inject(headers: &mut HeaderMap, principal: &Principal, config: &HeadersConfig) {
    for (name, value) in rendered(principal, config) {
        headers.insert(name.clone(), value.clone());
    }
}

/// Gives every configured identity header that `headers` lacks an empty value.
///
/// For `/verify` answers only (the proxy path omits unknown headers): a web server copying a
/// fixed list of names may invent a value for a name the answer lacks. Caddy before 2.9 sets
/// it to the literal text `{http.reverse_proxy.header.X-Auth-Team-Id}` (caddyserver/caddy#6610),
/// an identity nobody sent; an empty value is copied as empty, or not at all.
pub fn blank_missing(headers: &mut HeaderMap, config: &HeadersConfig) {
    for name in &config.identity {
        if let http::header::Entry::Vacant(e) = headers.entry(name) {
            e.insert(HeaderValue::from_static(""));
        }
    }
}

/// The identity headers of `principal`, built on first use and kept on it.
pub fn rendered<'p>(principal: &'p Principal, config: &HeadersConfig) -> &'p [(HeaderName, HeaderValue)] {
    principal.rendered.get_or_init(|| render(principal, config))
}

fn render(p: &Principal, config: &HeadersConfig) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(8);
    // Values were checked for control characters and size when the credential was
    // verified; `from_bytes` additionally refuses anything a header cannot carry.
    let mut push = |name: &Option<HeaderName>, value: Option<&str>| {
        if let (Some(name), Some(value)) = (name, value)
            && let Ok(v) = HeaderValue::from_bytes(value.as_bytes())
        {
            out.push((name.clone(), v));
        }
    };
    push(&config.user_id, Some(&p.subject));
    push(&config.email, p.email.as_deref());
    if p.email.is_some() {
        push(&config.email_verified, Some(if p.email_verified { "true" } else { "false" }));
    }
    push(&config.name, p.name.as_deref());
    if !p.roles.is_empty() {
        push(&config.role, Some(&p.roles.join(",")));
    }
    push(&config.permissions, Some(&p.permissions.join(",")));
    push(&config.team_id, p.team_id.as_deref());
    push(&config.method, Some(p.method.as_str()));
    for ((_, name), value) in config.claims.iter().zip(&p.mapped_claims) {
        push(&Some(name.clone()), value.as_deref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn strips_every_copy_in_any_case() {
        let cfg = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n[headers]\nclaims = { tenant = \"X-Tenant\" }\nstrip = [\"X-User\"]\n", Vec::new()).unwrap();
        let mut h = HeaderMap::new();
        h.append("X-AUTH-USER-ID", HeaderValue::from_static("evil"));
        h.append("x-auth-user-id", HeaderValue::from_static("evil2"));
        h.append("x-tenant", HeaderValue::from_static("t"));
        h.append("X-User", HeaderValue::from_static("u"));
        h.append("x-other", HeaderValue::from_static("keep"));
        h.append("X_Auth_User_Id", HeaderValue::from_static("underscored"));
        h.append("x_tenant", HeaderValue::from_static("t"));
        assert_eq!(strip(&mut h, &cfg.headers), 6);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    /// `/verify` blanks exactly `identity`, so every header `render` can produce must be in it.
    #[test]
    fn identity_lists_every_rendered_header_and_not_strip() {
        use std::collections::BTreeSet;

        use crate::auth::principal::{AuthMethod, PrincipalKind};
        let cfg = Config::from_toml("[upstream]\nurl = \"http://127.0.0.1:1\"\n[headers]\nname = \"X-Auth-Name\"\nclaims = { tenant = \"X-Tenant\" }\nstrip = [\"X-User\"]\n", Vec::new()).unwrap();
        let p = Principal {
            subject: "s".into(),
            kind: PrincipalKind::User,
            method: AuthMethod::Jwt,
            email: Some("e".into()),
            email_verified: true,
            name: Some("n".into()),
            roles: vec!["r".into()],
            team_id: Some("t".into()),
            permissions: vec!["p".into()],
            token_id: None,
            session_id: None,
            issued_at: None,
            issuer: "i".into(),
            expires_at: None,
            mapped_claims: vec![Some("c".into())],
            rendered: Default::default(),
        };
        let rendered: BTreeSet<&str> = rendered(&p, &cfg.headers).iter().map(|(n, _)| n.as_str()).collect();
        let identity: BTreeSet<&str> = cfg.headers.identity.iter().map(HeaderName::as_str).collect();
        assert_eq!(rendered, identity);
        assert!(!identity.contains(&"x-user"), "`strip` names are removed, never answered");

        let mut h = HeaderMap::new();
        h.insert("x-auth-user-id", HeaderValue::from_static("s"));
        blank_missing(&mut h, &cfg.headers);
        assert_eq!(h["x-auth-user-id"], "s", "present values stay");
        assert_eq!(h["x-auth-team-id"], "");
        assert_eq!(h.len(), identity.len());
    }
}
