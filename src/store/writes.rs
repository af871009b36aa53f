//! The writes of a task transaction, sent in one round trip.
//!
//! A claim or a completion reads and locks its rows, decides (in
//! [`super::steps`]), and then writes: the task, its event, perhaps the
//! request and the request's event, and the audit head with the tip of the
//! request's chain. Sent one statement at a time, that was a round trip each
//! on PostgreSQL and a hop to the connection's worker thread each on SQLite.
//! [`Writes`] collects them and sends them together:
//!
//! - as one statement whose `WITH` clauses hold all but the last write
//!   ([`Together::CommonTableExpressions`], PostgreSQL, whose prepared
//!   statements hold one statement each). The writes then share one
//!   snapshot, so no row may be written twice: the request's head and tip go
//!   with its update when it has one;
//! - as statements separated by `;` in one query ([`Together::Statements`],
//!   SQLite, which runs them in order in one call).
//!
//! Each write changes exactly one row, or the transaction must not commit:
//! a request whose version moved, or a task or request that vanished.
//! Both forms report that, the first through its last statement (the
//! request's update, or the last head), the second through the sum of
//! every statement's changes.
//!
//! The events are chained from the tip the transaction read with the
//! request row ([`super::sql::SELECT_REQUEST_LOCKED`]), so none of this
//! reads `request_events`.

use std::fmt::Write as _;

use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};
use uuid::Uuid;

use super::StoreError;
use super::audit::AuditKey;
use super::codec::{EventColumns, IdColumn, RequestColumns, TaskColumns};
use super::sql;
use super::steps::{self, Chained};
use crate::domain::request::{DataSubjectRequest, NewEvent};
use crate::domain::routing::Task;

/// How a backend sends several writes at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Together {
    /// One statement, every write but the last in a `WITH` clause.
    CommonTableExpressions,
    /// The statements one after another, separated by `;`.
    Statements,
}

/// The tip of a request's audit chain: its last event's sequence and hash,
/// `None` before its first event.
pub(super) type Tip = Option<(i64, [u8; 32])>;

type Args<DB> = <DB as Database>::Arguments;

/// A query that writes everything, and how many rows its result must
/// report changed.
pub(super) type Combined<DB> = (Query<'static, DB, Args<DB>>, u64);

/// One write: one row.
enum Part {
    Task(TaskColumns),
    Event {
        request: Uuid,
        controller_id: String,
        event: NewEvent,
        chained: Chained,
    },
    Request {
        columns: Box<RequestColumns>,
        expected_version: i64,
        tip: Option<Chained>,
    },
    Head {
        request: Uuid,
        controller_id: String,
        chained: Chained,
    },
}

impl Part {
    fn statement(&self) -> &'static str {
        match self {
            Self::Task(_) => sql::UPDATE_TASK,
            Self::Event { .. } => sql::INSERT_EVENT,
            Self::Request { tip: None, .. } => sql::UPDATE_REQUEST,
            Self::Request { tip: Some(_), .. } => sql::UPDATE_REQUEST_WITH_TIP,
            Self::Head { .. } => sql::SET_AUDIT_HEAD,
        }
    }

    fn bind<DB, Id>(self, query: Query<'static, DB, Args<DB>>) -> Query<'static, DB, Args<DB>>
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
        match self {
            Self::Task(columns) => columns.bind_update::<DB, Id>(query),
            Self::Event {
                request,
                controller_id,
                event,
                chained,
            } => EventColumns::bind_insert::<DB, Id>(
                query,
                request,
                &controller_id,
                &event,
                &chained,
            ),
            Self::Request {
                columns,
                expected_version,
                tip,
            } => {
                let query = columns.bind_update::<DB, Id>(query, expected_version);
                match tip {
                    Some(chained) => bind_tip(query, &chained),
                    None => query,
                }
            }
            Self::Head {
                request,
                controller_id,
                chained,
            } => bind_tip(
                query.bind(Id::from_uuid(request)).bind(controller_id),
                &chained,
            ),
        }
    }
}

