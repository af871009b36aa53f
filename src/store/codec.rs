//! Moves the domain between flat column values, the same way for both
//! backends: [`RequestColumns`] mirrors a row of `data_subject_requests`,
//! [`EventColumns`] one of `request_events`, [`TaskColumns`] one of `tasks`
//! ([`TaskViewColumns`] with the request columns a processor sees),
//! [`ProcessorColumns`] one of `processors` and [`RouteColumns`] one of
//! `routes`. Binding and reading are generic over the sqlx database; only
//! the type that carries an id differs ([`IdColumn`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use sqlx::query::Query;
use sqlx::{Column, ColumnIndex, Database, Decode, Encode, Row, Type, ValueRef};
use uuid::Uuid;

use super::audit::{self, AuditTrail, EventFields, StoredEvent};
use super::crypt::DataKey;
use super::feed::FeedPosition;
use super::steps::Chained;
use super::{Cursor, Lease, StoreError, SweepCursor};
use crate::domain::jurisdiction::{Country, Jurisdiction, Regime};
use crate::domain::pause::PauseKind;
use crate::domain::pii::{DateOfBirth, Email, PersonName};
use crate::domain::request::{
    Actor, ClockPause, Closure, DataSubjectRequest, EventType, Extension, Guardian,
    GuardianConsent, GuardianIdentity, GuardianRelationship, NewEvent, Outcome, Personal,
    RefusalReason, RequestEvent, RequestType, State, Subject, SubjectData, TraceOrigin,
};
use crate::domain::revocation::{Revocation, RevocationTarget};
use crate::domain::routing::{Processor, Route, Task, TaskOutcome, TaskState, TaskView};
use crate::domain::sla::SlaMarks;

/// How a backend stores a UUID: TEXT in SQLite, UUID in PostgreSQL.
pub trait IdColumn: Sized {
    fn from_uuid(id: Uuid) -> Self;
    fn into_uuid(self, column: &str) -> Result<Uuid, StoreError>;
}

impl IdColumn for String {
    fn from_uuid(id: Uuid) -> Self {
        // Lower-case hyphenated, so that text order equals the UUID byte
        // order PostgreSQL uses and keyset pages agree across backends.
        id.hyphenated().to_string()
    }

    fn into_uuid(self, column: &str) -> Result<Uuid, StoreError> {
        Uuid::try_parse(&self).map_err(|_| corrupt(format!("{column} is not a uuid")))
    }
}

impl IdColumn for Uuid {
    fn from_uuid(id: Uuid) -> Self {
        id
    }

    fn into_uuid(self, _column: &str) -> Result<Uuid, StoreError> {
        Ok(self)
    }
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt(message.into())
}

/// A time as stored: microseconds since the Unix epoch. Finer precision is
/// dropped (see [`super::to_stored_precision`]).
pub(super) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The listing position as bound: without a cursor, one below every stored
/// row (no storable time is near `i64::MIN` microseconds), so that a single
/// statement serves the first page and the next ones.
pub(super) fn cursor_values(after: Option<&Cursor>) -> (i64, Uuid) {
    after.map_or((i64::MIN, Uuid::nil()), |c| (micros(c.create_time), c.id))
}

/// A stored time back to a timestamp; corrupt if out of range.
pub(super) fn timestamp_of(column: &str, micros: i64) -> Result<Timestamp, StoreError> {
    timestamp(column, micros)
}

fn timestamp(column: &str, micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(micros)
        .map_err(|_| corrupt(format!("{column} is out of the supported time range")))
}

fn optional_timestamp(column: &str, micros: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    micros.map(|m| timestamp(column, m)).transpose()
}

/// The SLA marks as stored: when each finding was reported, if it was.
fn sla_marks(at_risk: Option<i64>, breached: Option<i64>) -> Result<SlaMarks, StoreError> {
    Ok(SlaMarks {
        at_risk: optional_timestamp("sla_at_risk_reported_at", at_risk)?,
        breached: optional_timestamp("sla_breached_reported_at", breached)?,
    })
}

/// The origin as stored: a `traceparent`, and a `tracestate` only with it.
fn trace_origin(
    traceparent: Option<String>,
    tracestate: Option<String>,
) -> Result<Option<TraceOrigin>, StoreError> {
    match (traceparent, tracestate) {
        (None, None) => Ok(None),
        (Some(traceparent), tracestate) => Ok(Some(TraceOrigin {
            traceparent,
            tracestate,
        })),
        (None, Some(_)) => Err(corrupt(
            "origin_tracestate is set without origin_traceparent",
        )),
    }
}

/// The id an id column holds, naming the column (never the value) when it
/// does not hold one.
fn column_uuid<Id: IdColumn>(raw: Id, column: &str) -> Result<Uuid, sqlx::Error> {
    raw.into_uuid(column)
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: e.to_string().into(),
        })
}

/// Reads an id column by name.
fn read_id<'r, R, Id>(row: &'r R, column: &str) -> Result<Uuid, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
{
    column_uuid(row.try_get::<Id, _>(column)?, column)
}

/// [`read_id`] of a nullable column.
fn read_optional_id<'r, R, Id>(row: &'r R, column: &str) -> Result<Option<Uuid>, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
{
    let raw: Option<Id> = row.try_get(column)?;
    raw.map(|raw| column_uuid(raw, column)).transpose()
}

/// Reads a row's columns by position, in the order the statement selects
/// them: reading by name looks every name up among the row's columns. In
/// debug builds (the tests) each position's name and type are checked
/// against what the reader expects there; release builds decode without
/// asking the driver whether the column's type suits the value (sqlx builds
/// and compares lists of type descriptions for every value it checks, a
/// tenth of a listing's server time). Every statement's columns are fixed
/// text in `sql`, so the tests' check covers every shape a release reads.
struct InOrder<'r, R> {
    row: &'r R,
    at: usize,
}

impl<'r, R> InOrder<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
{
    fn new(row: &'r R) -> Self {
        Self { row, at: 0 }
    }

