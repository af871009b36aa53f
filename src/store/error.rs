//! Turns sqlx errors into [`StoreError`] at the store's edge. What the
//! failure means is read from the error's kind or code, never from its text;
//! the text goes into the message only where it carries no SQL and no
//! values (driver messages and codes, not the statement or the row).

use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;

use super::StoreError;

/// Maps the failures every backend shares; `database` classifies the
/// backend's own error codes.
pub(super) fn map(
    error: sqlx::Error,
    database: fn(&dyn DatabaseError) -> StoreError,
) -> StoreError {
    use sqlx::Error;
    match error {
        Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".to_owned())
        }
        Error::PoolClosed => StoreError::Unavailable("the connection pool is closed".to_owned()),
        Error::WorkerCrashed => {
            StoreError::Unavailable("the database connection worker stopped".to_owned())
        }
        Error::Io(e) => StoreError::Unavailable(format!("i/o error: {e}")),
        Error::Tls(e) => StoreError::Unavailable(format!("tls error: {e}")),
        // What a connection closed mid-conversation looks like when it
        // happens during the start-up handshake (a server restarting, a
        // proxy or pooler without a backend): "unexpected response from
        // SSLRequest". The connection is unusable and the next call opens a
        // fresh one, so it is retryable like an i/o error.
        Error::Protocol(e) => StoreError::Unavailable(format!("protocol error: {e}")),
        Error::Database(e) => database(e.as_ref()),
        Error::ColumnDecode { index, source } => {
            StoreError::Corrupt(format!("column {index} cannot be read: {source}"))
        }
        Error::Decode(source) => StoreError::Corrupt(format!("a value cannot be read: {source}")),
        Error::Migrate(e) => migrate(*e, database),
        other => StoreError::Internal(other.to_string()),
    }
}

fn migrate(error: MigrateError, database: fn(&dyn DatabaseError) -> StoreError) -> StoreError {
    match error {
        MigrateError::Execute(e) => map(e, database),
        MigrateError::ExecuteMigration(e, version) => match map(e, database) {
            StoreError::Internal(why) => {
                StoreError::Internal(format!("migration {version} failed: {why}"))
            }
            other => other,
        },
        other => StoreError::Internal(format!("cannot migrate: {other}")),
    }
}

/// A failure sqlx reports as a unique violation (either backend).
pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// A failure sqlx reports as a foreign-key violation (either backend).
pub(super) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}
