//! The TLS half of an https:// upstream: the rustls client config (aws-lc-rs) built from
//! `[upstream.tls]`, its files read on every build so a rebuilt upstream follows replaced files.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use hyper_rustls::{DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;

use crate::config::{UpstreamTlsConfig, pem};

/// Wraps `http` in TLS for `tls`; it refuses plain http:// destinations.
pub(super) fn connector(
    mut http: HttpConnector,
    tls: &UpstreamTlsConfig,
) -> anyhow::Result<HttpsConnector<HttpConnector>> {
    // HttpConnector refuses any scheme but http:// unless told otherwise.
    http.enforce_http(false);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .context("upstream.tls: the TLS provider")?
        .with_root_certificates(roots(tls)?);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let certs = pem::certificates(&files.cert_file).map_err(|e| anyhow!("upstream.tls.cert_file: {e}"))?;
            let key = pem::private_key(&files.key_file).map_err(|e| anyhow!("upstream.tls.key_file: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                anyhow!(
                    "upstream.tls.key_file: `{}` does not fit `{}`: {e}",
                    files.key_file.display(),
                    files.cert_file.display()
                )
            })?
        }
    };
    // Requests go upstream as HTTP/1.1 (upgrades included): never let the upstream pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Without an override the URL's host is the name; an IP address host sends no SNI and is
    // verified against the certificate's IP addresses.
    let names: Arc<dyn ResolveServerName + Send + Sync> = match &tls.server_name {
        Some(name) => Arc::new(FixedServerNameResolver::new(name.clone())),
        None => Arc::new(DefaultServerNameResolver::default()),
    };
    Ok(HttpsConnector::new(http, Arc::new(config), true, names))
}

/// `ca_file` alone when set (an internal CA should not be joined by every public one),
/// otherwise the system's roots.
fn roots(tls: &UpstreamTlsConfig) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &tls.ca_file {
        for cert in pem::certificates(path).map_err(|e| anyhow!("upstream.tls.ca_file: {e}"))? {
            roots
                .add(cert)
                .map_err(|e| anyhow!("upstream.tls.ca_file: `{}` holds a bad certificate: {e}", path.display()))?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    if let Some(first) = found.errors.first() {
        tracing::warn!(errors = found.errors.len(), first = %first, "some system root certificates could not be read");
    }
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        anyhow::bail!(
            "upstream.tls.ca_file: not set, and no system root certificates were found (install them or set it)"
        );
    }
    Ok(roots)
}

/// The TLS failure inside a client error, if that is what it was. `io::Error::source` skips
/// the error it wraps, so wrapped io errors are opened with `get_ref` instead.
pub(super) fn failure<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}
