//! Every check of a request message that needs neither the store nor a
//! clock read: a proto message in, checked values (or every bad field) out.
//! The handlers call these and nothing else to validate, and so does the
//! fuzz target in `fuzz/`, so what is fuzzed is what is served. Checks of
//! the submission itself live in `domain::input`; the ones here are those
//! of the other calls, whose fields are not domain values of their own.

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::convert;
use super::dsr::parse_name;
use super::error::ApiError;
use super::page;
use crate::auth::{Caller, Role};
use crate::domain::input::{self, RawGuardian, Submission, Violations};
use crate::domain::request::Closure;
use crate::domain::revocation::{MAX_TARGET_LEN, NewRevocation, RevocationTarget};
use crate::domain::routing::{
    self, Completion, DEFAULT_CLAIM, DEFAULT_LEASE, DEFAULT_TASK_SLA_WORKING_HOURS, MAX_CLAIM,
    MAX_LEASE, MAX_TASK_SLA_WORKING_HOURS, Processor, ROUTE_PREFIX, Route, TASK_PREFIX,
    TaskOutcome, TaskState,
};
use crate::proto::v1;
use crate::service::{Cursor, FeedPosition, RequestFilter, RouteFilter, TaskOp};

/// Longest controller id accepted in a route.
pub const MAX_TENANT_LEN: usize = 128;
/// Longest processor display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// Longest processor contact.
pub const MAX_CONTACT_LEN: usize = 254;
/// Longest free text of a task call (reason, note).
pub const MAX_TASK_TEXT: usize = 2000;
/// Longest result URI.
pub const MAX_URI: usize = 2048;

const PROCESSOR_ID_RULE: &str = "must be 1 to 64 characters of a-z, 0-9, - and _";
const REQUEST_NAME_RULE: &str =
    "must be a request name such as dataSubjectRequests/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10";
const TASK_NAME_RULE: &str =
    "must be a task name such as tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10";

/// `SubmitDataSubjectRequest`: every field, bounded by `now`.
pub fn submission(
    m: v1::SubmitDataSubjectRequestRequest,
    now: Timestamp,
) -> Result<Submission, ApiError> {
    Ok(Submission::parse(convert::raw_submission(m), now)?)
}

/// A page of `ListDataSubjectRequests`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestsPage {
    pub filter: RequestFilter,
    pub size: u32,
    pub after: Option<Cursor>,
}

/// `ListDataSubjectRequests`: filters, page size and token.
pub fn list_requests(m: &v1::ListDataSubjectRequestsRequest) -> Result<RequestsPage, ApiError> {
    let mut bad = Violations::default();
    let state = if m.state == 0 {
        None
    } else {
        let s = convert::state_from_proto(m.state);
        if s.is_none() {
            bad.add("state", "is not a known DataSubjectRequest.State value");
        }
        s
    };
    let request_type = if m.r#type == 0 {
        None
    } else {
        let t = convert::request_type_from_proto(m.r#type);
        if t.is_none() {
            bad.add("type", "is not a known RequestType value");
        }
        t
    };
    if !bad.is_empty() {
        return Err(ApiError::InvalidArgument(bad.into_vec()));
    }
    let filter = RequestFilter {
        state,
        request_type,
    };
    let size = page::page_size(m.page_size, "page_size")?;
    let after = page::decode_requests_token(&m.page_token, &filter)?;
    Ok(RequestsPage {
        filter,
        size,
        after,
    })
}

/// A page of `ListRequestEvents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsPage {
    pub request: Uuid,
    pub size: u32,
    /// The last sequence number already seen (0: from the start).
    pub after: i64,
}

/// `ListRequestEvents`: the request, page size and token.
pub fn list_events(m: &v1::ListRequestEventsRequest) -> Result<EventsPage, ApiError> {
    let request = parse_name(&m.name)?;
    let size = page::page_size(m.page_size, "page_size")?;
    let after = page::decode_events_token(&m.page_token, request)?;
    Ok(EventsPage {
        request,
        size,
        after,
    })
}

