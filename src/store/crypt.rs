//! Personal data at rest: the subject's email and date of birth and the
//! guardian's name and email are stored sealed with XChaCha20-Poly1305.
//!
//! Each value gets a fresh random 192-bit nonce, stored with it and the id
//! of the key that sealed it as `v2.<key id>.<base64(nonce || ciphertext)>`
//! (values sealed before key ids, `v1.<base64(…)>`, are still read: the
//! keys of the ring are tried in turn, and only the right one opens them).
//! The associated data binds the value to its tenant, its row and its
//! column, so a ciphertext copied to another request, another column or
//! another tenant does not open: the store reads it as corrupt. The key
//! never enters the database.
//!
//! **The key ring.** `--data-key-file` holds one key per line (base64 of
//! 32 random bytes; blank lines and `#` comments ignored). The first line
//! is the primary, which seals; every key opens what it sealed. A key's id
//! is derived from the key itself (the first 6 bytes, in hex, of SHA-256
//! of a fixed label and the key), so it is the same on every replica and
//! in every ring, and says nothing of a random 256-bit key. A file of one
//! line is a ring of one key. A value sealed with a key the ring lacks
//! fails with an error naming that key's id.
//!
//! XChaCha20-Poly1305 is built as its specification builds it
//! (draft-irtf-cfrg-xchacha): HChaCha20 of the key and the nonce's first
//! 16 bytes gives a subkey, which seals with the IETF ChaCha20-Poly1305 of
//! RFC 8439 (ring's) under the nonce's last 8 bytes behind four zero bytes.
//! The values are a few dozen bytes, where ring's ChaCha20-Poly1305 costs
//! a fifth of a general-purpose AEAD crate's (whose Poly1305 sets up a
//! vector state for every value); a page of a list opens forty of them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20::cipher::consts::U10;
use rand_core::{OsRng, RngCore};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use uuid::Uuid;

use super::StoreError;
use crate::keyfile::{self, KeyFileError};

/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_DATA_KEY_FILE: &str = "data.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// What values sealed before key ids begin with.
const LEGACY_PREFIX: &str = "v1.";
/// What values sealed with a named key begin with, before the key id.
const PREFIX: &str = "v2.";
/// Hex digits of a key id.
pub const KEY_ID_LEN: usize = keyfile::ID_LEN;

/// The keys that seal and open personal data: a primary, which seals, and
/// older keys, which still open what they sealed. Cheap to clone; its
/// `Debug` shows the key ids, nothing of the keys.
#[derive(Clone)]
pub struct DataKey(Arc<Ring>);

struct Ring {
    /// The primary first.
    keys: Vec<Entry>,
}

struct Entry {
    id: String,
    bytes: [u8; KEY_BYTES],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", self.ids().join(", "))
    }
}

/// The id of `key`: it names the key in sealed values without telling
/// anything of it.
fn key_id(key: &[u8; KEY_BYTES]) -> String {
    keyfile::key_id(KEY_ID_LABEL, key)
}

/// What a data key's id is derived under.
const KEY_ID_LABEL: &str = "gdpr-intake data key id";

/// Why a data key file cannot be used. Says which file, never what it
/// holds.
pub type DataKeyError = KeyFileError;

/// The data ring's file: keys of exactly 32 bytes.
const FILE: keyfile::Spec = keyfile::Spec {
    ring: "data",
    wants: "exactly 32",
    fresh_len: KEY_BYTES,
    accept: |k| k.len() == KEY_BYTES,
    id_of: |k| keyfile::key_id(KEY_ID_LABEL, k),
};

