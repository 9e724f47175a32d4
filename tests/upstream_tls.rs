//! TLS to the upstream against real rustls upstreams with made-up CAs: trust by `ca_file` or
//! the system roots, `server_name`, client certificates (mTLS), WebSocket over TLS, the
//! config errors `[upstream.tls]` can have, and its files re-read when the client is rebuilt.
#![allow(clippy::disallowed_methods)] // tests wait on real time; the clock rule (clippy.toml) is for src/

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// === certificates ===

/// A CA: its certificate's PEM and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` (DNS names or IP addresses): (cert PEM, key PEM).
    fn server(&self, names: &[&str]) -> (String, String) {
        self.leaf(names.iter().map(|n| n.to_string()).collect(), ExtendedKeyUsagePurpose::ServerAuth, "upstream")
    }

    /// A client certificate with common name `cn`: (cert PEM, key PEM).
    fn client(&self, cn: &str) -> (String, String) {
        self.leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, cn)
    }

    fn leaf(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `text` to `dir/name` and returns the path.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// === a TLS upstream ===

/// An HTTPS upstream (HTTP/1.1 only) with the certificate `cert`; with `client_ca` it
/// requires a client certificate issued by that CA. It answers with JSON:
/// `{path, host, client_cert (its common name or null), sni, alpn}`; `/ws` accepts an
/// Upgrade and echoes bytes.
async fn tls_upstream(cert: &(String, String), client_ca: Option<&Ca>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.0.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap(),
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let seen = json!({
                    "client_cert": conn.peer_certificates().and_then(|c| c.first()).map(common_name),
                    "sni": conn.server_name(),
                    "alpn": conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
                });
                let svc = service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, seen)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

fn answer(mut req: Request<Incoming>, mut seen: Value) -> Response<Full<Bytes>> {
    if req.uri().path() == "/ws" && req.headers().contains_key("upgrade") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Full::default());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        r.headers_mut().insert("upgrade", req.headers()["upgrade"].clone());
        return r;
    }
    seen["path"] = json!(req.uri().path());
    seen["host"] = json!(req.headers().get("host").and_then(|h| h.to_str().ok()));
    Response::new(Full::new(Bytes::from(seen.to_string())))
}

/// The subject's common name, found the lazy way: the bytes after the CN attribute's OID.
fn common_name(cert: &CertificateDer<'_>) -> String {
    let der = cert.as_ref();
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    // The issuer's CN comes first in the DER, the subject's last.
    let at = der.windows(oid.len()).rposition(|w| w == oid).expect("a CN");
    let len = der[at + oid.len() + 1] as usize;
    let start = at + oid.len() + 2;
    String::from_utf8_lossy(&der[start..start + len]).into_owned()
}

// === Gatehouse in front of it ===

fn config_text(url: &str, tls: &str) -> String {
    format!(
        r#"
[upstream]
url = "{url}"
connect_timeout = "2s"
response_timeout = "5s"
{tls}
[[routes]]
path = "/"
auth = "public"
[log]
access = false
"#
    )
}

async fn gatehouse(url: &str, tls: &str) -> Gatehouse {
    let gh = Gatehouse::start(&config_text(url, tls)).await;
    gh.wait_ready().await;
    gh
}

/// `[upstream.tls]` with the given `key = path` lines.
fn tls_table(entries: &[(&str, &Path)]) -> String {
    let mut t = String::from("[upstream.tls]\n");
    for (k, v) in entries {
        t.push_str(&format!("{k} = {:?}\n", v.display().to_string()));
    }
    t
}

fn assert_bad_gateway(case: &str, status: u16, body: &Value) {
    assert_eq!(status, 502, "{case}: {body}");
    assert_eq!(body["code"], "upstream_unavailable", "{case}: {body}");
    assert!(body["error"].is_string() && body["message"].is_string(), "{case}: the error JSON shape: {body}");
}

// === the cases ===

