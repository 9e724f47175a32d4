//! The `gatehouse` binary as a child process. Its config asks for `127.0.0.1:0` and the
//! bound address is read back from its own log ("gatehouse is serving", field `listen`), so
//! no port is guessed and none can be taken by someone else in between. Both pipes are
//! drained into memory by background threads for the whole life of the child, so it never
//! blocks writing a log line, and the tests can read everything it wrote.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a child gets to write an awaited log line (a loaded CI machine is slow).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    /// Pipes not yet at end of file.
    open: usize,
}

struct Shared {
    log: Mutex<Log>,
    changed: tokio::sync::Notify,
}

/// A running `gatehouse` process, found listening at `addr`. Dropping it kills it.
pub struct GatehouseProcess {
    child: Child,
    /// The main listener's bound address, from the log.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    drains: Vec<JoinHandle<()>>,
    /// How long each wait for a log line may take.
    deadline: Duration,
}

/// Runs `gatehouse serve --config <config>` (with `env` set) and waits for it to serve.
/// The config should listen on `127.0.0.1:0`.
pub async fn spawn_gatehouse(config: &std::path::Path, env: &[(&str, &str)]) -> GatehouseProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["serve", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    GatehouseProcess::start(cmd).await
}

impl GatehouseProcess {
    /// Spawns `cmd` (a `gatehouse serve`; its stdio is taken over, and `RUST_LOG` removed so
    /// the config's `log.level` decides and the info-level "serving" line is written) and
    /// waits, up to [`START_DEADLINE`], for the "gatehouse is serving" line. Fails with
    /// everything the child wrote if it exits first or the deadline passes.
    pub async fn start(cmd: Command) -> GatehouseProcess {
        Self::start_within(cmd, START_DEADLINE).await
    }

    /// [`GatehouseProcess::start`] with another deadline for this and every later wait.
    pub async fn start_within(mut cmd: Command, deadline: Duration) -> GatehouseProcess {
        cmd.env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let shared =
            Arc::new(Shared { log: Mutex::new(Log { lines: Vec::new(), open: 2 }), changed: Default::default() });
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        let drains = [stderr, stdout]
            .into_iter()
            .map(|pipe| {
                let shared = shared.clone();
                std::thread::spawn(move || drain(pipe, &shared))
            })
            .collect();
        let mut process =
            GatehouseProcess { child, addr: SocketAddr::from(([0, 0, 0, 0], 0)), shared, drains, deadline };
        let listen = process.wait_for_field("gatehouse is serving", "listen").await;
        process.addr = listen.parse().unwrap_or_else(|e| panic!("`listen` is not an address: {listen:?}: {e}"));
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything written so far, stderr and stdout lines in the order they were read.
    pub fn logs(&self) -> String {
        self.shared.log.lock().unwrap().lines.join("\n")
    }

    /// Waits (up to the start deadline, [`START_DEADLINE`] unless started [`GatehouseProcess::start_within`]) for a log line with `message` and returns its field
    /// `field`. Both log formats are understood: JSON (`"message"`, `"<field>"`) and text
    /// (`<message> ... <field>=<value>`).
    pub async fn wait_for_field(&mut self, message: &str, field: &str) -> String {
        self.wait_for(&format!("a {message:?} line with `{field}`"), |line| log_field(line, message, field)).await
    }

    /// Waits (up to [`START_DEADLINE`]) for a log line containing `needle`; returns the line.
    pub async fn wait_for_text(&mut self, needle: &str) -> String {
        self.wait_for(&format!("{needle:?}"), |line| line.contains(needle).then(|| line.to_string())).await
    }

    /// Waits (up to [`START_DEADLINE`]) for a line `pick` returns something for, and returns
    /// that. Fails with everything the child wrote if it exits first or the deadline passes.
    pub async fn wait_for(&mut self, what: &str, pick: impl Fn(&str) -> Option<String>) -> String {
        self.wait_until(what, |lines| lines.iter().find_map(|l| pick(l))).await
    }

    /// Waits (up to [`START_DEADLINE`]) until at least `n` log lines contain `needle`.
    pub async fn wait_for_count(&mut self, needle: &str, n: usize) {
        let what = format!("{n} lines with {needle:?}");
        self.wait_until(&what, |lines| (lines.iter().filter(|l| l.contains(needle)).count() >= n).then_some(())).await
    }

    /// Waits (up to [`START_DEADLINE`]) until `check`, given every line so far, returns
    /// something. Fails with everything the child wrote if it exits first or the deadline
    /// passes.
    pub async fn wait_until<T>(&mut self, what: &str, check: impl Fn(&[String]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let shared = self.shared.clone();
        loop {
            // Registered before looking, so a line pushed after the look still wakes us.
            let changed = shared.changed.notified();
            let closed = {
                let log = shared.log.lock().unwrap();
                if let Some(found) = check(&log.lines) {
                    return found;
                }
                log.open == 0
            };
            if closed || self.child.try_wait().unwrap().is_some() {
                // Both pipes closed or the process is gone: what it wrote is all there is.
                let status = self.child.wait().unwrap();
                self.join_drains();
                let log = self.shared.log.lock().unwrap();
                if let Some(found) = check(&log.lines) {
                    return found;
                }
                panic!("gatehouse exited ({status}) before logging {what}:\n{}", log.lines.join("\n"));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // Not woken, so maybe only the exit is new: one more look decides.
                if self.child.try_wait().unwrap().is_some() {
                    continue;
                }
                panic!("gatehouse did not log {what} within {:?}:\n{}", self.deadline, self.logs());
            }
        }
    }

    /// Waits until `/readyz` answers 200 (up to [`START_DEADLINE`]).
    pub async fn wait_ready(&self) {
        super::wait_ready_at(&self.url("/readyz")).await;
    }

    /// SIGTERM, then waits for the exit; returns the status and everything it wrote.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let status = self.child.wait().unwrap();
        self.join_drains();
        (status, self.logs())
    }

    fn join_drains(&mut self) {
        for drain in self.drains.drain(..) {
            drain.join().unwrap();
        }
    }
}

impl Drop for GatehouseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && self.addr.port() != 0 && !self.drains.is_empty() {
            eprintln!("---- gatehouse log ----\n{}", self.logs());
        }
    }
}

fn drain(pipe: Box<dyn std::io::Read + Send>, shared: &Shared) {
    let mut reader = std::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                shared.log.lock().unwrap().lines.push(line);
                shared.changed.notify_one();
            }
        }
    }
    shared.log.lock().unwrap().open -= 1;
    shared.changed.notify_one();
}

/// `field` of a log line whose message is `message`, in either log format.
pub fn log_field(line: &str, message: &str, field: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if v["message"] != message {
            return None;
        }
        return v[field].as_str().map(str::to_string).or_else(|| v.get(field).map(|f| f.to_string()));
    }
    // Text: `<time> INFO gatehouse: <message> key=value key=value`.
    let (_, rest) = line.split_once(&format!(": {message} "))?;
    rest.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{field}="))).map(str::to_string)
}

/// `gatehouse serve` on a config written to a fresh directory that is also its working
/// directory (relative paths land there); the directory lives as long as the replica.
pub struct Replica {
    pub process: GatehouseProcess,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// Serves `[server] listen = 127.0.0.1:0` followed by `config`.
    pub async fn serve(config: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(&path, format!("[server]\nlisten = \"127.0.0.1:0\"\n{config}")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.current_dir(dir.path()).args(["serve", "--config"]).arg(&path);
        Replica { process: GatehouseProcess::start(cmd).await, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }
}