/// The audit head and the tip, in the order [`sql::SET_AUDIT_HEAD`] and
/// [`sql::UPDATE_REQUEST_WITH_TIP`] bind them after their other values.
fn bind_tip<DB>(
    query: Query<'static, DB, Args<DB>>,
    chained: &Chained,
) -> Query<'static, DB, Args<DB>>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    query
        .bind(chained.head_text())
        .bind(chained.sequence)
        .bind(chained.hash_text())
}

/// The writes of one transaction, in the order they were decided.
#[derive(Default)]
pub(super) struct Writes {
    parts: Vec<Part>,
}

impl Writes {
    /// Writes every mutable column of `task`.
    pub(super) fn task(&mut self, task: &Task) {
        self.parts.push(Part::Task(TaskColumns::from_domain(task)));
    }

    /// Appends `event` to the trail of request `id`, chained from `tip`,
    /// which then moves to the event.
    pub(super) fn event(
        &mut self,
        key: &AuditKey,
        request: &DataSubjectRequest,
        tip: &mut Tip,
        event: NewEvent,
    ) {
        let chained = steps::chain(key, request.id, &request.controller_id, *tip, &event);
        *tip = Some((chained.sequence, chained.hash));
        self.parts.push(Part::Event {
            request: request.id,
            controller_id: request.controller_id.clone(),
            event,
            chained,
        });
    }

    /// Writes the changed `request` (sealed into `columns`) if its stored
    /// version is still `expected_version`.
    pub(super) fn request(&mut self, columns: RequestColumns, expected_version: i64) {
        self.parts.push(Part::Request {
            columns: Box::new(columns),
            expected_version,
            tip: None,
        });
    }

    /// The writes as they are sent: the tasks and events first, then each
    /// request's audit head with the tip of its chain (in its update if it
    /// has one), the request's update last.
    fn finish(self) -> Vec<Part> {
        let mut rows = Vec::with_capacity(self.parts.len() + 1);
        let mut requests = Vec::new();
        let mut heads: Vec<(Uuid, String, Chained)> = Vec::new();
        for part in self.parts {
            match part {
                Part::Event {
                    request,
                    ref controller_id,
                    ref chained,
                    ..
                } => {
                    match heads.iter_mut().find(|(id, _, _)| *id == request) {
                        Some(head) => head.2 = chained.clone(),
                        None => heads.push((request, controller_id.clone(), chained.clone())),
                    }
                    rows.push(part);
                }
                Part::Request { .. } => requests.push(part),
                Part::Task(_) | Part::Head { .. } => rows.push(part),
            }
        }
        for (request, controller_id, chained) in heads {
            let updated = requests.iter_mut().find_map(|part| match part {
                Part::Request { columns, tip, .. } if columns.id == request => Some(tip),
                _ => None,
            });
            match updated {
                Some(tip) => *tip = Some(chained),
                None => rows.push(Part::Head {
                    request,
                    controller_id,
                    chained,
                }),
            }
        }
        rows.extend(requests);
        rows
    }

    /// The query that writes everything `together`, after the statements
    /// of `prelude` (transaction control, which changes no row) and before
    /// the read `then` (whose placeholders follow the writes' and whose
    /// values the caller binds after them), and how many rows its result
    /// must report changed; `None` if there is nothing to write. Only
    /// [`Together::Statements`] takes a prelude or a read.
    pub(super) fn query<DB, Id>(
        self,
        together: Together,
        prelude: &str,
        then: Option<&str>,
    ) -> Result<Option<Combined<DB>>, StoreError>
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
        let parts = self.finish();
        if parts.is_empty() {
            return Ok(None);
        }
        if together != Together::Statements && (!prelude.is_empty() || then.is_some()) {
            return Err(StoreError::Internal(
                "statements beside a write set need a backend that runs several".to_owned(),
            ));
        }
        let mut statements: Vec<&str> = parts.iter().map(Part::statement).collect();
        statements.extend(then);
        let mut text = combine(&statements, together)?;
        if !prelude.is_empty() {
            text = format!("{prelude}; {text}");
        }
        let expected = match together {
            Together::CommonTableExpressions => 1,
            Together::Statements => parts.len() as u64,
        };
        let mut query = sqlx::query(AssertSqlSafe(text));
        for part in parts {
            query = part.bind::<DB, Id>(query);
        }
        Ok(Some((query, expected)))
    }
}

