//! Grouped reads of single requests, and of controllers' routes.
//!
//! Concurrent `get` calls are queued and
//! workers (one, as the service starts them) each take whatever is waiting, at most
//! [`MAX_READ_GROUP`], and read each controller's share of it with one
//! statement ([`Store::get_requests`]): one round trip, one statement for
//! the database to run, serve many callers, where each call used to cost
//! its own.
//!
//! As with group commit, no caller waits for a group to fill: a free worker
//! reads what is there at once, so a lone read goes alone, and groups grow
//! only while every worker is busy. Nothing is cached: every answer comes
//! from a statement that started after its call was queued, so a read sees
//! every write acknowledged before it was made, whichever replica made it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Store, StoreError, queue, sql};
use crate::domain::request::DataSubjectRequest;
use crate::domain::routing::Route;

/// Most reads one statement serves.
pub const MAX_READ_GROUP: usize = sql::SELECT_REQUESTS_MAX;

/// Reads waiting at most; further callers wait for room.
const QUEUE: usize = 4096;

type Answer = Result<Option<DataSubjectRequest>, StoreError>;

struct Job {
    controller_id: String,
    id: Uuid,
    reply: oneshot::Sender<Answer>,
}

/// The front of the read queue. Cheap to clone.
#[derive(Clone)]
pub struct ReadGroup {
    queue: mpsc::Sender<Job>,
}

impl ReadGroup {
    /// Starts `workers` readers (statements in flight at once), handing each
    /// to `spawn`. They stop when every clone of the group is dropped and
    /// the queue is empty.
    pub fn start_with(
        store: Arc<dyn Store>,
        workers: usize,
        spawn: impl Fn(BoxFuture<'static, ()>),
    ) -> Self {
        let queue = queue::start(workers, QUEUE, MAX_READ_GROUP, spawn, move |jobs| {
            read(store.clone(), jobs)
        });
        Self { queue }
    }

    /// Request `id` of `controller_id`, as [`Store::get_request`] answers,
    /// read together with whatever other reads are waiting.
    pub async fn get(&self, controller_id: &str, id: Uuid) -> Answer {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            controller_id: controller_id.to_owned(),
            id,
            reply,
        };
        queue::ask(&self.queue, job, answer, "read").await
    }
}

/// Reads one group of queued reads, one statement per controller, the
/// controllers' statements at once (each on a connection of its own).
async fn read(store: Arc<dyn Store>, jobs: Vec<Job>) {
    // One statement per controller: a statement reads one tenant's rows.
    let tenants = by_controller(jobs, |job| &job.controller_id);
    futures::future::join_all(tenants.into_iter().map(|tenant| answer(&*store, tenant))).await;
}

/// `jobs` in runs of one controller's each, `controller` naming a job's.
fn by_controller<J>(mut jobs: Vec<J>, controller: impl Fn(&J) -> &str) -> Vec<Vec<J>> {
    jobs.sort_by(|a, b| controller(a).cmp(controller(b)));
    let mut runs: Vec<Vec<J>> = Vec::new();
    for job in jobs {
        match runs.last_mut() {
            Some(run) if controller(&run[0]) == controller(&job) => run.push(job),
            _ => runs.push(vec![job]),
        }
    }
    runs
}

/// Reads one controller's requests and answers each caller.
async fn answer(store: &dyn Store, jobs: Vec<Job>) {
    let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
    let Some(controller_id) = jobs.first().map(|job| job.controller_id.as_str()) else {
        return;
    };
    match store.get_requests(controller_id, &ids).await {
        Ok(found) => {
            // How many callers still wait for each id: the last one gets the
            // request itself, any other a copy.
            let mut callers: HashMap<Uuid, usize> = HashMap::with_capacity(ids.len());
            for id in &ids {
                *callers.entry(*id).or_default() += 1;
            }
            let mut found: HashMap<Uuid, DataSubjectRequest> =
                found.into_iter().map(|r| (r.id, r)).collect();
            for job in jobs {
                let left = callers.get_mut(&job.id).map(|n| {
                    *n -= 1;
                    *n
                });
                let request = if left == Some(0) {
                    found.remove(&job.id)
                } else {
                    found.get(&job.id).cloned()
                };
                let _ = job.reply.send(Ok(request));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

type Routes = Result<Vec<Route>, StoreError>;

struct RouteJob {
    controller_id: String,
    reply: oneshot::Sender<Routes>,
}

/// Grouped reads of a controller's routes, which every submission that
/// enters in progress reads for its fan-out. The submissions that arrive
/// together are mostly one controller's: they share one statement per
/// controller, as group commit then shares their commit, where each used
/// to read the same rows on its own. As with [`ReadGroup`], nothing is
/// cached: each answer comes from a statement that started after its call
/// was queued, so a route added or removed before a submission arrived is
/// seen by its fan-out, whichever replica changed it.
#[derive(Clone)]
pub struct RouteReads {
    queue: mpsc::Sender<RouteJob>,
}

impl RouteReads {
    /// Starts `workers` readers, handing each to `spawn`; they stop as
    /// [`ReadGroup`]'s do.
    pub fn start_with(
        store: Arc<dyn Store>,
        workers: usize,
        spawn: impl Fn(BoxFuture<'static, ()>),
    ) -> Self {
        let queue = queue::start(workers, QUEUE, MAX_READ_GROUP, spawn, move |jobs| {
            read_routes(store.clone(), jobs)
        });
        Self { queue }
    }

    /// The routes of `controller_id`, as [`Store::controller_routes`]
    /// answers, read once for every caller waiting for the same ones.
    pub async fn routes(&self, controller_id: &str) -> Routes {
        let (reply, answer) = oneshot::channel();
        let job = RouteJob {
            controller_id: controller_id.to_owned(),
            reply,
        };
        queue::ask(&self.queue, job, answer, "route read").await
    }
}

/// Reads the routes of each controller in `jobs` once, the controllers at
/// once, and answers every caller.
async fn read_routes(store: Arc<dyn Store>, jobs: Vec<RouteJob>) {
    let controllers = by_controller(jobs, |job| &job.controller_id);
    let store = &*store;
    futures::future::join_all(controllers.into_iter().map(|mut callers| async move {
        let routes = store.controller_routes(&callers[0].controller_id).await;
        // Every caller but the last gets a copy.
        let last = callers.pop();
        for job in callers {
            let _ = job.reply.send(routes.clone());
        }
        if let Some(job) = last {
            let _ = job.reply.send(routes);
        }
    }))
    .await;
}
