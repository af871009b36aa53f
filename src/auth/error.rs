use std::io;
use std::path::PathBuf;

use super::Role;
use super::verify::MAX_LEEWAY_SECS;

/// Why a call's credentials were refused. Messages go to the client, so they
/// say what is wrong without repeating any part of the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing authorization metadata: send `authorization: Bearer <token>`")]
    MissingCredentials,
    #[error("more than one authorization metadata entry was sent")]
    DuplicateCredentials,
    #[error("authorization metadata must have the form `Bearer <token>`")]
    NotBearer,
    #[error("authorization metadata has no bearer token")]
    EmptyToken,
    #[error("bearer token is not a well-formed jwt")]
    MalformedToken,
    #[error("token algorithm is not accepted: use EdDSA, ES256 or RS256")]
    UnsupportedAlgorithm,
    #[error("token header marks extensions as critical and none are supported")]
    UnsupportedCriticalHeader,
    #[error("token header has no kid")]
    MissingKeyId,
    #[error("token kid does not name a configured key")]
    UnknownKeyId,
    #[error("token algorithm differs from the algorithm of the key its kid names")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    InvalidSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    #[error("token claim `{0}` has an invalid value")]
    InvalidClaim(&'static str),
    #[error("token role is unknown: expected controller, processor, admin or auditor")]
    UnknownRole,
    #[error("token has no tenant, which role {0} requires")]
    MissingTenant(Role),
    #[error("token could not be verified")]
    Unverifiable,
    #[error("role {role} may not make this call; allowed: {}", role_list(.allowed))]
    PermissionDenied { role: Role, allowed: Vec<Role> },
    #[error("token has been revoked")]
    Revoked,
}

impl AuthError {
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::PermissionDenied { .. } => tonic::Code::PermissionDenied,
            _ => tonic::Code::Unauthenticated,
        }
    }

    /// The `google.rpc.ErrorInfo` reason of the refusal; in lower case, the
    /// `reason` of the failed-authentication counter.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "MISSING_CREDENTIALS",
            AuthError::DuplicateCredentials => "DUPLICATE_CREDENTIALS",
            AuthError::NotBearer => "NOT_BEARER",
            AuthError::EmptyToken => "EMPTY_TOKEN",
            AuthError::MalformedToken => "MALFORMED_TOKEN",
            AuthError::UnsupportedAlgorithm => "UNSUPPORTED_ALGORITHM",
            AuthError::UnsupportedCriticalHeader => "UNSUPPORTED_CRITICAL_HEADER",
            AuthError::MissingKeyId => "MISSING_KEY_ID",
            AuthError::UnknownKeyId => "UNKNOWN_KEY_ID",
            AuthError::AlgorithmMismatch => "ALGORITHM_MISMATCH",
            AuthError::InvalidSignature => "INVALID_SIGNATURE",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::NotYetValid => "TOKEN_NOT_YET_VALID",
            AuthError::WrongIssuer => "WRONG_ISSUER",
            AuthError::WrongAudience => "WRONG_AUDIENCE",
            AuthError::MissingClaim(_) => "MISSING_CLAIM",
            AuthError::InvalidClaim(_) => "INVALID_CLAIM",
            AuthError::UnknownRole => "UNKNOWN_ROLE",
            AuthError::MissingTenant(_) => "MISSING_TENANT",
            AuthError::Unverifiable => "UNVERIFIABLE",
            AuthError::PermissionDenied { .. } => "PERMISSION_DENIED",
            AuthError::Revoked => "TOKEN_REVOKED",
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(err: AuthError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let details = ErrorDetails::with_error_info(
            err.reason(),
            crate::errors::ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        tonic::Status::with_error_details(err.code(), err.to_string(), details)
    }
}

fn role_list(roles: &[Role]) -> String {
    if roles.is_empty() {
        return "none".to_owned();
    }
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Start-up errors: the configuration or a key file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth leeway_secs is {0}, at most {MAX_LEEWAY_SECS} is allowed")]
    LeewayTooLarge(u64),
    #[error("auth {0} must not be empty")]
    EmptySetting(&'static str),
    #[error("cannot read jwks file {}: {source}", .path.display())]
    ReadJwks { path: PathBuf, source: io::Error },
    #[error("{origin} is not usable: {reason}")]
    InvalidJwks { origin: String, reason: String },
    #[error("{origin}: key {index}{}: {reason}", kid_suffix(.kid.as_deref()))]
    InvalidKey {
        origin: String,
        index: usize,
        kid: Option<String>,
        reason: String,
    },
    #[error("no development key in {}: start `gdpr-intake serve` once first", .0.display())]
    NoDevKey(PathBuf),
    #[error("development key {} is unusable: {reason}", .path.display())]
    InvalidDevKey { path: PathBuf, reason: String },
    #[error(
        "{} does not hold the public key of {}: delete both files to create a new pair",
        .jwks.display(),
        .key.display()
    )]
    DevKeyMismatch { key: PathBuf, jwks: PathBuf },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid token claims: {0}")]
    InvalidTokenClaims(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

fn kid_suffix(kid: Option<&str>) -> String {
    kid.map(|kid| format!(" (kid {kid:?})")).unwrap_or_default()
}