    /// The next column, which the statement names `name`.
    fn next<T>(&mut self, name: &str) -> Result<T, sqlx::Error>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        let at = self.at;
        self.at += 1;
        debug_assert_eq!(
            self.row.columns().get(at).map(Column::name),
            Some(name),
            "column {at} is not the one read there"
        );
        debug_assert!(
            self.row
                .try_get_raw(at)
                .is_ok_and(|v| v.is_null() || T::compatible(&v.type_info())),
            "column {at} ({name}) does not hold the type read there"
        );
        self.row.try_get_unchecked(at).map_err(|e| match e {
            sqlx::Error::ColumnDecode { source, .. } => sqlx::Error::ColumnDecode {
                index: name.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// The next column, an id.
    fn id<Id>(&mut self, name: &str) -> Result<Uuid, sqlx::Error>
    where
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
    {
        column_uuid(self.next::<Id>(name)?, name)
    }
}

/// A boolean column as SQLite's JSON holds it: 0 or 1.
fn stored_bool<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match <i64 as serde::Deserialize>::deserialize(deserializer)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(serde::de::Error::custom("a boolean column holds 0 or 1")),
    }
}

/// Inverse of [`Regime::as_str`], which the domain does not provide.
fn parse_regime(s: &str) -> Option<Regime> {
    // Exhaustive on purpose: a new regime fails to compile here instead of
    // reading back as corrupt.
    let listed = |r: Regime| match r {
        Regime::Gdpr | Regime::Ccpa | Regime::Lgpd => r,
    };
    [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd]
        .into_iter()
        .map(listed)
        .find(|r| r.as_str() == s)
}

/// Stored name of an [`Outcome`], which has no `as_str` of its own.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Refused => "refused",
    }
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    [Outcome::Completed, Outcome::Refused]
        .into_iter()
        .find(|o| outcome_name(*o) == s)
}

/// Parses an enum column, naming the column (never the value) on failure.
fn parse_enum<T>(
    column: &str,
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| corrupt(format!("{column} has an unknown value")))
}

/// One row of `data_subject_requests`, column for column. No `Debug`: it
/// holds personal data in the clear. The fields are in the order of
/// [`super::sql`]'s `request_columns!`, which is also the order a row of a
/// page read as one value ([`RequestColumns::page`]) holds them in.
#[derive(serde::Deserialize)]
pub(super) struct RequestColumns {
    pub id: Uuid,
    pub controller_id: String,
    pub request_id: Uuid,
    pub request_type: String,
    pub subject_external_id: String,
    pub subject_email: Option<String>,
    pub subject_date_of_birth: Option<String>,
    pub subject_country: String,
    pub subject_subdivision: Option<String>,
    pub details: String,
    pub corrections: String,
    pub state: String,
    pub regime: String,
    pub received_at: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub original_due_time: i64,
    pub due_time: i64,
    pub extension_reason: Option<String>,
    pub extension_time: Option<i64>,
    pub extended_by: Option<String>,
    pub guardian_full_name: Option<String>,
    pub guardian_relationship: Option<String>,
    pub guardian_email: Option<String>,
    pub guardian_verification_method: Option<String>,
    pub guardian_consented_at: Option<i64>,
    pub guardian_consent_record_time: Option<i64>,
    pub guardian_consent_recorded_by: Option<String>,
    pub closure_outcome: Option<String>,
    pub closure_refusal_reason: Option<String>,
    pub closure_explanation: Option<String>,
    pub close_time: Option<i64>,
    pub cancellation_reason: Option<String>,
    #[serde(deserialize_with = "stored_bool")]
    pub unrouted: bool,
    pub fingerprint: String,
    pub version: i64,
    pub origin_traceparent: Option<String>,
    pub origin_tracestate: Option<String>,
    pub sla_at_risk_reported_at: Option<i64>,
    pub sla_breached_reported_at: Option<i64>,
    /// Set once the retention purge emptied the personal-data columns.
    pub purge_time: Option<i64>,
    pub clock_start_time: i64,
    /// The pauses as a JSON array of [`StoredPause`].
    pub clock_pauses: String,
    /// The open pause's start while the request waits for its subject.
    pub clock_paused_since: Option<i64>,
    pub duplicate_of: Option<Uuid>,
}

/// A clock pause as `clock_pauses` holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredPause {
    kind: String,
    reason: String,
    start: i64,
    end: Option<i64>,
    counted_days: u32,
    resume: String,
    at_submission: bool,
}

impl StoredPause {
    fn from_domain(p: &ClockPause) -> Self {
        Self {
            kind: p.kind.as_str().to_owned(),
            reason: p.reason.clone(),
            start: micros(p.start),
            end: p.end.map(micros),
            counted_days: p.counted_days,
            resume: p.resume.as_str().to_owned(),
            at_submission: p.at_submission,
        }
    }

    fn into_domain(self) -> Result<ClockPause, StoreError> {
        Ok(ClockPause {
            kind: parse_enum("clock_pauses", &self.kind, PauseKind::parse)?,
            reason: self.reason,
            start: timestamp("clock_pauses", self.start)?,
            end: optional_timestamp("clock_pauses", self.end)?,
            counted_days: self.counted_days,
            resume: parse_enum("clock_pauses", &self.resume, State::parse)?,
            at_submission: self.at_submission,
        })
    }
}

/// Binds the values in order: one list per statement, easy to hold against
/// its placeholders.
macro_rules! bind_all {
    ($query:expr; $($value:expr),+ $(,)?) => {
        $query$(.bind($value))+
    };
}