/// A page of the change feed: where it starts and how many events.
pub struct FeedPage {
    pub after: FeedPosition,
    pub size: u32,
}

/// `ListFeedEvents`: the cursor (of the caller's `tenant`) and the size.
pub fn feed_page(m: &v1::ListFeedEventsRequest, tenant: &str) -> Result<FeedPage, ApiError> {
    let size = page::page_size(m.page_size, "page_size")?;
    let after = page::decode_feed_cursor(&m.cursor, tenant)?;
    Ok(FeedPage { after, size })
}

/// `WatchRequestEvents`: where in the caller's `tenant`'s feed to start.
pub fn feed_start(
    m: &v1::WatchRequestEventsRequest,
    tenant: &str,
) -> Result<FeedPosition, ApiError> {
    page::decode_feed_cursor(&m.cursor, tenant)
}

/// `RecordGuardianConsent`: the request and the guardian as sent. The
/// guardian is parsed against the stored request's receipt time
/// (`input::parse_guardian`), inside the transition.
pub fn guardian_consent(
    m: v1::RecordGuardianConsentRequest,
) -> Result<(Uuid, Option<RawGuardian>), ApiError> {
    let id = parse_name(&m.name)?;
    Ok((id, convert::raw_guardian(m.guardian)))
}

/// `ExtendDeadline` and `CancelDataSubjectRequest`: the request and a
/// required reason.
pub fn reasoned(name: &str, reason: String) -> Result<(Uuid, String), ApiError> {
    named_text(name, "reason", reason)
}

/// The request and a required free text in `field` (a reason, the
/// evidence of an identity check, a question).
pub fn named_text(name: &str, field: &str, text: String) -> Result<(Uuid, String), ApiError> {
    let id = parse_name(name)?;
    let text = input::parse_reason(field, text)?;
    Ok((id, text))
}

/// `CloseDataSubjectRequest`: the request and the controller's final word,
/// every bad field at once.
pub fn close(m: v1::CloseDataSubjectRequestRequest) -> Result<(Uuid, Closure), ApiError> {
    let mut bad = Violations::default();
    let id = parse_name(&m.name).map_err(|_| bad.add("name", REQUEST_NAME_RULE));
    let closure = input::parse_closure(
        convert::outcome_from_proto(m.outcome),
        convert::refusal_reason_from_proto(m.refusal_reason),
        m.explanation,
    );
    match (id, closure) {
        (Ok(id), Ok(c)) if bad.is_empty() => Ok((id, c)),
        (_, closure) => {
            let mut all = bad.into_vec();
            if let Err(v) = closure {
                all.extend(v);
            }
            Err(ApiError::InvalidArgument(all))
        }
    }
}

fn valid_tenant(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `CreateProcessor`: the processor to register at `now`.
pub fn new_processor(m: v1::CreateProcessorRequest, now: Timestamp) -> Result<Processor, ApiError> {
    let mut bad = Violations::default();
    if !routing::valid_processor_id(&m.processor_id) {
        bad.add("processor_id", PROCESSOR_ID_RULE);
    }
    if m.display_name.trim().is_empty() || m.display_name.chars().count() > MAX_DISPLAY_NAME_LEN {
        bad.add(
            "display_name",
            format!("is required, at most {MAX_DISPLAY_NAME_LEN} characters"),
        );
    }
    if m.contact.chars().count() > MAX_CONTACT_LEN || m.contact.chars().any(char::is_control) {
        bad.add(
            "contact",
            format!("must be at most {MAX_CONTACT_LEN} characters without control characters"),
        );
    }
    if !bad.is_empty() {
        return Err(ApiError::InvalidArgument(bad.into_vec()));
    }
    Ok(Processor {
        id: m.processor_id,
        display_name: m.display_name,
        contact: (!m.contact.is_empty()).then_some(m.contact),
        create_time: now,
    })
}

/// `DeleteProcessor`: the processor id.
pub fn processor_id(id: String) -> Result<String, ApiError> {
    if routing::valid_processor_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::invalid("processor_id", PROCESSOR_ID_RULE))
    }
}