impl DataKey {
    /// A ring of one key, from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; KEY_BYTES] = bytes.try_into().ok()?;
        Some(Self(Arc::new(Ring {
            keys: vec![Entry {
                id: key_id(&bytes),
                bytes,
            }],
        })))
    }

    /// A ring of `keys`, the first the primary; `None` when empty or when
    /// a key is not 32 bytes or comes twice.
    pub fn ring(keys: &[&[u8]]) -> Option<Self> {
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes: [u8; KEY_BYTES] = (*key).try_into().ok()?;
            let id = key_id(&bytes);
            if entries.iter().any(|e| e.id == id) {
                return None;
            }
            entries.push(Entry { id, bytes });
        }
        (!entries.is_empty()).then(|| Self(Arc::new(Ring { keys: entries })))
    }

    /// The primary key's id: the key new values are sealed with.
    pub fn primary_id(&self) -> &str {
        &self.0.keys[0].id
    }

    /// Every key id of the ring, the primary first.
    pub fn ids(&self) -> Vec<&str> {
        self.0.keys.iter().map(|e| e.id.as_str()).collect()
    }

    /// The id of the key that sealed `stored`, if it names one (values
    /// sealed before key ids do not).
    pub fn id_of(stored: &str) -> Option<&str> {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.get(..KEY_ID_LEN))
    }

    /// A fresh random key, for this module's tests: outside them a key is
    /// always read from a file, so that no store seals data with one that
    /// is gone when the process ends.
    #[cfg(test)]
    fn random() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(&bytes).expect("32 bytes")
    }

    /// Reads a key file: one key per line (32 bytes in base64), the first
    /// the primary; blank lines and lines starting with `#` ignored.
    pub fn from_file(path: &Path) -> Result<Self, DataKeyError> {
        let keys = keyfile::read(path, FILE)?;
        Self::from_keys(&keys, path)
    }

    /// The development key in `data_dir`, created (readable by its owner
    /// only) if missing. Returns the key and whether it was created.
    pub fn ensure_dev(data_dir: &Path) -> Result<(Self, bool), DataKeyError> {
        let path = data_dir.join(DEV_DATA_KEY_FILE);
        let (keys, created) = keyfile::ensure_dev(&path, FILE)?;
        Ok((Self::from_keys(&keys, &path)?, created))
    }

    /// The ring of the keys a file held (checked there).
    fn from_keys(keys: &[Vec<u8>], path: &Path) -> Result<Self, DataKeyError> {
        let slices: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        Self::ring(&slices).ok_or_else(|| DataKeyError::Empty {
            ring: FILE.ring,
            path: path.to_owned(),
        })
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
        let primary = &self.0.keys[0];
        let stored = seal_with(&primary.bytes, &nonce, &aad, plaintext.as_bytes())
            .ok_or_else(|| StoreError::Internal(format!("cannot seal {column}")))?;
        Ok(format!(
            "{PREFIX}{}.{}",
            primary.id,
            STANDARD.encode(stored)
        ))
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
        let aad = associated_data(controller_id, id, column);
        let plain = if let Some(rest) = stored.strip_prefix(PREFIX) {
            let (kid, b64) = rest
                .split_at_checked(KEY_ID_LEN)
                .and_then(|(kid, rest)| Some((kid, rest.strip_prefix('.')?)))
                .ok_or_else(corrupt)?;
            let entry = self.0.keys.iter().find(|e| e.id == kid).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{column} is sealed with data key {kid}, which is not in the key ring \
                     (--data-key-file holds {})",
                    self.ids().join(", ")
                ))
            })?;
            let bytes = STANDARD.decode(b64).map_err(|_| corrupt())?;
            open_in(&entry.bytes, bytes, &aad).ok_or_else(corrupt)?
        } else {
            // Sealed before key ids: only the key that sealed it opens it.
            let bytes = stored
                .strip_prefix(LEGACY_PREFIX)
                .and_then(|b64| STANDARD.decode(b64).ok())
                .ok_or_else(corrupt)?;
            self.0
                .keys
                .iter()
                .find_map(|e| open_in(&e.bytes, bytes.clone(), &aad))
                .ok_or_else(corrupt)?
        };
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`, `nonce` and
/// `aad`.
fn seal_with(
    key: &[u8; KEY_BYTES],
    nonce: &[u8; NONCE_BYTES],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let mut sealed = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
    sealed.extend_from_slice(nonce);
    sealed.extend_from_slice(plaintext);
    let (key, nonce) = subkey(key, nonce)?;
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut sealed[NONCE_BYTES..])
        .ok()?;
    sealed.extend_from_slice(tag.as_ref());
    Some(sealed)
}

/// The plaintext of `nonce || ciphertext || tag`, if it opens under `key`
/// and `aad`.
fn open_in(key: &[u8; KEY_BYTES], mut sealed: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let nonce: [u8; NONCE_BYTES] = sealed[..NONCE_BYTES].try_into().ok()?;
    let (key, nonce) = subkey(key, &nonce)?;
    let length = key
        .open_in_place(nonce, Aad::from(aad), &mut sealed[NONCE_BYTES..])
        .ok()?
        .len();
    sealed.truncate(NONCE_BYTES + length);
    sealed.drain(..NONCE_BYTES);
    Some(sealed)
}

/// XChaCha20's derivation: the ChaCha20-Poly1305 key and nonce that seal
/// under `key` and `nonce`.
fn subkey(key: &[u8; KEY_BYTES], nonce: &[u8; NONCE_BYTES]) -> Option<(LessSafeKey, Nonce)> {
    let (head, tail) = nonce.split_at(16);
    let subkey = chacha20::hchacha::<U10>(key.into(), head.into());
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(tail);
    let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey).ok()?;
    Some((LessSafeKey::new(key), Nonce::assume_unique_for_key(short)))
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

    use std::fs;

    use super::*;

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let key = DataKey::random();
        let id = Uuid::from_u128(1);
        let sealed = key
            .seal("acme", id, "subject_email", "ada@example.org")
            .unwrap();
        assert!(!sealed.contains("ada@example.org") && !sealed.contains("example"));
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
            let reference = XChaCha20Poly1305::new(&key.into());
            let theirs = reference
                .encrypt(&nonce.into(), Payload { msg: &plaintext, aad: &aad })
                .unwrap();
            let sealed = seal_with(&key, &nonce, &aad, &plaintext).unwrap();
            proptest::prop_assert_eq!(&sealed[..NONCE_BYTES], &nonce[..]);
            proptest::prop_assert_eq!(&sealed[NONCE_BYTES..], &theirs[..]);
            proptest::prop_assert_eq!(open_in(&key, sealed.clone(), &aad), Some(plaintext.clone()));
            let opened = reference
                .decrypt(&nonce.into(), Payload { msg: &sealed[NONCE_BYTES..], aad: &aad })
                .unwrap();
            proptest::prop_assert_eq!(opened, plaintext);
            // Any flipped bit, in the nonce, the ciphertext or the tag, and
            // it does not open.
            for at in [0, NONCE_BYTES - 1, NONCE_BYTES, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[at] ^= 1;
                proptest::prop_assert_eq!(open_in(&key, bad, &aad), None);
            }
        });
    }

    /// A short value, too short to hold a nonce and a tag, is corrupt.
    #[test]
    fn a_value_shorter_than_nonce_and_tag_is_corrupt() {
        let key = DataKey::random();
        let short = format!(
            "{PREFIX}{}.{}",
            key.primary_id(),
            STANDARD.encode([0u8; NONCE_BYTES + TAG_BYTES - 1])
        );
        assert!(matches!(
            key.open("acme", Uuid::from_u128(1), "subject_email", &short),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(open_in(&[0u8; KEY_BYTES], vec![0u8; 3], b""), None);
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
        assert_eq!(
            format!("{first:?}"),
            format!("DataKey({})", first.primary_id())
        );
    }

    /// A value sealed the way values were sealed before key ids.
    fn legacy_seal(key: &[u8; KEY_BYTES], id: Uuid, value: &str) -> String {
        let aad = associated_data("acme", id, "subject_email");
        let sealed = seal_with(key, &[7u8; NONCE_BYTES], &aad, value.as_bytes()).unwrap();
        format!("{LEGACY_PREFIX}{}", STANDARD.encode(sealed))
    }

    #[test]
    fn a_ring_seals_with_its_primary_and_opens_with_any_of_its_keys() {
        let (old, new) = ([1u8; KEY_BYTES], [2u8; KEY_BYTES]);
        let id = Uuid::from_u128(1);
        let open = |ring: &DataKey, v: &str| ring.open("acme", id, "subject_email", v);
        let before = DataKey::ring(&[&old]).unwrap();
        let during = DataKey::ring(&[&old, &new]).unwrap();
        let after = DataKey::ring(&[&new, &old]).unwrap();
        let (old_id, new_id) = (key_id(&old), key_id(&new));
        assert_eq!(during.ids(), [old_id.as_str(), new_id.as_str()]);
        assert_eq!(after.primary_id(), new_id);

        let legacy = legacy_seal(&old, id, "a");
        let sealed_before = before.seal("acme", id, "subject_email", "b").unwrap();
        let sealed_during = during.seal("acme", id, "subject_email", "c").unwrap();
        let sealed_after = after.seal("acme", id, "subject_email", "d").unwrap();
        assert_eq!(DataKey::id_of(&sealed_before), Some(old_id.as_str()));
        assert_eq!(DataKey::id_of(&sealed_during), Some(old_id.as_str()));
        assert_eq!(DataKey::id_of(&sealed_after), Some(new_id.as_str()));
        assert_eq!(DataKey::id_of(&legacy), None);
        for ring in [&during, &after] {
            assert_eq!(open(ring, &legacy).unwrap(), "a");
            assert_eq!(open(ring, &sealed_before).unwrap(), "b");
            assert_eq!(open(ring, &sealed_during).unwrap(), "c");
            assert_eq!(open(ring, &sealed_after).unwrap(), "d");
        }
        // A ring without the key: an error naming it, never another value.
        let e = open(&before, &sealed_after).unwrap_err();
        assert!(e.to_string().contains(&new_id), "{e}");
        let only_new = DataKey::ring(&[&new]).unwrap();
        assert!(matches!(
            open(&only_new, &legacy),
            Err(StoreError::Corrupt(_))
        ));
        // A key id pointing at the wrong key of the ring does not open.
        let forged = sealed_after.replacen(&new_id, &old_id, 1);
        assert!(open(&after, &forged).is_err());
    }

    #[test]
    fn a_ring_file_holds_one_key_per_line_the_primary_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ring");
        let (a, b) = ([3u8; KEY_BYTES], [4u8; KEY_BYTES]);
        fs::write(
            &file,
            format!(
                "# rotated 2026-12\n{}\n\n  {}  \n",
                STANDARD.encode(b),
                STANDARD.encode(a)
            ),
        )
        .unwrap();
        let ring = DataKey::from_file(&file).unwrap();
        assert_eq!(ring.ids(), [key_id(&b), key_id(&a)]);
        for (text, line) in [
            (format!("{}\nnot base64\n", STANDARD.encode(a)), 2),
            (format!("{}\n", STANDARD.encode([1u8; 16])), 1),
        ] {
            fs::write(&file, text).unwrap();
            match DataKey::from_file(&file) {
                Err(DataKeyError::Invalid { line: at, .. }) => assert_eq!(at, line),
                other => panic!("{other:?}"),
            }
        }
        fs::write(&file, "# nothing\n").unwrap();
        assert!(matches!(
            DataKey::from_file(&file),
            Err(DataKeyError::Empty { .. })
        ));
        fs::write(&file, format!("{0}\n{0}\n", STANDARD.encode(a))).unwrap();
        match DataKey::from_file(&file) {
            Err(DataKeyError::Duplicate { id, .. }) => assert_eq!(id, key_id(&a)),
            other => panic!("{other:?}"),
        }
        // Errors name the file and the line, never the key.
        let e = DataKey::from_file(&file).unwrap_err().to_string();
        assert!(!e.contains(&STANDARD.encode(a)), "{e}");
    }
}
