//! Where time comes from. Handlers and loops ask a [`Clock`], so tests can
//! set the time exactly instead of sleeping.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // Stored timestamps have microsecond precision; handing out the same
        // precision keeps a value equal to itself after a round trip.
        to_stored_precision(Timestamp::now())
    }
}

/// `t` as the store keeps it: times are stored as whole microseconds since
/// the Unix epoch, so anything finer is dropped (towards zero). Pass times
/// through this before building a request or an event from a clock with
/// finer precision, so that what a call returns equals what a later read
/// returns. Here, below the store, so the clock needs nothing above it;
/// the store re-exports it.
pub fn to_stored_precision(t: Timestamp) -> Timestamp {
    // Cannot fail: the microseconds of a valid timestamp are a valid one.
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, t: Timestamp) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = t.saturating_add(by).unwrap_or(*t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // A std Mutex is right here: the critical section is a copy, never
        // held across an await.
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
