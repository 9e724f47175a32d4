//! Unit tests of loading and validation: defaults, every problem named by its key, and the
//! environment overlay, all through `Config::from_toml`.

use std::time::Duration;

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Vec::new())
}

const MINIMAL: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

#[test]
fn credential_settings_are_checked_at_load() {
    let c = load(&format!("{MINIMAL}[api_keys]\nprefix = \"sk_live\"\npat_limits = {{ free = 0, pro = 3 }}")).unwrap();
    assert_eq!((c.api_keys.prefix.as_str(), c.api_keys.pat_prefix.as_str()), ("sk_live", "gpat"));
    assert_eq!((c.api_keys.pat_limit("free"), c.api_keys.pat_limit("pro"), c.api_keys.pat_limit("other")), (0, 3, 10));
    let text = format!(
        "{MINIMAL}[api_keys]\nprefix = \"gk_\"\npat_prefix = \"9x\"\nheader = \"Authorization\"\n\
         pat_limits = {{ free = -1 }}\npat_default_days = 400\nmax_days = 300\n\
         [clients]\nsecret_prefix = \"gk_\""
    );
    let err = load(&text).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "api_keys.prefix",
        "api_keys.pat_prefix",
        "api_keys.header",
        "api_keys.pat_limits.free",
        "api_keys.pat_default_days",
        "clients.secret_prefix",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let same = load(&format!("{MINIMAL}[api_keys]\nprefix = \"k\"\npat_prefix = \"k\"")).unwrap_err();
    assert_eq!(same.problems[0].key, "api_keys.pat_prefix");
}

#[test]
fn email_verification_settings() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.accounts.verify_ttl, Duration::from_secs(86_400));
    assert!(!c.accounts.require_verified_email && c.accounts.verify_url.is_none());
    assert_eq!(c.headers.email_verified.as_ref().unwrap().as_str(), "x-auth-email-verified");
    assert!(c.headers.reserved.iter().any(|h| h.as_str() == "x-auth-email-verified"), "clients cannot send it");
    let off = load(&format!("{MINIMAL}[headers]\nemail_verified = \"\"")).unwrap();
    assert!(off.headers.email_verified.is_none());
    // Requiring verification without any way to deliver the link locks everyone out.
    let err = load(&format!("{MINIMAL}[accounts]\nrequire_verified_email = true")).unwrap_err();
    assert_eq!(err.problems[0].key, "accounts.require_verified_email");
    let ok = load(&format!(
        "{MINIMAL}[accounts]\nrequire_verified_email = true\nmail_outbox = \"mail\"\nverify_ttl = \"2h\"\n\
         verify_url = \"https://app.example.com/verify\"\n[[issuers]]\nissuer = \"https://idp\"\n\
         jwks_url = \"https://idp/k\"\nemail_verified_claim = \"ext.verified\""
    ))
    .unwrap();
    assert_eq!(ok.accounts.verify_ttl, Duration::from_secs(7200));
    assert_eq!(ok.issuers[0].claims.email_verified, ["ext", "verified"]);
    assert_eq!(ClaimPaths::own().email_verified, ["email_verified"]);
}

#[test]
fn minimal_config_has_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.jwt.leeway, Duration::from_secs(30));
    assert_eq!(c.forward_auth.path, "/verify");
    assert_eq!(c.headers.user_id.as_ref().unwrap().as_str(), "x-auth-user-id");
    assert!(!c.headers.forward_authorization);
}

