//! The compliance report's figures, computed in the database: counts,
//! on-time closings, the days to close summed for the mean and the middle
//! one or two found for the median (window functions, the same SQL on both
//! backends; only the last division is left to the caller), per request type or per CCPA category, over
//! the requests received in a period. Nothing is loaded but the figures.
//!
//! The cohort is the requests received from the start of `from` to the
//! end of `to` (UTC days). "Closed" means completed or refused; days to
//! close are whole UTC calendar days from the day of receipt to the day of
//! closing. "Open now" and "overdue now" are as of the report's `now`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::Timestamp;

use crate::domain::jurisdiction::Regime;

/// How the rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// One row per request type (`access`, `erasure`, …).
    RequestType,
    /// One row per category of 11 CCR §7102(a): to know (access,
    /// portability), to delete (erasure), to correct (rectification), to
    /// opt out (objection, withdrawal of consent), to limit (restriction).
    Ccpa7102,
    /// One row, `total`, over every request of the cohort.
    Total,
}

impl Grouping {
    fn expression(self) -> &'static str {
        match self {
            Self::RequestType => "CAST(request_type AS TEXT)",
            Self::Ccpa7102 => {
                "CASE CAST(request_type AS TEXT) \
                 WHEN 'access' THEN 'to know' WHEN 'portability' THEN 'to know' \
                 WHEN 'erasure' THEN 'to delete' WHEN 'rectification' THEN 'to correct' \
                 WHEN 'objection' THEN 'to opt out' WHEN 'withdraw_consent' THEN 'to opt out' \
                 WHEN 'restriction' THEN 'to limit' ELSE 'other' END"
            }
            Self::Total => "'total'",
        }
    }
}

/// What a report covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportQuery {
    /// One controller's requests, or every controller's.
    pub controller_id: Option<String>,
    /// Received at or after this instant…
    pub from: Timestamp,
    /// …and before this one.
    pub until: Timestamp,
    /// One regime's requests, or all.
    pub regime: Option<Regime>,
    pub grouping: Grouping,
    /// What "open now" and "overdue now" are measured at.
    pub now: Timestamp,
}

/// One row of figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportRow {
    /// The request type, the CCPA category, or `total`.
    pub group: String,
    pub received: i64,
    pub completed: i64,
    pub refused: i64,
    /// Refused requests by refusal reason.
    pub refused_by_reason: BTreeMap<String, i64>,
    pub cancelled: i64,
    pub expired: i64,
    pub duplicates: i64,
    /// Completed or refused at or before the deadline in force.
    pub closed_within_deadline: i64,
    /// Median whole days from receipt to closing (`None`: none closed).
    pub median_days_to_close: Option<f64>,
    pub mean_days_to_close: Option<f64>,
    /// Requests whose deadline was extended.
    pub extensions_granted: i64,
    pub open_now: i64,
    /// Open now and past their deadline.
    pub overdue_now: i64,
}

impl ReportRow {
    /// Completed or refused.
    pub fn closed(&self) -> i64 {
        self.completed + self.refused
    }

    /// The share of closed requests closed within the deadline, in percent
    /// (`None`: none closed).
    pub fn within_deadline_percent(&self) -> Option<f64> {
        (self.closed() > 0)
            .then(|| 100.0 * self.closed_within_deadline as f64 / self.closed() as f64)
    }
}

const OPEN: &str = "('awaiting_guardian_consent', 'in_progress', 'needs_attention', \
         'awaiting_identity_verification', 'awaiting_clarification')";
const CLOSED: &str = "('completed', 'refused')";
/// Microseconds in a day: stored times divided by it are UTC day numbers.
const DAY: &str = "86400000000";

/// The statements of a report, by grouping and by whether one controller
/// is asked for. Placeholders: `$1` controller id (unused for every
/// controller), `$2` from, `$3` until, `$4` regime (`''` for all), `$5`
/// now (counts only).
pub(super) struct ReportSql {
    pub counts: String,
    pub median: String,
    pub refused: String,
}

