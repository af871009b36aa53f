//! What the gRPC listener guarantees before any handler runs: encryption in
//! transit (TLS, optionally mutual) and the limits every call meets
//! (`limits.rs`: concurrent calls, message size, the caller's deadline, the
//! end of long-lived streams at drain) and the connections it holds
//! (`connections.rs`: a cap, the handshake timeout, keep-alive).

mod connections;
mod limits;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use connections::{ConnectionLimits, Guarded, GuardedIncoming};
pub use limits::{CallBody, CallLimit, CallLimitLayer, parse_grpc_timeout};

/// Where the listener's TLS material lives, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to. With it,
    /// every client must present a certificate (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Limits on the calls the server takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Calls in progress at once, all connections together (health checks
    /// not counted). One more is answered RESOURCE_EXHAUSTED at once.
    pub max_concurrent_calls: usize,
    /// Largest request message, per message.
    pub max_message_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 256,
            max_message_bytes: 256 * 1024,
        }
    }
}

/// Why the TLS settings cannot be used. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path} holds no PEM {what}")]
    NotPem {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("--tls-cert, --tls-key or --tls-client-ca cannot be used: {0}")]
    Rejected(String),
}

async fn read_pem(
    flag: &'static str,
    path: &Path,
    marker: &str,
    what: &'static str,
) -> Result<Vec<u8>, TlsError> {
    let pem = tokio::fs::read(path)
        .await
        .map_err(|source| TlsError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
    // rustls only says "cannot parse" about a file of the wrong kind (a key
    // given as the certificate, a DER file); this says which flag is wrong.
    if !String::from_utf8_lossy(&pem).contains(marker) {
        return Err(TlsError::NotPem {
            flag,
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(pem)
}

/// `server` speaking TLS with the material `settings` names: files are
/// read and checked here, at start-up, so a wrong file stops the start
/// rather than the first handshake. A client has `handshake_timeout` to
/// finish the TLS handshake; without a limit, a connection that opens and
/// then says nothing keeps a handshake task alive for ever.
pub async fn with_tls(
    server: Server,
    settings: &TlsSettings,
    handshake_timeout: Duration,
) -> Result<Server, TlsError> {
    let cert = read_pem(
        "--tls-cert",
        &settings.cert,
        "-----BEGIN CERTIFICATE-----",
        "certificate",
    )
    .await?;
    let key = read_pem(
        "--tls-key",
        &settings.key,
        "PRIVATE KEY-----",
        "private key",
    )
    .await?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(handshake_timeout);
    if let Some(ca) = &settings.client_ca {
        let ca = read_pem(
            "--tls-client-ca",
            ca,
            "-----BEGIN CERTIFICATE-----",
            "certificate",
        )
        .await?;
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    server
        .tls_config(config)
        .map_err(|e| TlsError::Rejected(error_chain(&e)))
}

/// `e` and its sources, joined: tonic's own message is only "transport
/// error", the reason is in the source.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
