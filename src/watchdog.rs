//! The SLA watchdog: a background loop that, every `--sla-check-interval`,
//! expires the requests whose guardian never consented within the consent
//! window, and reports open requests and tasks at risk of missing their
//! deadline and past it — each finding once, on the request's audit trail,
//! as a span event linked to the call that submitted the request, and in
//! the `gdpr.dsr.sla.*` counters. The decisions are the domain's
//! ([`crate::domain::sla`]); each step (read a page of candidates, ask,
//! record, report) is the service's ([`crate::service::sweep`]); this
//! module decides when to sweep and holds the lease.
//!
//! One replica at a time sweeps: the one holding the `sla-watchdog` lease
//! in the database ([`AppState::hold_lease`]).
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
//! Each sweep ends with the data key's re-seal (see
//! [`crate::store::keys`]): on the replica whose primary is the newest,
//! personal data sealed with older keys is sealed again with it, a page per
//! transaction, the lease renewed between pages.
//!
//! Each sweep's end is counted by outcome, and a complete one sets the
//! last-sweep time; whether this replica holds the lease is a gauge too
//! (see `telemetry/metrics/gauges.rs`): what the "no sweep" alert reads.
//!
//! Time comes from the application's clock, so tests move it by hand.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use crate::domain::sla::Thresholds;
use crate::service::{AppState, Resealed, ServiceError};
use crate::telemetry::SweepOutcome;

/// The lease that makes one replica the sweeper.
pub const LEASE_NAME: &str = "sla-watchdog";
/// How often the watchdog looks, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

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

/// Pages of the re-seal one sweep writes at most: 10,000 requests, so that
/// a rotation of a large table does not hold the SLA checks back.
pub const RESEAL_PAGES_PER_SWEEP: u32 = 100;

/// A pass of the re-seal over the requests, by id, across sweeps.
#[derive(Clone, Copy, Debug, Default)]
struct ResealPass {
    /// Where the next page starts; `None`: a new pass.
    after: Option<Uuid>,
    /// Requests found under another key in this pass so far.
    candidates: u64,
    /// The last whole pass found none.
    clean: bool,
}

/// Why a sweep stopped before the end.
enum Stop {
    /// Another replica holds the lease now.
    LeaseLost,
    Service(ServiceError),
}

