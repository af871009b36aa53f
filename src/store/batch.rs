//! The multi-row statements of a group of new requests
//! ([`Store::insert_requests`](super::Store::insert_requests)): the
//! requests in one `INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING
//! RETURNING id`, then the tasks and the audit events of those that were
//! inserted, each kind in one statement (split only where a statement
//! would pass the bind-parameter limit). A new request has no event
//! before its first, so its chain and audit head are computed here, before
//! anything is written, and the head goes in with the row: a group of any
//! size takes three statements and one commit instead of four statements
//! per request.
//!
//! A statement holds a power of two of rows (a group of 13 is written as
//! 8 + 4 + 1), so each kind has at most nine shapes up to 256 rows and the
//! drivers' prepared-statement caches stay small and warm, whatever sizes
//! the groups come in.
//!
//! PostgreSQL takes the whole group in one statement instead
//! ([`Group::insert_all`], [`sql::INSERT_GROUP`]): each table's rows as one
//! array per column, so one text serves every group size, and the tasks
//! and events of the inserted requests go in through `WITH` clauses: one
//! round trip and no `BEGIN` or `COMMIT` of its own.
//!
//! The multi-row statements are built once for both backends; each
//! backend only runs them.

use std::collections::HashSet;

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};
use uuid::Uuid;

use super::audit::AuditKey;
use super::codec::{self, EventColumns, IdColumn, RequestColumns, TaskColumns};
use super::crypt::DataKey;
use super::sql::{self, Placeholders};
use super::steps::{self, Chained};
use super::{Effects, StoreError};
use crate::domain::request::{DataSubjectRequest, NewEvent};

/// Bind parameters per statement at most: below SQLite's 32,766 and
/// PostgreSQL's 65,535.
const MAX_PARAMS: usize = 30_000;

type Args<DB> = <DB as Database>::Arguments;

/// A statement inserting request rows, with the ids of its rows.
pub(super) type WithIds<DB> = (Query<'static, DB, Args<DB>>, Vec<Uuid>);

/// What a new request row holds of its audit chain: the head (empty
/// without events) and the last event's sequence and hash.
#[derive(Default)]
struct Tip {
    head: String,
    sequence: Option<i64>,
    hash: Option<String>,
}

/// A group of new requests, their rows sealed, their events chained.
pub struct Group<'a> {
    batch: Vec<&'a (DataSubjectRequest, Effects)>,
    /// The request rows, in `batch` order, with their audit heads and the
    /// tips of their chains.
    rows: Vec<(RequestColumns, Tip)>,
    /// Each request's events with their place in its chain.
    chains: Vec<Vec<(&'a NewEvent, Chained)>>,
}

impl<'a> Group<'a> {
    /// Seals each request's row with `data_key` and chains its events from
    /// the genesis, as the first events of a new request. The statements
    /// write the rows in `batch` order.
    pub(super) fn plan(
        key: &AuditKey,
        data_key: &DataKey,
        batch: Vec<&'a (DataSubjectRequest, Effects)>,
    ) -> Result<Self, StoreError> {
        let mut rows = Vec::with_capacity(batch.len());
        let mut chains = Vec::with_capacity(batch.len());
        for (request, effects) in batch.iter().copied() {
            let columns = RequestColumns::from_domain(request)?.seal(data_key)?;
            let mut last = None;
            let chain: Vec<_> = effects
                .events
                .iter()
                .map(|event| {
                    let chained =
                        steps::chain(key, request.id, &request.controller_id, last, event);
                    last = Some((chained.sequence, chained.hash));
                    (event, chained)
                })
                .collect();
            let tip = chain.last().map_or_else(Tip::default, |(_, chained)| Tip {
                head: chained.head_text(),
                sequence: Some(chained.sequence),
                hash: Some(chained.hash_text()),
            });
            rows.push((columns, tip));
            chains.push(chain);
        }
        Ok(Self {
            batch,
            rows,
            chains,
        })
    }

    /// The insert statements of the request rows, in `batch` order, each
    /// with the ids of its rows. A statement skips the rows whose
    /// `(controller_id, request_id)` is taken, earlier or in this group,
    /// and returns nothing: when it changed as many rows as it holds, every
    /// id went in, and only otherwise need the caller ask which. (Returned
    /// rows would each be a message from SQLite's worker thread.)
    pub(super) fn request_inserts<DB, Id>(&mut self, placeholders: Placeholders) -> Vec<WithIds<DB>>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        Option<Id>: for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        let width = sql::INSERT_NEW_REQUEST_WIDTH;
        let mut rows = std::mem::take(&mut self.rows);
        let mut queries = Vec::new();
        while !rows.is_empty() {
            let chunk: Vec<_> = rows.drain(..chunk_len(rows.len(), width)).collect();
            let text = multi_row(
                sql::INSERT_NEW_REQUESTS_HEAD,
                width,
                chunk.len(),
                sql::INSERT_NEW_REQUESTS_TAIL,
                placeholders,
            );
            let ids = chunk.iter().map(|(columns, _)| columns.id).collect();
            let mut query = sqlx::query(AssertSqlSafe(text));
            for (columns, tip) in chunk {
                query = columns
                    .bind_insert::<DB, Id>(query)
                    .bind(tip.head)
                    .bind(tip.sequence)
                    .bind(tip.hash);
            }
            queries.push((query, ids));
        }
        queries
    }

    /// The insert statements of the tasks and then of the events of the
    /// requests whose ids are in `inserted`: tasks first, as events name
    /// them.
    pub(super) fn effect_inserts<DB, Id>(
        &self,
        inserted: &HashSet<Uuid>,
        placeholders: Placeholders,
    ) -> Vec<Query<'static, DB, Args<DB>>>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        Option<Id>: for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    {
        let new = |i: &usize| inserted.contains(&self.batch[*i].0.id);
        let indices: Vec<usize> = (0..self.batch.len()).filter(new).collect();
        let mut queries = Vec::new();

        let mut tasks: Vec<TaskColumns> = indices
            .iter()
            .flat_map(|i| self.batch[*i].1.new_tasks.iter())
            .map(TaskColumns::from_domain)
            .collect();
        let width = sql::INSERT_TASK_WIDTH;
        while !tasks.is_empty() {
            let chunk: Vec<_> = tasks.drain(..chunk_len(tasks.len(), width)).collect();
            let mut query = sqlx::query(AssertSqlSafe(multi_row(
                sql::INSERT_TASKS_HEAD,
                width,
                chunk.len(),
                "",
                placeholders,
            )));
            for columns in chunk {
                query = columns.bind_insert::<DB, Id>(query);
            }
            queries.push(query);
        }

        let events: Vec<(&DataSubjectRequest, &NewEvent, &Chained)> = indices
            .iter()
            .flat_map(|i| {
                let request = &self.batch[*i].0;
                self.chains[*i]
                    .iter()
                    .map(move |(event, chained)| (request, *event, chained))
            })
            .collect();
        let width = sql::INSERT_EVENT_WIDTH;
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(chunk_len(rest.len(), width));
            rest = after;
            let mut query = sqlx::query(AssertSqlSafe(multi_row(
                sql::INSERT_EVENTS_HEAD,
                width,
                chunk.len(),
                "",
                placeholders,
            )));
            for (request, event, chained) in chunk {
                query = EventColumns::bind_insert::<DB, Id>(
                    query,
                    request.id,
                    &request.controller_id,
                    event,
                    chained,
                );
            }
            queries.push(query);
        }
        queries
    }
}

