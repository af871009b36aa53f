//! `gdpr.intake.v1.ReportingService`: the compliance report. Who sees
//! which controller's, and the figures, are the service's
//! ([`crate::service::reporting`]).

use tonic::{Request, Response, Status};

use super::convert::timestamp as timestamp_to_proto;
use super::error::ApiError;
use super::parse;
use crate::auth::Role;
use crate::proto::v1;
use crate::proto::v1::reporting_service_server::ReportingService;
use crate::service::AppState;
use crate::service::reporting::ReportRow;

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
        let asked = parse::compliance_report(request.get_ref())?;
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
