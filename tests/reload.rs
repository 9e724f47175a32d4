//! Config reload of a real `gatehouse serve`: a plain write and a kubelet-style `..data`
//! symlink swap are followed, a broken or restart-only change is refused (logged with every
//! problem, counted) while the running config keeps serving, SIGHUP reloads, requests in
//! flight finish on their config, JWKS caches survive, and SIGTERM drains as Kubernetes likes.
#![allow(clippy::disallowed_methods)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::{GatehouseProcess, spawn_gatehouse};
use common::*;

/// How long a change may take to be seen (the watcher debounces 200 ms).
const SEEN_WITHIN: Duration = Duration::from_secs(15);

/// A config whose routes under `open` are public and everything else requires a token.
fn config_text(upstream: &str, open: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra}
[upstream]
url = "{upstream}"
response_timeout = "5s"
[[routes]]
path = "{open}"
auth = "public"
[[routes]]
path = "/"
auth = "required"
[log]
access = false
"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn signal(gh: &GatehouseProcess, sig: &str) {
    let sent = Command::new("kill").args([&format!("-{sig}"), &gh.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{sig}");
}

async fn status_of(gh: &GatehouseProcess, path: &str) -> u16 {
    client().get(gh.url(path)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Polls `path` until it answers `want`; fails with the log after [`SEEN_WITHIN`].
async fn until_status(gh: &GatehouseProcess, path: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + SEEN_WITHIN;
    loop {
        if status_of(gh, path).await == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never answered {want}:\n{}", gh.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(gh: &GatehouseProcess) -> String {
    client().get(gh.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// The value of the sample `name` (with its labels, as rendered) in `/metrics`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

const RELOADED: &str = "gatehouse_config_reloads_total{result=\"success\"}";
const REFUSED: &str = "gatehouse_config_reloads_total{result=\"failure\"}";
const LAST_OK: &str = "gatehouse_config_last_reload_successful";
const LAST_SUCCESS: &str = "gatehouse_config_last_reload_success_timestamp_seconds";

#[tokio::test]
async fn a_written_file_is_swapped_in_and_a_broken_one_is_refused_while_the_old_one_serves() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    write(&path, &config_text(&upstream.url(), "/public/", ""));
    let mut gh = spawn_gatehouse(&path, &[]).await;
    assert_eq!(status_of(&gh, "/public/a").await, 200);
    assert_eq!(status_of(&gh, "/open/a").await, 401);
    let m = metrics(&gh).await;
    assert_eq!((sample(&m, RELOADED), sample(&m, REFUSED), sample(&m, LAST_OK)), (0.0, 0.0, 1.0));
    let started_at = sample(&m, LAST_SUCCESS);

    // A plain write: the new routes serve, the old public one is gone.
    write(&path, &config_text(&upstream.url(), "/open/", ""));
    until_status(&gh, "/open/a", 200).await;
    assert_eq!(status_of(&gh, "/public/a").await, 401);
    gh.wait_for_text("config reloaded").await;
    let m = metrics(&gh).await;
    assert_eq!((sample(&m, RELOADED), sample(&m, REFUSED), sample(&m, LAST_OK)), (1.0, 0.0, 1.0));
    assert!(sample(&m, LAST_SUCCESS) >= started_at);

    // Broken in two ways at once: both problems are logged, the running config serves on.
    let broken = config_text(&upstream.url(), "/public/", "idle_timeout = \"soon\"").replace("[log]", "[logg]");
    write(&path, &broken);
    let line = gh.wait_for_text("config reload refused").await;
    assert!(line.contains("server.idle_timeout") && line.contains("logg"), "every problem is named: {line}");
    assert_eq!(status_of(&gh, "/open/a").await, 200, "the last good config keeps serving");
    assert_eq!(status_of(&gh, "/public/a").await, 401);
    let m = metrics(&gh).await;
    assert_eq!((sample(&m, RELOADED), sample(&m, REFUSED), sample(&m, LAST_OK)), (1.0, 1.0, 0.0));

    // A key bound to the running process is refused by name, even beside a good change.
    write(&path, &config_text(&upstream.url(), "/public/", "worker_threads = 3"));
    gh.wait_for_count("config reload refused", 2).await;
    let refused = gh.logs().lines().rfind(|l| l.contains("config reload refused")).unwrap().to_string();
    assert!(refused.contains("server.worker_threads") && refused.contains("restart"), "{refused}");
    assert_eq!(status_of(&gh, "/public/a").await, 401, "nothing of the refused config applies");
    assert_eq!(sample(&metrics(&gh).await, REFUSED), 2.0);

    // Fixed again; then SIGHUP reloads even though no file changed.
    write(&path, &config_text(&upstream.url(), "/public/", ""));
    until_status(&gh, "/public/a", 200).await;
    gh.wait_for_count("config reloaded", 2).await;
    signal(&gh, "HUP");
    gh.wait_for_count("config reloaded", 3).await;
    let m = metrics(&gh).await;
    assert_eq!((sample(&m, RELOADED), sample(&m, REFUSED), sample(&m, LAST_OK)), (3.0, 2.0, 1.0));
    assert_eq!(status_of(&gh, "/public/a").await, 200);
}

/// The kubelet's update of a mounted ConfigMap: the file is a symlink through `..data` to a
/// timestamped directory; a new directory is written, `..data_tmp` pointed at it and renamed
/// over `..data`, and the old directory removed. The file itself is never written.
#[tokio::test]
async fn a_configmap_symlink_swap_is_followed() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let version = |name: &str, open: &str| -> PathBuf {
        let v = d.join(name);
        std::fs::create_dir(&v).unwrap();
        write(&v.join("gatehouse.toml"), &config_text(&upstream.url(), open, ""));
        v
    };
    let first = version("..2026_12_04_10_00_00.1", "/public/");
    std::os::unix::fs::symlink(first.file_name().unwrap(), d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/gatehouse.toml", d.join("gatehouse.toml")).unwrap();
    let gh = spawn_gatehouse(&d.join("gatehouse.toml"), &[]).await;
    assert_eq!(status_of(&gh, "/open/a").await, 401);

    let second = version("..2026_12_04_10_05_00.2", "/open/");
    std::os::unix::fs::symlink(second.file_name().unwrap(), d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    until_status(&gh, "/open/a", 200).await;
    assert_eq!(status_of(&gh, "/public/a").await, 401);

    // And again, so the watch survived the first swap.
    let third = version("..2026_12_04_10_10_00.3", "/third/");
    std::os::unix::fs::symlink(third.file_name().unwrap(), d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(&second).unwrap();
    until_status(&gh, "/third/a", 200).await;
    assert_eq!(status_of(&gh, "/open/a").await, 401);
}

/// A request under way when the config changes finishes on the config it started with: it is
/// answered by the upstream it was sent to, while the next request goes to the new one.
#[tokio::test]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let (old, new) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    write(&path, &config_text(&old.url(), "/", ""));
    let mut gh = spawn_gatehouse(&path, &[]).await;

    let in_flight: Vec<_> = (0..4)
        .map(|i| {
            let url = gh.url(&format!("/slow/1500?n={i}"));
            tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // All four have reached the old upstream before the file changes.
    let deadline = tokio::time::Instant::now() + SEEN_WITHIN;
    while old.hits.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write(&path, &config_text(&new.url(), "/", ""));
    gh.wait_for_text("config reloaded").await;
    assert_eq!(status_of(&gh, "/after").await, 200);
    assert_eq!(new.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "new requests go to the new upstream");
    for r in in_flight {
        assert_eq!(r.await.unwrap().unwrap(), 200, "an in-flight request completes");
    }
    assert_eq!(old.hits.load(std::sync::atomic::Ordering::SeqCst), 4, "and it was served by the old upstream");
}

/// Reloading a config whose issuer did not change keeps that issuer's fetched keys: no new
/// JWKS fetch, tokens keep verifying the moment the new config is in.
#[tokio::test]
async fn jwks_caches_of_unchanged_issuers_survive_a_reload() {
    let upstream = Upstream::start().await;
    let key = TestKey::generate(jsonwebtoken::Algorithm::RS256);
    let jwks = JwksServer::start(jwks(&[&key])).await;
    let issuer = "https://idp.example.com";
    let block = issuer_block(issuer, &jwks.url(), &["RS256"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let text =
        |open: &str| config_text(&upstream.url(), open, "").replace("[upstream]", &format!("{block}\n[upstream]"));
    write(&path, &text("/public/"));
    let gh = spawn_gatehouse(&path, &[]).await;
    gh.wait_ready().await;
    let token = key.sign(&claims(issuer, "alice"));
    let authed = |path: &'static str| {
        let (url, token) = (gh.url(path), token.clone());
        async move { client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(authed("/private").await, 200);
    let fetched = jwks.hits();

    write(&path, &text("/open/"));
    until_status(&gh, "/open/a", 200).await;
    assert_eq!(authed("/private").await, 200);
    assert_eq!(jwks.hits(), fetched, "the reload fetched the unchanged issuer's keys again");
    let m = metrics(&gh).await;
    assert_eq!(sample(&m, "gatehouse_jwks_ready{issuer=\"https://idp.example.com\"}"), 1.0);
}

/// SIGTERM: `/readyz` says 503 at once while requests are still served for
/// `server.shutdown_delay`, then the listener closes and the process exits cleanly.
#[tokio::test]
async fn sigterm_turns_readiness_off_then_serves_for_the_delay_then_exits() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    write(&path, &config_text(&upstream.url(), "/public/", "shutdown_delay = \"2s\""));
    let gh = spawn_gatehouse(&path, &[]).await;
    gh.wait_ready().await;
    let keep_alive = client();
    let ready = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), gh.url("/readyz"));
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(ready(&keep_alive).await.0, 200);
    let sent = tokio::time::Instant::now();
    signal(&gh, "TERM");
    let deadline = sent + Duration::from_millis(1500);
    loop {
        let (status, body) = ready(&keep_alive).await;
        if status == 503 {
            assert_eq!(json_of(&body)["code"], "draining", "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz still {status} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving, on a kept-alive connection and on a new one.
    assert_eq!(keep_alive.get(gh.url("/public/a")).send().await.unwrap().status(), 200);
    assert_eq!(status_of(&gh, "/public/b").await, 200);
    let (status, logs) = tokio::task::spawn_blocking(move || gh.terminate()).await.unwrap();
    assert!(sent.elapsed() >= Duration::from_secs(2), "exited before the delay ended");
    assert!(status.success(), "{status}\n{logs}");
    assert!(logs.contains("/readyz answers 503"), "{logs}");
}

/// A renewed certificate (cert-manager rewriting the Secret's files) is served to new
/// connections without a restart: the certificate files' directory is watched too.
#[tokio::test]
async fn a_renewed_server_certificate_is_served_without_a_restart() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let (cert, key) = (tls.join("tls.crt"), tls.join("tls.key"));
    let (cert_a, key_a) = self_signed_cert();
    write(&cert, &cert_a);
    write(&key, &key_a);
    let path = dir.path().join("gatehouse.toml");
    let server_tls = format!("tls = {{ cert_file = \"{}\", key_file = \"{}\" }}", cert.display(), key.display());
    write(&path, &config_text(&upstream.url(), "/public/", &server_tls));
    let gh = spawn_gatehouse(&path, &[]).await;
    // A new client per call: a new connection, so a new handshake.
    let fetch = |trusted: &str| {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(trusted.as_bytes()).unwrap()])
            .resolve("localhost", gh.addr)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/public/a", gh.addr.port());
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(fetch(&cert_a).await.unwrap(), 200);

    let (cert_b, key_b) = self_signed_cert();
    write(&key, &key_b);
    write(&cert, &cert_b);
    let deadline = tokio::time::Instant::now() + SEEN_WITHIN;
    while fetch(&cert_b).await.ok() != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never served:\n{}", gh.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fetch(&cert_a).await.is_err(), "the old certificate is no longer served");
}

/// `[rate_limit]` reloads like the rest; while it is unchanged, a reload keeps what the
/// limiter has counted (a reload is no way around a login limit).
#[tokio::test]
async fn login_limits_follow_a_reload_and_keep_their_counts_while_unchanged() {
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let path = store.dir.path().join("gatehouse.toml");
    let text = |per_minute: u32, open: &str| {
        let rest = accounts_config(&upstream, &store, "").replace("path = \"/public/\"", &format!("path = \"{open}\""));
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nlogin_per_minute = {per_minute}\n{rest}")
    };
    write(&path, &text(3, "/public/"));
    let mut gh = spawn_gatehouse(&path, &[]).await;
    let login_url = gh.url("/auth/login");
    let login = || {
        let url = login_url.clone();
        async move {
            let body = serde_json::json!({"email": "nobody@example.com", "password": "not the password"});
            client().post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    };
    for _ in 0..3 {
        assert_eq!(login().await, 401);
    }
    assert_eq!(login().await, 429);

    write(&path, &text(3, "/open/"));
    until_status(&gh, "/open/a", 200).await;
    assert_eq!(login().await, 429, "the count survived the reload");

    write(&path, &text(50, "/open/"));
    gh.wait_for_count("config reloaded", 2).await;
    assert_eq!(login().await, 401, "the new limit applies");
}

/// A proxy no longer trusted after a reload is not believed on a connection it kept alive:
/// trust is decided per request, from the generation serving it.
#[tokio::test]
async fn a_proxy_untrusted_by_a_reload_is_not_believed_on_its_kept_alive_connection() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let text = |trusted: &str| config_text(&upstream.url(), "/", &format!("trusted_proxies = [{trusted}]"));
    write(&path, &text("\"127.0.0.1/32\""));
    let mut gh = spawn_gatehouse(&path, &[]).await;
    let kept = client();
    let who = gh.url("/who");
    let real_ip = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), who.clone());
        async move {
            let r = c.get(url).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
            seen(&r.json().await.unwrap(), "x-real-ip")
        }
    };
    assert_eq!(real_ip(&kept).await, vec!["203.0.113.9"], "a trusted proxy's X-Forwarded-For is believed");
    write(&path, &text(""));
    gh.wait_for_text("config reloaded").await;
    assert_eq!(real_ip(&kept).await, vec!["127.0.0.1"], "the kept-alive connection is no longer trusted");
}

/// A cached API key's principal carries the identity headers rendered under `[headers]`: a
/// reload that renames one must not keep injecting the old name.
#[tokio::test]
async fn renamed_identity_headers_apply_to_cached_api_keys() {
    let upstream = Upstream::start().await;
    let store = Backend::Sqlite.fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let text = |user_header: &str| {
        let rest = accounts_config(&upstream, &store, "registration = true")
            .replace("[headers]\n", &format!("[headers]\nuser_id = \"{user_header}\"\n"));
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nlogin_per_minute = 100\n{rest}")
    };
    write(&path, &text("X-Auth-User-Id"));
    let mut gh = spawn_gatehouse(&path, &[]).await;
    let c = client();
    let body = serde_json::json!({"email": "kim@example.com", "password": PW});
    let r = c.post(gh.url("/auth/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r: serde_json::Value = c.post(gh.url("/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
    let access = r["access_token"].as_str().unwrap().to_string();
    let r = c.post(gh.url("/auth/api-keys")).bearer_auth(&access).json(&serde_json::json!({"name": "ci"})).send().await;
    let key = r.unwrap().json::<serde_json::Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let private = gh.url("/private");
    let echo = |c: &reqwest::Client| {
        let (c, url, key) = (c.clone(), private.clone(), key.clone());
        async move {
            let r = c.get(url).header("x-api-key", key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let before = echo(&c).await;
    let user = seen(&before, "x-auth-user-id");
    assert_eq!(user.len(), 1, "{before}");

    write(&path, &text("X-Who"));
    gh.wait_for_text("config reloaded").await;
    let after = echo(&c).await;
    assert_eq!(seen(&after, "x-who"), user, "the new header name carries the user: {after}");
    assert!(seen(&after, "x-auth-user-id").is_empty(), "the old name is not injected any more: {after}");
}

/// Files written beside the config (a SQLite database, a mail outbox) are not config
/// changes: they reload nothing and do not hold a SIGHUP back.
#[tokio::test]
async fn writes_to_other_files_beside_the_config_reload_nothing() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    write(&path, &config_text(&upstream.url(), "/public/", ""));
    let mut gh = spawn_gatehouse(&path, &[]).await;
    let busy = dir.path().join("gatehouse.db");
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            std::fs::write(&busy, format!("write {i}")).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&gh, "HUP");
    gh.wait_for_text("config reloaded").await;
    writer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = metrics(&gh).await;
    assert_eq!(sample(&m, RELOADED), 1.0, "only the SIGHUP reloaded");
    assert_eq!(sample(&m, REFUSED), 0.0);
}