impl RequestColumns {
    pub(super) fn from_domain(r: &DataSubjectRequest) -> Result<Self, StoreError> {
        let corrections = serde_json::to_string(&r.corrections)
            .map_err(|e| StoreError::Internal(format!("cannot encode corrections: {e}")))?;
        let extension = r.extension.as_ref();
        let consent = r.guardian_consent.as_ref();
        let guardian = consent.map(|c| &c.guardian);
        let guardian_identity = guardian.and_then(|g| g.identity.present());
        let closure = r.closure.as_ref();
        let pauses: Vec<StoredPause> = r
            .clock_pauses
            .iter()
            .map(StoredPause::from_domain)
            .collect();
        let clock_pauses = serde_json::to_string(&pauses)
            .map_err(|e| StoreError::Internal(format!("cannot encode clock pauses: {e}")))?;
        Ok(Self {
            id: r.id,
            controller_id: r.controller_id.clone(),
            request_id: r.request_id,
            request_type: r.request_type.as_str().to_owned(),
            subject_external_id: r.subject.external_id.clone(),
            subject_email: r.subject.email().map(|e| e.expose().to_owned()),
            subject_date_of_birth: r.subject.date_of_birth().map(|d| d.expose().to_string()),
            subject_country: r.subject.jurisdiction.country().code().to_owned(),
            subject_subdivision: r.subject.jurisdiction.subdivision().map(str::to_owned),
            details: r.details.clone(),
            corrections,
            state: r.state.as_str().to_owned(),
            regime: r.regime.as_str().to_owned(),
            received_at: micros(r.received_at),
            create_time: micros(r.create_time),
            update_time: micros(r.update_time),
            original_due_time: micros(r.original_due_time),
            due_time: micros(r.due_time),
            extension_reason: extension.map(|x| x.reason.clone()),
            extension_time: extension.map(|x| micros(x.extend_time)),
            extended_by: extension.map(|x| x.extended_by.clone()),
            guardian_full_name: guardian_identity.map(|g| g.full_name.expose().to_owned()),
            guardian_relationship: guardian.map(|g| g.relationship.as_str().to_owned()),
            guardian_email: guardian_identity.map(|g| g.email.expose().to_owned()),
            guardian_verification_method: guardian.map(|g| g.verification_method.clone()),
            guardian_consented_at: guardian.map(|g| micros(g.consented_at)),
            guardian_consent_record_time: consent.map(|c| micros(c.record_time)),
            guardian_consent_recorded_by: consent.map(|c| c.recorded_by.clone()),
            closure_outcome: closure.map(|c| outcome_name(c.outcome).to_owned()),
            closure_refusal_reason: closure
                .and_then(|c| c.refusal_reason)
                .map(|r| r.as_str().to_owned()),
            closure_explanation: closure.map(|c| c.explanation.clone()),
            close_time: r.close_time.map(micros),
            cancellation_reason: r.cancellation_reason.clone(),
            unrouted: r.unrouted,
            fingerprint: r.fingerprint.clone(),
            version: r.version,
            origin_traceparent: r.origin.as_ref().map(|o| o.traceparent.clone()),
            origin_tracestate: r.origin.as_ref().and_then(|o| o.tracestate.clone()),
            sla_at_risk_reported_at: r.sla.at_risk.map(micros),
            sla_breached_reported_at: r.sla.breached.map(micros),
            purge_time: r.purge_time().map(micros),
            clock_start_time: micros(r.clock_start_time),
            clock_pauses,
            clock_paused_since: r
                .open_pause()
                .filter(|_| r.state.awaits_subject())
                .map(|p| micros(p.start)),
            duplicate_of: r.duplicate_of,
        })
    }

    /// Seals the personal-data columns (subject email and date of birth,
    /// guardian name and email) for this request's tenant and row.
    pub(super) fn seal(mut self, key: &DataKey) -> Result<Self, StoreError> {
        let (tenant, id) = (self.controller_id.clone(), self.id);
        let seal = |column: &str, value: &str| key.seal(&tenant, id, column, value);
        self.subject_date_of_birth = self
            .subject_date_of_birth
            .map(|v| seal("subject_date_of_birth", &v))
            .transpose()?;
        self.subject_email = self
            .subject_email
            .map(|v| seal("subject_email", &v))
            .transpose()?;
        self.guardian_full_name = self
            .guardian_full_name
            .map(|v| seal("guardian_full_name", &v))
            .transpose()?;
        self.guardian_email = self
            .guardian_email
            .map(|v| seal("guardian_email", &v))
            .transpose()?;
        Ok(self)
    }

    /// Opens what [`Self::seal`] stored; a value sealed for another
    /// tenant, row or column, or with another key, is corrupt.
    pub(super) fn open(mut self, key: &DataKey) -> Result<Self, StoreError> {
        let (tenant, id) = (self.controller_id.clone(), self.id);
        let open = |column: &str, value: &str| key.open(&tenant, id, column, value);
        self.subject_date_of_birth = self
            .subject_date_of_birth
            .map(|v| open("subject_date_of_birth", &v))
            .transpose()?;
        self.subject_email = self
            .subject_email
            .map(|v| open("subject_email", &v))
            .transpose()?;
        self.guardian_full_name = self
            .guardian_full_name
            .map(|v| open("guardian_full_name", &v))
            .transpose()?;
        self.guardian_email = self
            .guardian_email
            .map(|v| open("guardian_email", &v))
            .transpose()?;
        Ok(self)
    }

