//! Exporting one request's evidence bundle ([`crate::evidence`]): its
//! record and every event of its trail, after checking the trail against
//! the audit ring, signed with the evidence key. The same use case serves
//! the `ExportRequestEvidence` call and `gdpr-intake audit export`.

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{AppState, ServiceError};
use crate::auth::{Caller, Role};
use crate::domain::request::{DataSubjectRequest, Outcome, Personal};
use crate::evidence::{self, EventRecord, EvidenceKey};
use crate::store::Store;

/// Why an export is refused when the stored trail does not verify.
pub const AUDIT_TRAIL_BROKEN: &str = "AUDIT_TRAIL_BROKEN";

impl AppState {
    /// Request `id`'s evidence bundle for `caller`: an admin's of any
    /// tenant, anyone else's of their own; signed now.
    pub async fn export_evidence(
        &self,
        caller: &Caller,
        id: Uuid,
        include_personal: bool,
    ) -> Result<String, ServiceError> {
        let tenant = (caller.role != Role::Admin).then_some(caller.tenant.as_str());
        export(
            self.store.as_ref(),
            tenant,
            id,
            include_personal,
            &self.evidence_key,
            self.clock.now(),
        )
        .await
    }
}

/// The bundle of request `id`, of `tenant` if given (another tenant's
/// request is not found), with its personal data only if
/// `include_personal`; signed with `key` at `now`. Refused if the stored
/// trail does not verify: a bundle vouches only for an intact trail.
pub async fn export(
    store: &dyn Store,
    tenant: Option<&str>,
    id: Uuid,
    include_personal: bool,
    key: &EvidenceKey,
    now: Timestamp,
) -> Result<String, ServiceError> {
    let not_found = || ServiceError::NotFound("data subject request");
    // The record and the trail are read apart: read the trail again after
    // the record, and start over if an event came in between, so that the
    // record is the one its last event left.
    let mut attempts = 0;
    let (trail, request) = loop {
        attempts += 1;
        let (trail, finding) = store.checked_trail(id).await?.ok_or_else(not_found)?;
        if tenant.is_some_and(|t| t != trail.controller_id) {
            return Err(not_found());
        }
        if let Some(finding) = finding {
            return Err(ServiceError::FailedPrecondition {
                reason: AUDIT_TRAIL_BROKEN,
                message: format!("the stored audit trail does not verify: {finding}"),
            });
        }
        let request = store
            .get_request(&trail.controller_id, id)
            .await?
            .ok_or_else(not_found)?;
        let (again, _) = store.checked_trail(id).await?.ok_or_else(not_found)?;
        if again.events.len() == trail.events.len() {
            break (trail, request);
        }
        if attempts == 3 {
            return Err(ServiceError::Store(crate::store::StoreError::Conflict));
        }
    };
    let events: Vec<EventRecord> = trail.events.into_iter().map(|e| e.record).collect();
    Ok(evidence::build(
        record(&request, include_personal),
        &events,
        key,
        now,
    ))
}

/// The request's record: what it is, where it stands and when, without
/// anything that names or describes the person unless `include_personal`.
fn record(r: &DataSubjectRequest, include_personal: bool) -> Value {
    let time = |t: Timestamp| json!(t.to_string());
    let maybe_time = |t: Option<Timestamp>| t.map_or(Value::Null, time);
    let mut fields = Map::new();
    let mut put = |k: &str, v: Value| {
        fields.insert(k.to_owned(), v);
    };
    put("controller_id", json!(r.controller_id));
    put("request_id", json!(r.request_id.to_string()));
    put("request_type", json!(r.request_type.as_str()));
    put("regime", json!(r.regime.as_str()));
    put("country", json!(r.subject.jurisdiction.country().code()));
    put("subdivision", json!(r.subject.jurisdiction.subdivision()));
    put("state", json!(r.state.as_str()));
    put("received_at", time(r.received_at));
    put("create_time", time(r.create_time));
    put("update_time", time(r.update_time));
    put("original_due_time", time(r.original_due_time));
    put("due_time", time(r.due_time));
    put(
        "extension",
        r.extension.as_ref().map_or(
            Value::Null,
            |x| json!({"reason": x.reason, "time": time(x.extend_time), "by": x.extended_by}),
        ),
    );
    put(
        "guardian_consent",
        r.guardian_consent.as_ref().map_or(Value::Null, |c| {
            json!({
                "relationship": c.guardian.relationship.as_str(),
                "verification_method": c.guardian.verification_method,
                "consented_at": time(c.guardian.consented_at),
                "record_time": time(c.record_time),
                "recorded_by": c.recorded_by,
            })
        }),
    );
    put(
        "closure",
        r.closure.as_ref().map_or(Value::Null, |c| {
            json!({
                "outcome": match c.outcome {
                    Outcome::Completed => "completed",
                    Outcome::Refused => "refused",
                },
                "refusal_reason": c.refusal_reason.map(|x| x.as_str()),
                "explanation": c.explanation,
            })
        }),
    );
    put("clock_start_time", time(r.clock_start_time));
    // The caller's reason or question for each pause stays out, as it may
    // say things about the subject; when and how long is the evidence.
    put(
        "clock_pauses",
        Value::Array(
            r.clock_pauses
                .iter()
                .map(|p| {
                    json!({
                        "kind": p.kind.as_str(),
                        "start_time": time(p.start),
                        "end_time": maybe_time(p.end),
                        "counted_days": p.counted_days,
                    })
                })
                .collect(),
        ),
    );
    put("close_time", maybe_time(r.close_time));
    put("cancellation_reason", json!(r.cancellation_reason));
    put("unrouted", json!(r.unrouted));
    put("purge_time", maybe_time(r.purge_time()));
    if include_personal {
        put("personal_data", personal(r));
    }
    evidence::record(&r.name(), fields)
}

/// The personal data, where the retention purge has not removed it.
fn personal(r: &DataSubjectRequest) -> Value {
    let subject = match &r.subject.personal {
        Personal::Present(s) => json!({
            "email": s.email.as_ref().map(|e| e.expose().to_owned()),
            "date_of_birth": s.date_of_birth.expose().to_string(),
        }),
        Personal::Purged { .. } => Value::Null,
    };
    let guardian = r
        .guardian_consent
        .as_ref()
        .and_then(|c| match &c.guardian.identity {
            Personal::Present(g) => Some(json!({
                "full_name": g.full_name.expose(),
                "email": g.email.expose(),
            })),
            Personal::Purged { .. } => None,
        });
    json!({
        "subject_external_id": r.subject.external_id,
        "subject": subject,
        "guardian": guardian,
        "details": r.details,
        "corrections": r.corrections,
    })
}
