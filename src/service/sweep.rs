//! The SLA watchdog's steps, one page at a time: expire the requests whose
//! guardian never consented within the window, report the requests and
//! tasks at risk or breached, purge closed requests past the retention.
//! Each reads candidates, asks the domain ([`crate::domain::sla`],
//! [`crate::domain::retention`]), writes, and reports what it wrote (a
//! span linked to the request's submission, an event, a counter). When to
//! sweep, and the lease that makes one replica the sweeper, are the
//! watchdog's.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::requests::On;
use super::{AppState, Resealed, ServiceError};
use crate::domain::request::{DataSubjectRequest, NewEvent, TransitionError};
use crate::domain::retention;
use crate::domain::routing::Task;
use crate::domain::sla::{self, Finding};
use crate::store::keys::KeyPurpose;
use crate::store::{MAX_READ_GROUP, StoreError, SweepCursor};
use crate::telemetry::{self, SlaItem};

/// Rows read per page of a sweep.
pub const PAGE: u32 = 200;

/// Requests the re-seal rewrites per transaction: small, so that writers
/// wait on it (SQLite's turn, PostgreSQL's row locks) for a few
/// milliseconds at most.
pub const RESEAL_PAGE: u32 = 100;

/// What one page of a step did, and where the next page starts (`None`:
/// this was the last).
#[derive(Debug)]
pub struct Swept<T> {
    pub found: T,
    pub next: Option<SweepCursor>,
}

/// Findings recorded, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub at_risk: u64,
    pub breached: u64,
}

impl Findings {
    fn add(&mut self, finding: Finding) {
        match finding {
            Finding::AtRisk => self.at_risk += 1,
            Finding::Breached => self.breached += 1,
        }
    }
}

/// Where the page after `page` starts (after its last row, keyed by
/// `key`); `None` when `page` was not full, so there is no other.
fn next_page<T>(page: &[T], key: impl Fn(&T) -> (Timestamp, Uuid)) -> Option<SweepCursor> {
    match page.last() {
        Some(last) if page.len() == PAGE as usize => {
            let (time, id) = key(last);
            Some(SweepCursor { time, id })
        }
        _ => None,
    }
}

