//! What the key rings share (the data and audit keys of the store, the
//! evidence key): their files (one key per line in base64, the first the
//! primary, blank lines and `#` comments ignored), the development key
//! file `serve` creates when none is configured, and how a key's id is
//! derived from the key.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};

/// Hex digits of a key id.
pub(crate) const ID_LEN: usize = 12;

/// What a ring's file holds: which ring, what a key must be, and how its
/// id is derived.
#[derive(Clone, Copy)]
pub(crate) struct Spec {
    /// `data` or `audit`.
    pub ring: &'static str,
    /// What a key is, in words ("exactly 32", "at least 32").
    pub wants: &'static str,
    /// How many random bytes a development key gets.
    pub fresh_len: usize,
    pub accept: fn(&[u8]) -> bool,
    pub id_of: fn(&[u8]) -> String,
}

/// Why a key file cannot be used. Says which file, line or key id, never
/// what the file holds.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot {action} the {ring} key file {path}: {source}")]
    Io {
        ring: &'static str,
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the {ring} key file {path} must hold one key per line, each {wants} random bytes in base64 (line {line} is not)"
    )]
    Invalid {
        ring: &'static str,
        wants: &'static str,
        path: PathBuf,
        line: usize,
    },
    #[error("the {ring} key file {path} holds no key")]
    Empty { ring: &'static str, path: PathBuf },
    #[error("the {ring} key file {path} holds key {id} twice")]
    Duplicate {
        ring: &'static str,
        path: PathBuf,
        id: String,
    },
}

/// The id of `key` under `label`: the first 6 bytes of SHA-256 of the
/// label, a zero byte and the key, in hex. The same key has the same id on
/// every replica; the id says nothing of a random key.
pub(crate) fn key_id(label: &str, key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(label.as_bytes())
        .chain_update([0])
        .chain_update(key)
        .finalize();
    digest[..ID_LEN / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys of the file at `path`, in order: each line's bytes, which
/// `spec.accept` must take for a key; no key twice (by `spec.id_of`).
pub(crate) fn read(path: &Path, spec: Spec) -> Result<Vec<Vec<u8>>, KeyFileError> {
    let ring = spec.ring;
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        ring,
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = STANDARD
            .decode(line)
            .ok()
            .filter(|bytes| (spec.accept)(bytes))
            .ok_or_else(|| KeyFileError::Invalid {
                ring,
                wants: spec.wants,
                path: path.to_owned(),
                line: n + 1,
            })?;
        let id = (spec.id_of)(&key);
        if ids.contains(&id) {
            return Err(KeyFileError::Duplicate {
                ring,
                path: path.to_owned(),
                id,
            });
        }
        ids.push(id);
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyFileError::Empty {
            ring,
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

/// The development key file at `path`: created (readable by its owner
/// only, its directory too if missing) with one key of `spec.fresh_len`
/// random bytes if there is none, then read as [`read`] reads it. Its
/// keys, and whether it was created.
pub(crate) fn ensure_dev(path: &Path, spec: Spec) -> Result<(Vec<Vec<u8>>, bool), KeyFileError> {
    let io = |action| {
        move |source| KeyFileError::Io {
            ring: spec.ring,
            action,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let created = match options.open(path) {
        Ok(mut file) => {
            let mut bytes = vec![0u8; spec.fresh_len];
            OsRng.fill_bytes(&mut bytes);
            let mut text = STANDARD.encode(&bytes);
            text.push('\n');
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("write"))?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io("create")(e)),
    };
    Ok((read(path, spec)?, created))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn ids_depend_on_the_label_and_the_key() {
        let id = key_id("a", &[1; 32]);
        assert_eq!(id.len(), ID_LEN);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(id, key_id("a", &[1; 32]));
        assert_ne!(id, key_id("b", &[1; 32]));
        assert_ne!(id, key_id("a", &[2; 32]));
    }
}
