//! Group commit for submissions. Concurrent `insert_request` calls are
//! queued and a few workers each take whatever is waiting — at most
//! `max_batch` — and write it in one transaction with
//! [`Store::insert_requests`]. One commit (one fsync) then serves many
//! callers, and each caller is answered only after the commit that holds
//! its request: batching never weakens "acknowledged means committed".
//!
//! No caller ever waits for a batch to fill: a worker commits what is there
//! as soon as it is free, so a lone request goes alone, and batches grow by
//! themselves exactly when commits are the bottleneck.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{Effects, InsertOutcome, Store, StoreError, queue};
use crate::domain::request::DataSubjectRequest;

/// What a caller gets back: the outcome, and its request and effects
/// (moved through the queue rather than copied).
pub type Inserted = (InsertOutcome, DataSubjectRequest, Effects);

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

struct Job {
    request: DataSubjectRequest,
    effects: Effects,
    reply: Reply,
}

/// The front of the group-commit queue. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Job>,
}

/// How to group.
#[derive(Clone, Copy, Debug)]
pub struct GroupCommitConfig {
    /// Transactions in flight at once.
    pub workers: usize,
    /// Most requests in one transaction.
    pub max_batch: usize,
    /// Requests waiting at most; further callers wait for room
    /// (backpressure instead of unbounded memory).
    pub queue: usize,
}

impl Default for GroupCommitConfig {
    /// One worker, on either backend. SQLite has a single writer. On
    /// PostgreSQL, which could commit several groups at once, one worker
    /// makes the groups larger (whatever arrives during a commit goes in
    /// the next), and a group's cost grows far slower than its size: at 16
    /// submissions in flight on two cores, four workers made ~5,200
    /// submissions/s and one ~7,000/s (docs/performance.md). Each replica
    /// has its own worker.
    fn default() -> Self {
        Self {
            workers: 1,
            max_batch: 256,
            queue: 4096,
        }
    }
}

impl GroupCommitter {
    /// Starts the workers on the current runtime. They stop when every
    /// clone of the committer is dropped and the queue is empty.
    pub fn start(store: Arc<dyn Store>, config: GroupCommitConfig) -> Self {
        Self::start_with(store, config, |worker| {
            tokio::spawn(worker);
        })
    }

    /// [`GroupCommitter::start`], handing each worker to `spawn` (which
    /// may, say, run it under the application's `tracing` dispatcher).
    pub fn start_with(
        store: Arc<dyn Store>,
        config: GroupCommitConfig,
        spawn: impl Fn(BoxFuture<'static, ()>),
    ) -> Self {
        let queue = queue::start(
            config.workers,
            config.queue,
            config.max_batch,
            spawn,
            move |jobs| commit(store.clone(), jobs),
        );
        Self { queue }
    }

    /// Inserts one request with its effects, grouped with whatever else is
    /// waiting; answers as [`Store::insert_request`] does, after the commit,
    /// handing the request and effects back.
    pub async fn insert(
        &self,
        request: DataSubjectRequest,
        effects: Effects,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            effects,
            reply,
        };
        queue::ask(&self.queue, job, answer, "commit").await
    }
}

/// Writes one group of queued submissions and answers each caller.
async fn commit(store: Arc<dyn Store>, jobs: Vec<Job>) {
    let (batch, replies): (Vec<(DataSubjectRequest, Effects)>, Vec<Reply>) = jobs
        .into_iter()
        .map(|j| ((j.request, j.effects), j.reply))
        .unzip();
    match store.insert_requests(&batch).await {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for ((reply, outcome), (request, effects)) in
                replies.into_iter().zip(outcomes).zip(batch)
            {
                let _ = reply.send(Ok((outcome, request, effects)));
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Internal(
                    "a grouped insert answered the wrong number of outcomes".to_owned(),
                )));
            }
        }
        Err(e) => {
            // Nothing of the group was stored; everyone gets the error
            // (UNAVAILABLE is retryable, and a retry is idempotent).
            let message = e.to_string();
            let unavailable = matches!(e, StoreError::Unavailable(_));
            for reply in replies {
                let err = if unavailable {
                    StoreError::Unavailable(message.clone())
                } else {
                    StoreError::Internal(message.clone())
                };
                let _ = reply.send(Err(err));
            }
        }
    }
}
