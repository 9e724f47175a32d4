//! Config reload: `SIGHUP`, or a change of the config file or of a file it names (the
//! listener's and the upstream's certificates, CA bundles, HMAC secrets), re-reads and
//! validates the whole config and swaps a new generation in; a refused one is logged with
//! every problem and counted, and the running generation keeps serving.
//!
//! Changes are seen by watching the files' directories, not the files: Kubernetes updates a
//! mounted ConfigMap or Secret by swapping the `..data` symlink beside them, which replaces
//! the file without ever writing to it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use crate::app::{App, Live};
use crate::config::{Config, ConfigError, KeySourceConfig, fixed_changes};

/// Events arrive in bursts (an editor's save, the kubelet's swap): one reload per burst...
const DEBOUNCE: Duration = Duration::from_millis(200);
/// ...but a directory that never falls quiet does not hold a reload back for longer.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// A config that failed to build for a reason outside it (a file not there yet, the store
/// away) is tried again this often, until it builds or changes.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// The most a reload may take (store calls, reading files); past it, it is refused.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The kubelet's swap renames this symlink; its target directory holds the real files.
const KUBELET_DATA: &str = "..data";

/// Why a reload was refused. The running generation is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Every problem, on one line: a log line per refusal.
    #[error("{}", one_line(.0))]
    Invalid(ConfigError),
    #[error("{} cannot change while Gatehouse runs (restart to apply)", .0.join(", "))]
    Fixed(Vec<&'static str>),
    /// The config is valid, but what it names could not be built (a file missing or
    /// unreadable, the store away): worth retrying without a change.
    #[error("{0:#}")]
    Build(anyhow::Error),
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: always reloads, even when no file changed (e.g. to re-read every secret).
    Signal,
    /// A watched file changed: reloads only when a file's content did.
    Watch,
    /// The last attempt could not build what the config names: tries again.
    Retry,
}

/// Reloads the config at `path` into `live`, one reload at a time.
pub struct Reloader {
    live: Arc<Live>,
    path: PathBuf,
    /// A digest of what the last attempt read, so a touched but unchanged file (or an
    /// unrelated file in a watched directory) reloads nothing, and a refused content is not
    /// retried on every event. Empty after a build failure, so the next event retries.
    seen: tokio::sync::Mutex<Vec<u8>>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, path: PathBuf) -> Self {
        let current = live.current();
        let seen = Config::read(&path).map(|text| fingerprint(&text, &current.config)).unwrap_or_default();
        Reloader { live, path, seen: tokio::sync::Mutex::new(seen) }
    }

    /// Re-reads, validates and swaps in the config. `Ok(false)`: nothing changed.
    pub async fn reload(&self, trigger: Trigger) -> Result<bool, ReloadError> {
        let mut seen = self.seen.lock().await;
        let current = self.live.current();
        // The text is read once: what is digested is what is parsed.
        let text = Config::read(&self.path).map_err(ReloadError::Invalid);
        let digest = text.as_ref().map(|t| fingerprint(t, &current.config)).unwrap_or_default();
        if trigger == Trigger::Watch && !digest.is_empty() && digest == *seen {
            return Ok(false);
        }
        let result = match text {
            Ok(text) => match tokio::time::timeout(RELOAD_TIMEOUT, self.apply(&current, &text)).await {
                Ok(result) => result,
                Err(_) => Err(ReloadError::Build(anyhow::anyhow!("the reload took longer than {RELOAD_TIMEOUT:?}"))),
            },
            Err(e) => Err(e),
        };
        current.process.metrics.config_reloaded(result.is_ok());
        *seen = match &result {
            Err(ReloadError::Build(_)) => Vec::new(),
            _ => digest,
        };
        result.map(|()| true)
    }

    async fn apply(&self, current: &App, text: &str) -> Result<(), ReloadError> {
        let config = Config::from_toml(text, std::env::vars()).map_err(ReloadError::Invalid)?;
        let fixed = fixed_changes(&current.config, &config);
        if !fixed.is_empty() {
            return Err(ReloadError::Fixed(fixed));
        }
        let next = current.next(config).await.map_err(ReloadError::Build)?;
        // New issuers' key sets are being fetched: give them the fetch timeout before the
        // swap, so a reload does not turn every replica unready at once.
        if current.auth.is_ready() {
            let wait = next.config.jwt.jwks_fetch_timeout + Duration::from_millis(500);
            let ready = tokio::time::timeout(wait, async {
                while !next.auth.is_ready() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            if ready.await.is_err() {
                tracing::warn!("a new issuer's keys are not loaded yet; swapping the config in anyway");
            }
        }
        let old_keys = current.auth.api_keys().filter(|k| next.auth.api_keys().is_none_or(|n| !Arc::ptr_eq(k, n)));
        self.live.replace(next);
        if let Some(old) = old_keys.cloned() {
            // Requests still on the old generation record key use in the old cache: write it
            // once they have had time to finish.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                old.flush_usage_once().await;
            });
        }
        Ok(())
    }

    /// The directories whose changes may change the config, each with the names in it that
    /// matter (the kubelet's `..data` among them).
    fn watched(&self) -> Vec<(PathBuf, Vec<OsString>)> {
        let current = self.live.current();
        let mut dirs: Vec<(PathBuf, Vec<OsString>)> = Vec::new();
        for file in std::iter::once(self.path.as_path()).chain(files_of(&current.config)) {
            let (Some(dir), Some(name)) = (dir_of(file), file.file_name()) else { continue };
            match dirs.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, names)) => names.push(name.to_os_string()),
                None => dirs.push((dir, vec![name.to_os_string(), OsString::from(KUBELET_DATA)])),
            }
        }
        dirs
    }
}

