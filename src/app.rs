//! The shared state of a running Gatehouse: one [`App`] per config generation (verifiers,
//! upstream client, auth API, listener TLS), the [`Process`] every generation shares, and
//! [`Live`], the generation new requests are served by, swapped whole on a reload.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::AuthApi;
use crate::auth::Auth;
use crate::config::{Config, UpstreamConfig};
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// One generation: everything built from one validated config. A request holds the
/// generation it started on until it ends, so a reload never changes a request midway.
pub struct App {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub upstream: Arc<Upstream>,
    /// A digest of the upstream's certificate files as `upstream` was built from them.
    upstream_files: Vec<u8>,
    /// The auth API, its state and its router: present exactly when Gatehouse issues tokens.
    pub auth_api: Option<AuthApi>,
    /// The main listener's TLS, from this generation's certificate files.
    pub tls: Option<TlsAcceptor>,
    pub process: Arc<Process>,
}

/// What outlives every reload: metrics, the drain flag and the background tasks.
#[derive(Default)]
pub struct Process {
    pub metrics: Metrics,
    draining: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Process {
    /// From now on `/readyz` answers 503: the process is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Keeps `tasks` to stop them with the process; the ones already done are forgotten.
    pub fn adopt(&self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        let mut held = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|t| !t.is_finished());
        held.extend(tasks);
    }

    pub fn stop_tasks(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl App {
    /// The first generation, its background tasks started.
    pub async fn build(config: Config) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(config);
        let tls = config.server.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let auth = Arc::new(Auth::build(&config).await?);
        let auth_api = AuthApi::build(&config, &auth, None).await?;
        let upstream = Arc::new(Upstream::new(&config.upstream)?);
        let upstream_files = upstream_files(&config.upstream);
        let app = App { config, auth, upstream, upstream_files, auth_api, tls, process: Arc::default() };
        app.start(None);
        Ok(Arc::new(app))
    }

    /// The generation for `config`, a reload of this one's: what did not change carries over
    /// (key sets, caches, limiters, the upstream pool; see [`Auth::next`]). Its new parts'
    /// background tasks are started; nothing is swapped in yet.
    pub async fn next(&self, config: Config) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(config);
        let tls = config.server.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let auth = Arc::new(self.auth.next(&self.config, &config).await?);
        let auth_api = AuthApi::build(&config, &auth, self.auth_api.as_ref()).await?;
        // An upstream whose settings and certificate files did not change keeps its pool of
        // warm connections; renewed files build a new client.
        let upstream_files = upstream_files(&config.upstream);
        let upstream = if config.upstream == self.config.upstream && upstream_files == self.upstream_files {
            self.upstream.clone()
        } else {
            Arc::new(Upstream::new(&config.upstream)?)
        };
        let app = App { config, auth, upstream, upstream_files, auth_api, tls, process: self.process.clone() };
        app.start(Some(self));
        Ok(Arc::new(app))
    }

    fn start(&self, previous: Option<&App>) {
        let mut tasks = self.auth.spawn_maintenance(&self.config, previous.map(|p| &*p.auth));
        if let Some(api) = &self.auth_api {
            tasks.extend(api.spawn_maintenance(previous.and_then(|p| p.auth_api.as_ref())));
        }
        self.process.adopt(tasks);
    }
}

/// A digest of the CA bundle and client certificate `[upstream.tls]` names, as they are now.
fn upstream_files(config: &UpstreamConfig) -> Vec<u8> {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let Some(tls) = &config.tls else { return Vec::new() };
    let client = tls.client_cert.iter().flat_map(|c| [c.cert_file.as_path(), c.key_file.as_path()]);
    for file in tls.ca_file.as_deref().into_iter().chain(client) {
        let bytes = std::fs::read(file).unwrap_or_default();
        digest.update(&(bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    digest.finish().as_ref().to_vec()
}

/// The generation new requests and connections are served by.
pub struct Live {
    current: ArcSwap<App>,
}

impl Live {
    pub fn new(app: Arc<App>) -> Self {
        Live { current: ArcSwap::new(app) }
    }

    /// The generation to serve a request with; it stays valid for as long as it is held.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// Swaps in `app`: requests already under way finish on the generation they hold.
    pub fn replace(&self, app: Arc<App>) {
        self.current.store(app);
    }
}
