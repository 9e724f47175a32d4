//! A real web server (nginx, Caddy) run from one of the repository's examples in front of
//! Gatehouse: found, its config checked, started, awaited on its port, and killed on drop
//! (with its log shown when the test failed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct WebServer {
    name: &'static str,
    child: Child,
    log: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

impl WebServer {
    /// Runs `check` (the server's own config test) so a bad config fails with the server's
    /// words, then spawns `run` and waits until it listens on 127.0.0.1:`port`. `log` is the
    /// file the server writes its log to.
    pub async fn start(name: &'static str, mut check: Command, mut run: Command, log: PathBuf, port: u16) -> Self {
        let out = check.output().unwrap_or_else(|e| panic!("{name}'s config check cannot run: {e}"));
        assert!(
            out.status.success(),
            "{name} rejects the config built from the example:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let child = run.spawn().unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let mut server = WebServer { name, child, log, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{name} exited at start ({status}):\n{}", server.log());
            }
            if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {} within 15s:\n{}",
                server.addr,
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The server binary: `$var` if set, else `default`; the test fails (never skips) without it.
pub fn binary(var: &str, default: &str, install_hint: &str) -> PathBuf {
    let bin = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(bin.is_file(), "this test needs {install_hint} at {} (or set {var})", bin.display());
    bin
}

/// A port that was free a moment ago (the server binds it itself, so the listener is closed).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Replaces `from` in an example's text, which must hold it exactly `times` times.
pub fn swap(example: &str, text: String, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "{example} should contain `{from}` {times} time(s) (the test swaps it)"
    );
    text.replace(from, to)
}