    /// Rebuilds the domain request. Messages name the faulty column, never
    /// its value: several columns hold personal data.
    pub(super) fn into_domain(self) -> Result<DataSubjectRequest, StoreError> {
        let purge_time = optional_timestamp("purge_time", self.purge_time)?;
        let personal = match (purge_time, self.subject_date_of_birth, self.subject_email) {
            (Some(at), None, None) => Personal::Purged { at },
            (None, Some(date), email) => {
                let date: Date = date
                    .parse()
                    .map_err(|_| corrupt("subject_date_of_birth is not a date"))?;
                let email = email
                    .map(|e| {
                        Email::parse(&e)
                            .map_err(|_| corrupt("subject_email is not an email address"))
                    })
                    .transpose()?;
                Personal::Present(SubjectData {
                    email,
                    date_of_birth: DateOfBirth::from_stored(date),
                })
            }
            (Some(_), _, _) => return Err(corrupt("a purged request holds personal data")),
            (None, None, _) => return Err(corrupt("subject_date_of_birth is null")),
        };
        let jurisdiction = Jurisdiction::parse(
            &self.subject_country,
            self.subject_subdivision.as_deref().unwrap_or(""),
        )
        .map_err(|_| corrupt("subject_country or subject_subdivision is not a jurisdiction"))?;
        let corrections: BTreeMap<String, String> = serde_json::from_str(&self.corrections)
            .map_err(|_| corrupt("corrections is not a json object of strings"))?;
        let pauses: Vec<StoredPause> = serde_json::from_str(&self.clock_pauses)
            .map_err(|_| corrupt("clock_pauses is not a json array of pauses"))?;
        let clock_pauses = pauses
            .into_iter()
            .map(StoredPause::into_domain)
            .collect::<Result<Vec<_>, _>>()?;

        let extension = match (self.extension_reason, self.extension_time, self.extended_by) {
            (None, None, None) => None,
            (Some(reason), Some(time), Some(extended_by)) => Some(Extension {
                reason,
                extend_time: timestamp("extension_time", time)?,
                extended_by,
            }),
            _ => return Err(corrupt("the extension columns are partly null")),
        };

        // The guardian's name and email are there unless purged.
        let guardian_identity = match (self.guardian_full_name, self.guardian_email, purge_time) {
            (Some(full_name), Some(email), None) => Some(Personal::Present(GuardianIdentity {
                full_name: PersonName::parse(&full_name)
                    .map_err(|_| corrupt("guardian_full_name is not a name"))?,
                email: Email::parse(&email)
                    .map_err(|_| corrupt("guardian_email is not an email address"))?,
            })),
            (None, None, Some(at)) => Some(Personal::Purged { at }),
            (None, None, None) => None,
            (Some(_), Some(_), Some(_)) => {
                return Err(corrupt("a purged request holds personal data"));
            }
            _ => return Err(corrupt("the guardian columns are partly null")),
        };
        let guardian_consent = match (
            guardian_identity,
            self.guardian_relationship,
            self.guardian_verification_method,
            self.guardian_consented_at,
            self.guardian_consent_record_time,
            self.guardian_consent_recorded_by,
        ) {
            // A purged request without a guardian has no consent either.
            (None | Some(Personal::Purged { .. }), None, None, None, None, None) => None,
            (
                Some(identity),
                Some(relationship),
                Some(verification_method),
                Some(consented_at),
                Some(record_time),
                Some(recorded_by),
            ) => Some(GuardianConsent {
                guardian: Guardian {
                    identity,
                    relationship: parse_enum(
                        "guardian_relationship",
                        &relationship,
                        GuardianRelationship::parse,
                    )?,
                    verification_method,
                    consented_at: timestamp("guardian_consented_at", consented_at)?,
                },
                record_time: timestamp("guardian_consent_record_time", record_time)?,
                recorded_by,
            }),
            _ => return Err(corrupt("the guardian columns are partly null")),
        };

        let closure = match (
            self.closure_outcome,
            self.closure_refusal_reason,
            self.closure_explanation,
        ) {
            (None, None, None) => None,
            (Some(outcome), refusal_reason, Some(explanation)) => Some(Closure {
                outcome: parse_enum("closure_outcome", &outcome, parse_outcome)?,
                refusal_reason: refusal_reason
                    .map(|r| parse_enum("closure_refusal_reason", &r, RefusalReason::parse))
                    .transpose()?,
                explanation,
            }),
            _ => return Err(corrupt("the closure columns are partly null")),
        };

        Ok(DataSubjectRequest {
            id: self.id,
            controller_id: self.controller_id,
            request_id: self.request_id,
            request_type: parse_enum("request_type", &self.request_type, RequestType::parse)?,
            subject: Subject {
                external_id: self.subject_external_id,
                jurisdiction,
                personal,
            },
            details: self.details,
            corrections,
            state: parse_enum("state", &self.state, State::parse)?,
            regime: parse_enum("regime", &self.regime, parse_regime)?,
            received_at: timestamp("received_at", self.received_at)?,
            create_time: timestamp("create_time", self.create_time)?,
            update_time: timestamp("update_time", self.update_time)?,
            original_due_time: timestamp("original_due_time", self.original_due_time)?,
            due_time: timestamp("due_time", self.due_time)?,
            extension,
            guardian_consent,
            closure,
            close_time: optional_timestamp("close_time", self.close_time)?,
            cancellation_reason: self.cancellation_reason,
            unrouted: self.unrouted,
            fingerprint: self.fingerprint,
            version: self.version,
            origin: trace_origin(self.origin_traceparent, self.origin_tracestate)?,
            sla: sla_marks(self.sla_at_risk_reported_at, self.sla_breached_reported_at)?,
            clock_start_time: timestamp("clock_start_time", self.clock_start_time)?,
            clock_pauses,
            duplicate_of: self.duplicate_of,
        })
    }

    /// Binds every column, in the order of [`super::sql::INSERT_REQUEST`].
    /// The bounds are spelled out on each generic function because bounds
    /// on a helper trait would not be implied where it is used.
    pub(super) fn bind_insert<'q, DB, Id>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        Option<Id>: for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(self.id),
            self.controller_id,
            Id::from_uuid(self.request_id),
            self.request_type,
            self.subject_external_id,
            self.subject_email,
            self.subject_date_of_birth,
            self.subject_country,
            self.subject_subdivision,
            self.details,
            self.corrections,
            self.state,
            self.regime,
            self.received_at,
            self.create_time,
            self.update_time,
            self.original_due_time,
            self.due_time,
            self.extension_reason,
            self.extension_time,
            self.extended_by,
            self.guardian_full_name,
            self.guardian_relationship,
            self.guardian_email,
            self.guardian_verification_method,
            self.guardian_consented_at,
            self.guardian_consent_record_time,
            self.guardian_consent_recorded_by,
            self.closure_outcome,
            self.closure_refusal_reason,
            self.closure_explanation,
            self.close_time,
            self.cancellation_reason,
            self.unrouted,
            self.fingerprint,
            self.version,
            self.origin_traceparent,
            self.origin_tracestate,
            self.sla_at_risk_reported_at,
            self.sla_breached_reported_at,
            self.purge_time,
            self.clock_start_time,
            self.clock_pauses,
            self.clock_paused_since,
            self.duplicate_of.map(Id::from_uuid),
        )
    }

    /// Binds the key, the expected version and every mutable column, in the
    /// order of [`super::sql::UPDATE_REQUEST`].
    pub(super) fn bind_update<'q, DB, Id>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
        expected_version: i64,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(self.id),
            self.controller_id,
            expected_version,
            self.state,
            self.update_time,
            self.due_time,
            self.extension_reason,
            self.extension_time,
            self.extended_by,
            self.guardian_full_name,
            self.guardian_relationship,
            self.guardian_email,
            self.guardian_verification_method,
            self.guardian_consented_at,
            self.guardian_consent_record_time,
            self.guardian_consent_recorded_by,
            self.closure_outcome,
            self.closure_refusal_reason,
            self.closure_explanation,
            self.close_time,
            self.cancellation_reason,
            self.unrouted,
            self.version,
            self.clock_start_time,
            self.clock_pauses,
            self.clock_paused_since,
        )
    }

    /// The rows of a page read as one value: a JSON array of arrays, each
    /// holding the request columns in their order, returned in the page's
    /// order (creation time, then id) whatever order the array has. Fails
    /// as corrupt, with where the text stops making sense and never a
    /// value.
    pub(super) fn page(json: &str) -> Result<Vec<Self>, StoreError> {
        let mut rows: Vec<Self> = serde_json::from_str(json).map_err(|e| {
            corrupt(format!(
                "a page of requests does not decode ({:?} at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        rows.sort_unstable_by_key(|row| (row.create_time, row.id));
        Ok(rows)
    }

    /// Reads a row selected with the request columns, in their order
    /// ([`super::sql`]'s `request_columns!`).
    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Self::read_from::<R, Id>(&mut InOrder::new(row))
    }

    /// Reads the request columns where `c` stands, in their order.
    fn read_from<'r, R, Id>(c: &mut InOrder<'r, R>) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: c.id::<Id>("id")?,
            controller_id: c.next("controller_id")?,
            request_id: c.id::<Id>("request_id")?,
            request_type: c.next("request_type")?,
            subject_external_id: c.next("subject_external_id")?,
            subject_email: c.next("subject_email")?,
            subject_date_of_birth: c.next("subject_date_of_birth")?,
            subject_country: c.next("subject_country")?,
            subject_subdivision: c.next("subject_subdivision")?,
            details: c.next("details")?,
            corrections: c.next("corrections")?,
            state: c.next("state")?,
            regime: c.next("regime")?,
            received_at: c.next("received_at")?,
            create_time: c.next("create_time")?,
            update_time: c.next("update_time")?,
            original_due_time: c.next("original_due_time")?,
            due_time: c.next("due_time")?,
            extension_reason: c.next("extension_reason")?,
            extension_time: c.next("extension_time")?,
            extended_by: c.next("extended_by")?,
            guardian_full_name: c.next("guardian_full_name")?,
            guardian_relationship: c.next("guardian_relationship")?,
            guardian_email: c.next("guardian_email")?,
            guardian_verification_method: c.next("guardian_verification_method")?,
            guardian_consented_at: c.next("guardian_consented_at")?,
            guardian_consent_record_time: c.next("guardian_consent_record_time")?,
            guardian_consent_recorded_by: c.next("guardian_consent_recorded_by")?,
            closure_outcome: c.next("closure_outcome")?,
            closure_refusal_reason: c.next("closure_refusal_reason")?,
            closure_explanation: c.next("closure_explanation")?,
            close_time: c.next("close_time")?,
            cancellation_reason: c.next("cancellation_reason")?,
            unrouted: c.next("unrouted")?,
            fingerprint: c.next("fingerprint")?,
            version: c.next("version")?,
            origin_traceparent: c.next("origin_traceparent")?,
            origin_tracestate: c.next("origin_tracestate")?,
            sla_at_risk_reported_at: c.next("sla_at_risk_reported_at")?,
            sla_breached_reported_at: c.next("sla_breached_reported_at")?,
            purge_time: c.next("purge_time")?,
            clock_start_time: c.next("clock_start_time")?,
            clock_pauses: c.next("clock_pauses")?,
            clock_paused_since: c.next("clock_paused_since")?,
            duplicate_of: c
                .next::<Option<Id>>("duplicate_of")?
                .map(|raw| column_uuid(raw, "duplicate_of"))
                .transpose()?,
        })
    }
}