fn build(grouping: Grouping, one_controller: bool) -> ReportSql {
    let group = grouping.expression();
    let tenant = if one_controller {
        "controller_id = $1"
    } else {
        "$1 = $1"
    };
    let filter = format!(
        "{tenant} AND received_at >= $2 AND received_at < $3 \
         AND ($4 = '' OR CAST(regime AS TEXT) = $4)"
    );
    let state = "CAST(state AS TEXT)";
    let days = format!("close_time / {DAY} - received_at / {DAY}");
    let count = |condition: &str| format!("SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)");
    let counts = format!(
        "SELECT {group} AS grp, COUNT(*), {completed}, {refused}, {cancelled}, {expired}, \
         {duplicates}, {on_time}, {extended}, {open}, {overdue}, \
         CAST(SUM(CASE WHEN {state} IN {CLOSED} THEN {days} ELSE 0 END) AS BIGINT) \
         FROM data_subject_requests WHERE {filter} GROUP BY 1 ORDER BY 1",
        completed = count(&format!("{state} = 'completed'")),
        refused = count(&format!("{state} = 'refused'")),
        cancelled = count(&format!("{state} = 'cancelled'")),
        expired = count(&format!("{state} = 'expired'")),
        duplicates = count(&format!("{state} = 'duplicate'")),
        on_time = count(&format!("{state} IN {CLOSED} AND close_time <= due_time")),
        extended = count("extension_time IS NOT NULL"),
        open = count(&format!("{state} IN {OPEN}")),
        overdue = count(&format!("{state} IN {OPEN} AND due_time < $5")),
    );
    let median = format!(
        "WITH closed AS (SELECT {group} AS grp, {days} AS days FROM data_subject_requests \
         WHERE {filter} AND {state} IN {CLOSED}), \
         ranked AS (SELECT grp, days, \
         ROW_NUMBER() OVER (PARTITION BY grp ORDER BY days) AS rn, \
         COUNT(*) OVER (PARTITION BY grp) AS n FROM closed) \
         SELECT grp, CAST(SUM(days) AS BIGINT), COUNT(*) FROM ranked \
         WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2 GROUP BY grp ORDER BY grp"
    );
    let refused = format!(
        "SELECT {group} AS grp, COALESCE(CAST(closure_refusal_reason AS TEXT), 'unspecified'), \
         COUNT(*) FROM data_subject_requests WHERE {filter} AND {state} = 'refused' \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    ReportSql {
        counts,
        median,
        refused,
    }
}

static STATEMENTS: LazyLock<Vec<((Grouping, bool), ReportSql)>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for grouping in [Grouping::RequestType, Grouping::Ccpa7102, Grouping::Total] {
        for one in [true, false] {
            all.push(((grouping, one), build(grouping, one)));
        }
    }
    all
});

/// The statements for `query`.
pub(super) fn statements(query: &ReportQuery) -> &'static ReportSql {
    let key = (query.grouping, query.controller_id.is_some());
    // Every combination is built above.
    &STATEMENTS
        .iter()
        .find(|(k, _)| *k == key)
        .unwrap_or(&STATEMENTS[0])
        .1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination_has_its_statements() {
        for grouping in [Grouping::RequestType, Grouping::Ccpa7102, Grouping::Total] {
            for one in [None, Some("acme".to_owned())] {
                let q = ReportQuery {
                    controller_id: one.clone(),
                    from: Timestamp::UNIX_EPOCH,
                    until: Timestamp::UNIX_EPOCH,
                    regime: None,
                    grouping,
                    now: Timestamp::UNIX_EPOCH,
                };
                let sql = statements(&q);
                assert!(sql.counts.contains(grouping.expression()));
                assert_eq!(sql.counts.contains("controller_id = $1"), one.is_some());
            }
        }
    }

    #[test]
    fn the_share_on_time_counts_closed_requests_only() {
        let row = ReportRow {
            completed: 3,
            refused: 1,
            closed_within_deadline: 3,
            ..ReportRow::default()
        };
        assert_eq!(row.within_deadline_percent(), Some(75.0));
        assert_eq!(ReportRow::default().within_deadline_percent(), None);
    }
}
