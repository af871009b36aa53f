//! The store's connections, lent to one call at a time.
//!
//! sqlx's own pool pings a connection when it lends it (by default) and
//! again when it comes back, to find one that a cancelled call left in the
//! middle of a statement. That is two round trips to PostgreSQL, or two
//! hand-offs to SQLite's connection thread, on every call: as many as a
//! point read needs for itself.
//!
//! Here a call that has finished with its connection says so
//! ([`Lent::give_back`]) and the connection goes straight back to the idle
//! list. A connection dropped any other way (the call was cancelled, or
//! returned early with an error) is tested as sqlx tests it, in a task of
//! its own, and kept only if it answers. A connection that has sat idle
//! longer than [`TEST_IDLE_AFTER`] is tested before it is lent, so that one
//! the server closed in the meantime is replaced instead of failing a call.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An idle connection older than this is tested before it is lent.
const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);
/// An idle connection unused for this long is closed (sqlx's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A connection is closed when it comes back after this long (sqlx's
/// default), so that none outlives a change on the server's side forever.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// At most `size` connections to one database, opened when first needed.
pub(super) struct Connections<DB: Database> {
    shared: Arc<Shared<DB>>,
}

impl<DB: Database> Clone for Connections<DB> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<DB: Database> {
    options: <DB::Connection as Connection>::Options,
    /// Most recently returned last: the warmest connection is lent first,
    /// and the one unused longest sits at the front.
    idle: Mutex<Vec<Idle<DB>>>,
    /// One permit for each connection that may be open.
    permits: Arc<Semaphore>,
    size: u32,
    acquire_timeout: Duration,
    closed: AtomicBool,
}

struct Idle<DB: Database> {
    conn: DB::Connection,
    opened: Instant,
    since: Instant,
}

/// A connection lent to one call. Deref to use it; [`Self::give_back`]
/// when the call has finished with it.
pub(super) struct Lent<DB: Database> {
    conn: Option<DB::Connection>,
    opened: Instant,
    shared: Arc<Shared<DB>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<DB: Database> Shared<DB> {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle<DB>>> {
        // The list is never left half-changed: a panic elsewhere while it
        // was held leaves it whole.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, conn: DB::Connection, opened: Instant) {
        if self.closed.load(Ordering::Acquire) || opened.elapsed() > MAX_LIFETIME {
            close_later::<DB>(conn);
            return;
        }
        self.idle().push(Idle {
            conn,
            opened,
            since: Instant::now(),
        });
    }
}

/// Closes a connection politely in the background if there is a runtime
/// to do it on; otherwise dropping it closes its socket or file.
fn close_later<DB: Database>(conn: DB::Connection) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = conn.close().await;
        });
    }
}

impl<DB: Database> Connections<DB> {
    /// Up to `size` connections made with `options`; one is opened now, so
    /// that a database that cannot be reached is reported at once.
    pub(super) async fn open(
        options: <DB::Connection as Connection>::Options,
        size: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let size = size.max(1);
        let first = tokio::time::timeout(acquire_timeout, options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let now = Instant::now();
        let shared = Shared {
            options,
            idle: Mutex::new(vec![Idle {
                conn: first,
                opened: now,
                since: now,
            }]),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            acquire_timeout,
            closed: AtomicBool::new(false),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A connection for one call: an idle one if there is one, a new one
    /// if fewer than the size are open; otherwise waits for one to come
    /// back, at most the acquire timeout.
    pub(super) async fn lend(&self) -> Result<Lent<DB>, sqlx::Error> {
        tokio::time::timeout(self.shared.acquire_timeout, self.lend_now())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn lend_now(&self) -> Result<Lent<DB>, sqlx::Error> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let permit = shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if shared.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let (conn, opened) = loop {
            let idle = {
                let mut idle = shared.idle();
                if idle
                    .first()
                    .is_some_and(|oldest| oldest.since.elapsed() > IDLE_TIMEOUT)
                {
                    close_later::<DB>(idle.remove(0).conn);
                }
                idle.pop()
            };
            let Some(Idle {
                mut conn,
                opened,
                since,
            }) = idle
            else {
                break (shared.options.connect().await?, Instant::now());
            };
            // One the server closed meanwhile is left; try the next, or a
            // new one.
            if since.elapsed() <= TEST_IDLE_AFTER || conn.ping().await.is_ok() {
                break (conn, opened);
            }
        };
        Ok(Lent {
            conn: Some(conn),
            opened,
            shared: shared.clone(),
            permit: Some(permit),
        })
    }

    /// Lends no more connections, waits for those lent to come back (at
    /// most the acquire timeout) and closes them all.
    pub(super) async fn close(&self) {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let _all = tokio::time::timeout(
            shared.acquire_timeout,
            shared.permits.acquire_many(shared.size),
        )
        .await;
        shared.permits.close();
        let idle: Vec<Idle<DB>> = std::mem::take(&mut *shared.idle());
        for Idle { conn, .. } in idle {
            let _ = conn.close().await;
        }
    }

    /// How many connections are idle now.
    pub(super) fn idle_count(&self) -> usize {
        self.shared.idle().len()
    }
}

impl<DB: Database> std::fmt::Debug for Connections<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("size", &self.shared.size)
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Lent<DB> {
    /// The call has finished with the connection: it goes back to the
    /// idle list as it is, with no round trip.
    pub(super) fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.keep(conn, self.opened);
        }
    }

    /// Gives the connection back if `result` shows that its conversation
    /// with the database ended (an answer, or the database's own error);
    /// after an i/o or protocol failure it is tested first, as on drop.
    pub(super) fn settle<T>(self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        match &result {
            Ok(_)
            | Err(
                sqlx::Error::Database(_)
                | sqlx::Error::RowNotFound
                | sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::Decode(_)
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::ColumnIndexOutOfBounds { .. }
                | sqlx::Error::TypeNotFound { .. },
            ) => self.give_back(),
            Err(_) => drop(self),
        }
        result
    }
}

impl<DB: Database> Deref for Lent<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a lent connection is present until it is given back"),
        }
    }
}

