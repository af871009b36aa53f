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
//!   retired, and a retired key is never made primary again. A start
//!   records nothing unless both rings pass. The first start records
//!   every key of its rings, each covering what was written before key
//!   ids (values and hashes that name no key).
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
        "the {purpose} key {id}, first in this replica's ring ({flag}), was retired: nothing \
         needed it any more, and a retired key is never made primary again; put a new key first"
    )]
    PrimaryRetired {
        purpose: &'static str,
        flag: &'static str,
        id: String,
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

/// What a start writes to the registry once every check has passed.
enum Change {
    Register {
        purpose: KeyPurpose,
        key_id: String,
        since: Timestamp,
        covers_unnamed: bool,
    },
    Retire {
        purpose: KeyPurpose,
        key_id: String,
    },
}

/// Checks the store's data and audit rings against the registry and what
/// is stored, then records what changed (see the module documentation):
/// nothing is written unless both rings pass. Run by a serving replica
/// before it answers a call.
pub async fn check_rings(store: &dyn super::Store, now: Timestamp) -> Result<(), RingError> {
    let mut changes = Vec::new();
    for purpose in [KeyPurpose::Data, KeyPurpose::Audit] {
        check_ring(store, purpose, now, &mut changes).await?;
    }
    for change in changes {
        match change {
            Change::Register {
                purpose,
                key_id,
                since,
                covers_unnamed,
            } => {
                store
                    .register_key(purpose, &key_id, since, covers_unnamed)
                    .await?;
            }
            Change::Retire { purpose, key_id } => {
                store.retire_key(purpose, &key_id, now).await?;
                tracing::info!(
                    key.purpose = purpose.as_str(),
                    key.id = %key_id,
                    "a key that left the ring is needed by nothing stored; retired"
                );
            }
        }
    }
    Ok(())
}

async fn check_ring(
    store: &dyn super::Store,
    purpose: KeyPurpose,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> Result<(), RingError> {
    let ids = store.key_ids(purpose);
    let Some(primary) = ids.first() else {
        return Ok(());
    };
    let held = ids.join(", ");
    let registered = store.registered_keys(purpose).await?;
    let Some(newest) = registered.first() else {
        // The first start: every key of the ring is recorded (the primary
        // newest), and each may have made what names no key.
        for (i, id) in ids.iter().enumerate().rev() {
            changes.push(Change::Register {
                purpose,
                key_id: id.clone(),
                since: now - jiff::SignedDuration::from_micros(i as i64),
                covers_unnamed: true,
            });
        }
        return Ok(());
    };
    if !ids.contains(&newest.key_id) {
        return Err(RingError::NewestMissing {
            purpose: purpose.as_str(),
            flag: purpose.flag(),
            id: newest.key_id.clone(),
            since: newest.primary_since,
            held,
        });
    }
    match registered.iter().find(|k| &k.key_id == primary) {
        Some(k) if k.retired_since.is_some() => {
            return Err(RingError::PrimaryRetired {
                purpose: purpose.as_str(),
                flag: purpose.flag(),
                id: primary.clone(),
            });
        }
        Some(k) if k.key_id != newest.key_id => tracing::warn!(
            key.purpose = purpose.as_str(),
            key.primary = %primary,
            key.newest = %newest.key_id,
            "this replica's ring puts an older primary first; it writes with it until \
             its ring puts the newest first (it reads both)"
        ),
        Some(_) => {}
        // New: the newest from now on, after every time recorded (whatever
        // this replica's clock says).
        None => changes.push(Change::Register {
            purpose,
            key_id: primary.clone(),
            since: now.max(newest.primary_since + jiff::SignedDuration::from_micros(1)),
            covers_unnamed: false,
        }),
    }
    let missing = registered
        .iter()
        .filter(|k| k.retired_since.is_none() && !ids.contains(&k.key_id));
    for key in missing {
        let holders = store.key_holders(purpose, key, HOLDERS_NAMED + 1).await?;
        if holders.is_empty() {
            changes.push(Change::Retire {
                purpose,
                key_id: key.key_id.clone(),
            });
            continue;
        }
        match purpose {
            KeyPurpose::Audit => {
                return Err(RingError::AuditKeyInUse {
                    id: key.key_id.clone(),
                    flag: purpose.flag(),
                    trails: name_holders(&holders),
                    held,
                });
            }
            KeyPurpose::Data => tracing::error!(
                key.id = %key.key_id,
                key.holders = %name_holders(&holders),
                "personal data is sealed with a data key the ring lacks: it reads as an \
                 error naming the key until the key is back in the ring"
            ),
        }
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

    /// What stored values that name no key look like, as a `LIKE` pattern:
    /// `v1.` values; bare 64-digit hashes.
    pub(super) fn unnamed_pattern(self) -> String {
        match self {
            Self::Data => "v1.%".to_owned(),
            Self::Audit => "_".repeat(64),
        }
    }
}

/// A key some replica made primary, and when it first did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredKey {
    pub key_id: String,
    pub primary_since: Timestamp,
    /// When a start found nothing stored that needs it any more.
    pub retired_since: Option<Timestamp>,
    /// Whether it may have sealed or chained what names no key (values and
    /// hashes from before key ids): the keys of the first start do.
    pub covers_unnamed: bool,
}

/// What one page of the re-seal did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Requests found holding personal data under another key.
    pub candidates: u64,
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
