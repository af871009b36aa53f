//! Submissions that may repeat an open request
//! ([`crate::domain::duplicate`]), decided inside their commit.
//!
//! On PostgreSQL the common case, a group that repeats nothing, is one
//! statement ([`sql::INSERT_GROUP_UNLESS_OPEN`](crate::store::sql)): it
//! takes the advisory locks of the group's keys, reads the open requests
//! about them as committed after the locks were granted, and inserts the
//! group only if there is none, as [`SqlStore::insert_requests`] would
//! without the check, in one round trip. A group in which a request
//! repeats another of the same group, or whose statement found an open
//! request, is decided in a transaction instead.
//!
//! The group's transaction first holds the submissions about each of its
//! (controller, subject, type) keys apart from every other transaction's
//! ([`Backend::subject_locks`]: PostgreSQL's advisory locks, on every
//! replica; SQLite's writer runs alone anyway), then reads the open
//! requests about those keys, locked, and only then decides and writes.
//! Two submissions about the same subject therefore never both miss each
//! other: the second to take the lock reads the first's committed request.
//!
//! A request is written as the duplicate of an open request read, or of a
//! request of the same group written before it in the same transaction.
//! That one may not be inserted after all (its `request_id` was taken: a
//! replay, or a reuse that the caller gets ALREADY_EXISTS for), so the
//! group is written in rounds: the requests that repeat nothing or a
//! stored request first, then those that repeated one of the first round,
//! decided again against what that round really inserted.

use std::collections::HashSet;

use jiff::SignedDuration;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Backend, Conn, DbRow, SqlStore, SubjectKey, map};
use crate::domain::duplicate::{self, Original};
use crate::domain::request::{Actor, DataSubjectRequest};
use crate::store::batch::Group;
use crate::store::codec::IdColumn;
use crate::store::{Effects, InsertOutcome, StoreError};

/// A request written as a duplicate, and the request it repeats as it is
/// in this transaction.
struct Written {
    /// Where it is in the caller's batch.
    index: usize,
    duplicate: DataSubjectRequest,
    original: DataSubjectRequest,
    actor: Actor,
}

