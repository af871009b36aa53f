//! Revocations as values: what a revocation refuses, the one to record and
//! the one recorded. Auth holds the revoked set built from them; the store
//! keeps them.

use jiff::Timestamp;

/// Longest subject or token id a revocation names.
pub const MAX_TARGET_LEN: usize = 512;

/// What a revocation refuses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RevocationTarget {
    /// Every token whose `sub` claim is this.
    Subject(String),
    /// The token whose `jti` claim is this.
    TokenId(String),
}

impl RevocationTarget {
    /// The stored name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Subject(_) => "subject",
            Self::TokenId(_) => "token_id",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Subject(v) | Self::TokenId(v) => v,
        }
    }

    /// From its stored kind and value; `None` for an unknown kind.
    pub fn from_parts(kind: &str, value: String) -> Option<Self> {
        match kind {
            "subject" => Some(Self::Subject(value)),
            "token_id" => Some(Self::TokenId(value)),
            _ => None,
        }
    }
}

/// A revocation to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRevocation {
    pub target: RevocationTarget,
    pub reason: String,
    /// The `sub` of the admin who asked.
    pub revoked_by: String,
    pub create_time: Timestamp,
}

/// A recorded revocation, numbered in the order of recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub target: RevocationTarget,
    pub reason: String,
    pub revoked_by: String,
    pub create_time: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for target in [
            RevocationTarget::Subject("s".into()),
            RevocationTarget::TokenId("t".into()),
        ] {
            let back = RevocationTarget::from_parts(target.kind(), target.value().to_owned());
            assert_eq!(back, Some(target));
        }
        assert_eq!(RevocationTarget::from_parts("tenant", "x".into()), None);
    }
}
