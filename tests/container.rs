//! The container image's runtime stage is enough: the files it holds (the binary, the libraries
//! `ldd` names, CA certificates, passwd/group for 65532, the image's config) run Gatehouse as
//! uid 65532 on a read-only root with one writable data volume. No container engine runs here,
//! so the root is assembled by hand and entered with `unshare` (mount namespace) and `chroot`.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const NONROOT: u32 = 65532;

/// What `gcr.io/distroless/cc-debian12:nonroot` provides beside our two COPYs, plus those COPYs.
fn assemble_root(root: &Path) {
    let mkdir = |p: &str| std::fs::create_dir_all(root.join(p.trim_start_matches('/'))).unwrap();
    for d in ["/usr/local/bin", "/etc/gatehouse", "/etc/ssl/certs", "/var/lib/gatehouse", "/tmp", "/dev"] {
        mkdir(d);
    }
    let copy = |from: &Path, to: &str| {
        let dest = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), dest.display()));
    };
    copy(Path::new(BIN), "/usr/local/bin/gatehouse");
    // The shared libraries the binary needs, at the paths the loader looks them up.
    let ldd = Command::new("ldd").arg(BIN).output().expect("ldd runs");
    assert!(ldd.status.success(), "ldd: {}", String::from_utf8_lossy(&ldd.stderr));
    let mut libs = 0;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let real = std::fs::canonicalize(p).unwrap();
            copy(&real, p);
            libs += 1;
        }
    }
    assert!(libs >= 2, "ldd named the loader and libc at least");
    copy(Path::new("/etc/ssl/certs/ca-certificates.crt"), "/etc/ssl/certs/ca-certificates.crt");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    copy(&repo().join("docker/gatehouse.toml"), "/etc/gatehouse/gatehouse.toml");
    // No shell in the image: the test must not rely on one being there.
    assert!(!root.join("bin/sh").exists());
}

/// The runtime stage this test stands in for: if the Dockerfile moves a file, this test must move too.
#[test]
fn the_assembled_root_is_the_dockerfiles_runtime_stage() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let runtime = dockerfile.split("\nFROM ").last().unwrap();
    assert!(runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"), "{runtime}");
    for line in [
        "COPY --from=build /out/gatehouse /usr/local/bin/gatehouse",
        "COPY --from=build --chown=65532:65532 /out/var/lib/gatehouse /var/lib/gatehouse",
        "COPY docker/gatehouse.toml /etc/gatehouse/gatehouse.toml",
        "USER 65532:65532",
        r#"ENTRYPOINT ["gatehouse"]"#,
        r#"CMD ["serve", "--config", "/etc/gatehouse/gatehouse.toml"]"#,
    ] {
        assert!(runtime.lines().any(|l| l == line), "the runtime stage has no `{line}`");
    }
    let copies = runtime.lines().filter(|l| l.starts_with("COPY")).count();
    assert_eq!(copies, 3, "a COPY this test does not mirror");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `args` inside the assembled root as 65532, the root read-only and `data` mounted
/// writable at /var/lib/gatehouse, in a private mount namespace.
fn contained(root: &Path, data: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let script = format!(
        "set -e; mount --bind {root} {root}; mount -o remount,bind,ro {root}; \
         mount --bind {data} {root}/var/lib/gatehouse; mount -t tmpfs -o size=1m tmpfs {root}/tmp; \
         cd {root}; exec chroot --userspec={NONROOT}:{NONROOT} {root} /usr/local/bin/gatehouse {args}",
        root = root.display(),
        data = data.display(),
        args = args.join(" "),
    );
    // The host's shell sets the namespace up; what runs inside has none.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_image_files_serve_as_65532_on_a_read_only_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let data = dir.path().join("data");
    assemble_root(&root);
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(NONROOT), Some(NONROOT)).unwrap();

    let upstream = common::Upstream::start().await;
    let env = vec![
        ("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0".to_string()),
        ("GATEHOUSE_UPSTREAM__URL", upstream.url()),
        ("GATEHOUSE_LOG__FORMAT", "json".to_string()),
    ];
    let check =
        contained(&root, &data, &env, &["check-config", "--config", "/etc/gatehouse/gatehouse.toml"]).output().unwrap();
    assert!(
        check.status.success(),
        "check-config in the image root: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The log says where it listens (port 0 was asked for), so no port is guessed.
    let running = common::GatehouseProcess::start_within(
        contained(&root, &data, &env, &["serve", "--config", "/etc/gatehouse/gatehouse.toml"]),
        Duration::from_secs(60),
    )
    .await;
    let addr = running.addr;

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Protected by the image's default config; the auth API's keys were made in the volume.
    assert_eq!(client.get(format!("{base}/anything")).send().await.unwrap().status(), 401);
    let jwks: serde_json::Value =
        client.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    // A token minted by the CLI in the same root and volume passes, and the app sees who it is.
    let token =
        contained(&root, &data, &env, &["token", "--config", "/etc/gatehouse/gatehouse.toml", "--sub", "alice"])
            .output()
            .unwrap();
    assert!(token.status.success(), "token: {}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap();
    let resp = client.get(format!("{base}/orders")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(common::seen(&echo, "x-auth-user-id"), ["alice"]);
    assert!(data.join("gatehouse.db").exists(), "the store lives in the data volume");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(data.join("gatehouse.db")).unwrap());
    assert_eq!(owner, NONROOT, "written by uid 65532");
    drop(running);

    // The root really is read-only: a store outside the volume cannot be created.
    let mut elsewhere = env.clone();
    elsewhere.push(("GATEHOUSE_STORE__URL", "sqlite:///etc/gatehouse/gatehouse.db".to_string()));
    // Were the root writable, serve would start and run on: a bounded wait makes that a failure, not a hang.
    let mut child = contained(&root, &data, &elsewhere, &["serve", "--config", "/etc/gatehouse/gatehouse.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running with its store on the image's root: the root is writable");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(!root.join("etc/gatehouse/gatehouse.db").exists());
}
