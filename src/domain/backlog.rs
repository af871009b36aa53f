//! The backlog as plain figures: open requests by state and by how close
//! their deadline is, and each processor's open tasks. The store counts
//! them (across every controller) and the telemetry turns them into
//! gauges; nothing here names a request, a controller or a subject.

use jiff::{SignedDuration, Timestamp};

use super::request::State;

/// The "due soon" window of the dashboards: open requests due within a
/// week, whatever the at-risk threshold is set to.
pub const DUE_SOON: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Open requests by how close their deadline (the one in force) is, at one
/// instant. The windows overlap: a request due tomorrow is both at risk
/// (with the default threshold) and due soon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadlineCounts {
    /// Past their deadline and still open.
    pub overdue: u64,
    /// Not yet past it, but within the at-risk threshold of it.
    pub at_risk: u64,
    /// Not yet past it, but within [`DUE_SOON`] of it.
    pub due_soon: u64,
}

/// One processor's open tasks (pending or leased), at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorBacklog {
    pub processor_id: String,
    /// Waiting to be claimed.
    pub pending: u64,
    /// Claimed under a lease.
    pub leased: u64,
    /// Open and past their due time.
    pub overdue: u64,
    /// When the oldest open task was created; `None` without one.
    pub oldest_create_time: Option<Timestamp>,
}

impl ProcessorBacklog {
    /// How long the oldest open task has waited at `now`: zero without
    /// one (or with a clock behind the store's).
    pub fn oldest_age(&self, now: Timestamp) -> SignedDuration {
        self.oldest_create_time
            .map(|created| now.duration_since(created))
            .filter(SignedDuration::is_positive)
            .unwrap_or(SignedDuration::ZERO)
    }
}

/// Everything the backlog gauges show, counted at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// The instant the figures are for.
    pub at: Timestamp,
    /// Open requests per open state; states with none may be left out.
    pub open_by_state: Vec<(State, u64)>,
    pub deadlines: DeadlineCounts,
    /// Every registered processor, those without open tasks included.
    pub processors: Vec<ProcessorBacklog>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid")
    }

    fn processor(oldest: Option<&str>) -> ProcessorBacklog {
        ProcessorBacklog {
            processor_id: "mailer".to_owned(),
            pending: 1,
            leased: 0,
            overdue: 0,
            oldest_create_time: oldest.map(at),
        }
    }

    #[test]
    fn oldest_age_is_the_wait_of_the_oldest_open_task() {
        let now = at("2026-03-09T10:00:00Z");
        assert_eq!(
            processor(Some("2026-03-09T08:30:00Z")).oldest_age(now),
            SignedDuration::from_mins(90)
        );
    }

    #[test]
    fn oldest_age_is_zero_without_open_tasks_or_with_a_clock_behind() {
        let now = at("2026-03-09T10:00:00Z");
        assert_eq!(processor(None).oldest_age(now), SignedDuration::ZERO);
        assert_eq!(
            processor(Some("2026-03-09T10:00:05Z")).oldest_age(now),
            SignedDuration::ZERO
        );
    }
}