#[test]
fn every_problem_is_named() {
    let text = r#"
        [server]
        listen = "nope"
        trusted_proxies = ["10.0.0.0/8", "bad"]
        bogus = 1
        [upstream]
        url = "ftp://x"
        [[issuers]]
        issuer = "https://idp"
        jwks_url = "https://idp/jwks"
        algorithms = ["RS256", "none", "HS256"]
        [[routes]]
        path = "admin"
        auth = "maybe"
    "#;
    let err = load(text).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "server.bogus",
        "server.listen",
        "server.trusted_proxies[1]",
        "upstream.url",
        "issuers[0].algorithms[1]",
        "issuers[0].algorithms",
        "routes[0].path",
        "routes[0].auth",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let c = Config::from_toml(MINIMAL, vec![("GATEHOUSE_SERVER__LISTEN".to_string(), "127.0.0.1:9999".to_string())])
        .unwrap();
    assert_eq!(c.server.listen.port(), 9999);
}

#[test]
fn hmac_needs_a_secret_file() {
    let text = format!(
        "{MINIMAL}[[issuers]]\nissuer = \"https://idp\"\njwks_url = \"https://idp/k\"\nalgorithms = [\"HS256\"]\n"
    );
    let err = load(&text).unwrap_err();
    assert!(err.to_string().contains("secret_file"), "{err}");
}

#[test]
fn required_claims_are_checked_at_load() {
    let issuer = |claims: &str| {
        format!(
            "{MINIMAL}[[issuers]]\nissuer = \"https://idp\"\njwks_url = \"https://idp/k\"\nrequired_claims = {claims}\n"
        )
    };
    let c =
        load(&issuer(r#"{ repository_owner = "acme", ref = ["a", "b"], "org.id" = 7, ctx = { on = true } }"#)).unwrap();
    let got: Vec<(String, Vec<String>, Vec<serde_json::Value>)> =
        c.issuers[0].required_claims.iter().map(|r| (r.name.clone(), r.path.clone(), r.accepted.clone())).collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            ("ctx.on".into(), s(&["ctx", "on"]), vec![serde_json::json!(true)]),
            ("org.id".into(), s(&["org", "id"]), vec![serde_json::json!(7)]),
            ("ref".into(), s(&["ref"]), vec![serde_json::json!("a"), serde_json::json!("b")]),
            ("repository_owner".into(), s(&["repository_owner"]), vec![serde_json::json!("acme")]),
        ]
    );
    for bad in [r#"{ owner = [] }"#, r#"{ owner = [["a"]] }"#, r#"{ "a..b" = "x" }"#] {
        let err = load(&issuer(bad)).unwrap_err();
        assert!(err.problems.iter().any(|p| p.key.starts_with("issuers[0].required_claims.")), "{bad}: {err}");
    }
    assert!(load(&issuer("\"acme\"")).unwrap_err().to_string().contains("required_claims"));
}

#[test]
fn type_errors_name_the_key() {
    let err = load("[server]\nworker_threads = \"two\"\n[upstream]\nurl = \"http://x:1\"\n").unwrap_err();
    assert!(err.to_string().contains("worker_threads"), "{err}");
}

#[test]
fn always_stripped_names_are_the_default_header_names() {
    use super::defaults::*;
    // `IDENTITY_HEADERS` is written out lowercase for `HeaderName::from_static`; it must not
    // drift from the defaults it stands for.
    let defaults = [
        HEADER_USER_ID,
        HEADER_EMAIL,
        HEADER_ROLE,
        HEADER_PERMISSIONS,
        HEADER_TEAM_ID,
        HEADER_METHOD,
        HEADER_NAME,
        HEADER_EMAIL_VERIFIED,
    ];
    let mut named: Vec<String> = defaults.iter().filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()).collect();
    let mut stripped: Vec<String> = IDENTITY_HEADERS.iter().map(|h| h.to_string()).collect();
    named.sort();
    stripped.sort();
    assert_eq!(named, stripped);
}

