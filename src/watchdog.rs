//! The SLA watchdog: a background loop that, every `--sla-check-interval`,
//! expires the requests whose guardian never consented within the consent
//! window, and reports open requests and tasks at risk of missing their
//! deadline and past it — each finding once, on the request's audit trail,
//! as a span event linked to the call that submitted the request, and in
//! the `gdpr.dsr.sla.*` counters. The decisions are the domain's
//! ([`crate::domain::sla`]); this module reads candidates, asks, and
//! records.
//!
//! One replica at a time sweeps: the one holding the `sla-watchdog` lease
//! in the database ([`Store::acquire_lease`](crate::store::Store::acquire_lease)).
//! Every replica tries to take or renew it four times per interval; the
//! lease lasts half an interval, the holder renews it at each of those
//! ticks and between pages of a sweep, sweeps once per interval, and gives
//! the lease up when it stops. A replica that takes the lease sweeps at
//! once. So after a crash the lease lapses at most half an interval after
//! the holder's last renewal and another replica sweeps at most a quarter
//! of an interval later: the sweeps go on within one interval. Should two
//! ever sweep at once (a holder so late that its lease lapsed), each
//! finding is still written once: the store writes a finding only if the
//! row is still as it was read.
//!
//! Time comes from the application's clock, so tests move it by hand.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use crate::api::AppState;
use crate::domain::request::DataSubjectRequest;
use crate::domain::retention;
use crate::domain::routing::Task;
use crate::domain::sla::{self, Finding, Thresholds};
use crate::store::{Effects, StoreError, SweepCursor};
use crate::telemetry::{self, SlaItem};

/// The lease that makes one replica the sweeper.
pub const LEASE_NAME: &str = "sla-watchdog";
/// How often the watchdog looks, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Rows read per page of a sweep.
const PAGE: u32 = 200;

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

/// How long the sweeper's lease lasts: half an interval.
pub fn lease_ttl(interval: Duration) -> Duration {
    interval / 2
}

/// How often every replica takes or renews the lease: a quarter of an
/// interval, so a live holder renews twice within its lease and a lapsed
/// lease is taken a quarter of an interval later at most.
pub fn lease_tick(interval: Duration) -> Duration {
    interval / 4
}

/// How the watchdog runs and what it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Time between two sweeps; the lease lasts half of it.
    pub interval: Duration,
    pub thresholds: Thresholds,
    /// How long a closed request keeps its personal data; `None`: never
    /// purged.
    pub retention: Option<SignedDuration>,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            thresholds: Thresholds::default(),
            retention: None,
        }
    }
}

/// What one sweep found and recorded, for its span.
#[derive(Clone, Copy, Debug, Default)]
struct Sweep {
    expired: u64,
    requests_at_risk: u64,
    requests_breached: u64,
    tasks_at_risk: u64,
    tasks_breached: u64,
}

/// Why a sweep stopped before the end.
enum Stop {
    /// Another replica holds the lease now.
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// What a watchdog has done so far, as counts anyone may wait on (tests,
/// above all, instead of sleeping): its rounds, the ticks at which it
/// took, renewed or failed to take the lease, and its sweeps, those it ran
/// to the end while holding the lease. Clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    rounds: watch::Sender<u64>,
    sweeps: watch::Sender<u64>,
}

impl Progress {
    /// The rounds finished so far, whether or not this replica held the
    /// lease in them.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// The sweeps finished so far: run to the end while holding the lease
    /// (not one stopped by a store error or by another replica taking the
    /// lease).
    pub fn sweeps(&self) -> watch::Receiver<u64> {
        self.sweeps.subscribe()
    }
}

/// See the module documentation.
pub struct Watchdog {
    state: AppState,
    config: WatchdogConfig,
    /// This replica's name on the lease.
    holder: String,
    progress: Progress,
}

impl Watchdog {
    /// A watchdog for the application `state` belongs to, with a holder
    /// name of its own.
    pub fn new(state: AppState, config: WatchdogConfig) -> Self {
        Self {
            state,
            config,
            holder: format!("gdpr-intake-{}", Uuid::new_v4()),
            progress: Progress::default(),
        }
    }

    /// Counts its rounds and sweeps in `progress` (made before the
    /// watchdog, so that receivers exist before it runs).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Its rounds and sweeps so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// This replica's name on the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long a lease taken now lasts: half an interval.
    fn lease_ttl(&self) -> SignedDuration {
        SignedDuration::try_from(lease_ttl(self.config.interval))
            .unwrap_or(SignedDuration::from_secs(30))
    }

    /// Takes or renews the lease; whether this replica holds it.
    async fn hold_lease(&self) -> Result<bool, StoreError> {
        self.state
            .store
            .acquire_lease(
                LEASE_NAME,
                &self.holder,
                self.state.clock.now(),
                self.lease_ttl(),
            )
            .await
    }

