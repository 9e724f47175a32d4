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
    /// Picks a port (see [`free_port`]), has `prepare` write the server's config for it and
    /// return its config check and run commands, runs the check (so a bad config fails with
    /// the server's words), spawns the server and waits until it listens on 127.0.0.1:port.
    /// `log` is the file the server writes its log to. Should another process take the port
    /// first, the server fails to bind; that is seen in its log and retried on another port.
    pub async fn start(name: &'static str, log: PathBuf, mut prepare: impl FnMut(u16) -> (Command, Command)) -> Self {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let (check, run) = prepare(port);
            match Self::start_on(name, check, run, log.clone(), port).await {
                Ok(server) => return server,
                Err(new_log) if attempt < ATTEMPTS && address_in_use(&new_log) => {
                    eprintln!("{name}: port {port} was taken before {name} bound it; trying another");
                }
                Err(new_log) => panic!("{name} exited at start:\n{new_log}"),
            }
        }
        unreachable!()
    }

    /// One attempt on `port`: the server, or (if it exited) what it logged meanwhile.
    async fn start_on(
        name: &'static str,
        mut check: Command,
        mut run: Command,
        log: PathBuf,
        port: u16,
    ) -> Result<Self, String> {
        let out = check.output().unwrap_or_else(|e| panic!("{name}'s config check cannot run: {e}"));
        assert!(
            out.status.success(),
            "{name} rejects the config built from the example:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let logged_before = std::fs::read(&log).map(|b| b.len()).unwrap_or(0);
        let mut child = run.spawn().unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let logged = || {
            String::from_utf8_lossy(std::fs::read(&log).unwrap_or_default().get(logged_before..).unwrap_or_default())
                .into_owned()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("({status})\n{}", logged()));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(WebServer { name, child, log, addr });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not listen on {addr} within 30s:\n{}", logged());
            }
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

/// A port that was free a moment ago, for a server that binds it itself (nginx and Caddy
/// cannot be told to take port 0 and say which they got). It is picked below the kernel's
/// ephemeral range, so no `bind(0)` or outgoing connection can be handed it meanwhile; only
/// someone naming the same number could, and [`WebServer::start`] retries if that happens.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ^ std::process::id().rotate_left(16);
    for i in 0..1000u32 {
        let port = low + ((seed.wrapping_add(i.wrapping_mul(7919))) % u32::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

fn address_in_use(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("could not bind")
}

/// A client for the web server's port: no proxy, no redirects followed, HTTP/1.1, 10 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
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
