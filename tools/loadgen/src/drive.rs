//! Runs calls at a fixed concurrency (closed loop) or at a fixed arrival
//! rate, and records their latencies and status codes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};
use tonic::Code;

/// Latencies are kept in microseconds: fine enough for sub-millisecond
/// echo calls, and one minute covers any call under a sane deadline.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
/// Three significant digits: percentiles within 0.1 %.
const SIGNIFICANT_DIGITS: u8 = 3;
/// tonic's codes run from 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// What one call ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: Code,
    /// Whether this code was the one the call was meant to get: OK, or the
    /// NOT_FOUND a deliberate miss provokes.
    pub expected: bool,
}

/// Something that makes one call at a time.
pub trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    After(Duration),
    Count(u64),
}

/// How to drive the calls.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Workers (closed loop), or most calls in flight (rate).
    pub concurrency: usize,
    /// Arrivals per second; `None` for a closed loop.
    pub rate: Option<f64>,
    pub stop: Stop,
}

/// The record of one run.
#[derive(Clone, Debug)]
pub struct Stats {
    pub latency_us: Histogram<u64>,
    /// With a rate: how late each call started against its schedule. Large
    /// values mean the generator (or the machine) could not keep the rate.
    pub lag_us: Option<Histogram<u64>>,
    pub codes: [u64; CODES],
    pub unexpected: u64,
    pub elapsed: Duration,
}

impl Stats {
    fn new(with_lag: bool) -> Result<Self, String> {
        Ok(Self {
            latency_us: histogram()?,
            lag_us: if with_lag { Some(histogram()?) } else { None },
            codes: [0; CODES],
            unexpected: 0,
            elapsed: Duration::ZERO,
        })
    }

    pub fn count(&self) -> u64 {
        self.codes.iter().sum()
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.latency_us.saturating_record(micros(latency));
        let index = usize::try_from(i32::from(outcome.code)).unwrap_or(CODES - 1);
        if let Some(slot) = self.codes.get_mut(index) {
            *slot += 1;
        }
        if !outcome.expected {
            self.unexpected += 1;
        }
    }

    fn merge(&mut self, other: &Stats) -> Result<(), String> {
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| format!("merging latencies: {e}"))?;
        if let (Some(mine), Some(theirs)) = (self.lag_us.as_mut(), other.lag_us.as_ref()) {
            mine.add(theirs)
                .map_err(|e| format!("merging start lags: {e}"))?;
        }
        for (mine, theirs) in self.codes.iter_mut().zip(other.codes) {
            *mine += theirs;
        }
        self.unexpected += other.unexpected;
        Ok(())
    }

    /// Calls per second over the whole run, as ghz counts them.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count() as f64 / secs
        } else {
            0.0
        }
    }

    /// Every code seen, with its count, in code order.
    pub fn code_counts(&self) -> Vec<(Code, u64)> {
        self.codes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (Code::from(i32::try_from(i).unwrap_or(2)), *n))
            .collect()
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .map_err(|e| format!("cannot create a histogram: {e}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .max(LOWEST_US)
}

/// Runs `plan` with one caller per worker from `make_caller` (given the
/// worker's index) and returns what was recorded.
pub async fn run<C, F>(plan: Plan, mut make_caller: F) -> Result<Stats, String>
where
    C: Caller,
    F: FnMut(usize) -> C,
{
    let callers: Vec<C> = (0..plan.concurrency.max(1)).map(&mut make_caller).collect();
    match plan.rate {
        None => closed_loop(plan.stop, callers).await,
        Some(rate) => fixed_rate(rate, plan.stop, callers).await,
    }
}

async fn closed_loop<C: Caller>(stop: Stop, callers: Vec<C>) -> Result<Stats, String> {
    let started = Instant::now();
    let deadline = match stop {
        Stop::After(d) => Some(started + d),
        Stop::Count(_) => None,
    };
    let budget = match stop {
        Stop::Count(n) => Some(n),
        Stop::After(_) => None,
    };
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(callers.len());
    for mut caller in callers {
        let issued = Arc::clone(&issued);
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new(false)?;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget.is_some_and(|n| issued.fetch_add(1, Ordering::Relaxed) >= n) {
                    break;
                }
                let start = Instant::now();
                let outcome = caller.call().await;
                stats.record(start.elapsed(), outcome);
            }
            Ok::<_, String>(stats)
        }));
    }
    gather(workers, started, false).await
}