    /// Four times per interval (the first a quarter of an interval after
    /// the start), takes or renews the lease; holding it, sweeps if it took
    /// the lease just now or its last sweep began an interval ago or more.
    /// Until `stop` resolves, which also ends a sweep half-way. Then gives
    /// the lease up.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        // A zero period would make the timer panic; the configuration
        // refuses it, this is only a guard.
        let interval = self.config.interval.max(Duration::from_millis(4));
        let tick = lease_tick(interval);
        let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // When this replica's current tenure began its last sweep.
        let mut last_sweep: Option<Instant> = None;
        tokio::pin!(stop);
        loop {
            let now = tokio::select! {
                biased;
                () = &mut stop => break,
                at = ticks.tick() => at,
            };
            let round = async {
                match self.hold_lease().await {
                    Ok(true) => {
                        if last_sweep.is_none_or(|at| now - at >= interval) {
                            last_sweep = Some(now);
                            match self.sweep().await {
                                Ok(true) => self.progress.sweeps.send_modify(|n| *n += 1),
                                Ok(false) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "the SLA sweep failed; retrying at the next interval");
                                }
                            }
                        }
                    }
                    Ok(false) => last_sweep = None,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the SLA watchdog lease");
                    }
                }
            };
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = round => {}
            }
            self.progress.rounds.send_modify(|n| *n += 1);
        }
        if let Err(e) = self
            .state
            .store
            .release_lease(LEASE_NAME, &self.holder)
            .await
        {
            tracing::warn!(error = %e, "cannot give up the SLA watchdog lease; it lapses by itself");
        }
    }

    #[tracing::instrument(
        name = "dsr.sla.check",
        skip_all,
        fields(
            dsr.sla.holder = %self.holder,
            dsr.sla.expired = Empty,
            dsr.sla.requests_at_risk = Empty,
            dsr.sla.requests_breached = Empty,
            dsr.sla.tasks_at_risk = Empty,
            dsr.sla.tasks_breached = Empty,
            dsr.sla.complete = Empty,
        )
    )]
    /// One sweep, by the holder of the lease, which it renews between
    /// pages: consent windows, then requests, then tasks. Whether it went
    /// to the end (not if another replica took the lease half-way).
    async fn sweep(&self) -> Result<bool, StoreError> {
        let mut found = Sweep::default();
        let outcome = self.sweep_into(&mut found).await;
        let span = tracing::Span::current();
        span.record("dsr.sla.expired", found.expired);
        span.record("dsr.sla.requests_at_risk", found.requests_at_risk);
        span.record("dsr.sla.requests_breached", found.requests_breached);
        span.record("dsr.sla.tasks_at_risk", found.tasks_at_risk);
        span.record("dsr.sla.tasks_breached", found.tasks_breached);
        span.record("dsr.sla.complete", outcome.is_ok());
        match outcome {
            Ok(()) => Ok(true),
            Err(Stop::LeaseLost) => {
                tracing::info!("another replica took the SLA watchdog lease; stopping this sweep");
                Ok(false)
            }
            Err(Stop::Store(e)) => Err(e),
        }
    }

    /// Before a further page of a sweep: renews the lease, and stops if
    /// another replica holds it now (this one was too slow).
    async fn keep_going(&self) -> Result<(), Stop> {
        if !self.hold_lease().await? {
            return Err(Stop::LeaseLost);
        }
        Ok(())
    }

    async fn sweep_into(&self, found: &mut Sweep) -> Result<(), Stop> {
        let now = self.state.clock.now();
        self.expire_consents(found, now).await?;
        self.check_requests(found, now).await?;
        self.check_tasks(found, now).await?;
        match self.config.retention {
            Some(retention) => self.purge_closed(retention, now).await,
            None => Ok(()),
        }
    }

    /// Removes the personal data of the requests closed `retention` ago or
    /// longer, each with its `purged` event, in a span of its own that
    /// counts them. The log line names no request, let alone a person.
    async fn purge_closed(&self, retention: SignedDuration, now: Timestamp) -> Result<(), Stop> {
        let span = tracing::info_span!(
            "dsr.retention.purge",
            dsr.retention.purged = Empty,
            dsr.retention.complete = Empty,
        );
        let mut purged = 0;
        let outcome = self
            .purge_pages(retention, now, &mut purged)
            .instrument(span.clone())
            .await;
        span.record("dsr.retention.purged", purged);
        span.record("dsr.retention.complete", outcome.is_ok());
        if purged > 0 {
            self.state.metrics.requests_purged(purged);
            span.in_scope(|| {
                tracing::info!(
                    dsr.retention.purged = purged,
                    "removed the personal data of closed requests past the retention period"
                );
            });
        }
        outcome
    }

    async fn purge_pages(
        &self,
        retention: SignedDuration,
        now: Timestamp,
        purged: &mut u64,
    ) -> Result<(), Stop> {
        let closed_by = retention::closed_by(now, retention);
        let mut after: Option<SweepCursor> = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .store
                .purge_due(closed_by, after.as_ref(), PAGE)
                .await?;
            for request in &page {
                if retention::purge_due(request, retention, now)
                    && self.state.store.purge_request(request, now).await?
                {
                    *purged += 1;
                }
            }
            after = next_page(&page, |r| (r.close_time.unwrap_or(closed_by), r.id));
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Moves the requests that waited for a guardian past the consent
    /// window to expired, each with its event.
    async fn expire_consents(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let window = self.config.thresholds.consent_window;
        let received_before = now.saturating_sub(window.abs()).unwrap_or(now);
        let mut after: Option<SweepCursor> = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .store
                .awaiting_consent_since(received_before, after.as_ref(), PAGE)
                .await?;
            for request in &page {
                if !sla::consent_expired(request, now, window) {
                    continue;
                }
                let mut expired = request.clone();
                let Ok(event) = expired.expire(now) else {
                    continue;
                };
                let mut effects = Effects::event(event);
                effects.cancel_open_tasks = expired.state.is_final();
                match self
                    .state
                    .store
                    .update_request(&expired, request.version, &effects)
                    .await
                {
                    Ok(()) => {
                        found.expired += 1;
                        self.state.metrics.request_expired();
                        report_request(&expired, None, now);
                    }
                    // Changed meanwhile (the consent arrived): decided again
                    // at the next sweep.
                    Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            after = next_page(&page, |r| (r.received_at, r.id));
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Reports the open requests at risk of missing their deadline or past
    /// it, each finding once.
    async fn check_requests(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let at_risk = self.config.thresholds.request_at_risk;
        let due_by = now.saturating_add(at_risk.abs()).unwrap_or(Timestamp::MAX);
        let mut after: Option<SweepCursor> = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .store
                .sla_requests(due_by, after.as_ref(), PAGE)
                .await?;
            for request in &page {
                let Some(finding) =
                    sla::request_finding(request.due_time, request.sla, now, at_risk)
                else {
                    continue;
                };
                if !self
                    .state
                    .store
                    .record_request_finding(request, finding, now)
                    .await?
                {
                    continue;
                }
                match finding {
                    Finding::AtRisk => found.requests_at_risk += 1,
                    Finding::Breached => found.requests_breached += 1,
                }
                self.count(finding, SlaItem::Request);
                report_request(request, Some(finding), now);
            }
            after = next_page(&page, |r| (r.due_time, r.id));
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Reports the open tasks at risk of missing their due time (in working
    /// hours on the controller's calendar) or past it, each finding once.
    async fn check_tasks(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let hours = self.config.thresholds.task_at_risk_working_hours;
        let due_by = sla::task_scan_horizon(now, hours);
        let mut requests: HashMap<Uuid, DataSubjectRequest> = HashMap::new();
        let mut after: Option<SweepCursor> = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .store
                .sla_tasks(due_by, after.as_ref(), PAGE)
                .await?;
            for task in &page {
                let Some(request) = self.request_of(&mut requests, task).await? else {
                    continue;
                };
                let calendar = self
                    .state
                    .work_calendar(&request.controller_id, &request.subject.jurisdiction);
                let Some(finding) =
                    sla::task_finding(calendar, task.due_time, task.sla, now, hours)
                else {
                    continue;
                };
                if !self
                    .state
                    .store
                    .record_task_finding(task, finding, now)
                    .await?
                {
                    continue;
                }
                match finding {
                    Finding::AtRisk => found.tasks_at_risk += 1,
                    Finding::Breached => found.tasks_breached += 1,
                }
                self.count(finding, SlaItem::Task);
                report_task(request, task, finding, now);
            }
            after = next_page(&page, |r| (r.due_time, r.id));
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// The request of `task`, read once per sweep.
    async fn request_of<'a>(
        &self,
        cache: &'a mut HashMap<Uuid, DataSubjectRequest>,
        task: &Task,
    ) -> Result<Option<&'a DataSubjectRequest>, StoreError> {
        match cache.entry(task.request) {
            Entry::Occupied(known) => Ok(Some(known.into_mut())),
            Entry::Vacant(slot) => Ok(self
                .state
                .store
                .get_request(&task.controller_id, task.request)
                .await?
                // The foreign key makes `None` impossible; skip rather
                // than stop.
                .map(|request| &*slot.insert(request))),
        }
    }

    fn count(&self, finding: Finding, item: SlaItem) {
        match finding {
            Finding::AtRisk => self.state.metrics.sla_at_risk(item),
            Finding::Breached => self.state.metrics.sla_breached(item),
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