/// Binds one array per named field of `rows`, in the order named, moving
/// each value out of its row.
macro_rules! bind_arrays {
    ($query:expr, $rows:expr; $($field:ident),+ $(,)?) => {
        $query$(.bind(
            $rows
                .iter_mut()
                .map(|row| std::mem::take(&mut row.$field))
                .collect::<Vec<_>>(),
        ))+
    };
}

/// An event row of a new request, as [`sql::INSERT_EVENTS_HEAD`] names its
/// columns.
struct EventRow {
    request: Uuid,
    controller_id: String,
    event_type: String,
    event_time: i64,
    actor_id: String,
    actor_role: String,
    from_state: Option<String>,
    to_state: String,
    reason: String,
    task_id: Option<Uuid>,
    sequence: i64,
    hash: String,
}

impl Group<'_> {
    /// PostgreSQL: the whole group as [`sql::INSERT_GROUP`], every request
    /// with all its tasks and events (the statement keeps those of the
    /// requests it inserts).
    pub(super) fn insert_all(
        &mut self,
    ) -> Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.bind_all(sqlx::query(sql::INSERT_GROUP.as_str()))
    }

    /// PostgreSQL: the whole group as [`sql::INSERT_GROUP_UNLESS_OPEN`],
    /// which first takes the advisory locks `locks` and reads the open
    /// requests about the keys (`controllers`, `subjects`, `types`, one
    /// element a key), and inserts nothing if there is one.
    pub(super) fn insert_all_unless_open(
        &mut self,
        controllers: Vec<String>,
        subjects: Vec<String>,
        types: Vec<String>,
        locks: Vec<i32>,
    ) -> Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.bind_all(sqlx::query(sql::INSERT_GROUP_UNLESS_OPEN.as_str()))
            .bind(controllers)
            .bind(subjects)
            .bind(types)
            .bind(locks)
    }

    /// `query` with the group's rows bound, one array per column.
    fn bind_all(
        &mut self,
        query: Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut tasks: Vec<TaskColumns> = self
            .batch
            .iter()
            .flat_map(|(_, effects)| effects.new_tasks.iter())
            .map(TaskColumns::from_domain)
            .collect();
        let mut events: Vec<EventRow> = self
            .batch
            .iter()
            .zip(&self.chains)
            .flat_map(|((request, _), chain)| {
                chain.iter().map(move |(event, chained)| EventRow {
                    request: request.id,
                    controller_id: request.controller_id.clone(),
                    event_type: event.event_type.as_str().to_owned(),
                    event_time: codec::micros(event.time),
                    actor_id: event.actor.id.clone(),
                    actor_role: event.actor.role.clone(),
                    from_state: event.from_state.map(|s| s.as_str().to_owned()),
                    to_state: event.to_state.as_str().to_owned(),
                    reason: event.reason.clone(),
                    task_id: event.task,
                    sequence: chained.sequence,
                    hash: chained.hash_text(),
                })
            })
            .collect();
        let (mut requests, mut tips): (Vec<RequestColumns>, Vec<Tip>) =
            std::mem::take(&mut self.rows).into_iter().unzip();

        let query = bind_arrays!(query, requests;
            id, controller_id, request_id, request_type,
            subject_external_id, subject_email, subject_date_of_birth,
            subject_country, subject_subdivision, details, corrections,
            state, regime, received_at, create_time, update_time,
            original_due_time, due_time,
            extension_reason, extension_time, extended_by,
            guardian_full_name, guardian_relationship, guardian_email,
            guardian_verification_method, guardian_consented_at,
            guardian_consent_record_time, guardian_consent_recorded_by,
            closure_outcome, closure_refusal_reason, closure_explanation,
            close_time, cancellation_reason, unrouted, fingerprint, version,
            origin_traceparent, origin_tracestate,
            sla_at_risk_reported_at, sla_breached_reported_at, purge_time,
            clock_start_time, clock_pauses, clock_paused_since, duplicate_of,
        );
        let query = bind_arrays!(query, tips; head, sequence, hash);
        let query = bind_arrays!(query, tasks;
            id, request, controller_id, processor_id, state,
            attempt, due_time, lease_token, lease_expire_time, outcome, reason,
            result_uri, note, create_time, update_time, complete_time,
            sla_at_risk_reported_at, sla_breached_reported_at,
        );
        bind_arrays!(query, events;
            request, controller_id, event_type, event_time,
            actor_id, actor_role, from_state, to_state, reason, task_id, sequence, hash,
        )
    }
}

