//! The `gatehouse` binary: `check-config`, environment overrides, `serve` with SIGTERM
//! draining, the `token` helper, and logs that never contain a credential.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_the_examples() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config/gatehouse.toml", "config/sidecar.toml", "config/gateway.toml"] {
        let out = bin().current_dir(root).args(["check-config", "--config", file]).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_examples_are_closed_by_default() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["config/gatehouse.toml", "config/sidecar.toml", "config/gateway.toml"] {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml::Table = text.parse().unwrap();
        // Open registration is the default: an example must say whether it wants it.
        assert!(
            table.get("accounts").and_then(|a| a.get("registration")).is_some(),
            "{file}: set [accounts] registration explicitly"
        );
        let config = gatehouse::Config::load(&path).unwrap();
        for issuer in &config.issuers {
            if issuer.issuer == "https://token.actions.githubusercontent.com" {
                // Every repository's workflows can mint these tokens: pin the owner.
                assert!(
                    issuer.required_claims.iter().any(|r| r.name == "repository_owner"),
                    "{file}: GitHub Actions tokens are trusted without required_claims.repository_owner"
                );
            }
        }
    }
    let gateway = gatehouse::Config::load(&root.join("config/gateway.toml")).unwrap();
    assert!(!gateway.accounts.registration, "a shared gateway does not let strangers sign up");
}

#[test]
fn check_config_reads_the_upstream_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let path = write(
        &dir,
        "tls.toml",
        &format!(
            "[upstream]\nurl = \"https://10.0.0.7:8443\"\n[upstream.tls]\nca_file = {:?}\ncert_file = \"client.pem\"\n",
            missing.display().to_string()
        ),
    );
    let out = bin().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("  upstream.tls.ca_file: ") && err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("  upstream.tls.key_file: "), "cert_file without key_file:\n{err}");
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "bad.toml",
        r#"
[server]
listen = "localhost"
trusted_proxies = ["not-a-net"]
colour = "blue"
[upstream]
url = "ftp://app"
[jwt]
leeway = "5 minutes"
[[issuers]]
issuer = "https://idp"
jwks_url = "https://idp/jwks"
algorithms = ["HS256", "none"]
[[routes]]
path = "api"
auth = "sometimes"
"#,
    );
    let out = bin().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "server.trusted_proxies[0]",
        "server.colour",
        "upstream.url",
        "jwt.leeway",
        "issuers[0].algorithms[1]",
        "issuers[0].algorithms",
        "routes[0].path",
        "routes[0].auth",
    ] {
        assert!(err.contains(&format!("  {key}: ")), "{key} not named in:\n{err}");
    }
    // serve refuses to start on the same file, with the same message.
    let out = bin().args(["serve", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream.url"));

    let out = bin().args(["check-config", "--config", "/nonexistent/g.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn environment_overrides_are_validated_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "ok.toml", "[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
    assert!(bin().args(["check-config", "--config"]).arg(&path).output().unwrap().status.success());
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("GATEHOUSE_SERVER__WORKER_THREADS", "0")
        .env("GATEHOUSE_UPSTREAM__URL", "nope")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("server.worker_threads") && err.contains("upstream.url"), "{err}");
}

/// `gatehouse serve` in `dir` with `config`, whose `LISTEN` becomes `127.0.0.1:0`.
async fn serve(dir: &tempfile::TempDir, config: &str) -> GatehouseProcess {
    let path = write(dir, "gatehouse.toml", &config.replace("LISTEN", "127.0.0.1:0"));
    let mut cmd = bin();
    cmd.current_dir(dir.path()).args(["serve", "--config"]).arg(&path);
    GatehouseProcess::start(cmd).await
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        &dir,
        &format!(
            "[server]\nlisten = \"LISTEN\"\n[upstream]\nurl = \"{}\"\n[[routes]]\npath = \"/\"\nauth = \"public\"\n",
            upstream.url()
        ),
    )
    .await;
    let url = server.url("/slow/800");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    // SIGTERM only once the request is in flight: the upstream has it (and holds it 800 ms).
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the request never reached the upstream:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, logs) = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "in-flight request finished");
    assert!(status.success(), "clean exit: {status}\n{logs}");
    assert!(logs.contains("draining"), "{logs}");
}

