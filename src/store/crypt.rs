//! Personal data at rest: the subject's email and date of birth and the
//! guardian's name and email are stored sealed with XChaCha20-Poly1305.
//!
//! Each value gets a fresh random 192-bit nonce, stored with it as
//! `v1.<base64(nonce || ciphertext)>`. The associated data binds the value
//! to its tenant, its row and its column, so a ciphertext copied to another
//! request, another column or another tenant does not open: the store reads
//! it as corrupt. The key never enters the database.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use uuid::Uuid;

use super::StoreError;

/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_DATA_KEY_FILE: &str = "data.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const PREFIX: &str = "v1.";

/// The key that seals personal data. Cheap to clone; its `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct DataKey(Arc<XChaCha20Poly1305>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Why a key file cannot be used. Says which file, never what it holds.
#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error("cannot {action} the data key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the data key file {path} must hold exactly {KEY_BYTES} random bytes in base64")]
    Invalid { path: PathBuf },
}

impl DataKey {
    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; KEY_BYTES] = bytes.try_into().ok()?;
        Some(Self(Arc::new(XChaCha20Poly1305::new(&Key::from(bytes)))))
    }

    /// A fresh random key, for this module's tests: outside them a key is
    /// always read from a file, so that no store seals data with one that
    /// is gone when the process ends.
    #[cfg(test)]
    fn random() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(Arc::new(XChaCha20Poly1305::new(&Key::from(bytes))))
    }

    /// Reads a key file: 32 bytes in base64, surrounding whitespace ignored.
    pub fn from_file(path: &Path) -> Result<Self, DataKeyError> {
        let text = fs::read_to_string(path).map_err(|source| DataKeyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| Self::from_bytes(&bytes))
            .ok_or_else(|| DataKeyError::Invalid {
                path: path.to_owned(),
            })
    }

    /// The development key in `data_dir`, created (readable by its owner
    /// only) if missing. Returns the key and whether it was created.
    pub fn ensure_dev(data_dir: &Path) -> Result<(Self, bool), DataKeyError> {
        let path = data_dir.join(DEV_DATA_KEY_FILE);
        let io = |action| {
            let path = path.clone();
            move |source| DataKeyError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(data_dir).map_err(io("create the directory of"))?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let mut bytes = [0u8; KEY_BYTES];
                OsRng.fill_bytes(&mut bytes);
                let mut text = STANDARD.encode(bytes);
                text.push('\n');
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io("write"))?;
                let key = Self::from_bytes(&bytes)
                    .ok_or_else(|| DataKeyError::Invalid { path: path.clone() })?;
                Ok((key, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::from_file(&path).map(|key| (key, false))
            }
            Err(e) => Err(io("create")(e)),
        }
    }

    /// Seals `plaintext` for `column` of request `id` of `controller_id`.
    pub fn seal(
        &self,
        controller_id: &str,
        id: Uuid,
        column: &str,
        plaintext: &str,
    ) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(controller_id, id, column);
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Internal(format!("cannot seal {column}")))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(stored)))
    }

    /// Opens what [`Self::seal`] stored for the same tenant, row and
    /// column; anything else is corrupt.
    pub fn open(
        &self,
        controller_id: &str,
        id: Uuid,
        column: &str,
        stored: &str,
    ) -> Result<String, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("{column} does not open with the data key"));
        let bytes = stored
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_BYTES)
            .ok_or_else(corrupt)?;
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| corrupt())?;
        let aad = associated_data(controller_id, id, column);
        let plain = self
            .0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

/// Tenant, row and column, length-prefixed.
fn associated_data(controller_id: &str, id: Uuid, column: &str) -> Vec<u8> {
    let mut aad = b"gdpr-intake pii v1\0".to_vec();
    for part in [controller_id.as_bytes(), id.as_bytes(), column.as_bytes()] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let key = DataKey::random();
        let id = Uuid::from_u128(1);
        let sealed = key
            .seal("acme", id, "subject_email", "ada@example.org")
            .unwrap();
        assert!(!sealed.contains("ada"));
        assert_eq!(
            key.open("acme", id, "subject_email", &sealed).unwrap(),
            "ada@example.org"
        );
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            key.seal("acme", id, "subject_email", "ada@example.org")
                .unwrap()
        );
        for (tenant, row, column) in [
            ("other", id, "subject_email"),
            ("acme", Uuid::from_u128(2), "subject_email"),
            ("acme", id, "guardian_email"),
        ] {
            assert!(matches!(
                key.open(tenant, row, column, &sealed),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert!(
            DataKey::random()
                .open("acme", id, "subject_email", &sealed)
                .is_err()
        );
        assert!(
            key.open("acme", id, "subject_email", "ada@example.org")
                .is_err()
        );
    }

    #[test]
    fn key_files_are_checked_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = DataKey::ensure_dev(dir.path()).unwrap();
        assert!(created);
        let (again, created) = DataKey::ensure_dev(dir.path()).unwrap();
        assert!(!created);
        let id = Uuid::from_u128(1);
        let sealed = first.seal("t", id, "c", "x").unwrap();
        assert_eq!(again.open("t", id, "c", &sealed).unwrap(), "x");
        let short = dir.path().join("short");
        fs::write(&short, STANDARD.encode([1u8; 8])).unwrap();
        assert!(matches!(
            DataKey::from_file(&short),
            Err(DataKeyError::Invalid { .. })
        ));
        assert_eq!(format!("{first:?}"), "DataKey(..)");
    }
}