#[tokio::test]
async fn server_certificates_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let both = tls_upstream(&ca.server(&["localhost", "127.0.0.1"]), None).await;
    let localhost_only = tls_upstream(&ca.server(&["localhost"]), None).await;
    let ip = |a: SocketAddr| format!("https://127.0.0.1:{}", a.port());
    let sni = |name: &str| format!("server_name = \"{name}\"\n");
    let with_ca = tls_table(&[("ca_file", &ca_file)]);

    struct Case {
        name: &'static str,
        url: String,
        tls: String,
        /// The SNI the upstream saw, when it answers.
        ok_sni: Option<Option<&'static str>>,
    }
    let cases = [
        Case {
            name: "ca_file trusts the upstream; an IP host sends no SNI",
            url: ip(both),
            tls: with_ca.clone(),
            ok_sni: Some(None),
        },
        Case { name: "system roots do not trust the test CA", url: ip(both), tls: String::new(), ok_sni: None },
        Case {
            name: "system roots, with an empty [upstream.tls]",
            url: ip(both),
            tls: "[upstream.tls]\n".into(),
            ok_sni: None,
        },
        Case {
            name: "an IP host is checked against the certificate's IP addresses",
            url: ip(localhost_only),
            tls: with_ca.clone(),
            ok_sni: None,
        },
        Case {
            name: "server_name the certificate does not hold",
            url: ip(both),
            tls: format!("{with_ca}{}", sni("elsewhere.test")),
            ok_sni: None,
        },
        Case {
            name: "server_name = localhost for an upstream addressed by IP",
            url: ip(localhost_only),
            tls: format!("{with_ca}{}", sni("localhost")),
            ok_sni: Some(Some("localhost")),
        },
        Case {
            name: "server_name may be an IP address",
            url: ip(both),
            tls: format!("{with_ca}{}", sni("127.0.0.1")),
            ok_sni: Some(None),
        },
    ];
    for case in cases {
        let gh = gatehouse(&case.url, &case.tls).await;
        let (status, _, body) = get(&gh, "/hello?x=1", None).await;
        match case.ok_sni {
            Some(sni) => {
                assert_eq!(status, 200, "{}: {body}", case.name);
                assert_eq!(body["path"], "/hello", "{}", case.name);
                assert_eq!(body["sni"], json!(sni), "{}", case.name);
                assert_eq!(body["alpn"], "http/1.1", "{}: only HTTP/1.1 is offered", case.name);
                // The Host header stays the client's, as for http:// upstreams.
                assert_eq!(body["host"], gh.addr.to_string(), "{}", case.name);
                assert_eq!(body["client_cert"], Value::Null, "{}", case.name);
            }
            None => assert_bad_gateway(case.name, status, &body),
        }
        // A failed handshake is not cached: the next request tries again and fails the same way.
        assert_eq!(get(&gh, "/again", None).await.0, status, "{}", case.name);
    }
}

#[tokio::test]
async fn client_certificates_for_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, client_ca, other_ca) = (Ca::new("Server CA"), Ca::new("Client CA"), Ca::new("Other CA"));
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let (cert, key) = client_ca.client("gatehouse-client");
    let (cert_file, key_file) = (file(dir.path(), "client.pem", &cert), file(dir.path(), "client.key", &key));
    let (other_cert, other_key) = other_ca.client("intruder");
    let (other_cert_file, other_key_file) =
        (file(dir.path(), "other.pem", &other_cert), file(dir.path(), "other.key", &other_key));
    let upstream = tls_upstream(&ca.server(&["127.0.0.1"]), Some(&client_ca)).await;
    let url = format!("https://127.0.0.1:{}", upstream.port());

    let cases: [(&str, String, Option<&str>); 3] = [
        (
            "a client certificate from the client CA",
            tls_table(&[("ca_file", &ca_file), ("cert_file", &cert_file), ("key_file", &key_file)]),
            Some("gatehouse-client"),
        ),
        ("no client certificate", tls_table(&[("ca_file", &ca_file)]), None),
        (
            "a client certificate from another CA",
            tls_table(&[("ca_file", &ca_file), ("cert_file", &other_cert_file), ("key_file", &other_key_file)]),
            None,
        ),
    ];
    for (name, tls, seen) in cases {
        let gh = gatehouse(&url, &tls).await;
        let (status, _, body) = get(&gh, "/whoami", None).await;
        match seen {
            Some(cn) => {
                assert_eq!(status, 200, "{name}: {body}");
                assert_eq!(body["client_cert"], cn, "{name}: the upstream saw the certificate");
            }
            None => assert_bad_gateway(name, status, &body),
        }
    }
}