/// `statements` as one query, their placeholders renumbered to run on
/// from one statement to the next.
fn combine(statements: &[&str], together: Together) -> Result<String, StoreError> {
    let mut offset = 0;
    let mut renumbered = Vec::with_capacity(statements.len());
    for statement in statements {
        let (text, count) = renumber(statement, offset)?;
        renumbered.push(text);
        offset += count;
    }
    let Some((last, first)) = renumbered.split_last() else {
        return Ok(String::new());
    };
    Ok(match together {
        Together::Statements => renumbered.join("; "),
        Together::CommonTableExpressions if first.is_empty() => last.clone(),
        Together::CommonTableExpressions => {
            let mut text = String::from("WITH ");
            for (i, statement) in first.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                let _ = write!(text, "w{i} AS ({statement})");
            }
            text.push(' ');
            text.push_str(last);
            text
        }
    })
}

/// `statement` with each `$N` made `$(N + offset)`, and the highest `N`.
/// The statements of [`sql`] hold no `$` but in placeholders.
fn renumber(statement: &str, offset: usize) -> Result<(String, usize), StoreError> {
    let mut text = String::with_capacity(statement.len() + 16);
    let mut highest = 0;
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[..digits].parse().map_err(|_| {
            StoreError::Internal(format!("a statement has a bare '$': {statement}"))
        })?;
        highest = highest.max(n);
        let _ = write!(text, "{}", n + offset);
        rest = &rest[digits..];
    }
    text.push_str(rest);
    Ok((text, highest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_run_on_from_statement_to_statement() {
        let (text, n) = renumber("UPDATE t SET a = $2 WHERE id = $1", 10).unwrap();
        assert_eq!(text, "UPDATE t SET a = $12 WHERE id = $11");
        assert_eq!(n, 2);
        assert_eq!(
            combine(
                &["UPDATE t SET a = $1", "INSERT INTO e VALUES ($1, $2)"],
                Together::Statements
            )
            .unwrap(),
            "UPDATE t SET a = $1; INSERT INTO e VALUES ($2, $3)"
        );
        assert_eq!(
            combine(
                &[
                    "UPDATE t SET a = $1",
                    "INSERT INTO e VALUES ($1, $2)",
                    "UPDATE r SET h = $2 WHERE id = $1"
                ],
                Together::CommonTableExpressions
            )
            .unwrap(),
            "WITH w0 AS (UPDATE t SET a = $1), w1 AS (INSERT INTO e VALUES ($2, $3)) \
             UPDATE r SET h = $5 WHERE id = $4"
        );
        assert_eq!(
            combine(&["UPDATE t SET a = $1"], Together::CommonTableExpressions).unwrap(),
            "UPDATE t SET a = $1"
        );
        assert!(renumber("SELECT $", 0).is_err());
    }

    #[test]
    fn every_statement_a_write_set_sends_numbers_its_placeholders_from_one() {
        for statement in [
            sql::UPDATE_TASK,
            sql::INSERT_EVENT,
            sql::UPDATE_REQUEST,
            sql::UPDATE_REQUEST_WITH_TIP,
            sql::SET_AUDIT_HEAD,
        ] {
            let (_, highest) = renumber(statement, 0).unwrap();
            for n in 1..=highest {
                assert!(statement.contains(&format!("${n}")), "${n} in {statement}");
            }
        }
        assert_eq!(renumber(sql::UPDATE_REQUEST_WITH_TIP, 0).unwrap().1, 29);
        assert_eq!(renumber(sql::SET_AUDIT_HEAD, 0).unwrap().1, 5);
    }
}
