//! JWT verification on the proxy path: algorithms, claims, keys from JWKS URLs, discovery,
//! files and secrets, and the cached key lookup (single flight, cool-down, stale serving).
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "https://idp.test";

async fn setup(keys: &[&TestKey], algs: &[&str]) -> (Upstream, JwksServer, Gatehouse) {
    let upstream = Upstream::start().await;
    let jwks_server = JwksServer::start(jwks(keys)).await;
    let gh = Gatehouse::start(&config(&upstream, &issuer_block(ISS, &jwks_server.url(), algs))).await;
    gh.wait_ready().await;
    (upstream, jwks_server, gh)
}

#[tokio::test]
async fn every_asymmetric_algorithm_is_accepted() {
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let key = TestKey::generate(alg);
        let name = key.alg_name();
        let (_u, _j, gh) = setup(&[&key], &[&name]).await;
        let token = key.sign(&claims(ISS, "alice"));
        let (status, _, echo) = get(&gh, "/app", Some(&token)).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(seen(&echo, "x-auth-user-id"), ["alice"], "{name}");
        assert_eq!(seen(&echo, "x-auth-method"), ["jwt"]);
    }
}

#[tokio::test]
async fn hmac_algorithms_from_a_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("hs.secret");
    std::fs::write(&secret_path, "0123456789abcdef0123456789abcdef-shared\n").unwrap();
    let upstream = Upstream::start().await;
    for alg in ["HS256", "HS384", "HS512"] {
        let extra = format!(
            "[[issuers]]\nissuer = \"{ISS}\"\nsecret_file = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"{alg}\"]\n",
            secret_path.display()
        );
        let gh = Gatehouse::start(&config(&upstream, &extra)).await;
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef-shared");
        let header = jsonwebtoken::Header::new(alg.parse().unwrap());
        let token = jsonwebtoken::encode(&header, &claims(ISS, "svc"), &key).unwrap();
        let (status, _, _) = get(&gh, "/x", Some(&token)).await;
        assert_eq!(status, 200, "{alg}");
        let wrong = jsonwebtoken::encode(
            &header,
            &claims(ISS, "svc"),
            &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx!"),
        )
        .unwrap();
        assert_eq!(get(&gh, "/x", Some(&wrong)).await.0, 401, "{alg} wrong secret");
    }
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion_are_refused() {
    let key = TestKey::generate(Algorithm::RS256);
    let (_u, _j, gh) = setup(&[&key], &["RS256"]).await;
    let body = B64.encode(claims(ISS, "mallory").to_string());

    for alg in ["none", "None", "NONE"] {
        let header = B64.encode(json!({"alg": alg, "kid": key.kid()}).to_string());
        let token = format!("{header}.{body}.");
        let (status, headers, err) = get(&gh, "/x", Some(&token)).await;
        assert_eq!(status, 401, "alg {alg}");
        assert_eq!(err["code"], "invalid_token");
        assert!(headers["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
    }

    // HS256 signed with the RSA public key's bytes: the classic confusion attack.
    let jwk = key.jwk();
    for secret in [jwk["n"].as_str().unwrap().as_bytes().to_vec(), jwk.to_string().into_bytes()] {
        let header = B64.encode(json!({"alg": "HS256", "kid": key.kid()}).to_string());
        let message = format!("{header}.{body}");
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            message.as_bytes(),
        );
        let token = format!("{message}.{}", B64.encode(tag.as_ref()));
        assert_eq!(get(&gh, "/x", Some(&token)).await.0, 401);
    }

    // An allowed algorithm that does not match the key type (ES256 claimed, RSA key).
    let header = B64.encode(json!({"alg": "ES256", "kid": key.kid()}).to_string());
    let token = format!("{header}.{body}.{}", B64.encode([0u8; 64]));
    assert_eq!(get(&gh, "/x", Some(&token)).await.0, 401);
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_refused() {
    let key = TestKey::generate(Algorithm::PS256);
    // The JWK carries no `alg`, so the RSA key could verify PS256 if we trusted the header;
    // the issuer allows only RS256.
    let mut jwk = key.jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    let upstream = Upstream::start().await;
    let j = JwksServer::start(json!({"keys": [jwk]})).await;
    let gh = Gatehouse::start(&config(&upstream, &issuer_block(ISS, &j.url(), &["RS256"]))).await;
    gh.wait_ready().await;
    let (status, _, err) = get(&gh, "/x", Some(&key.sign(&claims(ISS, "a")))).await;
    assert_eq!(status, 401);
    assert_eq!(err["code"], "invalid_token");
}

#[tokio::test]
async fn claims_are_checked() {
    let key = TestKey::generate(Algorithm::ES256);
    let (_u, _j, gh) = setup(&[&key], &["ES256"]).await;
    let now = now();
    let base = claims(ISS, "alice");
    let with = |patch: serde_json::Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        key.sign(&c)
    };
    let cases = [
        (json!({"exp": now - 3600}), 401, "token_expired"),
        (json!({"exp": now - 10}), 200, ""), // inside the 30 s leeway
        (json!({"exp": null}), 401, "invalid_token"),
        (json!({"exp": "soon"}), 401, "invalid_token"),
        (json!({"nbf": now + 3600}), 401, "invalid_token"),
        (json!({"nbf": now + 10}), 200, ""),
        (json!({"aud": "other"}), 401, "invalid_token"),
        (json!({"aud": ["other", "api"]}), 200, ""),
        (json!({"aud": null}), 401, "invalid_token"),
        (json!({"iss": "https://evil.test"}), 401, "invalid_token"),
        (json!({"iss": null}), 401, "invalid_token"),
        (json!({"sub": null}), 401, "invalid_token"),
        (json!({"sub": ""}), 401, "invalid_token"),
        (json!({"sub": "alice\r\nX-Auth-Role: admin"}), 401, "invalid_token"),
        (json!({"sub": "a\u{0}b"}), 401, "invalid_token"),
        (json!({"email": "a@x.io\nX-Evil: 1"}), 401, "invalid_token"),
        (json!({"permissions": ["read", "admin,root"]}), 401, "invalid_token"),
        (json!({"tenant": "t1\r\n"}), 401, "invalid_token"),
        (json!({"exp": 1e300}), 200, ""),
    ];
    for (patch, status, code) in cases {
        let (got, _, body) = get(&gh, "/x", Some(&with(patch.clone()))).await;
        assert_eq!(got, status, "{patch}: {body}");
        if !code.is_empty() {
            assert_eq!(body["code"], code, "{patch}");
        }
    }
}

#[tokio::test]
async fn permissions_roles_and_claim_headers() {
    let key = TestKey::generate(Algorithm::ES256);
    let (_u, _j, gh) = setup(&[&key], &["ES256"]).await;
    let mut c = claims(ISS, "alice");
    c["permissions"] = json!(["read", "admin"]);
    c["role"] = json!("ops");
    c["email"] = json!("alice@example.com");
    c["team_id"] = json!(42);
    c["tenant"] = json!(["t1", "t2"]);
    c["org"] = json!({"id": "org-7"});
    let (status, _, echo) = get(&gh, "/admin/panel", Some(&key.sign(&c))).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-permissions"), ["read,admin"]);
    assert_eq!(seen(&echo, "x-auth-role"), ["ops"]);
    assert_eq!(seen(&echo, "x-auth-email"), ["alice@example.com"]);
    assert_eq!(seen(&echo, "x-auth-team-id"), ["42"]);
    assert_eq!(seen(&echo, "x-auth-tenant"), ["t1,t2"]);
    assert_eq!(seen(&echo, "x-auth-org"), ["org-7"]);
    assert_eq!(get(&gh, "/ops/x", Some(&key.sign(&c))).await.0, 200);

    c["permissions"] = json!(["read"]);
    c["role"] = json!("dev");
    let (status, headers, body) = get(&gh, "/admin/panel", Some(&key.sign(&c))).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "insufficient_scope");
    assert_eq!(body["error"], "forbidden");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains(r#"scope="admin""#),
        "{challenge}"
    );
    assert_eq!(get(&gh, "/ops/x", Some(&key.sign(&c))).await.0, 403);
}