/// How many of `remaining` rows of `width` columns the next statement
/// takes: the largest power of two that fits both.
fn chunk_len(remaining: usize, width: usize) -> usize {
    let fits = (MAX_PARAMS / width.max(1)).max(1);
    let cap = remaining.min(fits).max(1);
    1 << (usize::BITS - 1 - cap.leading_zeros())
}

/// `head`, then `rows` groups of `width` placeholders (numbered from `$1`,
/// or anonymous), then `tail`.
fn multi_row(
    head: &str,
    width: usize,
    rows: usize,
    tail: &str,
    placeholders: Placeholders,
) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            format!(
                "({})",
                sql::placeholder_list(1 + row * width, width, placeholders)
            )
        })
        .collect();
    format!("{head}{}{tail}", rows.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_run_on_across_rows() {
        assert_eq!(
            multi_row(
                "INSERT INTO t (a, b) VALUES ",
                2,
                3,
                " RETURNING a",
                Placeholders::Numbered
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) RETURNING a"
        );
        assert_eq!(multi_row("V ", 1, 1, "", Placeholders::Numbered), "V ($1)");
        assert_eq!(
            multi_row("V ", 2, 2, "", Placeholders::Anonymous),
            "V (?, ?), (?, ?)"
        );
    }

    #[test]
    fn rows_go_in_powers_of_two() {
        let split = |mut n: usize, width: usize| {
            let mut parts = Vec::new();
            while n > 0 {
                let k = chunk_len(n, width);
                parts.push(k);
                n -= k;
            }
            parts
        };
        assert_eq!(split(13, 42), [8, 4, 1]);
        assert_eq!(split(1, 42), [1]);
        assert_eq!(split(256, 12), [256]);
        // 30,000 parameters hold 714 rows of 42: 512 at most per statement.
        assert_eq!(split(800, 42), [512, 256, 32]);
        for n in 1..2000 {
            let parts = split(n, 42);
            assert_eq!(parts.iter().sum::<usize>(), n);
            assert!(
                parts
                    .iter()
                    .all(|k| k.is_power_of_two() && k * 42 <= MAX_PARAMS)
            );
        }
    }

    #[test]
    fn widths_match_the_column_lists() {
        // The heads name as many columns as the rows bind.
        for (head, width) in [
            (sql::INSERT_NEW_REQUESTS_HEAD, sql::INSERT_NEW_REQUEST_WIDTH),
            (sql::INSERT_TASKS_HEAD, sql::INSERT_TASK_WIDTH),
            (sql::INSERT_EVENTS_HEAD, sql::INSERT_EVENT_WIDTH),
        ] {
            let open = head.find('(').expect("a column list");
            let close = head.find(')').expect("a column list");
            assert_eq!(head[open..close].split(',').count(), width, "{head}");
        }
    }
}
