//! Config reload: `SIGHUP`, or a change of the config file or of a certificate file it
//! names (the listener's, the upstream's), re-reads and validates the whole config and swaps a new generation in; a refused
//! one is logged with every problem and counted, and the running generation keeps serving.
//!
//! Changes are seen by watching the files' directories, not the files: Kubernetes updates a
//! mounted ConfigMap or Secret by swapping the `..data` symlink beside them, which replaces
//! the file without ever writing to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use crate::app::Live;
use crate::config::{Config, ConfigError, fixed_changes};

/// Events arrive in bursts (an editor's save, the kubelet's swap): one reload per burst.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why a reload was refused. The running generation is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Every problem, on one line: a log line per refusal.
    #[error("{}", one_line(.0))]
    Invalid(ConfigError),
    #[error("{} cannot change while Gatehouse runs (restart to apply)", .0.join(", "))]
    Fixed(Vec<&'static str>),
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
}

/// Reloads the config at `path` into `live`, one reload at a time.
pub struct Reloader {
    live: Arc<Live>,
    path: PathBuf,
    /// A digest of what the running generation was built from, so a touched but unchanged file
    /// (or an unrelated file in a watched directory) reloads nothing.
    seen: tokio::sync::Mutex<Vec<u8>>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, path: PathBuf) -> Self {
        let seen = fingerprint(&path, &live.current().config);
        Reloader { live, path, seen: tokio::sync::Mutex::new(seen) }
    }

    /// Re-reads, validates and swaps in the config. `Ok(false)`: nothing changed.
    pub async fn reload(&self, trigger: Trigger) -> Result<bool, ReloadError> {
        let mut seen = self.seen.lock().await;
        let current = self.live.current();
        if trigger == Trigger::Watch && fingerprint(&self.path, &current.config) == *seen {
            return Ok(false);
        }
        let result = self.apply(&current).await;
        let metrics = &current.process.metrics;
        match &result {
            Ok(()) => {
                metrics.config_reloaded(true);
                *seen = fingerprint(&self.path, &self.live.current().config);
            }
            Err(_) => {
                metrics.config_reloaded(false);
                // The same broken content is not retried (and counted) on every event; a
                // SIGHUP still retries it.
                *seen = fingerprint(&self.path, &current.config);
            }
        }
        result.map(|()| true)
    }

    async fn apply(&self, current: &crate::app::App) -> Result<(), ReloadError> {
        let config = Config::load(&self.path).map_err(ReloadError::Invalid)?;
        let fixed = fixed_changes(&current.config, &config);
        if !fixed.is_empty() {
            return Err(ReloadError::Fixed(fixed));
        }
        let next = current.next(config).await.map_err(ReloadError::Build)?;
        self.live.replace(next);
        Ok(())
    }

    /// The directories whose changes may change the config: the config file's, and those of
    /// the certificate files it names.
    fn watched(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::iter::once(self.path.as_path())
            .chain(files_of(&self.live.current().config))
            .filter_map(dir_of)
            .collect();
        dirs.sort();
        dirs.dedup();
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
    let (tx, mut changes) = mpsc::channel::<()>(1);
    let mut watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a wake-up.
            let _ = tx.try_send(());
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reloads follow SIGHUP only");
            None
        }
    };
    let mut watching = Vec::new();
    loop {
        if let Some(w) = watcher.as_mut() {
            watching = rewatch(w, watching, reloader.watched());
        }
        let trigger = tokio::select! {
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Signal,
            Some(()) = changes.recv() => {
                while tokio::time::timeout(DEBOUNCE, changes.recv()).await.is_ok_and(|c| c.is_some()) {}
                Trigger::Watch
            }
        };
        let path = reloader.path.display().to_string();
        match reloader.reload(trigger).await {
            Ok(true) => tracing::info!(config = %path, ?trigger, "config reloaded"),
            Ok(false) => tracing::debug!(config = %path, "watched files changed, config content did not"),
            Err(e) => {
                tracing::error!(config = %path, ?trigger, error = %e, "config reload refused; the running config keeps serving")
            }
        }
    }
}

fn one_line(e: &ConfigError) -> String {
    let problems: Vec<String> = e.problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
    format!("{} problem(s) in the configuration: {}", problems.len(), problems.join("; "))
}

fn rewatch(w: &mut notify::RecommendedWatcher, old: Vec<PathBuf>, new: Vec<PathBuf>) -> Vec<PathBuf> {
    for dir in old.iter().filter(|d| !new.contains(d)) {
        let _ = w.unwatch(dir);
    }
    let mut kept = Vec::new();
    for dir in new {
        if old.contains(&dir) {
            kept.push(dir);
            continue;
        }
        match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => kept.push(dir),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for config changes"),
        }
    }
    kept
}

/// The certificate and key files a config names, which a reload reads again: the
/// listener's, and the upstream's CA bundle and client certificate.
fn files_of(config: &Config) -> impl Iterator<Item = &Path> {
    let server = config.server.tls.iter().flat_map(|t| [t.cert_file.as_path(), t.key_file.as_path()]);
    let upstream = config.upstream.tls.iter().flat_map(|t| {
        let client = t.client_cert.iter().flat_map(|c| [c.cert_file.as_path(), c.key_file.as_path()]);
        t.ca_file.as_deref().into_iter().chain(client)
    });
    server.chain(upstream)
}

fn dir_of(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_path_buf()),
        None => None,
    }
}

/// A digest of the config file and of every file it names, unreadable ones as empty.
fn fingerprint(path: &Path, config: &Config) -> Vec<u8> {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for file in std::iter::once(path).chain(files_of(config)) {
        let bytes = std::fs::read(file).unwrap_or_default();
        digest.update(&(bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    digest.finish().as_ref().to_vec()
}
