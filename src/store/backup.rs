//! Online copies of the SQLite database, and putting one back.
//!
//! `backup` copies the database with `VACUUM INTO`: one read transaction, so the copy is the database as of one
//! commit while the service goes on writing (WAL readers do not block the
//! writer, nor it them). The copy is written beside its destination,
//! synced, checked and only then renamed into place, so a file at the
//! destination is always a whole, checked backup.
//!
//! `restore` puts such a copy in place as a data directory's database,
//! after checking it, and only where there is no database yet: it never
//! overwrites data. PostgreSQL is backed up with its own tools
//! (`pg_dump -Fc` / `pg_restore`), see docs/operations.md.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::StoreError;
use super::sqlite::DATABASE_FILE;

/// What a backup or restore holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contents {
    pub requests: i64,
    pub tasks: i64,
    pub events: i64,
    /// Size of the database file.
    pub bytes: u64,
}

/// Copies the SQLite database of `data_dir` to the new file `to`, while
/// the service may be running.
pub async fn backup(data_dir: &Path, to: &Path) -> Result<Contents, StoreError> {
    let source = data_dir.join(DATABASE_FILE);
    if !source.exists() {
        return Err(StoreError::Unavailable(format!(
            "no database at {} (is --data-dir right?)",
            source.display()
        )));
    }
    refuse_existing(to, "the backup file")?;
    // Absolute, so that no name is taken for a `file:` URI by SQLite.
    let to = &std::path::absolute(to)
        .map_err(|e| StoreError::Unavailable(format!("cannot resolve {}: {e}", to.display())))?;
    let partial = partial_name(to);
    remove_stale(&partial)?;
    let result = async {
        // Not read-only: a read-only connection cannot open a WAL database
        // whose -wal and -shm files are gone (the service stopped cleanly).
        // Nothing is written to it.
        let mut conn =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&source))
                .await
                .map_err(|e| fail("cannot open", &source, e))?;
        let target = partial.to_str().ok_or_else(|| {
            StoreError::Internal(format!("{} is not a UTF-8 path", partial.display()))
        })?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&mut conn)
            .await
            .map_err(|e| fail("cannot copy", &source, e))?;
        conn.close()
            .await
            .map_err(|e| fail("cannot close", &source, e))?;
        sync(&partial)?;
        let contents = check(&partial).await?;
        rename(&partial, to)?;
        Ok(contents)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Puts the backup `from` in place as the database of `data_dir`, which
/// must not hold one yet.
pub async fn restore(from: &Path, data_dir: &Path) -> Result<Contents, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
    })?;
    let target = data_dir.join(DATABASE_FILE);
    refuse_existing(&target, "a database")?;
    // What a database that ran here left: SQLite would replay its WAL or
    // journal into the restored file.
    for suffix in SIDE_FILES {
        refuse_existing(&with_suffix(&target, suffix), "a database's side file")?;
    }
    // A live database has commits in its WAL that a copy of the file alone
    // would miss: take a backup of it with `backup` instead.
    if with_suffix(from, "-wal").exists() {
        return Err(StoreError::Unavailable(format!(
            "{} has a write-ahead log beside it: it is a live database, not a backup \
             (copy it with `gdpr-intake backup` first)",
            from.display()
        )));
    }
    // Checked before it is copied: a file that is no backup of this
    // service stops here, not at the next start.
    check(from).await?;
    let partial = partial_name(&target);
    remove_stale(&partial)?;
    let result = (|| {
        std::fs::copy(from, &partial).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                partial.display()
            ))
        })?;
        sync(&partial)?;
        rename(&partial, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    let checked = check(&target).await;
    if checked.is_err() {
        // Put there by this call, and not what it should be.
        let _ = std::fs::remove_file(&target);
    }
    checked
}