/// `ListProcessors`: page size and the processor id to start after.
pub fn list_processors(m: &v1::ListProcessorsRequest) -> Result<(u32, Option<String>), ApiError> {
    let size = page::page_size(m.page_size, "page_size")?;
    let after = page::decode_key_token("p1", &m.page_token)?;
    Ok((size, after))
}

/// `CreateRoute`: the route to create, with id `id` at `now`.
pub fn new_route(m: v1::CreateRouteRequest, id: Uuid, now: Timestamp) -> Result<Route, ApiError> {
    let mut bad = Violations::default();
    if !valid_tenant(&m.controller_id) {
        bad.add(
            "controller_id",
            format!(
                "is required: the controller's tenant id, at most {MAX_TENANT_LEN} characters without spaces"
            ),
        );
    }
    if !routing::valid_processor_id(&m.processor_id) {
        bad.add("processor_id", PROCESSOR_ID_RULE);
    }
    let mut request_types = Vec::new();
    for t in &m.request_types {
        match convert::request_type_from_proto(*t) {
            Some(t) if !request_types.contains(&t) => request_types.push(t),
            Some(_) => {}
            None => {
                bad.add(
                    "request_types",
                    "must hold REQUEST_TYPE_ values other than UNSPECIFIED (empty means all)",
                );
                break;
            }
        }
    }
    let sla = match m.task_sla_working_hours {
        0 => DEFAULT_TASK_SLA_WORKING_HOURS,
        h => match u32::try_from(h) {
            Ok(h) if h <= MAX_TASK_SLA_WORKING_HOURS => h,
            _ => {
                bad.add(
                    "task_sla_working_hours",
                    format!(
                        "must be between 1 and {MAX_TASK_SLA_WORKING_HOURS} (0 means {DEFAULT_TASK_SLA_WORKING_HOURS})"
                    ),
                );
                0
            }
        },
    };
    if !bad.is_empty() {
        return Err(ApiError::InvalidArgument(bad.into_vec()));
    }
    Ok(Route {
        id,
        controller_id: m.controller_id,
        processor_id: m.processor_id,
        request_types,
        task_sla_working_hours: sla,
        create_time: now,
    })
}

/// A page of `ListRoutes` as a caller may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutesPage {
    pub filter: RouteFilter,
    /// The filters summed up, bound into page tokens.
    pub key: String,
    pub size: u32,
    pub after: Option<Cursor>,
}

/// `ListRoutes` for `caller`: an admin sees every route, anyone else only
/// its own tenant's. `None` when a non-admin asked for another
/// controller's routes: answered as if it had none.
pub fn list_routes(
    m: v1::ListRoutesRequest,
    caller: &Caller,
) -> Result<Option<RoutesPage>, ApiError> {
    let size = page::page_size(m.page_size, "page_size")?;
    let mut filter = RouteFilter {
        controller_id: (!m.controller_id.is_empty()).then_some(m.controller_id),
        processor_id: (!m.processor_id.is_empty()).then_some(m.processor_id),
    };
    if caller.role != Role::Admin {
        if filter
            .controller_id
            .as_ref()
            .is_some_and(|c| *c != caller.tenant)
        {
            return Ok(None);
        }
        filter.controller_id = Some(caller.tenant.clone());
    }
    let key = format!(
        "{}|{}",
        filter.controller_id.as_deref().unwrap_or(""),
        filter.processor_id.as_deref().unwrap_or("")
    );
    let after = page::decode_cursor("o1", &m.page_token, &key)?;
    Ok(Some(RoutesPage {
        filter,
        key,
        size,
        after,
    }))
}