#[tokio::test]
async fn permissions_from_scope_and_nested_roles() {
    let key = TestKey::generate(Algorithm::RS256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let extra = format!(
        "[[issuers]]\nissuer = \"{ISS}\"\njwks_url = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\npermissions_claim = \"scope\"\nrole_claim = \"realm_access.roles\"\n",
        j.url()
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    let mut c = claims(ISS, "bob");
    c["scope"] = json!("openid admin  write");
    c["realm_access"] = json!({"roles": ["viewer", "sre"]});
    let (status, _, echo) = get(&gh, "/admin/x", Some(&key.sign(&c))).await;
    assert_eq!(status, 200);
    assert_eq!(seen(&echo, "x-auth-permissions"), ["openid,admin,write"]);
    assert_eq!(seen(&echo, "x-auth-role"), ["viewer,sre"]);
    assert_eq!(get(&gh, "/ops/x", Some(&key.sign(&c))).await.0, 200);
}

#[tokio::test]
async fn rotated_key_is_fetched_once_and_random_kids_are_throttled() {
    let old = TestKey::generate(Algorithm::ES256);
    let (_u, j, gh) = setup(&[&old], &["ES256"]).await;
    assert_eq!(j.hits(), 1);
    assert_eq!(get(&gh, "/x", Some(&old.sign(&claims(ISS, "a")))).await.0, 200);

    // The IdP rotates: a token with the new kid triggers one fetch and is accepted.
    let new = TestKey::generate(Algorithm::ES256);
    j.set(200, jwks(&[&old, &new]).to_string());
    assert_eq!(get(&gh, "/x", Some(&new.sign(&claims(ISS, "b")))).await.0, 200);
    assert_eq!(j.hits(), 2);

    // A flood of random kids, concurrently, right after: no fetch (inside the cool-down).
    flood_of_random_kids(&gh, "random", 200).await;
    assert_eq!(j.hits(), 2, "random kids inside the cool-down made no fetch");
}

/// Sends `n` concurrent tokens with never-seen kids (`<prefix>-<i>`); each must be refused.
async fn flood_of_random_kids(gh: &Gatehouse, prefix: &str, n: usize) {
    let body = B64.encode(claims(ISS, "m").to_string());
    let mut tasks = Vec::new();
    for i in 0..n {
        let header = B64.encode(json!({"alg": "ES256", "kid": format!("{prefix}-{i}")}).to_string());
        let token = format!("{header}.{body}.{}", B64.encode([1u8; 64]));
        let url = gh.url("/x");
        tasks.push(tokio::spawn(async move {
            client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
}

#[tokio::test]
async fn unknown_kid_flood_makes_one_fetch_per_cooldown() {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let extra = format!("[jwt]\njwks_refresh_cooldown = \"1s\"\n{}", issuer_block(ISS, &j.url(), &["ES256"]));
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    let start_hits = j.hits();
    j.set_delay(Duration::from_millis(200));
    // Floods of 50 concurrent random kids, round after round, until the flood has made three
    // fetches (so the throttle lets one through again after each cool-down) or 300 rounds.
    // However slow the machine, a 1 s cool-down allows at most 1 + (elapsed seconds) fetches;
    // the clock only loosens that bound, it never makes the test fail.
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while j.hits() - start_hits < 3 && rounds < 300 {
        flood_of_random_kids(&gh, &format!("r{rounds}"), 50).await;
        rounds += 1;
    }
    let fetches = j.hits() - start_hits;
    let elapsed = started.elapsed();
    assert!(fetches >= 1, "{rounds} rounds of unknown kids never refetched the key set");
    let allowed = 1 + elapsed.as_secs() as usize;
    assert!(
        fetches <= allowed,
        "{fetches} fetches in {elapsed:?} ({rounds} rounds) with a 1 s cool-down: at most {allowed}"
    );
}

#[tokio::test]
async fn stale_keys_keep_serving_while_the_jwks_endpoint_fails() {
    let key = TestKey::generate(Algorithm::RS256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    // A 1 s TTL forces refetches; the endpoint then fails but the keys stay for 3 s.
    let extra = format!(
        "[jwt]\njwks_min_ttl = \"1s\"\njwks_default_ttl = \"1s\"\njwks_stale_ttl = \"3s\"\nverified_cache_capacity = 0\n{}",
        issuer_block(ISS, &j.url(), &["RS256"])
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    j.set(500, "oops");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = key.sign(&claims(ISS, "a"));
    assert_eq!(get(&gh, "/x", Some(&t)).await.0, 200, "stale keys serve");
    j.set(200, "<html>garbage</html>");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get(&gh, "/x", Some(&key.sign(&claims(ISS, "b")))).await.0, 200, "garbage does not replace good keys");
    assert_eq!(get(&gh, "/readyz", None).await.0, 200);
    // Past TTL + stale period the keys are gone: fail closed, and not ready.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(get(&gh, "/x", Some(&key.sign(&claims(ISS, "c")))).await.0, 401);
    assert_eq!(get(&gh, "/readyz", None).await.0, 503);
    // The endpoint recovers: so do we.
    j.set(200, jwks(&[&key]).to_string());
    gh.wait_ready().await;
    assert_eq!(get(&gh, "/x", Some(&key.sign(&claims(ISS, "d")))).await.0, 200);
}

#[tokio::test]
async fn cache_control_max_age_decides_the_refetch() {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    j.set_cache_control(Some("public, max-age=1"));
    let extra = format!("[jwt]\njwks_min_ttl = \"1s\"\n{}", issuer_block(ISS, &j.url(), &["ES256"]));
    let started = std::time::Instant::now();
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    // max-age=1 makes it refetch about every second (without it, the default TTL is 300 s):
    // three fetches well inside 30 s, and never more often than max-age allows, however
    // slowly the machine got there.
    let deadline = started + Duration::from_secs(30);
    while j.hits() < 3 {
        assert!(std::time::Instant::now() < deadline, "max-age=1 but only {} fetches in 30 s", j.hits());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (hits, elapsed) = (j.hits(), started.elapsed());
    assert!(hits <= 2 + elapsed.as_secs() as usize, "max-age=1: {hits} fetches in {elapsed:?}");

    // Every answer from now on says max-age=3600: the first fetch that gets one is the last.
    j.set_cache_control(Some("max-age=3600"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while j.served_since_cache_set() == 0 {
        assert!(std::time::Instant::now() < deadline, "no refetch within 30 s of max-age=1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = j.hits();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(j.hits(), settled, "max-age=3600 stops refetching");
}

#[tokio::test]
async fn readiness_waits_for_the_first_key_set() {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    j.set(503, "not yet");
    let gh = Gatehouse::start(&config(&upstream, &issuer_block(ISS, &j.url(), &["ES256"]))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = get(&gh, "/readyz", None).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "not_ready");
    assert_eq!(get(&gh, "/healthz", None).await.0, 200, "alive while not ready");
    j.set(200, jwks(&[&key]).to_string());
    gh.wait_ready().await;
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let iss = j.base();
    let extra = format!("[[issuers]]\nissuer = \"{iss}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\n");
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    assert_eq!(j.discovery_hits(), 1);
    assert_eq!(get(&gh, "/x", Some(&key.sign(&claims(&iss, "a")))).await.0, 200);
}

#[tokio::test]
async fn jwks_file_is_watched() {
    let a = TestKey::generate(Algorithm::EdDSA);
    let b = TestKey::generate(Algorithm::EdDSA);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idp.jwks.json");
    std::fs::write(&path, jwks(&[&a]).to_string()).unwrap();
    let upstream = Upstream::start().await;
    let extra = format!(
        "[jwt]\njwks_file_poll = \"100ms\"\n[[issuers]]\nissuer = \"{ISS}\"\njwks_file = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"EdDSA\"]\n",
        path.display()
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    assert_eq!(get(&gh, "/x", Some(&a.sign(&claims(ISS, "a")))).await.0, 200);
    assert_eq!(get(&gh, "/x", Some(&b.sign(&claims(ISS, "b")))).await.0, 401);
    // Rewrite with only b (mtime granularity: wait a little first).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, jwks(&[&b]).to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&gh, "/x", Some(&b.sign(&claims(ISS, "b2")))).await.0, 200);
    assert_eq!(
        get(&gh, "/x", Some(&a.sign(&claims(ISS, "a2")))).await.0,
        401,
        "a withdrawn key stops verifying new tokens"
    );
}

#[tokio::test]
async fn tokens_without_kid_try_the_issuers_keys() {
    let a = TestKey::generate(Algorithm::ES256);
    let b = TestKey::generate(Algorithm::ES256);
    let (_u, _j, gh) = setup(&[&a, &b], &["ES256"]).await;
    let token = b.sign_with_header(&json!({"alg": "ES256", "typ": "JWT"}), &claims(ISS, "nokid"));
    assert_eq!(get(&gh, "/x", Some(&token)).await.0, 200);
}

#[tokio::test]
async fn own_tokens_are_verified_through_the_same_path() {
    let upstream = Upstream::start().await;
    let key = TestKey::generate(Algorithm::ES256);
    let extra = format!(
        "[store]\nurl = \"sqlite://{}/gh.db\"\n[tokens]\nissuer = \"https://gatehouse.test\"\naudience = \"gatehouse\"\nalgorithm = \"ES256\"\nkey_file = \"{}\"\n",
        key.dir.path().display(),
        key.path().display()
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    let mut c = claims("https://gatehouse.test", "me");
    c["aud"] = json!("gatehouse");
    assert_eq!(get(&gh, "/x", Some(&key.sign(&c))).await.0, 200);
    // Signed by Gatehouse's key, but not declared an access token (RFC 9068 `typ`): some
    // other JWT the key signed, an ID token say, never passes as one.
    for typ in [json!("JWT"), json!("at+jwt+extra"), json!(null), json!("id_token+jwt")] {
        let mut header = json!({"alg": "ES256", "kid": key.kid()});
        if !typ.is_null() {
            header["typ"] = typ.clone();
        }
        let (status, _, body) = get(&gh, "/x", Some(&key.sign_with_header(&header, &c))).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")), "typ {typ}: {body}");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let header = json!({"alg": "ES256", "kid": key.kid(), "typ": typ});
        assert_eq!(get(&gh, "/x", Some(&key.sign_with_header(&header, &c))).await.0, 200, "typ {typ}");
    }
    let (status, _, jwks_doc) = get(&gh, "/.well-known/jwks.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(jwks_doc["keys"][0]["kid"], key.kid());
    assert!(jwks_doc["keys"][0].get("d").is_none(), "never the private part");
    let (_, _, oidc) = get(&gh, "/.well-known/openid-configuration", None).await;
    assert_eq!(oidc["issuer"], "https://gatehouse.test");
    assert_eq!(oidc["jwks_uri"], "https://gatehouse.test/.well-known/jwks.json");
}

#[tokio::test]
async fn malformed_tokens_are_401_and_the_server_keeps_serving() {
    let key = TestKey::generate(Algorithm::ES256);
    let (_u, _j, gh) = setup(&[&key], &["ES256"]).await;
    let good = key.sign(&claims(ISS, "a"));
    let (h, rest) = good.split_once('.').unwrap();
    let huge = "a".repeat(100 * 1024);
    let bad_tokens = vec![
        "garbage".to_string(),
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        "...".to_string(),
        good[..good.len() / 2].to_string(),
        format!("{good}x"),
        format!("{h}.{}", rest.replace('.', "A.")),
        format!("{}.{rest}", B64.encode("{not json")),
        format!("{}.{rest}", B64.encode(r#"{"alg":"ES256","crit":["exp"]}"#)),
        format!("{h}=.{rest}"),
        format!("{good}.{good}"),
        huge.clone(),
        format!("{h}.{huge}.{huge}"),
        "eyJhbGciOiJFUzI1NiJ9.e30.".to_string(),
    ];
    for token in &bad_tokens {
        let (status, headers, body) = get(&gh, "/x", Some(token)).await;
        assert!(status == 401 || status == 431 || status == 400, "{status} for {}", &token[..token.len().min(40)]);
        if status == 401 {
            assert_eq!(body["error"], "unauthorized");
            assert!(headers.contains_key("www-authenticate"));
            assert!(body["message"].as_str().is_some());
        }
    }
    // Wrong schemes and encodings in the Authorization header itself.
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc"] {
        let r = client().get(gh.url("/x")).header("authorization", value).send().await.unwrap();
        assert_eq!(r.status(), 401, "{value}");
    }
    let r = client()
        .get(gh.url("/x"))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Two Authorization headers: refused rather than guessed.
    let r = client()
        .get(gh.url("/x"))
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", "Bearer other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Still serving.
    assert_eq!(get(&gh, "/x", Some(&good)).await.0, 200);
}

#[tokio::test]
async fn repeated_token_hits_the_cache_but_expiry_still_wins() {
    let key = TestKey::generate(Algorithm::ES256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let extra = format!("[jwt]\nleeway = \"0s\"\n{}", issuer_block(ISS, &j.url(), &["ES256"]));
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    let mut c = claims(ISS, "short");
    c["exp"] = json!(now() + 2);
    let t = key.sign(&c);
    assert_eq!(get(&gh, "/x", Some(&t)).await.0, 200);
    assert_eq!(get(&gh, "/x", Some(&t)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = get(&gh, "/x", Some(&t)).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "token_expired");
}

/// Every algorithm `tokens.algorithm` and `issuers[].algorithms` accept.
const EVERY_ALGORITHM: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[tokio::test]
async fn own_tokens_of_every_algorithm_work_on_the_proxy_and_the_auth_api() {
    let upstream = Upstream::start().await;
    for alg in EVERY_ALGORITHM {
        let name = format!("{alg:?}");
        let store = Backend::Sqlite.fresh().await;
        let toml = accounts_config(&upstream, &store, "").replacen(
            "[tokens]\n",
            &format!("[tokens]\nalgorithm = \"{name}\"\n"),
            1,
        );
        let gh = Gatehouse::start(&toml).await;
        gh.wait_ready().await;
        let (status, _, reg) = post(
            &gh,
            "/auth/register",
            &json!({"email": format!("{}@example.com", name.to_lowercase()), "password": "correct horse battery"}),
            None,
        )
        .await;
        assert_eq!(status, 201, "{name}: {reg}");
        let (status, _, login) = post(
            &gh,
            "/auth/login",
            &json!({"email": format!("{}@example.com", name.to_lowercase()), "password": "correct horse battery"}),
            None,
        )
        .await;
        assert_eq!(status, 200, "{name}: {login}");
        for token in [reg["access_token"].as_str().unwrap(), login["access_token"].as_str().unwrap()] {
            let header: serde_json::Value =
                serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
            assert_eq!(header["alg"], name.as_str());
            assert_eq!(header["typ"], "at+jwt", "{name}: RFC 9068 access token");
            let (status, _, echo) = get(&gh, "/app", Some(token)).await;
            assert_eq!(status, 200, "{name} on the proxy: {echo}");
            assert_eq!(seen(&echo, "x-auth-user-id"), [reg["user"]["id"].as_str().unwrap()], "{name}");
            let (status, _, me) = get(&gh, "/auth/me", Some(token)).await;
            assert_eq!(status, 200, "{name} on /auth/me: {me}");
        }
    }
}

#[tokio::test]
async fn external_tokens_of_every_algorithm_verify_with_and_without_kid() {
    let upstream = Upstream::start().await;
    for alg in EVERY_ALGORITHM {
        let key = TestKey::generate(alg);
        let name = key.alg_name();
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        // HS* from a shared secret file, the rest from a JWKS URL.
        let (extra, _jwks) = if hmac {
            let block = format!(
                "[[issuers]]\nissuer = \"{ISS}\"\nsecret_file = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"{name}\"]\n",
                key.path().display()
            );
            (block, None)
        } else {
            let j = JwksServer::start(jwks(&[&key])).await;
            (issuer_block(ISS, &j.url(), &[&name]), Some(j))
        };
        let gh = Gatehouse::start(&config(&upstream, &extra)).await;
        gh.wait_ready().await;
        let with_kid = key.sign(&claims(ISS, "with-kid"));
        let without_kid = key.sign_with_header(&json!({"alg": name, "typ": "JWT"}), &claims(ISS, "without-kid"));
        for (token, sub) in [(with_kid, "with-kid"), (without_kid, "without-kid")] {
            let (status, _, echo) = get(&gh, "/app", Some(&token)).await;
            assert_eq!(status, 200, "{name} {sub}: {echo}");
            assert_eq!(seen(&echo, "x-auth-user-id"), [sub]);
        }
        let other = TestKey::generate(alg);
        let forged = other.sign_with_header(&json!({"alg": name, "kid": key.kid()}), &claims(ISS, "forged"));
        assert_eq!(get(&gh, "/app", Some(&forged)).await.0, 401, "{name} forged");
    }
}

#[tokio::test]
async fn required_claims_pin_whose_tokens_count() {
    let key = TestKey::generate(Algorithm::RS256);
    let upstream = Upstream::start().await;
    let j = JwksServer::start(jwks(&[&key])).await;
    let extra = format!(
        "{}required_claims = {{ repository_owner = \"acme\", ref = [\"refs/heads/main\", \"refs/tags/v1\"], groups = \"deployers\", \"ctx.level\" = 3, ci = true }}\n",
        issuer_block(ISS, &j.url(), &["RS256"])
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    gh.wait_ready().await;
    let mut base = claims(ISS, "repo:acme/app:ref:refs/heads/main");
    base["repository_owner"] = json!("acme");
    base["ref"] = json!("refs/heads/main");
    base["groups"] = json!("deployers");
    base["ctx"] = json!({"level": 3});
    base["ci"] = json!(true);
    let cases = [
        (json!({}), 200),
        (json!({"repository_owner": null}), 401),
        (json!({"repository_owner": "evil-corp"}), 401),
        (json!({"repository_owner": "ACME"}), 401),
        (json!({"repository_owner": ["evil-corp", "acme"]}), 200),
        (json!({"ref": "refs/tags/v1"}), 200),
        (json!({"ref": "refs/heads/evil-branch"}), 401),
        (json!({"groups": ["readers", "deployers"]}), 200),
        (json!({"groups": ["readers"]}), 401),
        (json!({"groups": []}), 401),
        (json!({"ctx": {"level": 3.0}}), 200),
        (json!({"ctx": {"level": "3"}}), 401),
        (json!({"ctx": 3}), 401),
        (json!({"ci": "true"}), 401),
        (json!({"ci": false}), 401),
    ];
    for (patch, status) in cases {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        let token = key.sign(&c);
        let (got, headers, body) = get(&gh, "/x", Some(&token)).await;
        assert_eq!(got, status, "{patch}: {body}");
        if status == 401 {
            assert_eq!(body["code"], "invalid_token", "{patch}");
            let message = body["message"].as_str().unwrap();
            assert!(!message.contains("evil") && !message.contains(&token), "{patch}: {message}");
            assert!(headers.contains_key("www-authenticate"));
        }
    }
    let c = {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove("repository_owner");
        c
    };
    let (_, _, body) = get(&gh, "/x", Some(&key.sign(&c))).await;
    assert!(body["message"].as_str().unwrap().contains("repository_owner"), "{body}");
}

#[tokio::test]
async fn https_issuers_never_take_keys_over_http() {
    let key = TestKey::generate(Algorithm::ES256);
    let set = jwks(&[&key]).to_string();
    // The same keys over plain http: reaching this server at all is the failure.
    let plain = JwksServer::start(jwks(&[&key])).await;
    let (cert, private) = self_signed_cert();
    let tls = TlsServer::start(&cert, &private).await;
    let base = tls.base();
    tls.set("/jwks", 200, &[], set.clone());
    tls.set("/to-http", 302, &[("location", &plain.url())], "");
    tls.set("/to-https", 302, &[("location", &format!("{base}/jwks"))], "");
    for (issuer, jwks_uri) in [("weak", plain.url()), ("strong", format!("{base}/jwks"))] {
        let doc = json!({"issuer": format!("{base}/{issuer}"), "jwks_uri": jwks_uri});
        tls.set(&format!("/{issuer}/.well-known/openid-configuration"), 200, &[], doc.to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let discovery =
        |iss: &str| format!("[[issuers]]\nissuer = \"{iss}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\n");
    let extra = format!(
        "[jwt]\nca_file = \"{}\"\njwks_refresh_cooldown = \"0s\"\n{}{}{}{}",
        ca.display(),
        issuer_block("https://redirected-to-http.test", &format!("{base}/to-http"), &["ES256"]),
        issuer_block("https://redirected-to-https.test", &format!("{base}/to-https"), &["ES256"]),
        discovery(&format!("{base}/weak")),
        discovery(&format!("{base}/strong")),
    );
    let upstream = Upstream::start().await;
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    let status = |iss: String| {
        let token = key.sign(&claims(&iss, "ci"));
        let gh = &gh;
        async move { get(gh, "/x", Some(&token)).await.0 }
    };
    // The https paths work (the CA file is trusted)...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(status("https://redirected-to-https.test".into()).await == 200
        && status(format!("{base}/strong")).await == 200)
    {
        assert!(std::time::Instant::now() < deadline, "https JWKS (direct, redirected, discovered) verify");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...the downgrades do not, however often they are retried.
    for _ in 0..3 {
        assert_eq!(status("https://redirected-to-http.test".into()).await, 401, "https -> http redirect");
        assert_eq!(status(format!("{base}/weak")).await, 401, "https issuer, http jwks_uri");
    }
    assert!(tls.hits("/to-http") >= 1 && tls.hits("/weak/.well-known/openid-configuration") >= 1);
    assert_eq!(plain.hits(), 0, "no key set was read over plain http");
    assert_eq!(get(&gh, "/readyz", None).await.0, 503, "those issuers have no keys");
}