impl AppState {
    /// Takes or renews lease `name` for `holder` until `ttl` from now;
    /// whether `holder` holds it.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: SignedDuration,
    ) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .acquire_lease(name, holder, self.clock.now(), ttl)
            .await?)
    }

    /// Whether this replica's re-seal runs: its data key's primary is the
    /// newest any replica made primary (a replica still on an older one
    /// would move the data back). `Some(true)` when every other key made
    /// primary is retired: then no value can be sealed with another key
    /// but those from before key ids, and a pass that found none need not
    /// run again.
    pub async fn reseals(&self) -> Result<Option<bool>, ServiceError> {
        let ids = self.store.key_ids(KeyPurpose::Data);
        let Some(primary) = ids.first() else {
            return Ok(None);
        };
        let registered = self.store.registered_keys(KeyPurpose::Data).await?;
        let in_use = registered
            .iter()
            .filter(|k| k.retired_since.is_none())
            .count();
        Ok(registered
            .first()
            .filter(|k| &k.key_id == primary)
            .map(|_| in_use == 1))
    }

    /// One page of the re-seal, after request `after`: personal data
    /// sealed with older keys sealed again with the primary.
    pub async fn reseal_page(&self, after: Option<Uuid>) -> Result<Resealed, ServiceError> {
        Ok(self.store.reseal_page(after, RESEAL_PAGE).await?)
    }

    /// Gives lease `name` up, if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), ServiceError> {
        Ok(self.store.release_lease(name, holder).await?)
    }

    /// One page of the requests that waited for a guardian past the consent
    /// `window`, each moved to expired with its event; counts them.
    pub async fn expire_consents(
        &self,
        window: SignedDuration,
        now: Timestamp,
        after: Option<&SweepCursor>,
    ) -> Result<Swept<u64>, ServiceError> {
        let received_before = now.saturating_sub(window.abs()).unwrap_or(now);
        let page = self
            .store
            .awaiting_consent_since(received_before, after, PAGE)
            .await?;
        let due: Vec<&DataSubjectRequest> = page
            .iter()
            .filter(|r| sla::consent_expired(r, now, window))
            .collect();
        // A request read again after a concurrent change is as old as it
        // was: still awaiting consent, it is still past the window.
        let expired = self.expire_each(&due, now, |r| r.expire(now)).await?;
        Ok(Swept {
            found: expired,
            next: next_page(&page, |r| (r.received_at, r.id)),
        })
    }

    /// One page of the requests that waited for their subject (identity
    /// information or a clarification) longer than `timeout`, each moved
    /// to expired with its event; counts them.
    pub async fn expire_awaiting_subject(
        &self,
        timeout: SignedDuration,
        now: Timestamp,
        after: Option<&SweepCursor>,
    ) -> Result<Swept<u64>, ServiceError> {
        let since = now.saturating_sub(timeout.abs()).unwrap_or(now);
        let page = self
            .store
            .awaiting_subject_since(since, after, PAGE)
            .await?;
        let all: Vec<&DataSubjectRequest> = page.iter().collect();
        let expired = self
            .expire_each(&all, now, |r| r.expire_awaiting_subject(timeout, now))
            .await?;
        Ok(Swept {
            found: expired,
            next: next_page(&page, |r| {
                (r.open_pause().map_or(r.update_time, |p| p.start), r.id)
            }),
        })
    }

    /// Moves each of `requests` to expired with `expire`, through the
    /// versioned change; counts those it moved. One that changed meanwhile
    /// (its answer or consent arrived, it closed) or kept changing is
    /// decided again at the next sweep.
    async fn expire_each<F>(
        &self,
        requests: &[&DataSubjectRequest],
        now: Timestamp,
        expire: F,
    ) -> Result<u64, ServiceError>
    where
        F: Fn(&mut DataSubjectRequest) -> Result<NewEvent, TransitionError>,
    {
        let mut expired = 0;
        for request in requests {
            let outcome = self
                .change_request(
                    &request.controller_id,
                    request.id,
                    Some((*request).clone()),
                    On::Sweep,
                    now,
                    |r| Ok(expire(r)?),
                )
                .await;
            match outcome {
                Ok(changed) => {
                    expired += 1;
                    self.metrics.request_expired();
                    report_request(&changed, None, now);
                }
                Err(
                    ServiceError::FailedPrecondition { .. }
                    | ServiceError::NotFound(_)
                    | ServiceError::Store(StoreError::Conflict),
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// One page of the open requests due within `at_risk`: each at risk of
    /// missing its deadline, or past it, is reported once. A request
    /// waiting for its subject is not: its clock is paused.
    pub async fn request_findings(
        &self,
        at_risk: SignedDuration,
        now: Timestamp,
        after: Option<&SweepCursor>,
    ) -> Result<Swept<Findings>, ServiceError> {
        let due_by = now.saturating_add(at_risk.abs()).unwrap_or(Timestamp::MAX);
        let page = self.store.sla_requests(due_by, after, PAGE).await?;
        let mut found = Findings::default();
        for request in &page {
            if request.open_pause().is_some() && request.state.awaits_subject() {
                continue;
            }
            let Some(finding) = sla::request_finding(request.due_time, request.sla, now, at_risk)
            else {
                continue;
            };
            if !self
                .store
                .record_request_finding(request, finding, now)
                .await?
            {
                continue;
            }
            found.add(finding);
            self.count(finding, SlaItem::Request);
            report_request(request, Some(finding), now);
        }
        Ok(Swept {
            found,
            next: next_page(&page, |r| (r.due_time, r.id)),
        })
    }

    /// One page of the open tasks due within the widest horizon `hours`
    /// working hours can reach: each at risk of missing its due time (in
    /// working hours on the controller's calendar), or past it, is reported
    /// once.
    pub async fn task_findings(
        &self,
        hours: u32,
        now: Timestamp,
        after: Option<&SweepCursor>,
    ) -> Result<Swept<Findings>, ServiceError> {
        let due_by = sla::task_scan_horizon(now, hours);
        let page = self.store.sla_tasks(due_by, after, PAGE).await?;
        let requests = self.requests_of(&page).await?;
        let mut found = Findings::default();
        for task in &page {
            // The foreign key makes a missing request impossible; skip
            // rather than stop.
            let Some(request) = requests.get(&task.request) else {
                continue;
            };
            let calendar =
                self.work_calendar(&request.controller_id, &request.subject.jurisdiction);
            let Some(finding) = sla::task_finding(calendar, task.due_time, task.sla, now, hours)
            else {
                continue;
            };
            if !self.store.record_task_finding(task, finding, now).await? {
                continue;
            }
            found.add(finding);
            self.count(finding, SlaItem::Task);
            report_task(request, task, finding, now);
        }
        Ok(Swept {
            found,
            next: next_page(&page, |r| (r.due_time, r.id)),
        })
    }

    /// One page of the requests closed `retention` ago or longer, each
    /// purged of its personal data with its `purged` event; counts them.
    pub async fn purge_past_retention(
        &self,
        retention: SignedDuration,
        now: Timestamp,
        after: Option<&SweepCursor>,
    ) -> Result<Swept<u64>, ServiceError> {
        let closed_by = retention::closed_by(now, retention);
        let page = self.store.purge_due(closed_by, after, PAGE).await?;
        let mut purged = 0;
        for request in &page {
            if retention::purge_due(request, retention, now)
                && self.store.purge_request(request, now).await?
            {
                purged += 1;
            }
        }
        Ok(Swept {
            found: purged,
            next: next_page(&page, |r| (r.close_time.unwrap_or(closed_by), r.id)),
        })
    }

    /// The requests of a page of tasks, each read once, a controller's
    /// together ([`crate::store::Store::get_requests`], up to
    /// [`MAX_READ_GROUP`] a statement). Only the page's are held: a sweep
    /// over a backlog of any size keeps one page of requests in memory, and
    /// reads them in a few statements rather than one per task.
    async fn requests_of(
        &self,
        page: &[Task],
    ) -> Result<HashMap<Uuid, DataSubjectRequest>, StoreError> {
        let mut wanted: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
        for task in page {
            wanted
                .entry(task.controller_id.as_str())
                .or_default()
                .push(task.request);
        }
        let mut requests = HashMap::with_capacity(page.len());
        for (controller_id, mut ids) in wanted {
            ids.sort_unstable();
            ids.dedup();
            for group in ids.chunks(MAX_READ_GROUP) {
                let found = self.store.get_requests(controller_id, group).await?;
                requests.extend(found.into_iter().map(|r| (r.id, r)));
            }
        }
        Ok(requests)
    }

    fn count(&self, finding: Finding, item: SlaItem) {
        match finding {
            Finding::AtRisk => self.metrics.sla_at_risk(item),
            Finding::Breached => self.metrics.sla_breached(item),
        }
    }
}

/// A span for one finding about `request`, linked to the call that
/// submitted it, with the `dsr.*` attributes and one event: `finding`, or
/// the expiry when `None`.
fn report_request(request: &DataSubjectRequest, finding: Option<Finding>, now: Timestamp) {
    finding_span(finding, SlaItem::Request).in_scope(|| {
        telemetry::record_request(request, now);
        telemetry::link_request(request);
        emit(finding, request, None);
    });
}

/// A span for one finding about `task` of `request`, linked to the call
/// that submitted the request, with the `dsr.*` and `dsr.task.*`
/// attributes and the finding's event.
fn report_task(request: &DataSubjectRequest, task: &Task, finding: Finding, now: Timestamp) {
    finding_span(Some(finding), SlaItem::Task).in_scope(|| {
        telemetry::record_request(request, now);
        telemetry::record_task(task);
        telemetry::link_request(request);
        emit(Some(finding), request, Some(task));
    });
}

fn finding_span(finding: Option<Finding>, item: SlaItem) -> tracing::Span {
    tracing::info_span!(
        "dsr.sla.finding",
        dsr.sla.finding = finding.map_or("consent_expired", Finding::as_str),
        dsr.sla.item = item.as_str(),
    )
}

/// The span event (and log line) of a finding, named after it. No message:
/// the OpenTelemetry layer would name the event after it.
fn emit(finding: Option<Finding>, request: &DataSubjectRequest, task: Option<&Task>) {
    let name = tracing::field::display(request.name());
    let due = tracing::field::display(request.due_time);
    let task_name = task.map(|t| tracing::field::display(t.name()));
    let task_due = task.map(|t| tracing::field::display(t.due_time));
    match finding {
        Some(Finding::AtRisk) => tracing::event!(
            name: "dsr.sla.at_risk",
            tracing::Level::WARN,
            dsr.sla.finding = "at_risk",
            dsr.name = name,
            dsr.due_time = due,
            dsr.task.name = task_name,
            dsr.task.due_time = task_due,
        ),
        Some(Finding::Breached) => tracing::event!(
            name: "dsr.sla.breached",
            tracing::Level::WARN,
            dsr.sla.finding = "breached",
            dsr.name = name,
            dsr.due_time = due,
            dsr.task.name = task_name,
            dsr.task.due_time = task_due,
        ),
        None => tracing::event!(
            name: "dsr.sla.consent_expired",
            tracing::Level::INFO,
            dsr.sla.finding = "consent_expired",
            dsr.name = name,
            dsr.due_time = due,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_continues_after_its_last_row_and_a_short_one_ends() {
        let rows: Vec<(Timestamp, Uuid)> = (0..PAGE)
            .map(|i| {
                (
                    Timestamp::from_second(i64::from(i)).unwrap(),
                    Uuid::from_u128(u128::from(i)),
                )
            })
            .collect();
        let next = next_page(&rows, |r| *r).expect("a full page has a next");
        assert_eq!((next.time, next.id), rows[rows.len() - 1]);
        assert!(next_page(&rows[..rows.len() - 1], |r| *r).is_none());
        assert!(next_page::<(Timestamp, Uuid)>(&[], |r| *r).is_none());
    }
}