/// `DeleteRoute`: the route's id.
pub fn route_name(name: &str) -> Result<Uuid, ApiError> {
    name.strip_prefix(ROUTE_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "name",
                "must be a route name such as routes/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        })
}

fn task_name(v: &mut Violations, name: &str) -> Option<Uuid> {
    let id = name
        .strip_prefix(TASK_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok());
    if id.is_none() {
        v.add("name", TASK_NAME_RULE);
    }
    id
}

fn lease_token(v: &mut Violations, token: &str) {
    if token.is_empty() {
        v.add("lease_token", "is required: the token ClaimTasks returned");
    }
}

/// A lease duration between 1 second and [`MAX_LEASE`]; unset is
/// [`DEFAULT_LEASE`]. A `google.protobuf.Duration` keeps its nanoseconds
/// below one second with the sign of its seconds; anything else is refused
/// here rather than normalised, which could overflow.
fn lease(v: &mut Violations, d: Option<prost_types::Duration>) -> SignedDuration {
    let Some(d) = d else {
        return DEFAULT_LEASE;
    };
    let nanos_ok = d.nanos.unsigned_abs() < 1_000_000_000
        && (d.nanos == 0 || d.seconds == 0 || (d.nanos > 0) == (d.seconds > 0));
    let lease = if nanos_ok {
        SignedDuration::new(d.seconds, d.nanos)
    } else {
        SignedDuration::ZERO
    };
    if lease < SignedDuration::from_secs(1) || lease > MAX_LEASE {
        v.add("lease_duration", "must be between 1 second and 10 minutes");
    }
    lease
}

fn task_text(v: &mut Violations, field: &str, s: &str, max: usize) {
    if s.chars().count() > max || s.contains('\0') {
        v.add(
            field,
            format!("must be at most {max} characters, without NUL"),
        );
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `ClaimTasks`: how many tasks, and for how long.
pub fn claim(m: &v1::ClaimTasksRequest) -> Result<(u32, SignedDuration), ApiError> {
    let mut bad = Violations::default();
    let max = match u32::try_from(m.max_tasks) {
        Ok(0) => DEFAULT_CLAIM,
        Ok(n) if n <= MAX_CLAIM => n,
        _ => {
            bad.add(
                "max_tasks",
                format!("must be between 1 and {MAX_CLAIM} (0 means {DEFAULT_CLAIM})"),
            );
            0
        }
    };
    let lease = lease(&mut bad, m.lease_duration);
    bad.finish(|| (max, lease)).map_err(ApiError::from)
}

/// `RenewTaskLease`: the task and the renewal.
pub fn renew(m: v1::RenewTaskLeaseRequest) -> Result<(Uuid, TaskOp), ApiError> {
    let mut bad = Violations::default();
    let id = task_name(&mut bad, &m.name);
    lease_token(&mut bad, &m.lease_token);
    let lease = lease(&mut bad, m.lease_duration);
    match id {
        Some(id) if bad.is_empty() => Ok((
            id,
            TaskOp::Renew {
                token: m.lease_token,
                lease,
            },
        )),
        _ => Err(ApiError::InvalidArgument(bad.into_vec())),
    }
}

/// `CompleteTask`: the task and the processor's result.
pub fn complete(m: v1::CompleteTaskRequest) -> Result<(Uuid, TaskOp), ApiError> {
    let mut bad = Violations::default();
    let id = task_name(&mut bad, &m.name);
    lease_token(&mut bad, &m.lease_token);
    let outcome = convert::task_outcome_from_proto(m.outcome);
    match outcome {
        None => bad.add(
            "outcome",
            "is required: TASK_OUTCOME_DONE, TASK_OUTCOME_NO_DATA_HELD or TASK_OUTCOME_FAILED",
        ),
        Some(TaskOutcome::Failed) if m.reason.trim().is_empty() => {
            bad.add("reason", "is required when the outcome is failed");
        }
        Some(_) => {}
    }
    task_text(&mut bad, "reason", &m.reason, MAX_TASK_TEXT);
    task_text(&mut bad, "result_uri", &m.result_uri, MAX_URI);
    task_text(&mut bad, "note", &m.note, MAX_TASK_TEXT);
    match (id, outcome) {
        (Some(id), Some(outcome)) if bad.is_empty() => Ok((
            id,
            TaskOp::Complete {
                token: m.lease_token,
                completion: Completion {
                    outcome,
                    reason: non_empty(m.reason),
                    result_uri: non_empty(m.result_uri),
                    note: non_empty(m.note),
                },
            },
        )),
        _ => Err(ApiError::InvalidArgument(bad.into_vec())),
    }
}

/// `ReleaseTask`: the task and why it is given back.
pub fn release(m: v1::ReleaseTaskRequest) -> Result<(Uuid, TaskOp), ApiError> {
    let mut bad = Violations::default();
    let id = task_name(&mut bad, &m.name);
    lease_token(&mut bad, &m.lease_token);
    task_text(&mut bad, "reason", &m.reason, MAX_TASK_TEXT);
    match id {
        Some(id) if bad.is_empty() => Ok((
            id,
            TaskOp::Release {
                token: m.lease_token,
                reason: non_empty(m.reason),
            },
        )),
        _ => Err(ApiError::InvalidArgument(bad.into_vec())),
    }
}

/// A page of `ListTasks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TasksPage {
    pub state: Option<TaskState>,
    pub size: u32,
    pub after: Option<Cursor>,
}

impl TasksPage {
    /// The filter summed up, bound into page tokens.
    pub fn key(&self) -> &'static str {
        self.state.map_or("", TaskState::as_str)
    }
}

/// `ListTasks`: state filter, page size and token.
pub fn list_tasks(m: &v1::ListTasksRequest) -> Result<TasksPage, ApiError> {
    let state = if m.state == 0 {
        None
    } else {
        Some(
            convert::task_state_from_proto(m.state)
                .ok_or_else(|| ApiError::invalid("state", "is not a known Task.State value"))?,
        )
    };
    let size = page::page_size(m.page_size, "page_size")?;
    let key = state.map_or("", TaskState::as_str);
    let after = page::decode_cursor("t1", &m.page_token, key)?;
    Ok(TasksPage { state, size, after })
}

/// `RevokeAccess`: the revocation `caller` (an admin) asks for at `now`.
pub fn new_revocation(
    m: v1::RevokeAccessRequest,
    caller: &Caller,
    now: Timestamp,
) -> Result<NewRevocation, ApiError> {
    use v1::revoke_access_request::Target;
    let mut bad = Violations::default();
    let target = match m.target {
        Some(Target::Subject(s)) => Some(("subject", RevocationTarget::Subject(s))),
        Some(Target::TokenId(t)) => Some(("token_id", RevocationTarget::TokenId(t))),
        None => {
            bad.add("target", "is required: set subject or token_id");
            None
        }
    };
    if let Some((field, target)) = &target {
        let value = target.value();
        if value.trim().is_empty() || value.chars().count() > MAX_TARGET_LEN {
            bad.add(
                field,
                format!("must not be blank and at most {MAX_TARGET_LEN} characters"),
            );
        }
    }
    if m.reason.trim().is_empty() || m.reason.chars().count() > MAX_TASK_TEXT {
        bad.add(
            "reason",
            format!("is required, at most {MAX_TASK_TEXT} characters"),
        );
    }
    match target {
        Some((_, target)) if bad.is_empty() => Ok(NewRevocation {
            target,
            reason: m.reason,
            revoked_by: caller.subject.clone(),
            create_time: now,
        }),
        _ => Err(ApiError::InvalidArgument(bad.into_vec())),
    }
}

/// `ListRevocations`: page size, and the number of the last revocation
/// of the previous page.
pub fn list_revocations(m: &v1::ListRevocationsRequest) -> Result<(u32, Option<i64>), ApiError> {
    let size = page::page_size(m.page_size, "page_size")?;
    let after = match page::decode_key_token("r1", &m.page_token)? {
        None => None,
        Some(seq) => Some(seq.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "page_token",
                "is not a token returned by this call; start again with an empty token",
            )
        })?),
    };
    Ok((size, after))
}