#[test]
fn upstream_tls_is_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["upstream.test".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let https = |table: &str| format!("[upstream]\nurl = \"https://10.0.0.7:8443/base\"\n{table}");
    let keys = |text: &str| -> Vec<String> { load(text).unwrap_err().problems.into_iter().map(|p| p.key).collect() };

    // https:// without a table: the system roots, the URL's host.
    let plain = load(&https("")).unwrap().upstream.tls.unwrap();
    assert!(plain.ca_file.is_none() && plain.server_name.is_none() && plain.client_cert.is_none());
    let full = load(&https(&format!(
        "[upstream.tls]\nca_file = {:?}\nserver_name = \"upstream.test\"\ncert_file = {:?}\nkey_file = {:?}\n",
        cert_file.display().to_string(),
        cert_file.display().to_string(),
        key_file.display().to_string()
    )))
    .unwrap()
    .upstream
    .tls
    .unwrap();
    assert_eq!(full.server_name.unwrap().to_str(), "upstream.test");
    assert_eq!(full.client_cert.unwrap().key_file, key_file);
    assert_eq!(
        load(&https("[upstream.tls]\nserver_name = \"[::1]\"\n")).unwrap().upstream.tls.unwrap().server_name.unwrap(),
        rustls_pki_types::ServerName::IpAddress("::1".parse::<std::net::IpAddr>().unwrap().into())
    );

    assert_eq!(keys("[upstream]\nurl = \"http://x:1\"\n[upstream.tls]\n"), ["upstream.tls"]);
    assert_eq!(keys("[upstream]\nurl = \"https://x:1?q=1\"\n"), ["upstream.url"]);
    assert_eq!(
        keys(&https(&format!("[upstream.tls]\ncert_file = {:?}\n", cert_file.display().to_string()))),
        ["upstream.tls.key_file"]
    );
    assert_eq!(
        keys(&https(&format!("[upstream.tls]\nkey_file = {:?}\n", key_file.display().to_string()))),
        ["upstream.tls.cert_file"]
    );
    // Every file problem at once, each under its own key: a missing CA bundle, a key where
    // the certificate should be, a certificate where the key should be.
    let missing = dir.path().join("missing.pem").display().to_string();
    let swapped = https(&format!(
        "[upstream.tls]\nca_file = {missing:?}\ncert_file = {:?}\nkey_file = {:?}\nserver_name = \"a b\"\n",
        key_file.display().to_string(),
        cert_file.display().to_string()
    ));
    let err = load(&swapped).unwrap_err();
    let found: Vec<(&str, &str)> = err.problems.iter().map(|p| (p.key.as_str(), p.message.as_str())).collect();
    assert_eq!(found.len(), 4, "{err}");
    assert!(found[0].0 == "upstream.tls.ca_file" && found[0].1.contains(&missing), "{err}");
    assert!(found.iter().any(|(k, m)| *k == "upstream.tls.cert_file" && m.contains("no PEM certificate")), "{err}");
    assert!(found.iter().any(|(k, m)| *k == "upstream.tls.key_file" && m.contains("no PEM private key")), "{err}");
    assert!(found.iter().any(|(k, _)| *k == "upstream.tls.server_name"), "{err}");
}

#[test]
fn unknown_keys_are_named_like_other_problems() {
    let text = "[upstream]\nurl = \"https://x:1\"\nbogus = 1\n[upstream.tls]\nca_flie = \"x\"\n\
                [[routes]]\npath = \"/\"\nauht = \"public\"\n";
    let mut keys: Vec<String> = load(text).unwrap_err().problems.into_iter().map(|p| p.key).collect();
    keys.sort();
    assert_eq!(keys, ["routes[0].auht", "upstream.bogus", "upstream.tls.ca_flie"]);
}

const TOKENS: &str = "[tokens]\nissuer = \"https://app.example.com\"\n";