impl<B> SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    B::Id: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    String: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    for<'s> &'s str: Encode<'s, B::Db> + Type<B::Db> + ColumnIndex<DbRow<B>>,
    i64: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    bool: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    usize: ColumnIndex<DbRow<B>>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    Option<B::Id>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<String>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<i64>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
{
    /// [`crate::store::Store::insert_requests`] for a group of which some
    /// requests may be duplicates (an [`Effects::duplicate_window`] is
    /// set).
    pub(super) async fn insert_checking_duplicates(
        &self,
        batch: &[(DataSubjectRequest, Effects)],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        // Rows in key order, as every group writes them.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| (batch[i].0.controller_id.as_str(), batch[i].0.request_id);
            key(a).cmp(&key(b))
        });
        let mut keys: Vec<SubjectKey> = order
            .iter()
            .filter(|&&i| batch[i].1.duplicate_window.is_some())
            .map(|&i| SubjectKey::of(&batch[i].0))
            .collect();
        keys.sort();
        keys.dedup();
        if let Some(outcomes) = self.insert_unless_open(batch, &order, &keys).await? {
            return Ok(outcomes);
        }

        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        if let Some(locks) = B::subject_locks(&keys) {
            locks.execute(&mut *tx).await.map_err(map::<B>)?;
        }
        // Read after the locks, in a statement of its own: it sees every
        // request committed by a transaction that held them before.
        let mut open: Vec<DataSubjectRequest> = B::open_requests_about(&keys)
            .fetch_all(&mut *tx)
            .await
            .map_err(map::<B>)?
            .iter()
            .map(|row| Self::request_from_row(self.data_key()?, row))
            .collect::<Result<_, _>>()?;

        // Those that may not repeat anything go with the first round.
        let (mut pending, plain): (Vec<usize>, Vec<usize>) = order
            .iter()
            .partition(|&&i| batch[i].1.duplicate_window.is_some());
        let mut rows: Vec<(DataSubjectRequest, Effects)> =
            plain.iter().map(|&i| batch[i].clone()).collect();
        let mut inserted = HashSet::new();
        let mut duplicates: Vec<Written> = Vec::new();
        while !pending.is_empty() || !rows.is_empty() {
            let with: Vec<(&DataSubjectRequest, SignedDuration)> = pending
                .iter()
                .map(|&i| (&batch[i].0, batch[i].1.duplicate_window.unwrap_or_default()))
                .collect();
            let found = duplicate::find_originals(&with, &open);
            let mut later = Vec::new();
            let mut kept = Vec::new();
            let mut round_duplicates = Vec::new();
            for (&i, original) in pending.iter().zip(found) {
                let (request, effects) = &batch[i];
                match original {
                    None => {
                        rows.push((request.clone(), effects.clone()));
                        kept.push(i);
                    }
                    Some(Original::Stored(n)) => {
                        let actor = effects
                            .events
                            .first()
                            .map_or_else(Actor::system, |e| e.actor.clone());
                        let mut copy = request.clone();
                        let event = duplicate::store_as_duplicate(&mut copy, open[n].id, &actor);
                        rows.push((copy.clone(), Effects::event(event)));
                        round_duplicates.push(Written {
                            index: i,
                            duplicate: copy,
                            original: open[n].clone(),
                            actor,
                        });
                    }
                    // Decided in the next round, once it is known whether
                    // the request it repeats went in.
                    Some(Original::New(_)) => later.push(i),
                }
            }
            if rows.is_empty() && later.len() == pending.len() {
                // Cannot happen: the first received repeats no new one.
                return Err(StoreError::Internal(
                    "no request of a group could be written first".to_owned(),
                ));
            }
            // In key order, as every group's rows (see `insert_requests`).
            rows.sort_by(|(a, _), (b, _)| {
                (a.controller_id.as_str(), a.request_id)
                    .cmp(&(b.controller_id.as_str(), b.request_id))
            });
            let group = Group::plan(self.audit_key()?, self.data_key()?, rows.iter().collect())?;
            let round = Self::write_group(&mut tx, group).await?;
            // What went in of this round may be repeated by the next.
            open.extend(
                kept.iter()
                    .filter(|&&i| round.contains(&batch[i].0.id))
                    .map(|&i| batch[i].0.clone()),
            );
            duplicates.extend(
                round_duplicates
                    .into_iter()
                    .filter(|w| round.contains(&w.duplicate.id)),
            );
            inserted.extend(round);
            rows.clear();
            pending = later;
        }

        // Each original's trail takes its event, in the order the
        // duplicates were written; its row is locked (read above, or
        // written in this transaction).
        for w in &duplicates {
            let event = duplicate::duplicate_received(&w.original, &w.duplicate, &w.actor);
            Self::insert_event(
                &mut tx,
                self.audit_key()?,
                w.original.id,
                &w.original.controller_id,
                &event,
            )
            .await?;
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for (i, (request, _)) in batch.iter().enumerate() {
            let outcome = if let Some(w) = duplicates.iter().find(|w| w.index == i) {
                InsertOutcome::Duplicate(Box::new(w.duplicate.clone()))
            } else if inserted.contains(&request.id) {
                InsertOutcome::Created
            } else {
                Self::existing(&mut tx, self.data_key()?, request).await?
            };
            outcomes.push(outcome);
        }
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(outcomes)
    }

    /// The common case in one statement, on a backend that writes it so
    /// ([`Backend::insert_all_unless_open`]): a group none of whose
    /// requests repeats another of the group is inserted whole unless an
    /// open request about one of its keys exists. `None` when it inserted
    /// nothing for that reason (or the backend has no such statement, or a
    /// request repeats another of the group): the caller then decides in a
    /// transaction.
    async fn insert_unless_open(
        &self,
        batch: &[(DataSubjectRequest, Effects)],
        order: &[usize],
        keys: &[SubjectKey],
    ) -> Result<Option<Vec<InsertOutcome>>, StoreError> {
        let with: Vec<(&DataSubjectRequest, SignedDuration)> = order
            .iter()
            .filter_map(|&i| batch[i].1.duplicate_window.map(|w| (&batch[i].0, w)))
            .collect();
        if duplicate::find_originals(&with, &[])
            .iter()
            .any(Option::is_some)
        {
            return Ok(None);
        }
        let mut group = Group::plan(
            self.audit_key()?,
            self.data_key()?,
            order.iter().map(|&i| &batch[i]).collect(),
        )?;
        let Some(query) = B::insert_all_unless_open(&mut group, keys) else {
            return Ok(None);
        };
        let mut conn = self.lend_writer().await?;
        let rows = query.fetch_all(&mut *conn).await.map_err(map::<B>)?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for row in &rows {
            let found: bool = row.try_get(1).map_err(map::<B>)?;
            if found {
                // Nothing was inserted; the transaction decides.
                conn.give_back();
                return Ok(None);
            }
            let id: B::Id = row.try_get(0).map_err(map::<B>)?;
            inserted.insert(id.into_uuid("id")?);
        }
        let outcomes = self.outcomes(&mut conn, batch, &inserted).await?;
        conn.give_back();
        Ok(Some(outcomes))
    }
}
