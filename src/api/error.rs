//! What a handler fails with (a bad message, a refused caller, or the
//! service's [`ServiceError`]) and the one mapping of all of it to gRPC
//! status codes with `google.rpc` details (BadRequest for bad fields,
//! ErrorInfo with a machine-readable reason for everything else).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::domain::input::FieldViolation;
use crate::errors::ERROR_DOMAIN;
use crate::service::{ServiceError, StoreError};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields of the message are wrong: INVALID_ARGUMENT with
    /// BadRequest.
    #[error("invalid request")]
    InvalidArgument(Vec<FieldViolation>),
    /// The caller is not who it must be.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The use case refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
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

fn error_info(reason: &str) -> ErrorDetails {
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new())
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument(violations)
            | ApiError::Service(ServiceError::InvalidArgument(violations)) => {
                let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
                let message = format!("invalid fields: {}", fields.join(", "));
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                details.set_error_info("INVALID_FIELDS", ERROR_DOMAIN, HashMap::new());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Service(ServiceError::NotFound(what)) => Status::with_error_details(
                Code::NotFound,
                format!("{what} not found"),
                error_info("NOT_FOUND"),
            ),
            ApiError::Service(ServiceError::FailedPrecondition { reason, message }) => {
                Status::with_error_details(Code::FailedPrecondition, message, error_info(reason))
            }
            ApiError::Service(ServiceError::AlreadyExists { reason, message }) => {
                Status::with_error_details(Code::AlreadyExists, message, error_info(reason))
            }
            ApiError::Service(ServiceError::Store(e)) => store_status(&e),
            ApiError::Auth(e) => e.into(),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e).into()
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