/// A `google.type.Date` that names a whole day.
fn whole_day(
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

/// `GetComplianceReport`'s request, checked: whole dates, a known regime.
pub fn compliance_report(
    m: &v1::GetComplianceReportRequest,
) -> Result<crate::service::reporting::ReportRequest, ApiError> {
    let mut v = Violations::default();
    let start = whole_day("start_date", m.start_date.as_ref(), &mut v);
    let end = whole_day("end_date", m.end_date.as_ref(), &mut v);
    let regime = match v1::Regime::try_from(m.regime) {
        Ok(v1::Regime::Unspecified) => None,
        Ok(v1::Regime::Gdpr) => Some(crate::domain::jurisdiction::Regime::Gdpr),
        Ok(v1::Regime::Ccpa) => Some(crate::domain::jurisdiction::Regime::Ccpa),
        Ok(v1::Regime::Lgpd) => Some(crate::domain::jurisdiction::Regime::Lgpd),
        Err(_) => {
            v.add("regime", "not a known regime");
            None
        }
    };
    v.finish(|| crate::service::reporting::ReportRequest {
        start,
        end,
        regime,
        controller_id: (!m.controller_id.is_empty()).then(|| m.controller_id.clone()),
        ccpa_7102: m.ccpa_7102,
    })
    .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10";

    fn fields<T: std::fmt::Debug>(r: Result<T, ApiError>) -> Vec<String> {
        match r {
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    fn caller(role: Role, tenant: &str) -> Caller {
        Caller {
            subject: "s".into(),
            role,
            tenant: tenant.into(),
            token_id: None,
            expires_at: 0,
        }
    }

    #[test]
    fn request_calls() {
        let list = v1::ListDataSubjectRequestsRequest {
            state: 99,
            r#type: -1,
            ..Default::default()
        };
        assert_eq!(fields(list_requests(&list)), vec!["state", "type"]);
        let page = list_requests(&v1::ListDataSubjectRequestsRequest::default()).expect("valid");
        assert_eq!((page.size, page.after), (page::DEFAULT_PAGE_SIZE, None));

        let events = v1::ListRequestEventsRequest {
            name: format!("dataSubjectRequests/{ID}"),
            page_size: 5,
            page_token: String::new(),
        };
        assert_eq!(list_events(&events).expect("valid").size, 5);
        assert_eq!(
            fields(list_events(&v1::ListRequestEventsRequest::default())),
            vec!["name"]
        );

        assert_eq!(
            fields(reasoned(&format!("dataSubjectRequests/{ID}"), " ".into())),
            vec!["reason"]
        );
        assert_eq!(fields(reasoned("x", "why".into())), vec!["name"]);

        let bad_close = v1::CloseDataSubjectRequestRequest {
            name: "tasks/1".into(),
            outcome: v1::Outcome::Refused.into(),
            ..Default::default()
        };
        assert_eq!(
            fields(close(bad_close)),
            vec!["name", "refusal_reason", "explanation"]
        );
        let (_, raw) = guardian_consent(v1::RecordGuardianConsentRequest {
            name: format!("dataSubjectRequests/{ID}"),
            guardian: None,
        })
        .expect("the guardian is checked later");
        assert!(raw.is_none());
    }

    #[test]
    fn routing_calls() {
        let p = v1::CreateProcessorRequest {
            processor_id: "CRM".into(),
            display_name: "x".repeat(MAX_DISPLAY_NAME_LEN + 1),
            contact: "a\u{7}".into(),
        };
        assert_eq!(
            fields(new_processor(p, now())),
            vec!["processor_id", "display_name", "contact"]
        );
        let ok = new_processor(
            v1::CreateProcessorRequest {
                processor_id: "crm".into(),
                display_name: "CRM".into(),
                contact: String::new(),
            },
            now(),
        )
        .expect("valid");
        assert_eq!(ok.contact, None);
        assert_eq!(fields(processor_id(String::new())), vec!["processor_id"]);

        let r = v1::CreateRouteRequest {
            controller_id: "a b".into(),
            processor_id: String::new(),
            request_types: vec![v1::RequestType::Access.into(), 42],
            task_sla_working_hours: -3,
        };
        assert_eq!(
            fields(new_route(r, Uuid::nil(), now())),
            vec![
                "controller_id",
                "processor_id",
                "request_types",
                "task_sla_working_hours"
            ]
        );
        let route = new_route(
            v1::CreateRouteRequest {
                controller_id: "acme".into(),
                processor_id: "crm".into(),
                request_types: vec![1, 1],
                task_sla_working_hours: 0,
            },
            Uuid::nil(),
            now(),
        )
        .expect("valid");
        assert_eq!(route.request_types.len(), 1, "duplicates fold");
        assert_eq!(route.task_sla_working_hours, DEFAULT_TASK_SLA_WORKING_HOURS);
        assert_eq!(fields(route_name("routes/x")), vec!["name"]);

        // Another controller's routes are asked for: an empty answer.
        let theirs = v1::ListRoutesRequest {
            controller_id: "beta".into(),
            ..Default::default()
        };
        assert_eq!(
            list_routes(theirs.clone(), &caller(Role::Auditor, "acme")).expect("valid"),
            None
        );
        let admin = list_routes(theirs, &caller(Role::Admin, ""))
            .expect("valid")
            .expect("admin sees all");
        assert_eq!(admin.filter.controller_id.as_deref(), Some("beta"));
        let own = list_routes(
            v1::ListRoutesRequest::default(),
            &caller(Role::Controller, "acme"),
        )
        .expect("valid")
        .expect("own routes");
        assert_eq!(own.key, "acme|");
    }

    #[test]
    fn task_calls() {
        let huge = |seconds, nanos| v1::ClaimTasksRequest {
            max_tasks: 1,
            lease_duration: Some(prost_types::Duration { seconds, nanos }),
        };
        // Normalising these nanoseconds would overflow the seconds.
        assert_eq!(
            fields(claim(&huge(i64::MAX, 1_000_000_000))),
            vec!["lease_duration"]
        );
        assert_eq!(
            fields(claim(&huge(i64::MIN, i32::MIN))),
            vec!["lease_duration"]
        );
        assert_eq!(fields(claim(&huge(5, -1))), vec!["lease_duration"]);
        assert_eq!(
            claim(&huge(60, 500_000_000)).expect("valid").1,
            SignedDuration::new(60, 500_000_000)
        );
        assert_eq!(
            fields(claim(&v1::ClaimTasksRequest {
                max_tasks: -1,
                lease_duration: None
            })),
            vec!["max_tasks"]
        );

        assert_eq!(
            fields(complete(v1::CompleteTaskRequest {
                outcome: v1::TaskOutcome::Failed.into(),
                note: "\0".into(),
                ..Default::default()
            })),
            vec!["name", "lease_token", "reason", "note"]
        );
        let (_, op) = complete(v1::CompleteTaskRequest {
            name: format!("tasks/{ID}"),
            lease_token: "t".into(),
            outcome: v1::TaskOutcome::Done.into(),
            ..Default::default()
        })
        .expect("valid");
        assert!(matches!(op, TaskOp::Complete { .. }));
        assert_eq!(
            fields(renew(v1::RenewTaskLeaseRequest {
                name: format!("tasks/{ID}"),
                lease_token: String::new(),
                lease_duration: None,
            })),
            vec!["lease_token"]
        );
        assert_eq!(
            fields(release(v1::ReleaseTaskRequest {
                name: "tasks/".into(),
                lease_token: "t".into(),
                reason: "x".repeat(MAX_TASK_TEXT + 1),
            })),
            vec!["name", "reason"]
        );
        assert_eq!(
            fields(list_tasks(&v1::ListTasksRequest {
                state: 77,
                ..Default::default()
            })),
            vec!["state"]
        );
        assert_eq!(
            list_tasks(&v1::ListTasksRequest {
                state: v1::task::State::Pending.into(),
                ..Default::default()
            })
            .expect("valid")
            .key(),
            "pending"
        );
    }
}