/// The files SQLite keeps beside a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens the SQLite file `path` (immutable: no lock, no journal, nothing
/// written) and checks that it is whole and a database of this service;
/// what it holds.
async fn check(path: &Path) -> Result<Contents, StoreError> {
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).immutable(true))
            .await
            .map_err(|e| fail("cannot open", path, e))?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| fail("cannot check", path, e))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails its integrity check: {verdict}",
            path.display()
        )));
    }
    let migrated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| fail("cannot read", path, e))?;
    if migrated == 0 {
        return Err(StoreError::Corrupt(format!(
            "{} is not a gdpr-intake database (it has no migrations table)",
            path.display()
        )));
    }
    let mut counts = [0i64; 3];
    for (count, table) in
        counts
            .iter_mut()
            .zip(["data_subject_requests", "tasks", "request_events"])
    {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| fail("cannot read", path, e))?;
        *count = row.try_get(0).map_err(|e| fail("cannot read", path, e))?;
    }
    conn.close()
        .await
        .map_err(|e| fail("cannot close", path, e))?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot stat {}: {e}", path.display())))?
        .len();
    let [requests, tasks, events] = counts;
    Ok(Contents {
        requests,
        tasks,
        events,
        bytes,
    })
}

fn fail(what: &str, path: &Path, e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

fn refuse_existing(path: &Path, what: &str) -> Result<(), StoreError> {
    if path.exists() {
        return Err(StoreError::Unavailable(format!(
            "{what} already exists at {}; it is never overwritten",
            path.display()
        )));
    }
    Ok(())
}

/// Where a file is written before it is renamed to `path`.
fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// A `.partial` file is what an interrupted run left; nothing else writes
/// that name.
fn remove_stale(partial: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(partial) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot remove {}: {e}",
            partial.display()
        ))),
    }
}

fn sync(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("cannot sync {}: {e}", path.display())))
}

/// Gives `from` the name `to`, which must not exist (a link fails where
/// a rename would replace), and syncs the directory, so that the new name
/// survives a crash.
fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::hard_link(from, to).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot name {} {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    std::fs::remove_file(from)
        .map_err(|e| StoreError::Unavailable(format!("cannot remove {}: {e}", from.display())))?;
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("cannot sync {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backup_is_never_written_over_a_file_and_a_restore_never_over_a_database() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // No database yet: nothing to back up.
        let e = backup(&data, &dir.path().join("b.db"))
            .await
            .expect_err("nothing to copy");
        assert!(e.to_string().contains("no database"), "{e}");

        let config = crate::store::StoreConfig::sqlite(&data);
        let store = crate::store::connect(&config, true).await.expect("opens");
        drop(store);
        let copy = dir.path().join("b.db");
        let contents = backup(&data, &copy).await.expect("copies");
        assert_eq!(
            (contents.requests, contents.tasks, contents.events),
            (0, 0, 0)
        );
        assert!(!partial_name(&copy).exists());
        let e = backup(&data, &copy).await.expect_err("exists");
        assert!(e.to_string().contains("never overwritten"), "{e}");

        let e = restore(&copy, &data)
            .await
            .expect_err("a database is there");
        assert!(e.to_string().contains("never overwritten"), "{e}");
        // A WAL left by a database that ran in the directory.
        let leftover = dir.path().join("leftover");
        std::fs::create_dir_all(&leftover).expect("creates");
        std::fs::write(leftover.join("gdpr-intake.db-wal"), b"old pages").expect("writes");
        let e = restore(&copy, &leftover).await.expect_err("a WAL is there");
        assert!(e.to_string().contains("side file"), "{e}");
        // A live database is not a backup.
        let live = data.join(DATABASE_FILE);
        std::fs::write(with_suffix(&live, "-wal"), b"").expect("writes");
        let e = restore(&live, &dir.path().join("other"))
            .await
            .expect_err("live");
        assert!(e.to_string().contains("live database"), "{e}");
        std::fs::remove_file(with_suffix(&live, "-wal")).expect("removes");
        let fresh = dir.path().join("fresh");
        restore(&copy, &fresh).await.expect("restores");
        assert!(fresh.join(DATABASE_FILE).exists());

        // A file that is not a database, or not one of this service.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, just some text").expect("writes");
        assert!(restore(&junk, &dir.path().join("other")).await.is_err());
        let foreign = dir.path().join("foreign.db");
        let mut conn = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&foreign)
                .create_if_missing(true),
        )
        .await
        .expect("creates");
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut conn)
            .await
            .expect("creates");
        conn.close().await.expect("closes");
        let e = restore(&foreign, &dir.path().join("other"))
            .await
            .expect_err("foreign");
        assert!(e.to_string().contains("not a gdpr-intake database"), "{e}");
        assert!(!dir.path().join("other").join(DATABASE_FILE).exists());
    }
}
