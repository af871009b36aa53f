//! The service's small error vocabulary and its one mapping to gRPC status
//! codes with `google.rpc` details (BadRequest for bad fields, ErrorInfo with
//! a machine-readable reason for everything else).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::domain::input::FieldViolation;
use crate::domain::request::TransitionError;
use crate::store::StoreError;

/// `ErrorInfo.domain` of every error this service reports.
pub const ERROR_DOMAIN: &str = "gdpr-intake";

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields are wrong: INVALID_ARGUMENT with BadRequest.
    #[error("invalid request")]
    InvalidArgument(Vec<FieldViolation>),
    /// No such resource for this caller: NOT_FOUND. Also the answer for
    /// another tenant's resource, so existence never leaks.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource's state forbids the call: FAILED_PRECONDITION.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// The idempotency key is taken by different content: ALREADY_EXISTS.
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    /// The caller is not who it must be.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A single bad field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }
}

impl From<Vec<FieldViolation>> for ApiError {
    fn from(v: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument(v)
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        Self::FailedPrecondition {
            reason: e.reason,
            message: e.message,
        }
    }
}

fn error_info(reason: &str) -> ErrorDetails {
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new())
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument(violations) => {
                let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
                let message = format!("invalid fields: {}", fields.join(", "));
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                details.set_error_info("INVALID_FIELDS", ERROR_DOMAIN, HashMap::new());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(what) => Status::with_error_details(
                Code::NotFound,
                format!("{what} not found"),
                error_info("NOT_FOUND"),
            ),
            ApiError::FailedPrecondition { reason, message } => {
                Status::with_error_details(Code::FailedPrecondition, message, error_info(reason))
            }
            ApiError::AlreadyExists { reason, message } => {
                Status::with_error_details(Code::AlreadyExists, message, error_info(reason))
            }
            ApiError::Auth(e) => e.into(),
            ApiError::Store(e) => store_status(&e),
        }
    }
}

fn store_status(e: &StoreError) -> Status {
    match e {
        StoreError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "database unavailable");
            let mut details = error_info("DATABASE_UNAVAILABLE");
            details.set_retry_info(Some(std::time::Duration::from_secs(1)));
            Status::with_error_details(
                Code::Unavailable,
                "the database is unavailable; retry with backoff",
                details,
            )
        }
        StoreError::Conflict => Status::with_error_details(
            Code::Aborted,
            "the request was changed by another call at the same time; read it again and retry",
            error_info("CONCURRENT_MODIFICATION"),
        ),
        StoreError::Corrupt(detail) | StoreError::Internal(detail) => {
            // The detail may name tables or values: logs only.
            tracing::error!(error = %detail, "store failure");
            Status::with_error_details(
                Code::Internal,
                "internal error; it has been logged",
                error_info("INTERNAL"),
            )
        }
    }
}
