//! Revoked callers and tokens. The store keeps them; each replica holds the
//! whole set in memory, checks every call against it without a database
//! round trip, and every `--revocation-refresh` loads the ones recorded
//! since its last load (revocations are never withdrawn, so the set only
//! grows).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use super::Caller;

use crate::domain::revocation::{Revocation, RevocationTarget};

/// The revoked subjects and token ids one replica checks calls against.
/// Cloning shares the set.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    inner: Arc<RwLock<Revoked>>,
}

#[derive(Debug, Default)]
struct Revoked {
    subjects: HashSet<String>,
    token_ids: HashSet<String>,
    /// The number of the last revocation loaded from the store: the next
    /// load asks for those after it.
    loaded_through: i64,
}

impl Revoked {
    fn insert(&mut self, target: &RevocationTarget) {
        match target {
            RevocationTarget::Subject(s) => self.subjects.insert(s.clone()),
            RevocationTarget::TokenId(t) => self.token_ids.insert(t.clone()),
        };
    }
}

impl Revocations {
    /// The number of the last revocation loaded from the store (0 before
    /// the first).
    pub fn loaded_through(&self) -> i64 {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .loaded_through
    }

    /// Adds `loaded`, read from the store in order after
    /// [`loaded_through`](Self::loaded_through), and moves that past them.
    pub fn extend_loaded(&self, loaded: &[Revocation]) {
        let mut revoked = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in loaded {
            revoked.insert(&r.target);
            revoked.loaded_through = revoked.loaded_through.max(r.seq);
        }
    }

    /// Adds one revocation at once (the replica that recorded it). The
    /// load position stays: revocations numbered before it may not have
    /// been loaded yet.
    pub fn add(&self, target: &RevocationTarget) {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(target);
    }

    /// Whether `caller`'s subject or token is revoked.
    pub fn refuses(&self, caller: &Caller) -> bool {
        let revoked = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if revoked.subjects.is_empty() && revoked.token_ids.is_empty() {
            return false;
        }
        revoked.subjects.contains(&caller.subject)
            || caller
                .token_id
                .as_ref()
                .is_some_and(|id| revoked.token_ids.contains(id))
    }

    /// How many subjects and tokens are revoked.
    pub fn len(&self) -> usize {
        let revoked = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked.subjects.len() + revoked.token_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::auth::Role;

    fn caller(subject: &str, token_id: Option<&str>) -> Caller {
        Caller {
            subject: subject.to_owned(),
            role: Role::Controller,
            tenant: "acme".to_owned(),
            token_id: token_id.map(str::to_owned),
            expires_at: 0,
        }
    }

    fn revocation(seq: i64, target: RevocationTarget) -> Revocation {
        Revocation {
            seq,
            target,
            reason: "left the company".to_owned(),
            revoked_by: "root".to_owned(),
            create_time: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_subject_or_a_token_id_is_refused() {
        let set = Revocations::default();
        assert!(!set.refuses(&caller("svc-a", Some("t1"))));
        set.extend_loaded(&[
            revocation(1, RevocationTarget::Subject("svc-a".into())),
            revocation(2, RevocationTarget::TokenId("t9".into())),
        ]);
        assert!(set.refuses(&caller("svc-a", None)));
        assert!(set.refuses(&caller("svc-b", Some("t9"))));
        assert!(!set.refuses(&caller("svc-b", Some("t1"))));
        assert!(!set.refuses(&caller("svc-b", None)));
        // A token id is not a subject, nor the other way round.
        assert!(!set.refuses(&caller("t9", Some("svc-a"))));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn only_loading_moves_the_load_position() {
        let set = Revocations::default();
        assert_eq!(set.loaded_through(), 0);
        // Recorded here as number 7: numbers before it may still be missing.
        set.add(&RevocationTarget::Subject("svc-a".into()));
        assert!(set.refuses(&caller("svc-a", None)));
        assert_eq!(set.loaded_through(), 0);
        set.extend_loaded(&[
            revocation(3, RevocationTarget::TokenId("t3".into())),
            revocation(7, RevocationTarget::Subject("svc-a".into())),
        ]);
        assert_eq!(set.loaded_through(), 7);
        assert_eq!(set.len(), 2);
        set.extend_loaded(&[]);
        assert_eq!(set.loaded_through(), 7);
        assert!(set.refuses(&caller("svc-b", Some("t3"))));
    }
}
