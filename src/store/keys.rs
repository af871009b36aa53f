//! Which data keys the stored personal data is sealed with: what
//! `gdpr-intake keys status` prints, so that an operator knows whether a
//! key may leave the ring. Counted in the database, one statement, on
//! either backend.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ColumnIndex, Connection, Decode, PgConnection, Row, SqliteConnection, Type};

use super::crypt::KEY_ID_LEN;
use super::sqlite::DATABASE_FILE;
use super::{StoreConfig, StoreError};

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

/// The same text on both backends: `substr` counts from 1 on both.
fn statement() -> String {
    let values = [
        "subject_email",
        "subject_date_of_birth",
        "guardian_full_name",
        "guardian_email",
    ]
    .map(|c| format!("SELECT id, {c} AS v FROM data_subject_requests WHERE {c} IS NOT NULL"))
    .join(" UNION ALL ");
    format!(
        "SELECT CASE WHEN v LIKE 'v2.%' THEN substr(v, 4, {KEY_ID_LEN}) END AS key_id, \
         count(DISTINCT id) AS rows, count(*) AS sealed \
         FROM ({values}) s GROUP BY 1 ORDER BY 1"
    )
}

/// A row of [`statement`]: key id, rows, values.
fn counts<R: Row>(r: &R) -> Result<(Option<String>, i64, i64), sqlx::Error>
where
    usize: ColumnIndex<R>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
}

/// Sealed values and rows per key id in the configured database.
pub async fn status(config: &StoreConfig) -> Result<Vec<KeyUse>, StoreError> {
    let fail = |e: sqlx::Error| StoreError::Unavailable(format!("cannot count key use: {e}"));
    let sql = statement();
    let rows = match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.map_err(fail)?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .map_err(fail)?
                .iter()
                .map(counts)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(fail)?
        }
        None => {
            let path = config.data_dir.join(DATABASE_FILE);
            if !path.exists() {
                return Err(StoreError::Unavailable(format!(
                    "no database at {} (is --data-dir right?)",
                    path.display()
                )));
            }
            let mut conn =
                SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
                    .await
                    .map_err(fail)?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .map_err(fail)?
                .iter()
                .map(counts)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(fail)?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(key_id, rows, values)| KeyUse {
            key_id,
            rows,
            values,
        })
        .collect())
}
