//! The backlog gauges' figures, counted in the database: open requests by
//! state and by how close their deadline is, and each processor's open
//! tasks (pending, leased, past their due time, the oldest one's
//! creation). Every replica
//! reads them once per `--sla-check-interval` ([`super::Store::backlog`]);
//! nothing but the counts is loaded, and nothing names a request or a
//! controller. The same statements run on both backends.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::codec::micros;
use crate::domain::backlog::{Backlog, DUE_SOON, DeadlineCounts, ProcessorBacklog};
use crate::domain::request::State;

/// The open states, in the order of [`OPEN_REQUESTS`]' first columns.
pub(super) const OPEN_STATES: [State; 5] = [
    State::AwaitingGuardianConsent,
    State::InProgress,
    State::NeedsAttention,
    State::AwaitingIdentityVerification,
    State::AwaitingClarification,
];

/// Open requests of every controller as one row: how many are in each of
/// [`OPEN_STATES`], then how many by deadline window, for `$1` now, `$2`
/// the end of the at-risk window and `$3` the end of the due-soon window
/// (microseconds). Every column it reads is in the partial index
/// `data_subject_requests_open`, whose condition it repeats word for
/// word: both databases answer from that index alone, in one pass, with
/// nothing to sort.
pub(super) const OPEN_REQUESTS: &str = "SELECT \
     COALESCE(SUM(CASE WHEN state = 'awaiting_guardian_consent' THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'in_progress' THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'needs_attention' THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'awaiting_identity_verification' THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN state = 'awaiting_clarification' THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN due_time <= $1 THEN 1 ELSE 0 END), 0) AS overdue, \
     COALESCE(SUM(CASE WHEN due_time > $1 AND due_time <= $2 THEN 1 ELSE 0 END), 0) AS at_risk, \
     COALESCE(SUM(CASE WHEN due_time > $1 AND due_time <= $3 THEN 1 ELSE 0 END), 0) AS due_soon \
     FROM data_subject_requests \
     WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', \
         'awaiting_identity_verification', 'awaiting_clarification')";

/// The open tasks at `$1` (microseconds), one row per processor that has
/// any: its pending, leased and overdue counts and the oldest one's
/// creation. The rows are read through the partial index `tasks_claim`
/// (its condition word for word), which is ordered by processor: the
/// groups come one after the other, and no task is held in memory to sort
/// them.
pub(super) const OPEN_TASKS: &str = "SELECT CAST(processor_id AS TEXT) AS processor_id, \
     SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending, \
     SUM(CASE WHEN state = 'leased' THEN 1 ELSE 0 END) AS leased, \
     SUM(CASE WHEN due_time <= $1 THEN 1 ELSE 0 END) AS overdue, \
     MIN(create_time) AS oldest \
     FROM tasks WHERE state IN ('pending', 'leased') \
     GROUP BY processor_id";

/// Every registered processor's id, for the gauges of those without an
/// open task.
pub(super) const PROCESSORS: &str = "SELECT CAST(id AS TEXT) FROM processors";

/// The bounds [`OPEN_REQUESTS`] takes for `now` and the at-risk threshold:
/// now, the end of the at-risk window, the end of the due-soon window.
pub(super) fn deadline_bounds(now: Timestamp, at_risk: SignedDuration) -> [i64; 3] {
    let end = |window: SignedDuration| now.checked_add(window).unwrap_or(Timestamp::MAX);
    [micros(now), micros(end(at_risk)), micros(end(DUE_SOON))]
}

/// The figures from the row of [`OPEN_REQUESTS`] (`None`: no row, as if
/// every count were zero), the rows of [`OPEN_TASKS`] and those of
/// [`PROCESSORS`]. States with no open request are left out; every
/// processor that is registered or has open tasks is in, sorted by id.
pub(super) fn backlog<'r, R>(
    at: Timestamp,
    open: Option<&'r R>,
    open_tasks: &'r [R],
    registered: &'r [R],
) -> Result<Backlog, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut open_by_state = Vec::new();
    let mut deadlines = DeadlineCounts::default();
    if let Some(row) = open {
        for (i, state) in OPEN_STATES.into_iter().enumerate() {
            let n = count(row.try_get(i)?)?;
            if n > 0 {
                open_by_state.push((state, n));
            }
        }
        let window = OPEN_STATES.len();
        deadlines = DeadlineCounts {
            overdue: count(row.try_get(window)?)?,
            at_risk: count(row.try_get(window + 1)?)?,
            due_soon: count(row.try_get(window + 2)?)?,
        };
    }
    // The backends order text differently; the gauges do not care, the
    // tests read a fixed order.
    let mut by_processor = BTreeMap::new();
    for row in open_tasks {
        let oldest: Option<i64> = row.try_get(4)?;
        let processor_id: String = row.try_get(0)?;
        by_processor.insert(
            processor_id.clone(),
            ProcessorBacklog {
                processor_id,
                pending: count(row.try_get(1)?)?,
                leased: count(row.try_get(2)?)?,
                overdue: count(row.try_get(3)?)?,
                oldest_create_time: oldest.map(timestamp).transpose()?,
            },
        );
    }
    for row in registered {
        let processor_id: String = row.try_get(0)?;
        by_processor
            .entry(processor_id.clone())
            .or_insert_with(|| ProcessorBacklog {
                processor_id,
                pending: 0,
                leased: 0,
                overdue: 0,
                oldest_create_time: None,
            });
    }
    Ok(Backlog {
        at,
        open_by_state,
        deadlines,
        processors: by_processor.into_values().collect(),
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
        // The open requests' index was last made again with the state in it.
        let sqlite_open = include_str!("../../migrations/sqlite/0008_gauge_index.sql");
        let postgres_open = include_str!("../../migrations/postgres/0010_gauge_index.sql");
        let requests = "WHERE state IN ('awaiting_guardian_consent', 'in_progress', \
             'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification')";
        let tasks = "WHERE state IN ('pending', 'leased')";
        for migration in [sqlite_open, postgres_open] {
            assert!(migration.contains(requests));
        }
        for migration in [sqlite, postgres] {
            assert!(migration.contains(tasks));
        }
        assert!(OPEN_REQUESTS.ends_with(requests));
        assert!(OPEN_TASKS.contains(tasks));
    }

    /// The columns of [`OPEN_REQUESTS`] count the open states in the order
    /// of [`OPEN_STATES`], which are every state that is not final.
    #[test]
    fn the_open_states_are_counted_in_order_and_are_every_state_not_final() {
        let open: Vec<State> = State::ALL.into_iter().filter(|s| !s.is_final()).collect();
        let mut listed = OPEN_STATES.to_vec();
        listed.sort_by_key(|s| s.as_str());
        let mut expected = open.clone();
        expected.sort_by_key(|s| s.as_str());
        assert_eq!(listed, expected);
        let mut from = 0;
        for state in OPEN_STATES {
            let column = format!("WHEN state = '{}' THEN 1", state.as_str());
            let at = OPEN_REQUESTS[from..]
                .find(&column)
                .unwrap_or_else(|| panic!("{column} missing or out of order"));
            from += at + column.len();
        }
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
