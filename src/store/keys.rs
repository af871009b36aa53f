//! The key rings against what is stored.
//!
//! - **Which data keys the stored personal data is sealed with**: what
//!   `gdpr-intake keys status` prints, so that an operator knows whether a
//!   key may leave the ring. Counted in the database
//!   ([`super::Store::key_use`], one statement, [`super::sql::KEY_USE`], on
//!   either backend).
//! - **The registry of primaries** (`key_registry`): each replica records
//!   its data and audit primaries when it starts ([`check_rings`]). The
//!   newest recorded primary of each kind must be in a starting replica's
//!   ring, so that no replica writes what another cannot read: a rotation
//!   adds the new key to every ring first, then makes it primary. A
//!   recorded key missing from a ring is looked for in what is stored: an
//!   audit key some trail was chained with refuses the start (naming the
//!   trails), a data key some personal data is sealed with is reported
//!   (those values read as errors naming it); a key nothing needs is
//!   forgotten.
//! - **The re-seal** ([`super::Store::reseal_page`]): the watchdog's sweep
//!   moves personal data sealed with older keys to the newest primary, a
//!   page per transaction, when this replica's primary is that key.

use jiff::Timestamp;
use uuid::Uuid;

/// Requests named when a key some of them need is missing from a ring.
const HOLDERS_NAMED: u32 = 10;

/// Why a replica must not start with its rings.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error(
        "the newest {purpose} key made primary, {id} (on {since}), is not in this replica's ring \
         ({flag} holds {held}): add it to the ring of every replica, then start this one"
    )]
    NewestMissing {
        purpose: &'static str,
        flag: &'static str,
        id: String,
        since: Timestamp,
        held: String,
    },
    #[error(
        "audit key {id} chained the trails of {trails}; it cannot leave the ring ({flag} holds \
         {held}) while they exist: put it back in the ring (after the primary)"
    )]
    AuditKeyInUse {
        id: String,
        flag: &'static str,
        trails: String,
        held: String,
    },
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// `dataSubjectRequests/{id}, …` of up to [`HOLDERS_NAMED`] of `ids`, and
/// "and more" when there were more.
fn name_holders(ids: &[Uuid]) -> String {
    let named = ids
        .iter()
        .take(HOLDERS_NAMED as usize)
        .map(|id| format!("{}{id}", crate::domain::request::NAME_PREFIX))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > HOLDERS_NAMED as usize {
        format!("{named} and more")
    } else {
        named
    }
}

/// Checks the store's data and audit rings against the registry and what
/// is stored, then records their primaries (see the module
/// documentation). Run by a serving replica before it answers a call.
pub async fn check_rings(store: &dyn super::Store, now: Timestamp) -> Result<(), RingError> {
    for purpose in [KeyPurpose::Data, KeyPurpose::Audit] {
        let ids = store.key_ids(purpose);
        let Some(primary) = ids.first() else {
            continue;
        };
        let held = ids.join(", ");
        let registered = store.registered_keys(purpose).await?;
        if let Some(newest) = registered.first() {
            if !ids.contains(&newest.key_id) {
                return Err(RingError::NewestMissing {
                    purpose: purpose.as_str(),
                    flag: purpose.flag(),
                    id: newest.key_id.clone(),
                    since: newest.primary_since,
                    held,
                });
            }
            if &newest.key_id != primary && registered.iter().any(|k| &k.key_id == primary) {
                tracing::warn!(
                    key.purpose = purpose.as_str(),
                    key.primary = %primary,
                    key.newest = %newest.key_id,
                    "this replica's ring puts an older primary first; it writes with it until \
                     its ring puts the newest first (it reads both)"
                );
            }
        }
        for missing in registered.iter().filter(|k| !ids.contains(&k.key_id)) {
            let holders = store
                .key_holders(purpose, &missing.key_id, HOLDERS_NAMED + 1)
                .await?;
            if holders.is_empty() {
                store.forget_key(purpose, &missing.key_id).await?;
                tracing::info!(
                    key.purpose = purpose.as_str(),
                    key.id = %missing.key_id,
                    "a key that left the ring is needed by nothing stored; forgotten"
                );
                continue;
            }
            match purpose {
                KeyPurpose::Audit => {
                    return Err(RingError::AuditKeyInUse {
                        id: missing.key_id.clone(),
                        flag: purpose.flag(),
                        trails: name_holders(&holders),
                        held,
                    });
                }
                KeyPurpose::Data => tracing::error!(
                    key.id = %missing.key_id,
                    key.holders = %name_holders(&holders),
                    "personal data is sealed with a data key the ring lacks: it reads as an \
                     error naming the key until the key is back in the ring"
                ),
            }
        }
        store.register_key(purpose, primary, now).await?;
    }
    Ok(())
}

/// What a registered key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Seals personal data (`--data-key-file`).
    Data,
    /// Chains the audit trail (`--audit-key-file`).
    Audit,
}

impl KeyPurpose {
    /// As stored in `key_registry.purpose`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Audit => "audit",
        }
    }

    /// The flag that names the ring's file.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Data => "--data-key-file",
            Self::Audit => "--audit-key-file",
        }
    }

    /// What stored values made with key `key_id` begin with, as a `LIKE`
    /// pattern (key ids are lower-case hex: nothing to escape).
    pub(super) fn pattern(self, key_id: &str) -> String {
        match self {
            Self::Data => format!("v2.{key_id}.%"),
            Self::Audit => format!("{key_id}.%"),
        }
    }
}

/// A key some replica made primary, and when it first did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredKey {
    pub key_id: String,
    pub primary_since: Timestamp,
}

/// What one page of the re-seal did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Requests whose personal data is now sealed with the primary.
    pub moved: u64,
    /// Requests the ring cannot open (a key it lacks): left as they are.
    pub unreadable: u64,
    /// Where the next page starts; `None` after the last.
    pub next: Option<Uuid>,
}

/// The sealed values under one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// The key id, or `None` for values sealed before key ids.
    pub key_id: Option<String>,
    /// Requests with at least one value under it.
    pub rows: i64,
    /// Values under it.
    pub values: i64,
}

/// The sealed columns of one request, as the re-seal reads and rewrites
/// them, in the order of [`super::sql::RESEAL_REQUEST`].
pub(super) const SEALED_COLUMNS: [&str; 4] = [
    "subject_date_of_birth",
    "subject_email",
    "guardian_full_name",
    "guardian_email",
];

/// One request as the re-seal reads it.
pub(super) struct SealedRow {
    pub id: Uuid,
    pub controller_id: String,
    pub version: i64,
    pub values: [Option<String>; 4],
}

impl SealedRow {
    /// Its values opened with `key`'s ring and sealed with its primary;
    /// an error (naming the column and, for a missing key, its id) if one
    /// does not open.
    pub(super) fn resealed(
        &self,
        key: &super::DataKey,
    ) -> Result<[Option<String>; 4], super::StoreError> {
        let mut out: [Option<String>; 4] = Default::default();
        for ((value, column), slot) in self.values.iter().zip(SEALED_COLUMNS).zip(&mut out) {
            if let Some(stored) = value {
                let plain = key.open(&self.controller_id, self.id, column, stored)?;
                *slot = Some(key.seal(&self.controller_id, self.id, column, &plain)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_statement_cuts_key_ids_at_their_length() {
        let cut = format!("substr(v, 4, {})", super::super::crypt::KEY_ID_LEN);
        assert!(super::super::sql::KEY_USE.contains(&cut));
    }
}