#[tokio::test]
async fn websocket_upgrade_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let upstream = tls_upstream(&ca.server(&["127.0.0.1"]), None).await;
    let gh = gatehouse(&format!("https://127.0.0.1:{}", upstream.port()), &tls_table(&[("ca_file", &ca_file)])).await;

    let mut stream = tokio::net::TcpStream::connect(gh.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping through the TLS tunnel").await.unwrap();
    let mut echoed = vec![0u8; 27];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping through the TLS tunnel");
}

#[test]
fn config_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "ca.pem", &Ca::new("Test CA").pem);
    let empty = file(dir.path(), "empty.pem", "no certificate here\n");
    let (cert, _) = Ca::new("Client CA").client("c");
    let cert_file = file(dir.path(), "client.pem", &cert);
    let missing = dir.path().join("missing.pem");
    let https = "https://127.0.0.1:1";

    let cases: [(&str, &str, String, &str, Option<&Path>); 8] = [
        (
            "a table with an http:// URL",
            "http://127.0.0.1:1",
            tls_table(&[("ca_file", &ca_file)]),
            "upstream.tls",
            None,
        ),
        ("cert_file without key_file", https, tls_table(&[("cert_file", &cert_file)]), "upstream.tls.key_file", None),
        ("key_file without cert_file", https, tls_table(&[("key_file", &cert_file)]), "upstream.tls.cert_file", None),
        (
            "a missing ca_file",
            https,
            tls_table(&[("ca_file", &missing)]),
            "upstream.tls.ca_file",
            Some(missing.as_path()),
        ),
        (
            "a ca_file with no certificate",
            https,
            tls_table(&[("ca_file", &empty)]),
            "upstream.tls.ca_file",
            Some(empty.as_path()),
        ),
        (
            "a key_file with no key",
            https,
            tls_table(&[("cert_file", &cert_file), ("key_file", &cert_file)]),
            "upstream.tls.key_file",
            Some(cert_file.as_path()),
        ),
        (
            "a server_name that is no name",
            https,
            "[upstream.tls]\nserver_name = \"not a name!\"\n".into(),
            "upstream.tls.server_name",
            None,
        ),
        ("an unknown key", https, "[upstream.tls]\nca_flie = \"x\"\n".into(), "upstream.tls.ca_flie", None),
    ];
    for (name, url, tls, key, path) in cases {
        let err = gatehouse::Config::from_toml(&config_text(url, &tls), Vec::new()).unwrap_err();
        let problem =
            err.problems.iter().find(|p| p.key == key).unwrap_or_else(|| panic!("{name}: {key} not in {err}"));
        if let Some(path) = path {
            assert!(problem.message.contains(&path.display().to_string()), "{name}: {}", problem.message);
        }
    }
    // With every file in place an https upstream loads, and plain http:// needs no table.
    let ok =
        gatehouse::Config::from_toml(&config_text(https, &tls_table(&[("ca_file", &ca_file)])), Vec::new()).unwrap();
    assert_eq!(ok.upstream.tls.unwrap().ca_file.as_deref(), Some(ca_file.as_path()));
    let plain = gatehouse::Config::from_toml(&config_text("http://127.0.0.1:1", ""), Vec::new()).unwrap();
    assert!(plain.upstream.tls.is_none());
}

