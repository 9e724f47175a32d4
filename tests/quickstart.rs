//! The quick start as a newcomer tries it: `config/gatehouse.toml` served in front of a demo
//! upstream, and every `curl` line that `scripts/quickstart.sh` prints and the README's quick
//! start shows run as written (address and token filled in), each answering the status its
//! comment promises.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;

use common::process::GatehouseProcess;
use common::*;

/// The `curl` lines of the quickstart script's message and of the README's quick start.
fn printed_commands() -> Vec<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = std::fs::read_to_string(format!("{root}/scripts/quickstart.sh")).unwrap();
    let message = script.split("cat <<MSG").nth(1).expect("the script prints a message").split("\nMSG").next().unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let quick = readme.split("## Quick start").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut lines: Vec<(String, String)> = message
        .lines()
        .map(|l| ("scripts/quickstart.sh".to_string(), l.trim().replace("\\$", "$")))
        .chain(quick.lines().map(|l| ("README.md".to_string(), l.trim().to_string())))
        .filter(|(_, l)| l.starts_with("curl "))
        .collect();
    lines.dedup();
    lines
}

#[tokio::test]
async fn every_printed_command_works_as_printed() {
    let upstream = Upstream::start().await;
    let work = tempfile::tempdir().unwrap();
    let config = format!("{}/config/gatehouse.toml", env!("CARGO_MANIFEST_DIR"));
    let env = [("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0".to_string()), ("GATEHOUSE_UPSTREAM__URL", upstream.url())];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["serve", "--config", &config]).current_dir(work.path());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let gh = GatehouseProcess::start(cmd).await;
    gh.wait_ready().await;
    // The token the script mints, the same way.
    let mut mint = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    mint.args([
        "token",
        "--config",
        &config,
        "--sub",
        "alice",
        "--email",
        "alice@example.com",
        "--permissions",
        "read,admin",
    ]);
    let out = mint.current_dir(work.path()).envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let commands = printed_commands();
    assert!(commands.len() >= 6, "the quick start prints its curl lines: {commands:?}");
    for (source, line) in commands {
        let (command, comment) =
            line.split_once('#').unwrap_or_else(|| panic!("{source}: `{line}` says what it answers"));
        let want = comment
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 3)
            .unwrap_or_else(|| panic!("{source}: `{line}`: the comment names the status"));
        let command =
            command.replace("http://127.0.0.1:8080", &format!("http://{}", gh.addr)).replace("$TOKEN", &token);
        // Off the runtime's thread: the demo upstream answers on it.
        let script = format!("{command} -s -o /dev/null -w '%{{http_code}}' --noproxy '*' --max-time 10");
        let run = tokio::task::spawn_blocking(move || Command::new("bash").args(["-c", &script]).output().unwrap())
            .await
            .unwrap();
        let got = String::from_utf8_lossy(&run.stdout).to_string();
        assert_eq!(got, want, "{source}: `{line}` answered {got}\n{}", gh.logs());
    }
}