#[test]
fn sessions_take_their_defaults_and_the_public_url_from_the_issuer() {
    let c = load(&format!("{MINIMAL}{TOKENS}[session]\n")).unwrap();
    let s = c.session.expect("[session] is on");
    assert_eq!(s.cookie_name, "gatehouse_session");
    assert_eq!((s.ttl, s.idle_timeout), (Duration::from_secs(12 * 3600), Duration::from_secs(3600)));
    assert_eq!((s.cookie_domain, s.redirect), (None, RedirectMode::Html));
    assert_eq!(c.server.public_url.unwrap().as_str(), "https://app.example.com/");

    let c = load(&format!(
        "{MINIMAL}{TOKENS}[server]\npublic_url = \"https://shop.example.com/\"\n[session]\ncookie_name = \"sid\"\n\
         ttl = \"30m\"\ncookie_domain = \".Example.com\"\nallowed_redirect_hosts = [\"*.example.com\", \"docs.example.org:8443\"]\n\
         redirect = \"never\"\n"
    ))
    .unwrap();
    let s = c.session.unwrap();
    assert_eq!(s.idle_timeout, Duration::from_secs(1800), "the idle default is capped at the ttl");
    assert_eq!((s.cookie_domain.as_deref(), s.redirect), (Some("example.com"), RedirectMode::Never));
    assert_eq!(s.allowed_redirect_hosts.len(), 2);
    assert!(load(MINIMAL).unwrap().session.is_none(), "off without the section");
}

#[test]
fn session_problems_are_named_by_their_keys() {
    let cases: &[(&str, &str)] = &[
        ("[session]\n", "session"),
        ("[server]\npublic_url = \"ftp://app.example.com\"\n", "server.public_url"),
        ("[server]\npublic_url = \"https://app.example.com/base\"\n", "server.public_url"),
        ("[server]\npublic_url = \"https://u:p@app.example.com\"\n", "server.public_url"),
        ("[server]\npublic_url = \"https://app.example.com/?x=1\"\n", "server.public_url"),
        ("[server]\npublic_url = \"app.example.com\"\n", "server.public_url"),
        ("[session]\ncookie_name = \"a b\"\n", "session.cookie_name"),
        ("[session]\ncookie_name = \"sid;x=1\"\n", "session.cookie_name"),
        ("[session]\ncookie_name = \"__Host-sid\"\n", "session.cookie_name"),
        ("[session]\ncookie_name = \"\"\n", "session.cookie_name"),
        ("[session]\nttl = \"0s\"\n", "session.ttl"),
        ("[session]\nttl = \"91d\"\n", "session.ttl"),
        ("[session]\nttl = \"1h\"\nidle_timeout = \"2h\"\n", "session.idle_timeout"),
        ("[session]\nidle_timeout = \"0s\"\n", "session.idle_timeout"),
        ("[session]\ncookie_domain = \"evil.example\"\n", "session.cookie_domain"),
        ("[session]\ncookie_domain = \"le.com\"\n", "session.cookie_domain"),
        ("[session]\ncookie_domain = \"example.com:443\"\n", "session.cookie_domain"),
        (
            "[session]\nallowed_redirect_hosts = [\"ok.example.com\", \"https://x.example.com\"]\n",
            "session.allowed_redirect_hosts[1]",
        ),
        ("[session]\nallowed_redirect_hosts = [\"*\"]\n", "session.allowed_redirect_hosts[0]"),
        ("[session]\nredirect = \"sometimes\"\n", "session.redirect"),
        ("[session]\ncookie_lifetime = \"1h\"\n", "session.cookie_lifetime"),
    ];
    for (extra, key) in cases {
        // Every case but the first has [tokens] (the first is about its absence).
        let text = if *key == "session" { format!("{MINIMAL}{extra}") } else { format!("{MINIMAL}{TOKENS}{extra}") };
        let text = if text.contains("[session]") { text } else { format!("{text}[session]\n") };
        let err = load(&text).expect_err(extra);
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(key), "{extra:?}: {key} missing from {keys:?}");
    }
    let err = load(&format!("{MINIMAL}[tokens]\nissuer = \"gatehouse\"\n[session]\n")).unwrap_err();
    assert_eq!(err.problems[0].key, "server.public_url", "an issuer that is no URL cannot stand in for it");
}