/// One row of `request_events`, column for column (`controller_id` aside:
/// it is only ever a filter).
pub(super) struct EventColumns {
    pub request: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub event_time: i64,
    pub actor_id: String,
    pub actor_role: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: String,
    pub task: Option<Uuid>,
}

impl EventColumns {
    /// Binds a new event of request `id` of `controller_id`, in the order of
    /// [`super::sql::INSERT_EVENT`].
    pub(super) fn bind_insert<'q, DB, Id>(
        query: Query<'q, DB, <DB as Database>::Arguments>,
        id: Uuid,
        controller_id: &str,
        event: &NewEvent,
        chained: &Chained,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        Option<Id>: for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(id),
            controller_id.to_owned(),
            event.event_type.as_str().to_owned(),
            micros(event.time),
            event.actor.id.clone(),
            event.actor.role.clone(),
            event.from_state.map(|s| s.as_str().to_owned()),
            event.to_state.as_str().to_owned(),
            event.reason.clone(),
            event.task.map(Id::from_uuid),
            chained.sequence,
            chained.hash_text(),
        )
    }

    /// A new event as the audit chain covers it, exactly as
    /// [`Self::bind_insert`] stores it.
    pub(super) fn chain_fields<'a>(
        id: Uuid,
        controller_id: &'a str,
        sequence: i64,
        event: &'a NewEvent,
    ) -> EventFields<'a> {
        EventFields {
            controller_id,
            request: id,
            sequence,
            event_type: event.event_type.as_str(),
            time: micros(event.time),
            actor_id: &event.actor.id,
            actor_role: &event.actor.role,
            from_state: event.from_state.map(|s| s.as_str()),
            to_state: event.to_state.as_str(),
            reason: &event.reason,
            task: event.task,
        }
    }

    /// Reads a row of [`super::sql::LAST_EVENT`]: the last sequence and its
    /// hash.
    pub(super) fn read_last<'r, R>(row: &'r R) -> Result<(i64, [u8; 32]), StoreError>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let sequence: i64 = row
            .try_get("sequence")
            .map_err(|_| corrupt("request_events.sequence is unreadable"))?;
        let hash: String = row
            .try_get("hash")
            .map_err(|_| corrupt("request_events.hash is unreadable"))?;
        let (_, hash) = audit::parse_stamped(&hash)
            .ok_or_else(|| corrupt("request_events.hash is not a hash"))?;
        Ok((sequence, hash))
    }

    /// Reads a row of [`super::sql::AUDIT_EVENTS`] as stored, for `audit
    /// verify`: nothing is parsed beyond the id.
    pub(super) fn read_stored<'r, R, Id>(row: &'r R) -> Result<StoredEvent, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let e = Self::read::<R, Id>(row)?;
        Ok(StoredEvent {
            record: audit::EventRecord {
                sequence: e.sequence,
                event_type: e.event_type,
                time: e.event_time,
                actor_id: e.actor_id,
                actor_role: e.actor_role,
                from_state: e.from_state,
                to_state: e.to_state,
                reason: e.reason,
                task: e.task,
            },
            hash: row.try_get("hash")?,
        })
    }

    /// Reads a row selected with the event columns.
    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            request: read_id::<R, Id>(row, "data_subject_request_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_time: row.try_get("event_time")?,
            actor_id: row.try_get("actor_id")?,
            actor_role: row.try_get("actor_role")?,
            from_state: row.try_get("from_state")?,
            to_state: row.try_get("to_state")?,
            reason: row.try_get("reason")?,
            task: read_optional_id::<R, Id>(row, "task_id")?,
        })
    }

    pub(super) fn into_domain(self) -> Result<RequestEvent, StoreError> {
        Ok(RequestEvent {
            request: self.request,
            sequence: self.sequence,
            event: NewEvent {
                event_type: parse_enum("event_type", &self.event_type, EventType::parse)?,
                time: timestamp("event_time", self.event_time)?,
                actor: Actor {
                    id: self.actor_id,
                    role: self.actor_role,
                },
                from_state: self
                    .from_state
                    .map(|s| parse_enum("from_state", &s, State::parse))
                    .transpose()?,
                to_state: parse_enum("to_state", &self.to_state, State::parse)?,
                reason: self.reason,
                task: self.task,
            },
        })
    }
}