#[tokio::test]
async fn certificate_files_are_read_again_when_the_upstream_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("Old CA"), Ca::new("New CA"));
    let ca_file = file(dir.path(), "ca.pem", &old_ca.pem);
    let upstream = tls_upstream(&new_ca.server(&["127.0.0.1"]), None).await;
    let text = config_text(&format!("https://127.0.0.1:{}", upstream.port()), &tls_table(&[("ca_file", &ca_file)]));
    let config = gatehouse::Config::from_toml(&text, Vec::new()).unwrap();

    let before = Gatehouse::start_config(config.clone()).await;
    before.wait_ready().await;
    let (status, _, body) = get(&before, "/", None).await;
    assert_bad_gateway("the old CA does not sign the upstream's certificate", status, &body);

    // The same validated config, the file behind it replaced: a new client trusts the new CA.
    file(dir.path(), "ca.pem", &new_ca.pem);
    let after = Gatehouse::start_config(config.clone()).await;
    after.wait_ready().await;
    let (status, _, body) = get(&after, "/", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&before, "/", None).await.0, 502, "a client already built keeps what it read");

    // Construction itself reports a file that went bad since load, naming key and path.
    file(dir.path(), "ca.pem", "gone\n");
    let err =
        gatehouse::upstream::Upstream::new(&config.upstream).err().expect("an empty ca_file is an error").to_string();
    assert!(err.contains("upstream.tls.ca_file") && err.contains(&ca_file.display().to_string()), "{err}");
    assert!(gatehouse::upstream::Upstream::new(&plain_upstream()).is_ok());
}

fn plain_upstream() -> gatehouse::config::UpstreamConfig {
    gatehouse::Config::from_toml(&config_text("http://127.0.0.1:1", ""), Vec::new()).unwrap().upstream
}

thread_local! {
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Log lines of this thread. One subscriber for the whole binary, writing per thread: a
/// scoped one (`set_default`) races other tests for the callsites' cached interest. Each
/// test's runtime is single-threaded, so every task of its Gatehouse logs on its thread.
#[derive(Clone, Copy)]
struct ThreadLogs;

impl ThreadLogs {
    fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let subscriber = tracing_subscriber::fmt().with_writer(ThreadLogs).with_ansi(false).finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
        });
    }

    fn text() -> String {
        LOGS.with(|l| String::from_utf8_lossy(&l.borrow()).into_owned())
    }
}

impl std::io::Write for ThreadLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.with(|l| l.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadLogs {
    type Writer = ThreadLogs;
    fn make_writer(&'a self) -> ThreadLogs {
        ThreadLogs
    }
}

#[tokio::test]
async fn handshake_failures_are_logged_with_their_reason_and_no_secrets() {
    ThreadLogs::install();
    let dir = tempfile::tempdir().unwrap();
    let (ca, client_ca, other_ca) = (Ca::new("Server CA"), Ca::new("Client CA"), Ca::new("Other CA"));
    let (cert, key) = other_ca.client("intruder");
    let (cert_file, key_file) = (file(dir.path(), "c.pem", &cert), file(dir.path(), "c.key", &key));
    let ca_file = file(dir.path(), "ca.pem", &ca.pem);
    let upstream = tls_upstream(&ca.server(&["127.0.0.1"]), Some(&client_ca)).await;
    let url = format!("https://127.0.0.1:{}", upstream.port());

    let untrusted = gatehouse(&url, "").await;
    assert_eq!(get(&untrusted, "/", None).await.0, 502);
    let refused =
        gatehouse(&url, &tls_table(&[("ca_file", &ca_file), ("cert_file", &cert_file), ("key_file", &key_file)])).await;
    assert_eq!(get(&refused, "/", None).await.0, 502);

    let text = ThreadLogs::text();
    let failures: Vec<&str> = text.lines().filter(|l| l.contains("TLS with the upstream failed")).collect();
    assert!(failures.iter().all(|l| l.contains("WARN")), "{text}");
    assert!(failures.iter().any(|l| l.contains("UnknownIssuer")), "the server's certificate: {text}");
    // The refused client certificate is not asserted on: under TLS 1.3 the client's handshake
    // is over before the upstream checks it, so the upstream's alert may lose the race with
    // its closing the connection, and the request then fails as a plain closed connection.
    let key_line = key.lines().nth(1).unwrap();
    assert!(!text.contains(key_line), "no key material in the log");
}