#[tokio::test]
async fn token_helper_mints_accepted_tokens_and_logs_hold_no_secrets() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[server]
listen = "LISTEN"
[upstream]
url = "{}"
[tokens]
issuer = "https://gatehouse.test"
audience = "gatehouse"
key_file = "keys/signing.pem"
[[routes]]
path = "/admin/"
permissions = ["admin"]
[[routes]]
path = "/public/"
auth = "public"
[log]
format = "json"
level = "debug"
"#,
        upstream.url()
    );
    let server = serve(&dir, &config).await;
    let cfg_path = dir.path().join("gatehouse.toml");
    let out = bin()
        .current_dir(dir.path())
        .args(["token", "--config"])
        .arg(&cfg_path)
        .args(["--sub", "ops-bot", "--permissions", "admin,read", "--email", "bot@example.com", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/signing.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the generated private key is private");
    }

    let c = client();
    let r = c.get(server.url("/admin/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen(&echo, "x-auth-user-id"), ["ops-bot"]);

    // Send secrets everywhere a client might put them.
    let secrets = [
        "sekrit-password-Zq81",
        "gk_ApiKeySecretValue0123456789abcdefABCDEF_1a2b3c4d",
        "session-cookie-secret-77",
        "query-token-secret-55",
        "basic-pass-secret-99",
    ];
    let forged = format!("{}x", &token[..token.len() - 1]);
    let _ = c.get(server.url("/admin/x")).bearer_auth(&forged).send().await.unwrap();
    let _ =
        c.get(server.url("/admin/x")).header("Authorization", format!("Bearer {}", secrets[0])).send().await.unwrap();
    let _ = c.get(server.url("/public/x")).header("X-API-Key", secrets[1]).send().await.unwrap();
    let _ = c.get(server.url("/public/x")).header("Cookie", format!("session={}", secrets[2])).send().await.unwrap();
    let _ = c.get(server.url(&format!("/public/x?token={}", secrets[3]))).send().await.unwrap();
    let _ = c.get(server.url("/admin/x")).basic_auth("user", Some(secrets[4])).send().await.unwrap();
    let _ = c
        .post(server.url("/public/login"))
        .json(&serde_json::json!({"email": "a@b.c", "password": secrets[0]}))
        .send()
        .await
        .unwrap();
    let _ =
        c.post(server.url("/verify")).header("Authorization", format!("Bearer {}", secrets[0])).send().await.unwrap();

    // Real API keys and PATs, used and refused, at debug level.
    let reg: serde_json::Value = c
        .post(server.url("/auth/register"))
        .json(&serde_json::json!({"email": "keys@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = reg["access_token"].as_str().expect("registered").to_string();
    let mut keys = vec![gatehouse::auth::api_key::generate("gk"), gatehouse::auth::api_key::generate("gpat")];
    for (path, field) in [("/auth/api-keys", "key"), ("/auth/tokens", "token")] {
        let created: serde_json::Value = c
            .post(server.url(path))
            .bearer_auth(&access)
            .json(&serde_json::json!({"name": "logged?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(created[field].as_str().expect("created").to_string());
    }
    for key in &keys {
        let _ = c.get(server.url("/x")).header("X-API-KEY", key).send().await.unwrap();
        let _ = c.get(server.url("/admin/x")).bearer_auth(key).send().await.unwrap();
    }

    let (status, logs) = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert!(status.success());
    assert!(logs.contains("\"subject\":\"ops-bot\""), "access log names the verified subject:\n{logs}");
    for key in &keys {
        assert!(!logs.contains(&key[key.len() - 30..]), "an API key leaked into the logs:\n{logs}");
    }
    assert!(logs.contains("\"auth\":\"api_key\"") && logs.contains("\"auth\":\"pat\""), "{logs}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature) && !logs.contains(&token[..40]), "a token leaked into the logs");
    for s in secrets {
        assert!(!logs.contains(s), "`{s}` leaked into the logs:\n{logs}");
    }
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(parsed.get("level").is_some());
    }
}
