//! The queue behind group commit and grouped reads: callers put a job in,
//! a few workers each take the first job waiting (waiting for one) and
//! whatever else is queued up to a most, and run them together; each
//! caller waits for its own answer.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;

/// Starts `workers` workers, handing each to `spawn`, that run the jobs
/// queued on the returned sender with `run`, at most `max_batch` at a
/// time. They stop when every clone of the sender is dropped and the queue
/// is empty. At most `capacity` jobs wait; further callers wait for room.
pub(super) fn start<J, F, Fut>(
    workers: usize,
    capacity: usize,
    max_batch: usize,
    spawn: impl Fn(BoxFuture<'static, ()>),
    run: F,
) -> mpsc::Sender<J>
where
    J: Send + 'static,
    F: Fn(Vec<J>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<J>(capacity.max(1));
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..workers.max(1) {
        spawn(Box::pin(worker(rx.clone(), max_batch.max(1), run.clone())));
    }
    tx
}

async fn worker<J, F, Fut>(queue: Arc<Mutex<mpsc::Receiver<J>>>, max_batch: usize, run: F)
where
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let mut jobs = Vec::with_capacity(max_batch);
        {
            // Take the first job (waiting for one), then whatever else is
            // already queued, and let the next worker at the queue.
            let mut rx = queue.lock().await;
            if rx.recv_many(&mut jobs, max_batch).await == 0 {
                return; // every sender is gone
            }
        }
        run(jobs).await;
    }
}

/// Queues `job` and waits for what its worker sends on `answer`; `what`
/// names the queue in the errors of a queue closed or a worker gone.
pub(super) async fn ask<J, A>(
    queue: &mpsc::Sender<J>,
    job: J,
    answer: oneshot::Receiver<Result<A, StoreError>>,
    what: &str,
) -> Result<A, StoreError> {
    queue
        .send(job)
        .await
        .map_err(|_| StoreError::Unavailable(format!("the {what} queue is closed")))?;
    answer
        .await
        .map_err(|_| StoreError::Internal(format!("the {what} worker stopped before answering")))?
}