impl From<ServiceError> for Stop {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
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
    /// Where the re-seal's pass stands between sweeps.
    reseal_pass: Mutex<ResealPass>,
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
            reseal_pass: Mutex::new(ResealPass::default()),
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
    async fn hold_lease(&self) -> Result<bool, ServiceError> {
        self.state
            .hold_lease(LEASE_NAME, &self.holder, self.lease_ttl())
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
                let held = self.hold_lease().await;
                self.state.metrics.set_lease_held(matches!(held, Ok(true)));
                match held {
                    Ok(true) => {
                        if last_sweep.is_none_or(|at| now - at >= interval) {
                            last_sweep = Some(now);
                            let outcome = match self.sweep().await {
                                Ok(true) => SweepOutcome::Complete,
                                Ok(false) => SweepOutcome::LeaseLost,
                                Err(e) => {
                                    tracing::warn!(error = %e, "the SLA sweep failed; retrying at the next interval");
                                    SweepOutcome::Failed
                                }
                            };
                            // Counted before the sweep is announced, so that
                            // whoever waits for it reads its metrics too.
                            self.state
                                .metrics
                                .sweep_ended(outcome, self.state.clock.now());
                            if outcome == SweepOutcome::Complete {
                                self.progress.sweeps.send_modify(|n| *n += 1);
                            }
                        }
                    }
                    Ok(false) => {
                        last_sweep = None;
                        self.reset_reseal();
                    }
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
        self.state.metrics.set_lease_held(false);
        if let Err(e) = self.state.release_lease(LEASE_NAME, &self.holder).await {
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
    async fn sweep(&self) -> Result<bool, ServiceError> {
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
            Err(Stop::Service(e)) => Err(e),
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
        self.expire_awaiting_subject(found, now).await?;
        self.check_requests(found, now).await?;
        self.check_tasks(found, now).await?;
        if let Some(retention) = self.config.retention {
            self.purge_closed(retention, now).await?;
        }
        self.reseal().await
    }

    /// Moves personal data sealed with older data keys to the primary, a
    /// page per transaction and at most [`RESEAL_PAGES_PER_SWEEP`] pages a
    /// sweep (the next sweep goes on from there), if this replica's primary
    /// is the newest; in a span of its own that counts what moved and what
    /// the ring cannot open. Names no request.
    async fn reseal(&self) -> Result<(), Stop> {
        let Some(only_key) = self.state.reseals().await? else {
            self.reset_reseal();
            return Ok(());
        };
        let mut pass = *self
            .reseal_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // With one key in use, nothing new can need moving once a whole
        // pass found nothing: the scan is skipped until another key is.
        if only_key && pass.clean {
            return Ok(());
        }
        pass.clean = false;
        let span = tracing::info_span!(
            "dsr.keys.reseal",
            dsr.keys.resealed = Empty,
            dsr.keys.unreadable = Empty,
            dsr.keys.complete = Empty,
        );
        let mut total = Resealed::default();
        let outcome = self
            .reseal_pages(&mut pass, &mut total)
            .instrument(span.clone())
            .await;
        span.record("dsr.keys.resealed", total.moved);
        span.record("dsr.keys.unreadable", total.unreadable);
        span.record("dsr.keys.complete", outcome.is_ok() && pass.after.is_none());
        // A pass is kept only while this replica sweeps without a break:
        // after another replica held the lease, it starts over.
        if matches!(outcome, Err(Stop::LeaseLost)) {
            pass = ResealPass::default();
        }
        *self
            .reseal_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pass;
        if total.moved > 0 {
            self.state.metrics.requests_resealed(total.moved);
        }
        if total.moved > 0 || total.unreadable > 0 {
            span.in_scope(|| {
                tracing::info!(
                    dsr.keys.resealed = total.moved,
                    dsr.keys.unreadable = total.unreadable,
                    "sealed personal data again with the primary data key"
                );
            });
        }
        outcome
    }

    /// Forgets where the re-seal's pass stood: it starts over when this
    /// replica next re-seals.
    fn reset_reseal(&self) {
        *self
            .reseal_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ResealPass::default();
    }

    /// Up to [`RESEAL_PAGES_PER_SWEEP`] pages of the pass, from where it
    /// stood; at the end of a pass, whether it found anything to move.
    async fn reseal_pages(&self, pass: &mut ResealPass, total: &mut Resealed) -> Result<(), Stop> {
        for n in 0..RESEAL_PAGES_PER_SWEEP {
            if n > 0 {
                self.keep_going().await?;
            }
            let page = self.state.reseal_page(pass.after).await?;
            total.moved += page.moved;
            total.unreadable += page.unreadable;
            pass.candidates += page.candidates;
            pass.after = page.next;
            if pass.after.is_none() {
                pass.clean = pass.candidates == 0;
                pass.candidates = 0;
                return Ok(());
            }
        }
        Ok(())
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
        let mut after = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .purge_past_retention(retention, now, after.as_ref())
                .await?;
            *purged += page.found;
            after = page.next;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Moves the requests that waited for a guardian past the consent
    /// window to expired, each with its event.
    async fn expire_consents(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let window = self.config.thresholds.consent_window;
        let mut after = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .expire_consents(window, now, after.as_ref())
                .await?;
            found.expired += page.found;
            after = page.next;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Moves the requests that waited for their subject past the
    /// awaiting-subject timeout to expired, each with its event.
    async fn expire_awaiting_subject(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let timeout = self.config.thresholds.awaiting_subject_timeout;
        let mut after = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .expire_awaiting_subject(timeout, now, after.as_ref())
                .await?;
            found.expired += page.found;
            after = page.next;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Reports the open requests at risk of missing their deadline or past
    /// it, each finding once.
    async fn check_requests(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let at_risk = self.config.thresholds.request_at_risk;
        let mut after = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self
                .state
                .request_findings(at_risk, now, after.as_ref())
                .await?;
            found.requests_at_risk += page.found.at_risk;
            found.requests_breached += page.found.breached;
            after = page.next;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    /// Reports the open tasks at risk of missing their due time (in working
    /// hours on the controller's calendar) or past it, each finding once.
    async fn check_tasks(&self, found: &mut Sweep, now: Timestamp) -> Result<(), Stop> {
        let hours = self.config.thresholds.task_at_risk_working_hours;
        let mut after = None;
        loop {
            if after.is_some() {
                self.keep_going().await?;
            }
            let page = self.state.task_findings(hours, now, after.as_ref()).await?;
            found.tasks_at_risk += page.found.at_risk;
            found.tasks_breached += page.found.breached;
            after = page.next;
            if after.is_none() {
                return Ok(());
            }
        }
    }
}
