//! Personal data at rest: the subject's email and date of birth and the
//! guardian's name and email are stored sealed with XChaCha20-Poly1305.
//!
//! Each value gets a fresh random 192-bit nonce, stored with it as
//! `v1.<base64(nonce || ciphertext)>`. The associated data binds the value
//! to its tenant, its row and its column, so a ciphertext copied to another
//! request, another column or another tenant does not open: the store reads
//! it as corrupt. The key never enters the database.
//!
//! XChaCha20-Poly1305 is built as its specification builds it
//! (draft-irtf-cfrg-xchacha): HChaCha20 of the key and the nonce's first
//! 16 bytes gives a subkey, which seals with the IETF ChaCha20-Poly1305 of
//! RFC 8439 (ring's) under the nonce's last 8 bytes behind four zero bytes.
//! The values are a few dozen bytes, where ring's ChaCha20-Poly1305 costs
//! a fifth of a general-purpose AEAD crate's (whose Poly1305 sets up a
//! vector state for every value); a page of a list opens forty of them.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20::cipher::consts::U10;
use rand_core::{OsRng, RngCore};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use uuid::Uuid;

use super::StoreError;

/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_DATA_KEY_FILE: &str = "data.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const PREFIX: &str = "v1.";

/// The key that seals personal data. Cheap to clone; its `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct DataKey(Arc<[u8; KEY_BYTES]>);

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
        Some(Self(Arc::new(bytes)))
    }

    /// A fresh random key, for this module's tests: outside them a key is
    /// always read from a file, so that no store seals data with one that
    /// is gone when the process ends.
    #[cfg(test)]
    fn random() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(Arc::new(bytes))
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
        let stored = self
            .seal_with(&nonce, &aad, plaintext.as_bytes())
            .ok_or_else(|| StoreError::Internal(format!("cannot seal {column}")))?;
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
            .ok_or_else(corrupt)?;
        let aad = associated_data(controller_id, id, column);
        let plain = self.open_in(bytes, &aad).ok_or_else(corrupt)?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }

    /// `nonce || ciphertext || tag` of `plaintext` under `nonce` and
    /// `aad`.
    fn seal_with(
        &self,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Option<Vec<u8>> {
        let mut sealed = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
        sealed.extend_from_slice(nonce);
        sealed.extend_from_slice(plaintext);
        let (key, nonce) = self.subkey(nonce)?;
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut sealed[NONCE_BYTES..])
            .ok()?;
        sealed.extend_from_slice(tag.as_ref());
        Some(sealed)
    }

    /// The plaintext of `nonce || ciphertext || tag`, if it opens under
    /// `aad`.
    fn open_in(&self, mut sealed: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let nonce: [u8; NONCE_BYTES] = sealed[..NONCE_BYTES].try_into().ok()?;
        let (key, nonce) = self.subkey(&nonce)?;
        let length = key
            .open_in_place(nonce, Aad::from(aad), &mut sealed[NONCE_BYTES..])
            .ok()?
            .len();
        sealed.truncate(NONCE_BYTES + length);
        sealed.drain(..NONCE_BYTES);
        Some(sealed)
    }

    /// XChaCha20's derivation: the ChaCha20-Poly1305 key and nonce that
    /// seal under `nonce`.
    fn subkey(&self, nonce: &[u8; NONCE_BYTES]) -> Option<(LessSafeKey, Nonce)> {
        let (head, tail) = nonce.split_at(16);
        let subkey = chacha20::hchacha::<U10>((&*self.0).into(), head.into());
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(tail);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey).ok()?;
        Some((LessSafeKey::new(key), Nonce::assume_unique_for_key(short)))
    }
}

/// Tenant, row and column, length-prefixed.
fn associated_data(controller_id: &str, id: Uuid, column: &str) -> Vec<u8> {
    const DOMAIN: &[u8] = b"gdpr-intake pii v1\0";
    let parts = [controller_id.as_bytes(), id.as_bytes(), column.as_bytes()];
    let length = DOMAIN.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
    let mut aad = Vec::with_capacity(length);
    aad.extend_from_slice(DOMAIN);
    for part in parts {
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

    /// What this module seals is XChaCha20-Poly1305 as the RustCrypto
    /// implementation makes it, byte for byte, and each opens the other's.
    #[test]
    fn seals_as_the_reference_xchacha20_poly1305() {
        use chacha20poly1305::aead::{Aead, Payload};
        use chacha20poly1305::{KeyInit, XChaCha20Poly1305};

        proptest::proptest!(|(
            key in proptest::array::uniform32(proptest::num::u8::ANY),
            nonce in proptest::array::uniform24(proptest::num::u8::ANY),
            aad in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            plaintext in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        )| {
            let ours = DataKey::from_bytes(&key).unwrap();
            let reference = XChaCha20Poly1305::new(&key.into());
            let theirs = reference
                .encrypt(&nonce.into(), Payload { msg: &plaintext, aad: &aad })
                .unwrap();
            let sealed = ours.seal_with(&nonce, &aad, &plaintext).unwrap();
            proptest::prop_assert_eq!(&sealed[..NONCE_BYTES], &nonce[..]);
            proptest::prop_assert_eq!(&sealed[NONCE_BYTES..], &theirs[..]);
            proptest::prop_assert_eq!(ours.open_in(sealed.clone(), &aad), Some(plaintext.clone()));
            let opened = reference
                .decrypt(&nonce.into(), Payload { msg: &sealed[NONCE_BYTES..], aad: &aad })
                .unwrap();
            proptest::prop_assert_eq!(opened, plaintext);
            // Any flipped bit, in the nonce, the ciphertext or the tag, and
            // it does not open.
            for at in [0, NONCE_BYTES - 1, NONCE_BYTES, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[at] ^= 1;
                proptest::prop_assert_eq!(ours.open_in(bad, &aad), None);
            }
        });
    }

    /// A short value, too short to hold a nonce and a tag, is corrupt.
    #[test]
    fn a_value_shorter_than_nonce_and_tag_is_corrupt() {
        let key = DataKey::random();
        let short = format!(
            "{PREFIX}{}",
            STANDARD.encode([0u8; NONCE_BYTES + TAG_BYTES - 1])
        );
        assert!(matches!(
            key.open("acme", Uuid::from_u128(1), "subject_email", &short),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(key.open_in(vec![0u8; 3], b""), None);
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
