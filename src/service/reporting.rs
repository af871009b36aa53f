//! The compliance report: who may see which controller's, the period's
//! checks, and the figures ([`crate::store::report`]), per group and in
//! total. Serves `GetComplianceReport` and `gdpr-intake report` alike.

use jiff::civil::Date;
use jiff::{Timestamp, tz::TimeZone};

use super::{AppState, ServiceError};
use crate::auth::{Caller, Role};
use crate::domain::input::Violations;
use crate::domain::jurisdiction::Regime;
use crate::store::Store;
use crate::store::report::ReportQuery;
pub use crate::store::report::{Grouping, ReportRow};

/// Longest period a report covers, in days: ten years.
pub const MAX_PERIOD_DAYS: i64 = 3660;

/// What a report is asked for, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    /// First and last day (UTC), both included.
    pub start: Date,
    pub end: Date,
    pub regime: Option<Regime>,
    /// The controller named (admins must; others may name their own).
    pub controller_id: Option<String>,
    /// Per request type or per CCPA category.
    pub ccpa_7102: bool,
}

/// The figures: one row per group present, and the total.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub rows: Vec<ReportRow>,
    pub total: ReportRow,
    pub report_time: Timestamp,
}

impl AppState {
    /// `request`'s report for `caller`: their own tenant's, or, for an
    /// admin, the controller named.
    pub async fn compliance_report(
        &self,
        caller: &Caller,
        request: ReportRequest,
    ) -> Result<Report, ServiceError> {
        let controller = match (caller.role, request.controller_id.as_deref()) {
            (Role::Admin, Some(c)) if !c.is_empty() => c.to_owned(),
            (Role::Admin, _) => {
                let mut v = Violations::default();
                v.add(
                    "controller_id",
                    "required for an admin: the controller reported on",
                );
                return Err(v.into_vec().into());
            }
            (_, Some(c)) if !c.is_empty() && c != caller.tenant => {
                return Err(ServiceError::NotFound("controller"));
            }
            _ => caller.tenant.clone(),
        };
        report(
            self.store.as_ref(),
            Some(controller),
            &request,
            self.clock.now(),
        )
        .await
    }
}

/// The report of `controller` (every controller's if `None`) for
/// `request`, as of `now`.
pub async fn report(
    store: &dyn Store,
    controller: Option<String>,
    request: &ReportRequest,
    now: Timestamp,
) -> Result<Report, ServiceError> {
    let mut v = Violations::default();
    if request.end < request.start {
        v.add("end_date", "must be on or after start_date");
    } else if (request.end - request.start).get_days() > MAX_PERIOD_DAYS as i32 {
        v.add(
            "end_date",
            format!("at most {MAX_PERIOD_DAYS} days after start_date"),
        );
    }
    let day_start =
        |d: Date| TimeZone::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()));
    let (from, until) = match (
        day_start(request.start),
        request.end.tomorrow().and_then(day_start),
    ) {
        (Ok(from), Ok(until)) => (from, until),
        _ => {
            v.add("end_date", "out of the supported range");
            (now, now)
        }
    };
    if !v.is_empty() {
        return Err(v.into_vec().into());
    }
    let grouping = if request.ccpa_7102 {
        Grouping::Ccpa7102
    } else {
        Grouping::RequestType
    };
    let query = |grouping| ReportQuery {
        controller_id: controller.clone(),
        from,
        until,
        regime: request.regime,
        grouping,
        now,
    };
    let rows = store.compliance_report(&query(grouping)).await?;
    let total = store
        .compliance_report(&query(Grouping::Total))
        .await?
        .pop()
        .unwrap_or_else(|| ReportRow {
            group: "total".to_owned(),
            ..ReportRow::default()
        });
    Ok(Report {
        rows,
        total,
        report_time: now,
    })
}

/// The columns of [`to_csv`], in order.
const CSV_COLUMNS: [&str; 19] = [
    "group",
    "received",
    "completed",
    "refused",
    "refused_manifestly_unfounded",
    "refused_excessive",
    "refused_identity_not_verified",
    "refused_legal_exemption",
    "refused_other",
    "cancelled",
    "expired",
    "duplicates",
    "closed_within_deadline",
    "closed_within_deadline_percent",
    "median_days_to_close",
    "mean_days_to_close",
    "extensions_granted",
    "open_now",
    "overdue_now",
];

/// A field as CSV writes it (RFC 4180): quoted when it holds a comma, a
/// quote or a line break, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn decimal(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.2}")).unwrap_or_default()
}

/// The report as CSV: a header, one line per group, the total last; CRLF
/// line ends, as spreadsheets expect.
pub fn to_csv(report: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for row in report.rows.iter().chain([&report.total]) {
        let reason = |r: &str| {
            row.refused_by_reason
                .get(r)
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        let fields = [
            csv_field(&row.group),
            row.received.to_string(),
            row.completed.to_string(),
            row.refused.to_string(),
            reason("manifestly_unfounded"),
            reason("excessive"),
            reason("identity_not_verified"),
            reason("legal_exemption"),
            reason("other"),
            row.cancelled.to_string(),
            row.expired.to_string(),
            row.duplicates.to_string(),
            row.closed_within_deadline.to_string(),
            decimal(row.within_deadline_percent()),
            decimal(row.median_days_to_close),
            decimal(row.mean_days_to_close),
            row.extensions_granted.to_string(),
            row.open_now.to_string(),
            row.overdue_now.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One row as JSON.
pub fn row_json(row: &ReportRow) -> serde_json::Value {
    serde_json::json!({
        "group": row.group,
        "received": row.received,
        "completed": row.completed,
        "refused": row.refused,
        "refused_by_reason": row.refused_by_reason,
        "cancelled": row.cancelled,
        "expired": row.expired,
        "duplicates": row.duplicates,
        "closed_within_deadline": row.closed_within_deadline,
        "closed_within_deadline_percent": row.within_deadline_percent(),
        "median_days_to_close": row.median_days_to_close,
        "mean_days_to_close": row.mean_days_to_close,
        "extensions_granted": row.extensions_granted,
        "open_now": row.open_now,
        "overdue_now": row.overdue_now,
    })
}

/// The report as JSON: its rows, the total, and when it was computed.
pub fn to_json(report: &Report, request: &ReportRequest) -> serde_json::Value {
    serde_json::json!({
        "start_date": request.start.to_string(),
        "end_date": request.end.to_string(),
        "regime": request.regime.map(Regime::as_str),
        "layout": if request.ccpa_7102 { "ccpa_7102" } else { "request_type" },
        "report_time": report.report_time.to_string(),
        "rows": report.rows.iter().map(row_json).collect::<Vec<_>>(),
        "total": row_json(&report.total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("to know"), "to know");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let report = Report {
            rows: vec![ReportRow {
                group: "access".to_owned(),
                received: 2,
                completed: 1,
                closed_within_deadline: 1,
                median_days_to_close: Some(3.0),
                mean_days_to_close: Some(3.0),
                ..ReportRow::default()
            }],
            total: ReportRow {
                group: "total".to_owned(),
                ..ReportRow::default()
            },
            report_time: Timestamp::UNIX_EPOCH,
        };
        let csv = to_csv(&report);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0].split(',').count(), CSV_COLUMNS.len());
        assert_eq!(
            lines[1],
            "access,2,1,0,0,0,0,0,0,0,0,0,1,100.00,3.00,3.00,0,0,0"
        );
        assert_eq!(lines[2], "total,0,0,0,0,0,0,0,0,0,0,0,0,,,,0,0,0");
    }
}
