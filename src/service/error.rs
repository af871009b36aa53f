//! What a use case can fail with: the service's small error vocabulary.
//! The api maps it to gRPC status codes in one place (`api/error.rs`); the
//! watchdog logs it.

use crate::domain::input::FieldViolation;
use crate::domain::request::TransitionError;
use crate::store::StoreError;

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// One or more fields are wrong (found only against what is stored,
    /// such as a guardian's age on the day of the request).
    #[error("invalid request")]
    InvalidArgument(Vec<FieldViolation>),
    /// No such resource for this caller. Also the answer for another
    /// tenant's resource, so existence never leaks.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource's state forbids the change.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// The idempotency key or the name is taken by different content.
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Vec<FieldViolation>> for ServiceError {
    fn from(v: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument(v)
    }
}

impl From<TransitionError> for ServiceError {
    fn from(e: TransitionError) -> Self {
        Self::FailedPrecondition {
            reason: e.reason,
            message: e.message,
        }
    }
}
