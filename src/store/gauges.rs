//! The backlog gauges' figures, counted in the database: open requests by
//! how close their deadline is, and each processor's open tasks (pending,
//! leased, past their due time, the oldest one's creation). Every replica
//! reads them once per `--sla-check-interval` ([`super::Store::backlog`]);
//! nothing but the counts is loaded, and nothing names a request or a
//! controller. The same statements run on both backends.

use jiff::{SignedDuration, Timestamp};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::codec::micros;
use crate::domain::backlog::{Backlog, DUE_SOON, DeadlineCounts, ProcessorBacklog};
use crate::domain::request::State;

/// Open requests of every controller by deadline window, as one row:
/// `$1` now, `$2` the end of the at-risk window, `$3` the end of the
/// due-soon window (microseconds). The condition on `state` is the
/// partial index `data_subject_requests_open`'s, word for word, so that
/// both databases read that index.
pub(super) const DEADLINES: &str = "SELECT \
     COALESCE(SUM(CASE WHEN due_time <= $1 THEN 1 ELSE 0 END), 0) AS overdue, \
     COALESCE(SUM(CASE WHEN due_time > $1 AND due_time <= $2 THEN 1 ELSE 0 END), 0) AS at_risk, \
     COALESCE(SUM(CASE WHEN due_time > $1 AND due_time <= $3 THEN 1 ELSE 0 END), 0) AS due_soon \
     FROM data_subject_requests \
     WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', \
         'awaiting_identity_verification', 'awaiting_clarification')";

/// Each processor's open tasks at `$1` (microseconds): one row per
/// processor id that is registered or has open tasks, with its pending,
/// leased and overdue counts and the oldest open task's creation (NULL
/// without one). The open tasks are read through the partial index
/// `tasks_claim` (its condition word for word).
pub(super) const PROCESSORS: &str = "SELECT processor_id, \
     SUM(pending) AS pending, SUM(leased) AS leased, SUM(overdue) AS overdue, \
     MIN(oldest) AS oldest \
     FROM (\
     SELECT CAST(processor_id AS TEXT) AS processor_id, \
     CASE WHEN state = 'pending' THEN 1 ELSE 0 END AS pending, \
     CASE WHEN state = 'leased' THEN 1 ELSE 0 END AS leased, \
     CASE WHEN due_time <= $1 THEN 1 ELSE 0 END AS overdue, \
     create_time AS oldest \
     FROM tasks WHERE state IN ('pending', 'leased') \
     UNION ALL \
     SELECT CAST(id AS TEXT), 0, 0, 0, NULL FROM processors\
     ) AS open_work \
     GROUP BY processor_id";

/// The bounds [`DEADLINES`] takes for `now` and the at-risk threshold:
/// now, the end of the at-risk window, the end of the due-soon window.
pub(super) fn deadline_bounds(now: Timestamp, at_risk: SignedDuration) -> [i64; 3] {
    let end = |window: SignedDuration| now.checked_add(window).unwrap_or(Timestamp::MAX);
    [micros(now), micros(end(at_risk)), micros(end(DUE_SOON))]
}

/// The figures from the rows of [`DEADLINES`] (`None`: no row, as if
/// every count were zero) and [`PROCESSORS`], with the open requests per
/// state already counted. Processors come sorted by id.
pub(super) fn backlog<'r, R>(
    at: Timestamp,
    open_by_state: Vec<(State, u64)>,
    deadlines: Option<&'r R>,
    processors: &'r [R],
) -> Result<Backlog, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let deadlines = match deadlines {
        Some(row) => DeadlineCounts {
            overdue: count(row.try_get(0)?)?,
            at_risk: count(row.try_get(1)?)?,
            due_soon: count(row.try_get(2)?)?,
        },
        None => DeadlineCounts::default(),
    };
    let mut by_processor = processors
        .iter()
        .map(|row| {
            let oldest: Option<i64> = row.try_get(4)?;
            Ok(ProcessorBacklog {
                processor_id: row.try_get(0)?,
                pending: count(row.try_get(1)?)?,
                leased: count(row.try_get(2)?)?,
                overdue: count(row.try_get(3)?)?,
                oldest_create_time: oldest.map(timestamp).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // The backends order text differently; the gauges do not care, the
    // tests read a fixed order.
    by_processor.sort_by(|a, b| a.processor_id.cmp(&b.processor_id));
    Ok(Backlog {
        at,
        open_by_state,
        deadlines,
        processors: by_processor,
    })
}

/// A count as read: `SUM` of no rows is NULL where `COALESCE` is absent.
fn count(n: Option<i64>) -> Result<u64, sqlx::Error> {
    u64::try_from(n.unwrap_or(0)).map_err(|_| sqlx::Error::Decode("a count is negative".into()))
}

fn timestamp(micros: i64) -> Result<Timestamp, sqlx::Error> {
    Timestamp::from_microsecond(micros).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each statement names its partial index's condition exactly as the
    /// migrations wrote it, or the database scans the whole table.
    #[test]
    fn statements_repeat_their_partial_indexes_conditions() {
        let sqlite = include_str!("../../migrations/sqlite/0001_init.sql");
        let postgres = include_str!("../../migrations/postgres/0001_init.sql");
        // The open requests' index was made again with the awaiting states.
        let sqlite_open = include_str!("../../migrations/sqlite/0006_clock_pauses.sql");
        let postgres_open = include_str!("../../migrations/postgres/0008_clock_pauses.sql");
        let requests = "WHERE state IN ('awaiting_guardian_consent', 'in_progress', \
             'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification')";
        let tasks = "WHERE state IN ('pending', 'leased')";
        for migration in [sqlite_open, postgres_open] {
            assert!(migration.contains(requests));
        }
        for migration in [sqlite, postgres] {
            assert!(migration.contains(tasks));
        }
        assert!(DEADLINES.ends_with(requests));
        assert!(PROCESSORS.contains(tasks));
    }

    #[test]
    fn windows_end_at_the_threshold_and_a_week_out() {
        let now: Timestamp = "2026-03-09T08:00:00Z".parse().expect("valid");
        let [at, risk, soon] = deadline_bounds(now, SignedDuration::from_hours(48));
        assert_eq!(risk - at, 48 * 3_600 * 1_000_000);
        assert_eq!(soon - at, 7 * 24 * 3_600 * 1_000_000);
        // A threshold past the end of time ends there.
        let [_, risk, _] = deadline_bounds(now, SignedDuration::MAX);
        assert_eq!(risk, micros(Timestamp::MAX));
    }

    #[test]
    fn a_negative_count_is_refused_and_a_missing_one_is_zero() {
        assert!(count(Some(-1)).is_err());
        assert_eq!(count(None).ok(), Some(0));
        assert_eq!(count(Some(3)).ok(), Some(3));
    }
}