/// One row of `tasks`, column for column.
pub(super) struct TaskColumns {
    pub id: Uuid,
    pub request: Uuid,
    pub controller_id: String,
    pub processor_id: String,
    pub state: String,
    pub attempt: i64,
    pub due_time: i64,
    pub lease_token: Option<String>,
    pub lease_expire_time: Option<i64>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub result_uri: Option<String>,
    pub note: Option<String>,
    pub create_time: i64,
    pub update_time: i64,
    pub complete_time: Option<i64>,
    pub sla_at_risk_reported_at: Option<i64>,
    pub sla_breached_reported_at: Option<i64>,
}

impl TaskColumns {
    pub(super) fn from_domain(t: &Task) -> Self {
        Self {
            id: t.id,
            request: t.request,
            controller_id: t.controller_id.clone(),
            processor_id: t.processor_id.clone(),
            state: t.state.as_str().to_owned(),
            attempt: i64::from(t.attempt),
            due_time: micros(t.due_time),
            lease_token: t.lease_token.clone(),
            lease_expire_time: t.lease_expire_time.map(micros),
            outcome: t.outcome.map(|o| o.as_str().to_owned()),
            reason: t.reason.clone(),
            result_uri: t.result_uri.clone(),
            note: t.note.clone(),
            create_time: micros(t.create_time),
            update_time: micros(t.update_time),
            complete_time: t.complete_time.map(micros),
            sla_at_risk_reported_at: t.sla.at_risk.map(micros),
            sla_breached_reported_at: t.sla.breached.map(micros),
        }
    }

    pub(super) fn into_domain(self) -> Result<Task, StoreError> {
        Ok(Task {
            id: self.id,
            request: self.request,
            controller_id: self.controller_id,
            processor_id: self.processor_id,
            state: parse_enum("state", &self.state, TaskState::parse)?,
            attempt: i32::try_from(self.attempt).map_err(|_| corrupt("attempt is out of range"))?,
            due_time: timestamp("due_time", self.due_time)?,
            lease_token: self.lease_token,
            lease_expire_time: optional_timestamp("lease_expire_time", self.lease_expire_time)?,
            outcome: self
                .outcome
                .map(|o| parse_enum("outcome", &o, TaskOutcome::parse))
                .transpose()?,
            reason: self.reason,
            result_uri: self.result_uri,
            note: self.note,
            create_time: timestamp("create_time", self.create_time)?,
            update_time: timestamp("update_time", self.update_time)?,
            complete_time: optional_timestamp("complete_time", self.complete_time)?,
            sla: sla_marks(self.sla_at_risk_reported_at, self.sla_breached_reported_at)?,
        })
    }

    /// Binds every column, in the order of [`super::sql::INSERT_TASK`].
    pub(super) fn bind_insert<'q, DB, Id>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(self.id),
            Id::from_uuid(self.request),
            self.controller_id,
            self.processor_id,
            self.state,
            self.attempt,
            self.due_time,
            self.lease_token,
            self.lease_expire_time,
            self.outcome,
            self.reason,
            self.result_uri,
            self.note,
            self.create_time,
            self.update_time,
            self.complete_time,
            self.sla_at_risk_reported_at,
            self.sla_breached_reported_at,
        )
    }

    /// Binds the key and every mutable column, in the order of
    /// [`super::sql::UPDATE_TASK`].
    pub(super) fn bind_update<'q, DB, Id>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(self.id),
            self.state,
            self.attempt,
            self.lease_token,
            self.lease_expire_time,
            self.outcome,
            self.reason,
            self.result_uri,
            self.note,
            self.update_time,
            self.complete_time,
        )
    }

    /// Reads a row selected with the task columns, in their order.
    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Self::read_from::<R, Id>(&mut InOrder::new(row))
    }

    /// Reads the task columns where `c` stands, in their order.
    fn read_from<'r, R, Id>(c: &mut InOrder<'r, R>) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: c.id::<Id>("id")?,
            request: c.id::<Id>("data_subject_request_id")?,
            controller_id: c.next("controller_id")?,
            processor_id: c.next("processor_id")?,
            state: c.next("state")?,
            attempt: c.next("attempt")?,
            due_time: c.next("due_time")?,
            lease_token: c.next("lease_token")?,
            lease_expire_time: c.next("lease_expire_time")?,
            outcome: c.next("outcome")?,
            reason: c.next("reason")?,
            result_uri: c.next("result_uri")?,
            note: c.next("note")?,
            create_time: c.next("create_time")?,
            update_time: c.next("update_time")?,
            complete_time: c.next("complete_time")?,
            sla_at_risk_reported_at: c.next("sla_at_risk_reported_at")?,
            sla_breached_reported_at: c.next("sla_breached_reported_at")?,
        })
    }
}

/// A task joined with what its processor may know of the request. No
/// `Debug`: it holds personal data in the clear.
pub(super) struct TaskViewColumns {
    pub task: TaskColumns,
    pub request_type: String,
    pub subject_external_id: String,
    pub subject_email: Option<String>,
    pub subject_country: String,
    pub corrections: String,
    pub origin_traceparent: Option<String>,
    pub origin_tracestate: Option<String>,
}

impl TaskViewColumns {
    /// Reads a row selected with the task columns and the request's
    /// `request_type, subject_external_id, subject_email, subject_country,
    /// corrections, origin_traceparent, origin_tracestate`.
    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut c = InOrder::new(row);
        Ok(Self {
            task: TaskColumns::read_from::<R, Id>(&mut c)?,
            request_type: c.next("request_type")?,
            subject_external_id: c.next("subject_external_id")?,
            subject_email: c.next("subject_email")?,
            subject_country: c.next("subject_country")?,
            corrections: c.next("corrections")?,
            origin_traceparent: c.next("origin_traceparent")?,
            origin_tracestate: c.next("origin_tracestate")?,
        })
    }

    /// Opens the request's sealed email (see [`RequestColumns::seal`]).
    pub(super) fn open(mut self, key: &DataKey) -> Result<Self, StoreError> {
        let (tenant, id) = (&self.task.controller_id, self.task.request);
        self.subject_email = self
            .subject_email
            .map(|v| key.open(tenant, id, "subject_email", &v))
            .transpose()?;
        Ok(self)
    }

    /// Rebuilds the view. Messages name the faulty column, never its value.
    pub(super) fn into_domain(self) -> Result<TaskView, StoreError> {
        Ok(TaskView {
            task: self.task.into_domain()?,
            request_type: parse_enum("request_type", &self.request_type, RequestType::parse)?,
            external_id: self.subject_external_id,
            email: self
                .subject_email
                .map(|e| {
                    Email::parse(&e).map_err(|_| corrupt("subject_email is not an email address"))
                })
                .transpose()?,
            country: Country::parse(&self.subject_country)
                .map_err(|_| corrupt("subject_country is not a country"))?,
            corrections: serde_json::from_str(&self.corrections)
                .map_err(|_| corrupt("corrections is not a json object of strings"))?,
            origin: trace_origin(self.origin_traceparent, self.origin_tracestate)?,
        })
    }
}

