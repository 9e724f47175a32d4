//! Tokens minted by other languages' JWT libraries (Python PyJWT, Node `jose`) are
//! accepted, and the same libraries' tampered or mis-signed tokens are refused; and the
//! tokens Gatehouse issues verify in those libraries against its live JWKS.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "https://interop.test";

#[tokio::test]
async fn pyjwt_and_jose_tokens_verify() {
    let upstream = Upstream::start().await;
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = TestKey::generate(alg);
        let other = TestKey::generate(alg);
        let name = key.alg_name();
        let j = JwksServer::start(jwks(&[&key])).await;
        let gh = Gatehouse::start(&config(&upstream, &issuer_block(ISS, &j.url(), &[&name]))).await;
        gh.wait_ready().await;
        for lib in ["python", "node"] {
            if lib == "python" && alg == Algorithm::EdDSA {
                // PyJWT signs EdDSA too; covered below with the same call.
            }
            let mut c = claims(ISS, &format!("{lib}-user"));
            c["permissions"] = json!(["read", "write"]);
            let token = mint_external(lib, &key, &c, Some(key.kid()));
            let (status, _, echo) = get(&gh, "/app", Some(&token)).await;
            assert_eq!(status, 200, "{lib} {name}: {echo}");
            assert_eq!(seen(&echo, "x-auth-user-id"), [format!("{lib}-user")]);
            assert_eq!(seen(&echo, "x-auth-permissions"), ["read,write"]);

            // No kid: the issuer's keys are tried.
            let token = mint_external(lib, &key, &claims(ISS, "nokid"), None);
            assert_eq!(get(&gh, "/app", Some(&token)).await.0, 200, "{lib} {name} without kid");

            // Signed by a key the issuer does not publish, under the published kid.
            let forged = mint_external(lib, &other, &claims(ISS, "forged"), Some(key.kid()));
            assert_eq!(get(&gh, "/app", Some(&forged)).await.0, 401, "{lib} {name} forged");

            // Expired per the library's own exp.
            let mut old = claims(ISS, "old");
            old["exp"] = json!(now() - 600);
            let (status, _, body) = get(&gh, "/app", Some(&mint_external(lib, &key, &old, Some(key.kid())))).await;
            assert_eq!((status, body["code"].as_str()), (401, Some("token_expired")), "{lib} {name}");

            // Payload swapped after signing.
            let parts: Vec<&str> = token.split('.').collect();
            let evil = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                claims(ISS, "admin").to_string(),
            );
            let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
            assert_eq!(get(&gh, "/app", Some(&tampered)).await.0, 401, "{lib} {name} tampered");
        }
    }
}

#[tokio::test]
async fn hs256_from_pyjwt_and_jose() {
    let upstream = Upstream::start().await;
    let key = TestKey::generate(Algorithm::HS256);
    let extra = format!(
        "[[issuers]]\nissuer = \"{ISS}\"\nsecret_file = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"HS256\"]\n",
        key.path().display()
    );
    let gh = Gatehouse::start(&config(&upstream, &extra)).await;
    for lib in ["python", "node"] {
        let token = mint_external(lib, &key, &claims(ISS, lib), None);
        assert_eq!(get(&gh, "/app", Some(&token)).await.0, 200, "{lib}");
    }
}

#[test]
fn gatehouse_tokens_verify_in_pyjwt() {
    // The other direction: PyJWT accepts what Gatehouse signs, given its published JWK.
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let key = TestKey::generate(alg);
        let token = key.sign(&claims(ISS, "from-gatehouse"));
        let script = r#"
import json, sys, jwt
spec = json.load(sys.stdin)
key = jwt.PyJWK(spec["jwk"])
claims = jwt.decode(spec["token"], key.key, algorithms=[spec["alg"]], audience="api", issuer=spec["iss"])
print(claims["sub"])
"#;
        let input = json!({"jwk": key.jwk(), "token": token, "alg": key.alg_name(), "iss": ISS});
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{alg:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-gatehouse");
    }
}

#[tokio::test]
async fn client_credential_tokens_verify_in_pyjwt_and_jose_against_the_live_jwks() {
    // A resource server in Python or Node checks Gatehouse's client tokens with stock code:
    // fetch /.well-known/jwks.json, verify signature, issuer and audience.
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let toml = accounts_config(&upstream, &store, "");
    let gh = Gatehouse::start(&toml).await;
    gh.wait_ready().await;

    let config = gatehouse::Config::from_toml(&toml, Vec::new()).unwrap();
    let sql = gatehouse::store::SqlStore::connect(&store.url).await.unwrap();
    let pepper = gatehouse::auth::api_key::Pepper::load(&config, &sql).await.unwrap();
    let secret = gatehouse::auth::api_key::generate("gcs");
    use gatehouse::store::Store;
    sql.create_client(&gatehouse::store::Client {
        id: "gc_interop".into(),
        name: "interop".into(),
        secret_digest: pepper.digest(&secret).to_vec(),
        scopes: vec!["reports:read".into()],
        created_at: now() as i64,
        created_by: None,
        revoked_at: None,
    })
    .await
    .unwrap();
    let resp = client()
        .post(gh.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&client_id=gc_interop&client_secret={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let header =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.split('.').next().unwrap())
            .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["typ"], "at+jwt", "client tokens are RFC 9068 access tokens");

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let input = json!({
        "jwks_url": gh.url("/.well-known/jwks.json"),
        "token": token,
        "issuer": "https://gatehouse.test",
        "audience": "gatehouse",
        "typ": "at+jwt",
    });
    for (program, script) in [("python3", "verify_remote.py"), ("node", "verify_remote.mjs")] {
        let input = input.to_string();
        let script = root.join(script);
        // The verifier fetches the JWKS from this test's server: run it off the runtime.
        let out = tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new(program)
                .arg(&script)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {program} (install it; CI does): {e}"));
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
        let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["sub"], "gc_interop", "{program}: {claims}");
        assert_eq!(claims["client_id"], "gc_interop");
        assert_eq!(claims["scope"], "reports:read");
    }
}
