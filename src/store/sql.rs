//! The statements both backends run. SQLite and PostgreSQL both accept `$N`
//! placeholders, `ON CONFLICT … DO NOTHING` and row-value comparisons, so the
//! text is written once; only the binding of ids differs (TEXT in SQLite,
//! UUID in PostgreSQL).
//!
//! Every statement is a `&'static str` so that sqlx prepares it once per
//! connection and reuses it from its statement cache.

use super::RequestFilter;

/// The columns of `data_subject_requests`, in the order of the placeholders
/// of [`INSERT_REQUEST`]. A macro rather than a constant because `concat!`
/// only takes literals.
macro_rules! request_columns {
    () => {
        "id, controller_id, request_id, request_type, \
         subject_external_id, subject_email, subject_date_of_birth, \
         subject_country, subject_subdivision, details, corrections, \
         state, regime, received_at, create_time, update_time, \
         original_due_time, due_time, \
         extension_reason, extension_time, extended_by, \
         guardian_full_name, guardian_relationship, guardian_email, \
         guardian_verification_method, guardian_consented_at, \
         guardian_consent_record_time, guardian_consent_recorded_by, \
         closure_outcome, closure_refusal_reason, closure_explanation, \
         close_time, cancellation_reason, fingerprint, version"
    };
}

/// The columns of `request_events` that [`RequestEvent`] is read from.
///
/// [`RequestEvent`]: crate::domain::request::RequestEvent
macro_rules! event_columns {
    () => {
        "data_subject_request_id, sequence, event_type, event_time, \
         actor_id, actor_role, from_state, to_state, reason"
    };
}

/// Inserts a request unless the controller already used its `request_id`;
/// the conflict target is named so that any other unique violation (a
/// reused `id`) still fails loudly.
pub(super) const INSERT_REQUEST: &str = concat!(
    "INSERT INTO data_subject_requests (",
    request_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
     $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, \
     $29, $30, $31, $32, $33, $34, $35) \
     ON CONFLICT (controller_id, request_id) DO NOTHING"
);

/// The request a controller stored under a `request_id`.
pub(super) const SELECT_REQUEST_BY_REQUEST_ID: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE controller_id = $1 AND request_id = $2"
);

/// One request of one controller.
pub(super) const SELECT_REQUEST: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE id = $1 AND controller_id = $2"
);

/// A page of requests: `$1` controller, `$2`/`$3` the cursor's create time
/// and id, `$4` the limit, then the filters in the order state, type.
macro_rules! list_requests {
    ($filters:literal) => {
        concat!(
            "SELECT ",
            request_columns!(),
            " FROM data_subject_requests \
             WHERE controller_id = $1 AND (create_time, id) > ($2, $3)",
            $filters,
            " ORDER BY create_time, id LIMIT $4"
        )
    };
}

/// One statement per combination of filters rather than
/// `($5 IS NULL OR state = $5)`: each prepared plan can then use the index
/// that matches its filter.
const LIST_REQUESTS: &str = list_requests!("");
const LIST_REQUESTS_BY_STATE: &str = list_requests!(" AND state = $5");
const LIST_REQUESTS_BY_TYPE: &str = list_requests!(" AND request_type = $5");
const LIST_REQUESTS_BY_STATE_AND_TYPE: &str =
    list_requests!(" AND state = $5 AND request_type = $6");

/// The listing statement for a filter; its filter values are bound after
/// the limit, state first.
pub(super) fn list_requests(filter: &RequestFilter) -> &'static str {
    match (filter.state.is_some(), filter.request_type.is_some()) {
        (false, false) => LIST_REQUESTS,
        (true, false) => LIST_REQUESTS_BY_STATE,
        (false, true) => LIST_REQUESTS_BY_TYPE,
        (true, true) => LIST_REQUESTS_BY_STATE_AND_TYPE,
    }
}

/// Writes every mutable column if the version is still the expected one:
/// `$1` id, `$2` controller, `$3` expected version, then the new values.
pub(super) const UPDATE_REQUEST: &str = "UPDATE data_subject_requests SET \
     state = $4, update_time = $5, due_time = $6, \
     extension_reason = $7, extension_time = $8, extended_by = $9, \
     guardian_full_name = $10, guardian_relationship = $11, guardian_email = $12, \
     guardian_verification_method = $13, guardian_consented_at = $14, \
     guardian_consent_record_time = $15, guardian_consent_recorded_by = $16, \
     closure_outcome = $17, closure_refusal_reason = $18, closure_explanation = $19, \
     close_time = $20, cancellation_reason = $21, version = $22 \
     WHERE id = $1 AND controller_id = $2 AND version = $3";

/// Appends an event with the next sequence of its request. Run inside the
/// transaction that wrote the request row: that write holds the row's lock
/// (PostgreSQL) or the database's write lock (SQLite), so no other
/// transaction can pick the same sequence in between; the primary key would
/// reject it anyway.
pub(super) const INSERT_EVENT: &str = "INSERT INTO request_events \
     (data_subject_request_id, controller_id, sequence, event_type, event_time, \
      actor_id, actor_role, from_state, to_state, reason) \
     VALUES ($1, $2, \
      (SELECT COALESCE(MAX(sequence), 0) + 1 FROM request_events \
       WHERE data_subject_request_id = $1), \
      $3, $4, $5, $6, $7, $8, $9)";

/// A page of one request's events. `controller_id` is on every event (and
/// tied to the request's by a foreign key), so no join is needed to keep
/// tenants apart.
pub(super) const LIST_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM request_events \
     WHERE data_subject_request_id = $1 AND controller_id = $2 AND sequence > $3 \
     ORDER BY sequence LIMIT $4"
);

/// The readiness round trip.
pub(super) const PING: &str = "SELECT 1";
