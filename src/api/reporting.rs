//! `gdpr.intake.v1.ReportingService`: the compliance report. Who sees
//! which controller's, and the figures, are the service's
//! ([`crate::service::reporting`]).

use tonic::{Request, Response, Status};

use super::convert::timestamp as timestamp_to_proto;
use super::error::ApiError;
use crate::auth::Role;
use crate::domain::input::{FieldViolation, Violations};
use crate::domain::jurisdiction::Regime;
use crate::proto::v1;
use crate::proto::v1::reporting_service_server::ReportingService;
use crate::service::AppState;
use crate::service::reporting::{ReportRequest, ReportRow};

/// The handlers of the reporting service.
#[derive(Clone)]
pub struct ReportingApi {
    state: AppState,
}

impl ReportingApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A `google.type.Date` that names a whole day.
fn day(
    field: &str,
    date: Option<&crate::proto::google::r#type::Date>,
    v: &mut Violations,
) -> jiff::civil::Date {
    let parsed = date.and_then(|d| {
        let year = i16::try_from(d.year).ok()?;
        let month = i8::try_from(d.month).ok()?;
        let day = i8::try_from(d.day).ok()?;
        jiff::civil::Date::new(year, month, day).ok()
    });
    match parsed {
        Some(d) => d,
        None => {
            v.add(field, "required: a whole date (year, month and day)");
            jiff::civil::Date::ZERO
        }
    }
}

/// The request, checked.
fn parse(m: &v1::GetComplianceReportRequest) -> Result<ReportRequest, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let start = day("start_date", m.start_date.as_ref(), &mut v);
    let end = day("end_date", m.end_date.as_ref(), &mut v);
    let regime = match v1::Regime::try_from(m.regime) {
        Ok(v1::Regime::Unspecified) => None,
        Ok(v1::Regime::Gdpr) => Some(Regime::Gdpr),
        Ok(v1::Regime::Ccpa) => Some(Regime::Ccpa),
        Ok(v1::Regime::Lgpd) => Some(Regime::Lgpd),
        Err(_) => {
            v.add("regime", "not a known regime");
            None
        }
    };
    v.finish(|| ReportRequest {
        start,
        end,
        regime,
        controller_id: (!m.controller_id.is_empty()).then(|| m.controller_id.clone()),
        ccpa_7102: m.ccpa_7102,
    })
}

fn row_to_proto(row: &ReportRow) -> v1::ComplianceReportRow {
    v1::ComplianceReportRow {
        group: row.group.clone(),
        received: row.received,
        completed: row.completed,
        refused: row.refused,
        refused_by_reason: row
            .refused_by_reason
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        cancelled: row.cancelled,
        expired: row.expired,
        duplicates: row.duplicates,
        closed_within_deadline: row.closed_within_deadline,
        closed_within_deadline_percent: row.within_deadline_percent(),
        median_days_to_close: row.median_days_to_close,
        mean_days_to_close: row.mean_days_to_close,
        extensions_granted: row.extensions_granted,
        open_now: row.open_now,
        overdue_now: row.overdue_now,
    }
}

#[tonic::async_trait]
impl ReportingService for ReportingApi {
    async fn get_compliance_report(
        &self,
        request: Request<v1::GetComplianceReportRequest>,
    ) -> Result<Response<v1::GetComplianceReportResponse>, Status> {
        let caller = self
            .state
            .authorize(
                request.metadata(),
                &[Role::Controller, Role::Auditor, Role::Admin],
            )
            .map_err(ApiError::from)?;
        let asked = parse(request.get_ref()).map_err(ApiError::from)?;
        let report = self
            .state
            .compliance_report(&caller, asked)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::GetComplianceReportResponse {
            rows: report.rows.iter().map(row_to_proto).collect(),
            total: Some(row_to_proto(&report.total)),
            report_time: Some(timestamp_to_proto(report.report_time)),
        }))
    }
}