/// One row of `processors`, column for column.
pub(super) struct ProcessorColumns {
    pub id: String,
    pub display_name: String,
    pub contact: Option<String>,
    pub create_time: i64,
}

impl ProcessorColumns {
    pub(super) fn from_domain(p: &Processor) -> Self {
        Self {
            id: p.id.clone(),
            display_name: p.display_name.clone(),
            contact: p.contact.clone(),
            create_time: micros(p.create_time),
        }
    }

    pub(super) fn into_domain(self) -> Result<Processor, StoreError> {
        Ok(Processor {
            id: self.id,
            display_name: self.display_name,
            contact: self.contact,
            create_time: timestamp("create_time", self.create_time)?,
        })
    }

    /// Binds every column, in the order of [`super::sql::INSERT_PROCESSOR`].
    pub(super) fn bind_insert<'q, DB>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query; self.id, self.display_name, self.contact, self.create_time)
    }

    pub(super) fn read<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: row.try_get("id")?,
            display_name: row.try_get("display_name")?,
            contact: row.try_get("contact")?,
            create_time: row.try_get("create_time")?,
        })
    }
}

/// One row of `routes`, column for column. The request types are stored as
/// their names separated by commas, in the route's order; empty means every
/// type.
pub(super) struct RouteColumns {
    pub id: Uuid,
    pub controller_id: String,
    pub processor_id: String,
    pub request_types: String,
    pub task_sla_working_hours: i64,
    pub create_time: i64,
}

impl RouteColumns {
    pub(super) fn from_domain(r: &Route) -> Self {
        Self {
            id: r.id,
            controller_id: r.controller_id.clone(),
            processor_id: r.processor_id.clone(),
            request_types: r
                .request_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            task_sla_working_hours: i64::from(r.task_sla_working_hours),
            create_time: micros(r.create_time),
        }
    }

    pub(super) fn into_domain(self) -> Result<Route, StoreError> {
        let request_types = if self.request_types.is_empty() {
            Vec::new()
        } else {
            self.request_types
                .split(',')
                .map(|t| parse_enum("request_types", t, RequestType::parse))
                .collect::<Result<_, _>>()?
        };
        Ok(Route {
            id: self.id,
            controller_id: self.controller_id,
            processor_id: self.processor_id,
            request_types,
            task_sla_working_hours: u32::try_from(self.task_sla_working_hours)
                .map_err(|_| corrupt("task_sla_working_hours is out of range"))?,
            create_time: timestamp("create_time", self.create_time)?,
        })
    }

    /// Binds every column, in the order of [`super::sql::INSERT_ROUTE`].
    pub(super) fn bind_insert<'q, DB, Id>(
        self,
        query: Query<'q, DB, <DB as Database>::Arguments>,
    ) -> Query<'q, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
        String: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
    {
        bind_all!(query;
            Id::from_uuid(self.id),
            self.controller_id,
            self.processor_id,
            self.request_types,
            self.task_sla_working_hours,
            self.create_time,
        )
    }

    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: read_id::<R, Id>(row, "id")?,
            controller_id: row.try_get("controller_id")?,
            processor_id: row.try_get("processor_id")?,
            request_types: row.try_get("request_types")?,
            task_sla_working_hours: row.try_get("task_sla_working_hours")?,
            create_time: row.try_get("create_time")?,
        })
    }
}

/// One row of `revocations`.
pub(super) struct RevocationColumns {
    pub seq: i64,
    pub kind: String,
    pub value: String,
    pub reason: String,
    pub revoked_by: String,
    pub create_time: i64,
}

impl RevocationColumns {
    pub(super) fn read<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            seq: row.try_get("seq")?,
            kind: row.try_get("kind")?,
            value: row.try_get("value")?,
            reason: row.try_get("reason")?,
            revoked_by: row.try_get("revoked_by")?,
            create_time: row.try_get("create_time")?,
        })
    }

    pub(super) fn into_domain(self) -> Result<Revocation, StoreError> {
        Ok(Revocation {
            seq: self.seq,
            target: RevocationTarget::from_parts(&self.kind, self.value)
                .ok_or_else(|| corrupt(format!("revocation kind `{}` is unknown", self.kind)))?,
            reason: self.reason,
            revoked_by: self.revoked_by,
            create_time: timestamp("create_time", self.create_time)?,
        })
    }
}

/// One row of `leases`.
pub(super) struct LeaseColumns {
    pub holder: String,
    pub expire_time: i64,
}

impl LeaseColumns {
    pub(super) fn read<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            holder: row.try_get("holder")?,
            expire_time: row.try_get("expire_time")?,
        })
    }

    pub(super) fn into_domain(self) -> Result<Lease, StoreError> {
        Ok(Lease {
            holder: self.holder,
            expire_time: timestamp("expire_time", self.expire_time)?,
        })
    }
}

/// [`cursor_values`] for a sweep's `(time, id)` order.
pub(super) fn sweep_cursor_values(after: Option<&SweepCursor>) -> (i64, Uuid) {
    after.map_or((i64::MIN, Uuid::nil()), |c| (micros(c.time), c.id))
}

/// Binds [`super::sql::PURGE_REQUEST`] for `purged`, the request after
/// [`DataSubjectRequest::purge`], stored at `expected_version`.
pub(super) fn bind_purge<'q, DB, Id>(
    query: Query<'q, DB, <DB as Database>::Arguments>,
    purged: &DataSubjectRequest,
    expected_version: i64,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    Id: IdColumn + for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    bind_all!(query;
        Id::from_uuid(purged.id),
        purged.controller_id.clone(),
        expected_version,
        micros(purged.update_time),
        purged.version,
    )
}

/// Reads a row of [`super::sql::AUDIT_REQUESTS`]: a trail without its
/// events yet.
pub(super) fn read_audit_request<'r, R, Id>(row: &'r R) -> Result<AuditTrail, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(AuditTrail {
        id: read_id::<R, Id>(row, "id")?,
        controller_id: row.try_get("controller_id")?,
        head: row.try_get("audit_head")?,
        events: Vec::new(),
    })
}

/// A task read with its request and the tip of the request's audit chain.
pub(super) struct TaskAndRequest {
    pub task: TaskColumns,
    pub request: RequestColumns,
    last_event_sequence: Option<i64>,
    last_event_hash: Option<String>,
}