async fn fixed_rate<C: Caller>(rate: f64, stop: Stop, callers: Vec<C>) -> Result<Stats, String> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    // Workers take scheduled start times from one queue. The queue is
    // unbounded so the schedule never waits for busy workers: a call that
    // cannot start on time starts late, and its lag is recorded.
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(callers.len());
    for mut caller in callers {
        let rx = Arc::clone(&rx);
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new(true)?;
            loop {
                let scheduled = {
                    let mut queue = rx.lock().await;
                    queue.recv().await
                };
                let Some(scheduled) = scheduled else { break };
                let start = Instant::now();
                if let Some(lag) = stats.lag_us.as_mut() {
                    lag.saturating_record(micros(start.saturating_duration_since(scheduled)));
                }
                let outcome = caller.call().await;
                stats.record(start.elapsed(), outcome);
            }
            Ok::<_, String>(stats)
        }));
    }

    let mut n: u64 = 0;
    loop {
        // Absolute times, so timer granularity delays a tick but never
        // lowers the average rate.
        let at = started + interval.mul_f64(n as f64);
        let done = match stop {
            Stop::After(d) => at >= started + d,
            Stop::Count(total) => n >= total,
        };
        if done {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        if tx.send(at).is_err() {
            break;
        }
        n += 1;
    }
    drop(tx);
    gather(workers, started, true).await
}

async fn gather(
    workers: Vec<tokio::task::JoinHandle<Result<Stats, String>>>,
    started: Instant,
    with_lag: bool,
) -> Result<Stats, String> {
    let mut total = Stats::new(with_lag)?;
    for worker in workers {
        let stats = worker
            .await
            .map_err(|e| format!("a load worker failed: {e}"))??;
        total.merge(&stats)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed pause; every `miss_every`-th call is a
    /// deliberate miss that gets NOT_FOUND, and `fail_every` calls fail.
    struct Fake {
        pause: Duration,
        n: u64,
        fail_every: u64,
    }

    impl Caller for Fake {
        async fn call(&mut self) -> Outcome {
            tokio::time::sleep(self.pause).await;
            self.n += 1;
            if self.fail_every > 0 && self.n.is_multiple_of(self.fail_every) {
                Outcome {
                    code: Code::Unavailable,
                    expected: false,
                }
            } else {
                Outcome {
                    code: Code::Ok,
                    expected: true,
                }
            }
        }
    }

    fn fake(fail_every: u64) -> impl FnMut(usize) -> Fake {
        move |_| Fake {
            pause: Duration::from_millis(2),
            n: 0,
            fail_every,
        }
    }

    #[tokio::test]
    async fn a_count_is_exact_across_workers() {
        let plan = Plan {
            concurrency: 4,
            rate: None,
            stop: Stop::Count(101),
        };
        let stats = run(plan, fake(0)).await.unwrap();
        assert_eq!(stats.count(), 101);
        assert_eq!(stats.unexpected, 0);
        assert_eq!(stats.code_counts(), vec![(Code::Ok, 101)]);
        assert!(
            stats.latency_us.min() >= 2_000,
            "{}",
            stats.latency_us.min()
        );
    }

    #[tokio::test]
    async fn failures_are_counted_by_code() {
        let plan = Plan {
            concurrency: 1,
            rate: None,
            stop: Stop::Count(10),
        };
        let stats = run(plan, fake(5)).await.unwrap();
        assert_eq!(
            stats.code_counts(),
            vec![(Code::Ok, 8), (Code::Unavailable, 2)]
        );
        assert_eq!(stats.unexpected, 2);
    }

    #[tokio::test]
    async fn a_rate_is_kept_and_its_lag_recorded() {
        let plan = Plan {
            concurrency: 8,
            rate: Some(500.0),
            stop: Stop::After(Duration::from_millis(400)),
        };
        let stats = run(plan, fake(0)).await.unwrap();
        // 500/s for 0.4 s: 200 calls scheduled, every one of them made.
        assert_eq!(stats.count(), 200);
        let lag = stats.lag_us.expect("a rate records lag");
        assert_eq!(lag.len(), 200);
        // The whole run lasts the schedule plus the last call.
        assert!(
            stats.elapsed >= Duration::from_millis(398),
            "{:?}",
            stats.elapsed
        );
        assert!(
            stats.elapsed < Duration::from_millis(1500),
            "{:?}",
            stats.elapsed
        );
    }

    #[tokio::test]
    async fn a_duration_stops_a_closed_loop() {
        let plan = Plan {
            concurrency: 2,
            rate: None,
            stop: Stop::After(Duration::from_millis(100)),
        };
        let stats = run(plan, fake(0)).await.unwrap();
        assert!(stats.count() > 10, "{}", stats.count());
        assert!(stats.elapsed < Duration::from_millis(500));
        assert!(stats.rps() > 0.0);
    }
}
