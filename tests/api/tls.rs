//! Encryption in transit: the real server on port 0 with certificates made
//! here by rcgen; clients over TLS and mutual TLS, and the clients that must
//! be refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::SystemClock;
use gdpr_intake::startup::Application;
use gdpr_intake::store::StoreConfig;
use gdpr_intake::transport::TlsSettings;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{TestApp, authed, submission, test_settings};

/// A CA, a server certificate for `localhost` and 127.0.0.1 signed by it,
/// and a client certificate signed by it, as PEM files in a directory.
struct Pki {
    dir: TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("ca certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("valid names");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, issuer) = ca("gdpr-intake test ca");
        let (server_cert, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            &["controller-1"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        for (name, pem) in [
            ("ca.pem", &ca),
            ("server.pem", &server_cert),
            ("server.key", &server_key),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("pem written");
        }
        Self {
            dir,
            ca,
            client_cert,
            client_key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, mutual: bool) -> TlsSettings {
        TlsSettings {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A client configuration trusting the CA, with or without the client
    /// certificate.
    fn client(&self, with_certificate: bool) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        if with_certificate {
            config.identity(Identity::from_pem(&self.client_cert, &self.client_key))
        } else {
            config
        }
    }
}

/// The application on SQLite with `tls`, served until the returned app is
/// stopped; its channel is not connected (each test makes its own).
async fn spawn_tls_app(tls: TlsSettings) -> (TestApp, String) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(
        crate::db::keyed(StoreConfig::sqlite(data_dir.path())),
        &data_dir,
    );
    settings.tls = Some(tls);
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("application builds with tls");
    let port = app.local_addr().port();
    let sweeps = app.watchdog_sweeps();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let app = TestApp {
        channel: Channel::from_static("http://unused.invalid").connect_lazy(),
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
        sweeps,
    };
    (app, format!("https://127.0.0.1:{port}"))
}

async fn tls_channel(
    url: &str,
    config: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(url.to_owned())
        .expect("uri")
        .tls_config(config)
        .expect("client tls config")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn submit_over(app: &TestApp, channel: Channel) -> Result<(), tonic::Status> {
    let token = app.token(Role::Controller, "acme");
    let mut client =
        gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient::new(channel);
    let mut request = authed(&token, submission());
    request.set_timeout(Duration::from_secs(5));
    client.submit_data_subject_request(request).await.map(drop)
}

#[tokio::test]
async fn a_client_calls_over_tls() {
    let pki = Pki::new();
    let (app, url) = spawn_tls_app(pki.server(false)).await;

    let channel = tls_channel(&url, pki.client(false))
        .await
        .expect("tls handshake");
    submit_over(&app, channel.clone())
        .await
        .expect("submitted over tls");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over tls");
    assert_eq!(health.into_inner().status, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_client_with_a_certificate_calls_over_mutual_tls() {
    let pki = Pki::new();
    let (app, url) = spawn_tls_app(pki.server(true)).await;

    let channel = tls_channel(&url, pki.client(true))
        .await
        .expect("mutual tls handshake");
    submit_over(&app, channel)
        .await
        .expect("submitted over mutual tls");
    app.stop().await;
}

/// How the server refused a client configured with `config`: the error of
/// the connect or, failing that, of the first call. Under TLS 1.3 the client
/// finishes its side of the handshake before the server judges its
/// certificate, so the refusal may come with either.
async fn refusal(app: &TestApp, url: &str, config: ClientTlsConfig) -> String {
    match tls_channel(url, config).await {
        Err(e) => format!("{e:?}"),
        Ok(channel) => match submit_over(app, channel).await {
            Err(status) => format!("{status:?}"),
            Ok(()) => panic!("an unauthenticated client was served under mutual tls"),
        },
    }
}

#[tokio::test]
async fn clients_without_a_trusted_certificate_are_refused_under_mutual_tls() {
    let pki = Pki::new();
    let (app, url) = spawn_tls_app(pki.server(true)).await;

    let no_certificate = refusal(&app, &url, pki.client(false)).await;
    assert!(
        no_certificate.contains("CertificateRequired"),
        "{no_certificate}"
    );

    // A certificate from a CA the server does not trust.
    let (_, other_issuer) = ca("someone else's ca");
    let (cert, key) = leaf(
        &other_issuer,
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let untrusted = pki.client(false).identity(Identity::from_pem(cert, key));
    let untrusted = refusal(&app, &url, untrusted).await;
    assert!(untrusted.contains("alert"), "{untrusted}");

    // The server is unharmed: a trusted client still gets in.
    let channel = tls_channel(&url, pki.client(true))
        .await
        .expect("mutual tls handshake");
    submit_over(&app, channel)
        .await
        .expect("a trusted client is served");
    app.stop().await;
}

#[tokio::test]
async fn a_plaintext_client_fails_fast_against_a_tls_server() {
    let pki = Pki::new();
    let (app, url) = spawn_tls_app(pki.server(false)).await;
    let plain_url = url.replace("https://", "http://");

    let started = std::time::Instant::now();
    let attempt = async {
        let channel = Channel::from_shared(plain_url)
            .expect("uri")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        submit_over(&app, channel)
            .await
            .map_err(|s| format!("{s:?}"))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("a plaintext client is answered, not left hanging");
    assert!(outcome.is_err(), "a plaintext call succeeded on a tls port");
    assert!(started.elapsed() < Duration::from_secs(10));

    let channel = tls_channel(&url, pki.client(false))
        .await
        .expect("tls still works");
    submit_over(&app, channel).await.expect("served over tls");
    app.stop().await;
}

fn start_binary(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gdpr-intake"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("GDPR_INTAKE_TLS_CERT")
        .env_remove("GDPR_INTAKE_TLS_KEY")
        .env_remove("GDPR_INTAKE_TLS_CLIENT_CA")
        .output()
        .expect("the binary runs")
}

#[test]
fn start_up_names_the_tls_flag_that_is_wrong() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("temp dir");
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    let cert = cert.to_str().expect("utf-8 path");
    let key = key.to_str().expect("utf-8 path");
    let missing = data.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8 path");
    for (args, flag) in [
        (vec!["--tls-cert", cert], "--tls-key"),
        (vec!["--tls-key", key], "--tls-cert"),
        (vec!["--tls-cert", key, "--tls-key", key], "--tls-cert"),
        (vec!["--tls-cert", cert, "--tls-key", cert], "--tls-key"),
        (vec!["--tls-cert", cert, "--tls-key", missing], "--tls-key"),
        (
            vec!["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", key],
            "--tls-client-ca",
        ),
    ] {
        let out = start_binary(data.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