impl TaskAndRequest {
    /// Reads a row selected with the task columns, then the request
    /// columns, then the tip ([`super::sql`]'s `task_and_request_from!`),
    /// in that order.
    pub(super) fn read<'r, R, Id>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut c = InOrder::new(row);
        Ok(Self {
            task: TaskColumns::read_from::<R, Id>(&mut c)?,
            request: RequestColumns::read_from::<R, Id>(&mut c)?,
            last_event_sequence: c.next("last_event_sequence")?,
            last_event_hash: c.next("last_event_hash")?,
        })
    }

    /// The tip of the request's audit chain.
    pub(super) fn tip(&mut self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        tip_from(self.last_event_sequence, self.last_event_hash.take())
    }
}

/// Reads the tip of a request's audit chain from a row that selected
/// `last_event_sequence` and `last_event_hash`: `None` before its first
/// event.
pub(super) fn read_tip<'r, R>(row: &'r R) -> Result<Option<(i64, [u8; 32])>, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let sequence: Option<i64> = row
        .try_get("last_event_sequence")
        .map_err(|_| corrupt("data_subject_requests.last_event_sequence is unreadable"))?;
    let hash: Option<String> = row
        .try_get("last_event_hash")
        .map_err(|_| corrupt("data_subject_requests.last_event_hash is unreadable"))?;
    tip_from(sequence, hash)
}

/// The tip of an audit chain from its two columns.
fn tip_from(
    sequence: Option<i64>,
    hash: Option<String>,
) -> Result<Option<(i64, [u8; 32])>, StoreError> {
    match (sequence, hash) {
        (None, None) => Ok(None),
        (Some(sequence), Some(hash)) => {
            let (_, hash) = audit::parse_stamped(&hash)
                .ok_or_else(|| corrupt("data_subject_requests.last_event_hash is not a hash"))?;
            Ok(Some((sequence, hash)))
        }
        _ => Err(corrupt(
            "data_subject_requests has half of its audit chain's tip",
        )),
    }
}

/// Reads where a row of a feed page ([`super::sql::FEED_PAGE_POSTGRES`],
/// [`super::sql::FEED_PAGE_SQLITE`]) stands in the feed.
pub(super) fn read_feed_position<'r, R, Id>(row: &'r R) -> Result<FeedPosition, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Id: IdColumn + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let unreadable = |column: &str| corrupt(format!("the feed's {column} is unreadable"));
    let transaction: String = row
        .try_get("feed_xid")
        .map_err(|_| unreadable("feed_xid"))?;
    let transaction = transaction
        .parse()
        .map_err(|_| corrupt("request_events.feed_xid is not a transaction id"))?;
    let request = row
        .try_get::<Id, _>("feed_request")
        .map_err(|_| unreadable("feed_request"))?
        .into_uuid("feed_request")?;
    let number = row
        .try_get("feed_number")
        .map_err(|_| unreadable("feed_number"))?;
    Ok(FeedPosition {
        transaction,
        request,
        number,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnection, SqliteRow};

    use super::*;

    async fn row(sql: &'static str) -> SqliteRow {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query(sql).fetch_one(&mut conn).await.unwrap()
    }

    /// A page that is not what the statement builds is corrupt, and the
    /// error names no value.
    #[test]
    fn a_page_that_does_not_decode_is_corrupt_without_its_values() {
        assert!(RequestColumns::page("[]").unwrap().is_empty());
        for bad in [
            "",
            "{}",
            "[[\"secret@example.org\"]]",
            "[[1, 2, 3]]",
            "[null]",
        ] {
            let Err(StoreError::Corrupt(message)) = RequestColumns::page(bad) else {
                panic!("{bad} decoded");
            };
            assert!(!message.contains("secret"), "{message}");
        }
    }

    /// One row of a page as SQLite's `json_array` writes it: the request
    /// columns in order, the optional ones null.
    fn page_row(id: u128, create_time: i64) -> String {
        let id = Uuid::from_u128(id);
        let mut values = vec![
            format!("\"{id}\""),
            "\"acme\"".to_owned(),
            format!("\"{}\"", Uuid::from_u128(7)),
            "\"access\"".to_owned(),
            "\"subject\"".to_owned(),
            "null".to_owned(),
            "null".to_owned(),
            "\"DE\"".to_owned(),
            "null".to_owned(),
            "\"\"".to_owned(),
            "\"{}\"".to_owned(),
            "\"in_progress\"".to_owned(),
            "\"gdpr\"".to_owned(),
        ];
        values.extend(std::iter::repeat_n(create_time.to_string(), 5));
        values.extend(std::iter::repeat_n("null".to_owned(), 15));
        values
            .extend(["0", "\"f\"", "1", "null", "null", "null", "null", "null"].map(str::to_owned));
        // The clock: its start, no pause, not paused, no duplicate.
        values.extend([create_time.to_string(), "\"[]\"".to_owned()]);
        values.extend(["null", "null"].map(str::to_owned));
        format!("[{}]", values.join(","))
    }

    /// The page statement promises no order; the reader gives the page's.
    #[test]
    fn a_page_is_read_in_creation_then_id_order_whatever_order_it_holds() {
        let rows = [(3, 20), (1, 20), (9, 10), (2, 30)].map(|(id, time)| page_row(id, time));
        let page = RequestColumns::page(&format!("[{}]", rows.join(","))).unwrap();
        let keys: Vec<(i64, Uuid)> = page.iter().map(|r| (r.create_time, r.id)).collect();
        assert_eq!(
            keys,
            [(10, 9), (20, 1), (20, 3), (30, 2)].map(|(t, id)| (t, Uuid::from_u128(id)))
        );
    }

    #[tokio::test]
    async fn columns_are_read_in_order_and_a_bad_value_is_named() {
        let row = row("SELECT 7 AS version, 'x' AS id").await;
        let mut c = InOrder::new(&row);
        assert_eq!(c.next::<i64>("version").unwrap(), 7);
        let error = c.id::<String>("id").unwrap_err();
        assert!(
            matches!(&error, sqlx::Error::ColumnDecode { index, .. } if index == "id"),
            "{error:?}"
        );
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "column 0 is not the one read there")]
    async fn a_reader_out_of_step_with_the_statement_is_caught() {
        let row = row("SELECT 7 AS version").await;
        let _ = InOrder::new(&row).next::<i64>("state");
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "column 0 (version) does not hold the type read there")]
    async fn a_reader_expecting_another_type_is_caught() {
        let row = row("SELECT 'seven' AS version").await;
        let _ = InOrder::new(&row).next::<i64>("version");
    }
}