/// Reloads on SIGHUP and on changes of the watched files until the task is dropped.
pub async fn follow(live: Arc<Live>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let reloader = Reloader::new(live, path);
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads follow file changes only");
            None
        }
    };
    let (tx, mut changes) = mpsc::channel::<notify::Event>(64);
    let mut watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        // A full channel already holds a wake-up.
        Ok(e) if !e.kind.is_access() => drop(tx.try_send(e)),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "watching the config files failed"),
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reloads follow SIGHUP only");
            None
        }
    };
    let mut watching: Vec<(PathBuf, Vec<OsString>)> = Vec::new();
    let mut retry: Option<tokio::time::Instant> = None;
    loop {
        if let Some(w) = watcher.as_mut() {
            watching = rewatch(w, watching, reloader.watched());
        }
        let relevant = |e: &notify::Event| touches(e, &watching);
        let trigger = tokio::select! {
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Signal,
            () = async { match retry { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => Trigger::Retry,
            Some(event) = changes.recv() => {
                if !relevant(&event) {
                    continue;
                }
                let until = crate::clock::now() + DEBOUNCE_MAX;
                while let Ok(Some(_)) = tokio::time::timeout_at(until.min(crate::clock::now() + DEBOUNCE), changes.recv()).await {}
                Trigger::Watch
            }
        };
        retry = None;
        let path = reloader.path.display().to_string();
        match reloader.reload(trigger).await {
            Ok(true) => tracing::info!(config = %path, ?trigger, "config reloaded"),
            Ok(false) => tracing::debug!(config = %path, "watched files changed, config content did not"),
            Err(e) => {
                if matches!(e, ReloadError::Build(_)) {
                    retry = Some(crate::clock::now() + RETRY_EVERY);
                }
                tracing::error!(config = %path, ?trigger, error = %e, "config reload refused; the running config keeps serving")
            }
        }
    }
}

/// Whether `event` concerns one of the watched names (not, say, a database file written
/// beside the config).
fn touches(event: &notify::Event, watching: &[(PathBuf, Vec<OsString>)]) -> bool {
    event.paths.iter().any(|p| {
        let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else { return false };
        watching.iter().any(|(d, names)| same_dir(d, dir) && names.iter().any(|n| n == name))
    })
}

/// notify reports absolute paths; watched directories may be relative.
fn same_dir(watched: &Path, seen: &Path) -> bool {
    watched == seen || std::fs::canonicalize(watched).is_ok_and(|w| std::fs::canonicalize(seen).is_ok_and(|s| w == s))
}

fn one_line(e: &ConfigError) -> String {
    let problems: Vec<String> = e.problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
    format!("{} problem(s) in the configuration: {}", problems.len(), problems.join("; "))
}

fn rewatch(
    w: &mut notify::RecommendedWatcher,
    old: Vec<(PathBuf, Vec<OsString>)>,
    new: Vec<(PathBuf, Vec<OsString>)>,
) -> Vec<(PathBuf, Vec<OsString>)> {
    let is_in = |list: &[(PathBuf, Vec<OsString>)], dir: &Path| list.iter().any(|(d, _)| d == dir);
    for (dir, _) in old.iter().filter(|(d, _)| !is_in(&new, d)) {
        let _ = w.unwatch(dir);
    }
    let mut kept = Vec::new();
    for (dir, names) in new {
        if is_in(&old, &dir) {
            kept.push((dir, names));
            continue;
        }
        match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => kept.push((dir, names)),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for config changes"),
        }
    }
    kept
}

/// The files a config names that a reload reads again: the listener's certificate and key,
/// the upstream's CA bundle and client certificate, the JWKS fetchers' CA bundle, and the
/// HMAC secrets of issuers.
fn files_of(config: &Config) -> impl Iterator<Item = &Path> {
    let server = config.server.tls.iter().flat_map(|t| [t.cert_file.as_path(), t.key_file.as_path()]);
    let upstream = config.upstream.tls.iter().flat_map(|t| {
        let client = t.client_cert.iter().flat_map(|c| [c.cert_file.as_path(), c.key_file.as_path()]);
        t.ca_file.as_deref().into_iter().chain(client)
    });
    let secrets = config.issuers.iter().filter_map(|i| match &i.source {
        KeySourceConfig::Secret(path) => Some(path.as_path()),
        _ => None,
    });
    server.chain(upstream).chain(config.jwt.ca_file.as_deref()).chain(secrets)
}

fn dir_of(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_path_buf()),
        None => None,
    }
}

/// A digest of the config text and of every file it names, unreadable ones as empty.
fn fingerprint(text: &str, config: &Config) -> Vec<u8> {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let files = files_of(config).map(|f| std::fs::read(f).unwrap_or_default());
    for bytes in std::iter::once(text.as_bytes().to_vec()).chain(files) {
        digest.update(&(bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    digest.finish().as_ref().to_vec()
}