impl<DB: Database> DerefMut for Lent<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a lent connection is present until it is given back"),
        }
    }
}

impl<DB: Database> Drop for Lent<DB> {
    /// A connection not given back may be in the middle of a statement or
    /// hold a transaction whose rollback is queued: it is tested (which
    /// also flushes the rollback) and kept only if it answers within the
    /// acquire timeout. Its permit stays taken until then.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let (shared, opened, permit) = (self.shared.clone(), self.opened, self.permit.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let answered = tokio::time::timeout(shared.acquire_timeout, conn.ping()).await;
            if matches!(answered, Ok(Ok(()))) {
                shared.keep(conn, opened);
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Sqlite;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    /// Connections to an in-memory database each: what one connection
    /// holds (a table, a transaction) says which connection was lent.
    async fn memory(size: u32, acquire_timeout: Duration) -> Connections<Sqlite> {
        let options: SqliteConnectOptions = "sqlite::memory:".parse().unwrap();
        Connections::open(options, size, acquire_timeout)
            .await
            .unwrap()
    }

    /// Marks the connection's in-memory database with a table.
    async fn mark(conn: &mut Lent<Sqlite>) {
        sqlx::query("CREATE TABLE marks (n INTEGER)")
            .execute(&mut **conn)
            .await
            .unwrap();
    }

    async fn count(conn: &mut Lent<Sqlite>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM marks")
            .fetch_one(&mut **conn)
            .await
    }

    /// Waits for a dropped connection's test to finish in the background.
    async fn settled(connections: &Connections<Sqlite>, idle: usize) {
        for _ in 0..200 {
            if connections.idle_count() == idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the dropped connection did not come back");
    }

    #[tokio::test]
    async fn a_connection_given_back_is_lent_again_as_it_was() {
        let connections = memory(1, Duration::from_secs(1)).await;
        let mut conn = connections.lend().await.unwrap();
        mark(&mut conn).await;
        conn.give_back();
        assert_eq!(connections.idle_count(), 1);
        let mut again = connections.lend().await.unwrap();
        assert_eq!(count(&mut again).await.unwrap(), 0, "the same connection");
        again.give_back();
    }

    #[tokio::test]
    async fn a_connection_dropped_inside_a_transaction_comes_back_rolled_back() {
        let connections = memory(1, Duration::from_secs(1)).await;
        let mut conn = connections.lend().await.unwrap();
        mark(&mut conn).await;
        conn.give_back();

        let mut conn = connections.lend().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO marks VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        // Neither committed nor given back: an early return with an error.
        drop(conn);
        settled(&connections, 1).await;

        let mut conn = connections.lend().await.unwrap();
        assert_eq!(count(&mut conn).await.unwrap(), 0);
        // No transaction is open on it: a new one begins.
        conn.begin().await.unwrap().commit().await.unwrap();
        conn.give_back();
    }

    #[tokio::test]
    async fn a_call_waits_for_a_connection_at_most_the_acquire_timeout() {
        let connections = memory(1, Duration::from_millis(50)).await;
        let held = connections.lend().await.unwrap();
        let waited = connections.lend().await.err().expect("none is free");
        assert!(matches!(waited, sqlx::Error::PoolTimedOut), "{waited:?}");
        held.give_back();
        connections.lend().await.unwrap().give_back();
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_connection_given_back() {
        let connections = memory(1, Duration::from_secs(5)).await;
        let mut held = connections.lend().await.unwrap();
        mark(&mut held).await;
        let waiting = {
            let connections = connections.clone();
            tokio::spawn(async move {
                let mut conn = connections.lend().await.unwrap();
                let n = count(&mut conn).await;
                conn.give_back();
                n
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        held.give_back();
        assert_eq!(waiting.await.unwrap().unwrap(), 0, "the held connection");
    }

    #[tokio::test]
    async fn a_cancelled_call_frees_its_connection() {
        let connections = memory(1, Duration::from_millis(100)).await;
        let call = {
            let connections = connections.clone();
            tokio::spawn(async move {
                let mut conn = connections.lend().await.unwrap();
                // Runs for seconds, far beyond the acquire timeout.
                let _: Result<i64, _> = sqlx::query_scalar(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                     WHERE i < 50000000) SELECT max(i) FROM n",
                )
                .fetch_one(&mut *conn)
                .await;
                conn.give_back();
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        call.abort();
        let _ = call.await;
        // The statement still holds that connection's thread; the call's
        // permit comes back once the test of the connection gives up on
        // it, and a new connection takes its place.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let conn = connections.lend().await.unwrap();
        conn.give_back();
    }

    #[tokio::test]
    async fn a_closed_set_lends_nothing() {
        let connections = memory(2, Duration::from_secs(1)).await;
        connections.lend().await.unwrap().give_back();
        connections.close().await;
        assert_eq!(connections.idle_count(), 0);
        let refused = connections.lend().await.err().expect("closed");
        assert!(matches!(refused, sqlx::Error::PoolClosed), "{refused:?}");
    }

    #[tokio::test]
    async fn settle_keeps_a_connection_after_a_database_error() {
        let connections = memory(1, Duration::from_secs(1)).await;
        let mut conn = connections.lend().await.unwrap();
        let failed = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut *conn)
            .await;
        assert!(conn.settle(failed).is_err());
        assert_eq!(connections.idle_count(), 1, "given back, not tested");
    }
}
