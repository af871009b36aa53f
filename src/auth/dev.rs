//! Development keys for the quickstart: an Ed25519 key pair kept in the data
//! directory, so `serve` works without an identity provider and tokens can
//! be minted locally. Never meant for production use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::{AuthSetupError, TokenClaims, sign_token};

pub const DEV_ISSUER: &str = "gdpr-intake-dev";
pub const DEV_KEY_ID: &str = "dev-1";
pub const DEV_KEY_FILE: &str = "dev-signing-key.pem";
pub const DEV_JWKS_FILE: &str = "dev-jwks.json";

/// Creates `<data_dir>/dev-signing-key.pem` (Ed25519 PKCS#8, file mode 0600
/// on unix) and `<data_dir>/dev-jwks.json` (public key, kid "dev-1", alg
/// EdDSA, use sig) if missing; returns the JWKS path. Idempotent; creates
/// data_dir if needed. An existing JWKS that lacks the key's public half is
/// an error rather than being overwritten, since someone may have edited it.
pub fn ensure_dev_keys(data_dir: &Path) -> Result<PathBuf, AuthSetupError> {
    fs::create_dir_all(data_dir).map_err(io_error("create directory", data_dir))?;
    let key_path = data_dir.join(DEV_KEY_FILE);
    let jwks_path = data_dir.join(DEV_JWKS_FILE);

    match fs::symlink_metadata(&key_path) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            create_signing_key(data_dir, &key_path)?;
            tracing::info!(path = %key_path.display(), "created development signing key");
        }
        Err(err) => return Err(io_error("inspect", &key_path)(err)),
    }
    let public_x = URL_SAFE_NO_PAD.encode(load_signing_key(data_dir)?.verifying_key().as_bytes());

    match fs::read_to_string(&jwks_path) {
        Ok(existing) => {
            if !holds_dev_key(&existing, &public_x) {
                return Err(AuthSetupError::DevKeyMismatch {
                    key: key_path,
                    jwks: jwks_path,
                });
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            write_jwks(data_dir, &jwks_path, &public_x)?;
        }
        Err(err) => return Err(io_error("read", &jwks_path)(err)),
    }
    Ok(jwks_path)
}

/// The development signing key in `data_dir`, ready for [`sign_token`].
pub fn encoding_key(data_dir: &Path) -> Result<EncodingKey, AuthSetupError> {
    let signing_key = load_signing_key(data_dir)?;
    let der =
        pkcs8_v1(&signing_key)
            .to_pkcs8_der()
            .map_err(|err| AuthSetupError::InvalidDevKey {
                path: data_dir.join(DEV_KEY_FILE),
                reason: format!("cannot encode it: {err}"),
            })?;
    Ok(EncodingKey::from_ed_der(der.as_bytes()))
}

/// Signs a token with the dev key in data_dir. Does not create the key: a
/// key made here would not be the one a running `serve` trusts, so the
/// caller is told to start the server first instead.
pub fn mint_token(data_dir: &Path, claims: &TokenClaims) -> Result<String, AuthSetupError> {
    if claims.ttl_secs == 0 {
        return Err(AuthSetupError::InvalidTokenClaims(
            "ttl_secs must be greater than zero".into(),
        ));
    }
    if claims.role.requires_tenant() && claims.tenant.trim().is_empty() {
        return Err(AuthSetupError::InvalidTokenClaims(format!(
            "role {} requires a tenant",
            claims.role
        )));
    }
    let key = encoding_key(data_dir)?;
    let payload = claims.to_json(jiff::Timestamp::now().as_second())?;
    sign_token(&key, Algorithm::EdDSA, Some(DEV_KEY_ID), &payload)
}

// PKCS#8 v1 (no embedded public key) is the form every tool reads.
fn pkcs8_v1(signing_key: &SigningKey) -> KeypairBytes {
    KeypairBytes {
        secret_key: signing_key.to_bytes(),
        public_key: None,
    }
}

fn create_signing_key(data_dir: &Path, key_path: &Path) -> Result<(), AuthSetupError> {
    let signing_key = SigningKey::generate(&mut rand_core::OsRng);
    let pem = pkcs8_v1(&signing_key)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| AuthSetupError::InvalidDevKey {
            path: key_path.to_owned(),
            reason: format!("cannot encode it: {err}"),
        })?;

    // Write under a temporary name, then hard-link into place: the link
    // fails if the key appeared meanwhile, so a concurrent start never
    // overwrites a key already in use nor sees a half-written file.
    let temp_path = temp_path_in(data_dir, DEV_KEY_FILE);
    let written = write_private_file(&temp_path, pem.as_bytes())
        .map_err(io_error("write", &temp_path))
        .and_then(|()| match fs::hard_link(&temp_path, key_path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(io_error("create", key_path)(err)),
        });
    // Best effort: a leftover temporary file is harmless but untidy.
    let _ = fs::remove_file(&temp_path);
    written
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Set at creation so the key is never readable by others, not even
        // briefly before a chmod.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn load_signing_key(data_dir: &Path) -> Result<SigningKey, AuthSetupError> {
    let path = data_dir.join(DEV_KEY_FILE);
    let pem = match fs::read_to_string(&path) {
        Ok(pem) => Zeroizing::new(pem),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(AuthSetupError::NoDevKey(data_dir.to_owned()));
        }
        Err(err) => return Err(io_error("read", &path)(err)),
    };
    warn_if_exposed(&path);
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| AuthSetupError::InvalidDevKey {
        path,
        reason: "it is not an Ed25519 PKCS#8 PEM private key".to_owned(),
    })
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "development signing key is accessible to other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

fn dev_jwks(public_x: &str) -> Value {
    json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": public_x,
            "kid": DEV_KEY_ID,
            "alg": "EdDSA",
            "use": "sig",
        }]
    })
}

fn holds_dev_key(jwks: &str, public_x: &str) -> bool {
    let Ok(parsed) = serde_json::from_str::<Value>(jwks) else {
        return false;
    };
    parsed
        .get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| {
            keys.iter().any(|key| {
                key.get("kid").and_then(Value::as_str) == Some(DEV_KEY_ID)
                    && key.get("x").and_then(Value::as_str) == Some(public_x)
            })
        })
}

fn write_jwks(data_dir: &Path, jwks_path: &Path, public_x: &str) -> Result<(), AuthSetupError> {
    let mut text = serde_json::to_string_pretty(&dev_jwks(public_x)).map_err(|err| {
        AuthSetupError::InvalidDevKey {
            path: data_dir.join(DEV_KEY_FILE),
            reason: format!("cannot describe its public key: {err}"),
        }
    })?;
    text.push('\n');
    // Rename over the target so readers see the old file or the whole new
    // one; racing writers all derive the same content from the same key.
    let temp_path = temp_path_in(data_dir, DEV_JWKS_FILE);
    let written = File::create(&temp_path)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .map_err(io_error("write", &temp_path))
        .and_then(|()| fs::rename(&temp_path, jwks_path).map_err(io_error("create", jwks_path)));
    if written.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    written
}

fn temp_path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> AuthSetupError + 'a {
    move |source| AuthSetupError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
