//! The PostgreSQL backend. What differs from SQLite: ids are UUID, errors
//! are read by SQLSTATE, and concurrent writers are kept apart by row locks
//! (see [`super::sql_store`] for the order they are taken in) rather than by
//! taking turns.

use sha2::{Digest, Sha256};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgQueryResult};
use sqlx::query::Query;
use uuid::Uuid;

use super::batch::Group;
use super::feed::FeedPosition;
use super::lend::Connections;
use super::sql_store::{Backend, SqlStore, SubjectKey};
use super::writes::Together;
use super::{StoreConfig, StoreError, sql};

/// The PostgreSQL side of [`SqlStore`].
#[derive(Debug)]
pub struct Postgres;

/// A pool of connections to one PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl Backend for Postgres {
    type Db = sqlx::Postgres;
    type Id = Uuid;
    const NAME: &'static str = "postgres";
    const LOCKING: sql::Locking = sql::ROW_LOCKS;
    const BEGIN_WRITE: Option<&'static str> = None;
    // A claim reads the processor's open tasks in due order from the
    // partial tasks_claim index and stops at the few it takes. The planner
    // only sees that this beats reading them all and sorting when its
    // statistics know how many there are; right after a burst of new
    // tasks, or where nothing analyzes the table (autovacuum off), it
    // estimates a handful and sorts the whole backlog at every claim. With
    // sorting made its last resort for the transaction, the plan no longer
    // depends on the statistics; one round trip carries both statements.
    const BEGIN_TASK: Option<&'static str> = Some("BEGIN; SET LOCAL enable_sort TO off");
    const SERIAL_WRITES: bool = false;
    const PLACEHOLDERS: sql::Placeholders = sql::Placeholders::Numbered;
    const TOGETHER: Together = Together::CommonTableExpressions;

    fn insert_all(group: &mut Group<'_>) -> Option<Query<'static, sqlx::Postgres, PgArguments>> {
        Some(group.insert_all())
    }

    /// One advisory lock per key, numbered by the first four bytes of the
    /// key's SHA-256: keys that share a number only wait for each other.
    fn subject_locks(keys: &[SubjectKey]) -> Option<Query<'static, sqlx::Postgres, PgArguments>> {
        Some(
            sqlx::query(sql::SUBJECT_LOCKS)
                .bind(lock_numbers(keys))
                .bind(sql::SUBJECT_LOCK_SPACE),
        )
    }

    fn insert_all_unless_open(
        group: &mut Group<'_>,
        keys: &[SubjectKey],
    ) -> Option<Query<'static, sqlx::Postgres, PgArguments>> {
        let column = |f: fn(&SubjectKey) -> String| keys.iter().map(f).collect::<Vec<_>>();
        Some(group.insert_all_unless_open(
            column(|k| k.controller_id.clone()),
            column(|k| k.external_id.clone()),
            column(|k| k.request_type.to_owned()),
            lock_numbers(keys),
        ))
    }

    fn open_requests_about(keys: &[SubjectKey]) -> Query<'static, sqlx::Postgres, PgArguments> {
        let column = |f: fn(&SubjectKey) -> String| keys.iter().map(f).collect::<Vec<_>>();
        sqlx::query(sql::OPEN_REQUESTS_ABOUT_LOCKED)
            .bind(column(|k| k.controller_id.clone()))
            .bind(column(|k| k.external_id.clone()))
            .bind(column(|k| k.request_type.to_owned()))
    }

    const FEED_END: &'static str = sql::FEED_END_POSTGRES;

    fn feed_page(
        controller_id: &str,
        after: FeedPosition,
        limit: u32,
    ) -> Query<'_, sqlx::Postgres, PgArguments> {
        sqlx::query(sql::FEED_PAGE_POSTGRES)
            .bind(controller_id)
            .bind(after.transaction.to_string())
            .bind(after.request)
            .bind(after.number)
            .bind(i64::from(limit))
    }

    /// Classifies SQLSTATE codes: the server or the network going away, too
    /// many connections or a statement running out of time are worth a
    /// retry; anything else is a fault.
    fn classify(e: &dyn DatabaseError) -> StoreError {
        let code = e.code().unwrap_or_default();
        // The message, never the detail: the detail may quote row values.
        let what = format!("sqlstate {code}: {}", e.message());
        match code.as_ref() {
            c if c.starts_with("08") => StoreError::Unavailable(what),
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // too_many_connections, query_canceled (statement_timeout).
            "57P01" | "57P02" | "57P03" | "53300" | "57014" => StoreError::Unavailable(what),
            _ => StoreError::Internal(what),
        }
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// The advisory locks of `keys`, ascending, each once.
fn lock_numbers(keys: &[SubjectKey]) -> Vec<i32> {
    let mut numbers: Vec<i32> = keys.iter().map(lock_number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

/// The advisory lock of submissions about `key` ([`sql::SUBJECT_LOCKS`]).
fn lock_number(key: &SubjectKey) -> i32 {
    let mut h = Sha256::new();
    for part in [
        key.controller_id.as_str(),
        key.external_id.as_str(),
        key.request_type,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl SqlStore<Postgres> {
    /// Connects to `config.database_url` with a pool of
    /// `config.max_connections`; every connection runs with
    /// `statement_timeout` set from the configuration.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config.database_url.as_deref().ok_or_else(|| {
            StoreError::Internal("no database url is configured for postgresql".to_owned())
        })?;
        // The parse error never quotes the url, which may hold a password.
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("the database url is not valid: {e}")))?;
        let options = options.application_name("gdpr-intake").options([(
            "statement_timeout",
            format!("{}ms", config.statement_timeout.as_millis()),
        )]);
        let pool = Connections::open(options, config.max_connections, config.acquire_timeout)
            .await
            .map_err(|e| super::error::map(e, Postgres::classify))?;
        let store = Self::new(pool, None, config);
        store.warn_without_autovacuum().await;
        Ok(store)
    }

    /// Says so when the server's autovacuum is off: nothing then gathers
    /// the planner's statistics or removes dead rows. Plans made while the
    /// tables were small (the ones each connection caches for its
    /// foreign-key checks among them) stay as they are while the tables
    /// grow, and claims walk over the dead index entries of finished tasks.
    async fn warn_without_autovacuum(&self) {
        let Ok(mut conn) = self.lend().await else {
            return;
        };
        let setting: Result<String, _> = sqlx::query_scalar(sql::AUTOVACUUM)
            .fetch_one(&mut *conn)
            .await;
        if let Ok(setting) = conn.settle(setting)
            && setting == "off"
        {
            tracing::warn!(
                "postgresql runs with autovacuum off: without ANALYZE and VACUUM run \
                 otherwise, calls slow down as the tables grow"
            );
        }
    }

    /// Applies the migrations in `migrations/postgres` that are not applied
    /// yet. sqlx holds an advisory lock meanwhile, so instances starting
    /// together do not race.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lend().await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut *conn)
            .await
            .map_err(|e| super::error::map(e.into(), Postgres::classify))?;
        conn.give_back();
        Ok(())
    }
}
