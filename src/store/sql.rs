//! The statements both backends run. SQLite and PostgreSQL both accept `$N`
//! placeholders, `ON CONFLICT … DO NOTHING` and row-value comparisons, so the
//! text is written once; only the binding of ids differs (TEXT in SQLite,
//! UUID in PostgreSQL).
//!
//! Every statement is a `&'static str` so that sqlx prepares it once per
//! connection and reuses it from its statement cache.
//!
//! A limit is written `LIMIT CAST($N AS BIGINT)`, never `LIMIT $N`, and a
//! state filter `state = CAST($N AS TEXT)`: SQLite plans with the value
//! bound to a bare parameter in those places (a limit's size; a state that
//! a partial index's condition names), and then marks the prepared
//! statement to be parsed and planned again whenever that parameter is
//! bound anew, which is at every execution. Behind a cast the parameter is
//! an expression it does not look into, and the statement is prepared
//! once.
//!
//! Row locks (`FOR NO KEY UPDATE`, `FOR UPDATE`, `SKIP LOCKED`) exist only in
//! PostgreSQL; the statements that take them are the SQLite ones with the
//! locking clause appended, named `…_LOCKED`, and only the PostgreSQL
//! backend runs them ([`ROW_LOCKS`] against [`NO_ROW_LOCKS`]). SQLite needs
//! no row locks: its writes are serialised.

use super::{RequestFilter, RouteFilter};
use crate::domain::routing::TaskState;

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
         close_time, cancellation_reason, unrouted, fingerprint, version, \
         origin_traceparent, origin_tracestate, \
         sla_at_risk_reported_at, sla_breached_reported_at, purge_time, \
         clock_start_time, clock_pauses, clock_paused_since, duplicate_of"
    };
}

/// The columns of `request_events` that [`RequestEvent`] is read from.
///
/// [`RequestEvent`]: crate::domain::request::RequestEvent
macro_rules! event_columns {
    () => {
        "data_subject_request_id, sequence, event_type, event_time, \
         actor_id, actor_role, from_state, to_state, reason, task_id"
    };
}

/// The columns of `request_events` in the order an event is bound
/// (`EventColumns::bind_insert`).
macro_rules! event_insert_columns {
    () => {
        "data_subject_request_id, controller_id, event_type, event_time, \
         actor_id, actor_role, from_state, to_state, reason, task_id, sequence, hash"
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
     $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, \
     $43, $44, $45) \
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

/// `count` placeholders from the `first`th, separated by commas: `$first,
/// …` numbered, or `?, …` anonymous.
pub(super) fn placeholder_list(first: usize, count: usize, placeholders: Placeholders) -> String {
    let list: Vec<String> = (first..first + count)
        .map(|n| match placeholders {
            Placeholders::Numbered => format!("${n}"),
            Placeholders::Anonymous => "?".to_owned(),
        })
        .collect();
    list.join(", ")
}

/// Most requests one [`select_requests`] statement reads.
pub(super) const SELECT_REQUESTS_MAX: usize = 64;

/// Several requests of one controller at once (`$1` controller, then the
/// ids): a group of concurrent reads in one round trip. Only a few sizes
/// are written, the powers of two up to [`SELECT_REQUESTS_MAX`], so that
/// each connection prepares at most seven of them; the caller repeats an
/// id to fill the list. Returns the statement and how many ids it takes.
pub(super) fn select_requests(ids: usize) -> (&'static str, usize) {
    static STATEMENTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        std::iter::successors(Some(1_usize), |n| Some(n * 2))
            .take_while(|n| *n <= SELECT_REQUESTS_MAX)
            .map(|n| {
                format!(
                    "SELECT {} FROM data_subject_requests WHERE controller_id = $1 AND id IN ({})",
                    request_columns!(),
                    placeholder_list(2, n, Placeholders::Numbered)
                )
            })
            .collect()
    });
    let room = ids.clamp(1, SELECT_REQUESTS_MAX).next_power_of_two();
    (STATEMENTS[room.trailing_zeros() as usize].as_str(), room)
}

/// [`SELECT_REQUEST`], locking the row against other writers of the request
/// and of its events until the transaction ends. `NO KEY UPDATE` is the
/// lock an `UPDATE` of the row takes itself; unlike `FOR UPDATE` it does not
/// hold up the key-share locks that foreign-key checks take when a task or
/// an event of the request is inserted.
///
/// It also reads the tip of the request's audit chain (the last event's
/// sequence and hash), which the transaction's events chain from: a wait
/// for the lock re-reads the row, so the tip is the latest.
pub(super) const SELECT_REQUEST_LOCKED: &str = concat!(
    "SELECT ",
    request_columns!(),
    ", last_event_sequence, last_event_hash \
     FROM data_subject_requests WHERE id = $1 AND controller_id = $2 \
     FOR NO KEY UPDATE"
);

/// [`SELECT_REQUEST_LOCKED`] without the lock (SQLite, one writer at a
/// time): the request and the tip of its audit chain.
pub(super) const SELECT_REQUEST_WITH_TIP: &str = concat!(
    "SELECT ",
    request_columns!(),
    ", last_event_sequence, last_event_hash \
     FROM data_subject_requests WHERE id = $1 AND controller_id = $2"
);

/// A page of requests: `$1` controller, `$2`/`$3` the cursor's create time
/// and id, `$4` the limit, then the filters in the order state, type.
/// `controller_id <> ''` is the predicate of PostgreSQL's listing indexes,
/// which only the listings state (its migration 0005 says why); SQLite's
/// indexes are whole, and the term costs it a comparison.
macro_rules! list_requests {
    ($filters:literal) => {
        concat!(
            "SELECT ",
            request_columns!(),
            " FROM data_subject_requests \
             WHERE controller_id = $1 AND controller_id <> '' \
             AND (create_time, id) > ($2, $3)",
            $filters,
            " ORDER BY create_time, id LIMIT CAST($4 AS BIGINT)"
        )
    };
}

/// The statement `$statement!` makes for `filter`'s combination of
/// filters: one statement per combination rather than
/// `($5 IS NULL OR state = $5)`, so that each prepared plan can use the
/// index that matches its filter.
macro_rules! for_filter {
    ($filter:expr, $statement:ident) => {
        match ($filter.state.is_some(), $filter.request_type.is_some()) {
            (false, false) => $statement!(""),
            (true, false) => $statement!(" AND state = CAST($5 AS TEXT)"),
            (false, true) => $statement!(" AND request_type = $5"),
            (true, true) => $statement!(" AND state = CAST($5 AS TEXT) AND request_type = $6"),
        }
    };
}

/// The listing statement for a filter; its filter values are bound after
/// the limit, state first.
pub(super) fn list_requests(filter: &RequestFilter) -> &'static str {
    for_filter!(filter, list_requests)
}

/// [`list_requests`]' page as one value (SQLite): a JSON array holding
/// one array of [`request_columns!`] per row, in no promised order: the
/// reader sorts the page by its key ([`super::codec::RequestColumns::page`]).
/// An ordered aggregate (`json_group_array(… ORDER BY …)`) would copy every
/// row into a sorter first, when the rows it aggregates are already the
/// page's twenty in index order. Each
/// row of a result is a message from the connection's thread, whose values
/// the driver copies out of the statement one by one: a page of twenty
/// rows of 41 columns made 820 copies and twenty messages, where this
/// makes one of each. (PostgreSQL's driver reads a row's values where
/// they arrived; there, building the JSON cost the database more than it
/// saved the service.)
macro_rules! page_of_requests {
    ($filters:literal) => {
        concat!(
            "SELECT json_group_array(json_array(",
            request_columns!(),
            ")) FROM (",
            list_requests!($filters),
            ")"
        )
    };
}

/// [`list_requests`] as one JSON value (SQLite's JSON functions), bound
/// the same way.
pub(super) fn page_of_requests(filter: &RequestFilter) -> &'static str {
    for_filter!(filter, page_of_requests)
}

/// Writes every mutable column if the version is still the expected one:
/// `$1` id, `$2` controller, `$3` expected version, then the new values.
/// The origin never changes, and the SLA marks are the watchdog's alone
/// ([`MARK_REQUEST_SLA`]).
macro_rules! update_request {
    ($tip:literal) => {
        concat!(
            "UPDATE data_subject_requests SET \
             state = $4, update_time = $5, due_time = $6, \
             extension_reason = $7, extension_time = $8, extended_by = $9, \
             guardian_full_name = $10, guardian_relationship = $11, guardian_email = $12, \
             guardian_verification_method = $13, guardian_consented_at = $14, \
             guardian_consent_record_time = $15, guardian_consent_recorded_by = $16, \
             closure_outcome = $17, closure_refusal_reason = $18, closure_explanation = $19, \
             close_time = $20, cancellation_reason = $21, unrouted = $22, version = $23, \
             clock_start_time = $24, clock_pauses = $25, clock_paused_since = $26",
            $tip,
            " WHERE id = $1 AND controller_id = $2 AND version = $3"
        )
    };
}
pub(super) const UPDATE_REQUEST: &str = update_request!("");

/// [`UPDATE_REQUEST`] that also moves the audit head and the chain's tip
/// (`$27` head, `$28` last sequence, `$29` last hash), for a change whose
/// events are written in the same round trip ([`super::writes`]).
pub(super) const UPDATE_REQUEST_WITH_TIP: &str =
    update_request!(", audit_head = $27, last_event_sequence = $28, last_event_hash = $29");

/// Appends an event with the next sequence of its request (`$11`, one
/// past [`LAST_EVENT`]'s) and its chained hash (`$12`). Run inside the
/// transaction that wrote the request row: that write holds the row's lock
/// (PostgreSQL) or the database's write lock (SQLite), so no other
/// transaction can pick the same sequence in between; the primary key would
/// reject it anyway. A task event, which changes no request column, is
/// written after locking the request row ([`SELECT_REQUEST_LOCKED`]) for
/// the same reason.
pub(super) const INSERT_EVENT: &str = concat!(
    "INSERT INTO request_events (",
    event_insert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

/// The sequence and hash of request `$1`'s last event, which the next
/// event's sequence and hash follow from ([`INSERT_EVENT`]'s locking
/// applies).
pub(super) const LAST_EVENT: &str = "SELECT sequence, hash FROM request_events \
     WHERE data_subject_request_id = $1 ORDER BY sequence DESC LIMIT 1";

/// Sets the audit head of request `$1` of controller `$2` to `$3`, and the
/// tip of its chain to sequence `$4` and hash `$5`, in the transaction that
/// wrote its last event.
pub(super) const SET_AUDIT_HEAD: &str = "UPDATE data_subject_requests \
     SET audit_head = $3, last_event_sequence = $4, last_event_hash = $5 \
     WHERE id = $1 AND controller_id = $2";

/// Up to `$2` requests of every controller with an id greater than `$1`,
/// by id: the pages `audit verify` walks.
pub(super) const AUDIT_REQUESTS: &str = "SELECT id, controller_id, audit_head \
     FROM data_subject_requests WHERE id > $1 ORDER BY id LIMIT CAST($2 AS BIGINT)";

/// Request `$1` of any controller, as [`AUDIT_REQUESTS`] reads it.
pub(super) const AUDIT_REQUEST: &str = "SELECT id, controller_id, audit_head \
     FROM data_subject_requests WHERE id = $1";

/// Every event of request `$1` with its hash, in sequence order.
pub(super) const AUDIT_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", hash FROM request_events WHERE data_subject_request_id = $1 ORDER BY sequence"
);

/// A page of one request's events. `controller_id` is on every event (and
/// tied to the request's by a foreign key), so no join is needed to keep
/// tenants apart.
pub(super) const LIST_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM request_events \
     WHERE data_subject_request_id = $1 AND controller_id = $2 AND sequence > $3 \
     ORDER BY sequence LIMIT CAST($4 AS BIGINT)"
);

/// A page of controller `$1`'s change feed after transaction `$2` (an
/// `xid8` in text), request `$3` and sequence `$4`, at most `$5` events,
/// below the oldest transaction still running (PostgreSQL; see
/// `migrations/postgres/0007_change_feed.sql`). The row comparison walks
/// the `request_events_feed` index from that place on.
pub(super) const FEED_PAGE_POSTGRES: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", feed_xid::text AS feed_xid, data_subject_request_id AS feed_request, \
     sequence AS feed_number FROM request_events WHERE controller_id = $1 \
     AND (feed_xid, data_subject_request_id, sequence) > ($2::xid8, $3, $4) \
     AND feed_xid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY feed_xid, data_subject_request_id, sequence LIMIT CAST($5 AS BIGINT)"
);

/// A page of controller `$1`'s change feed after position `$2`, at most
/// `$3` events (SQLite, whose positions are in commit order).
pub(super) const FEED_PAGE_SQLITE: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", '0' AS feed_xid, '00000000-0000-0000-0000-000000000000' AS feed_request, \
     feed_position AS feed_number FROM request_events WHERE controller_id = $1 AND feed_position > $2 \
     ORDER BY feed_position LIMIT $3"
);

/// The place no cursor of this database's feed can be past (PostgreSQL):
/// the next transaction id to be handed out. Every event delivered so far
/// stands below it.
pub(super) const FEED_END_POSTGRES: &str = "SELECT \
     pg_snapshot_xmax(pg_current_snapshot())::text AS feed_xid, \
     CAST('00000000-0000-0000-0000-000000000000' AS UUID) AS feed_request, \
     CAST(0 AS BIGINT) AS feed_number";

/// The place no cursor of this database's feed can be past (SQLite): the
/// last event's row number.
pub(super) const FEED_END_SQLITE: &str = "SELECT '0' AS feed_xid, \
     '00000000-0000-0000-0000-000000000000' AS feed_request, \
     COALESCE(MAX(feed_position), 0) AS feed_number FROM request_events";

// ---- tasks ----

/// The columns of `tasks` that [`Task`] is read from, in the order of the
/// placeholders of [`INSERT_TASK`].
///
/// [`Task`]: crate::domain::routing::Task
macro_rules! task_columns {
    () => {
        "id, data_subject_request_id, controller_id, processor_id, state, \
         attempt, due_time, lease_token, lease_expire_time, outcome, reason, \
         result_uri, note, create_time, update_time, complete_time, \
         sla_at_risk_reported_at, sla_breached_reported_at"
    };
}

/// [`task_columns!`] of the table aliased `t`, for joins with the request.
macro_rules! task_columns_of_t {
    () => {
        "t.id, t.data_subject_request_id, t.controller_id, t.processor_id, \
         t.state, t.attempt, t.due_time, t.lease_token, t.lease_expire_time, \
         t.outcome, t.reason, t.result_uri, t.note, t.create_time, \
         t.update_time, t.complete_time, \
         t.sla_at_risk_reported_at, t.sla_breached_reported_at"
    };
}

/// A task and what its processor may know of the request: never the date of
/// birth, the details or the guardian.
macro_rules! task_view_from {
    () => {
        concat!(
            "SELECT ",
            task_columns_of_t!(),
            ", r.request_type, r.subject_external_id, r.subject_email, \
             r.subject_country, r.corrections, \
             r.origin_traceparent, r.origin_tracestate \
             FROM tasks t JOIN data_subject_requests r \
             ON r.id = t.data_subject_request_id AND r.controller_id = t.controller_id"
        )
    };
}

/// Creates a task (the fan-out).
pub(super) const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
     $17, $18)"
);

/// How a statement built at run time writes its placeholders. The fixed
/// statements of this module use `$N`, which both databases accept; a
/// built statement may have thousands (a group of requests), and SQLite
/// finds a named parameter by a linear search of the statement's names,
/// once per parameter as it binds, so there it uses `?`, which it binds by
/// position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, …` (PostgreSQL knows no other form).
    Numbered,
    /// `?, ?, …`, bound in order.
    Anonymous,
}

/// The number of columns in a comma-separated column list.
const fn column_count(list: &str) -> usize {
    let bytes = list.as_bytes();
    let mut count = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
}

/// A group of new requests in one statement (`store::batch`): each row is
/// [`request_columns`] then `audit_head` and the chain's tip, the rows follow `VALUES`, and
/// [`INSERT_NEW_REQUESTS_TAIL`] skips a taken `request_id` (and
/// [`INSERT_GROUP`] adds `RETURNING id`).
pub(super) const INSERT_NEW_REQUESTS_HEAD: &str = concat!(
    "INSERT INTO data_subject_requests (",
    request_columns!(),
    ", audit_head, last_event_sequence, last_event_hash) VALUES "
);
pub(super) const INSERT_NEW_REQUESTS_TAIL: &str =
    " ON CONFLICT (controller_id, request_id) DO NOTHING";
pub(super) const INSERT_NEW_REQUEST_WIDTH: usize = column_count(request_columns!()) + 3;
/// Tasks, several rows per statement (`store::batch`).
pub(super) const INSERT_TASKS_HEAD: &str =
    concat!("INSERT INTO tasks (", task_columns!(), ") VALUES ");
pub(super) const INSERT_TASK_WIDTH: usize = column_count(task_columns!());
/// Events, several rows per statement (`store::batch`).
pub(super) const INSERT_EVENTS_HEAD: &str = concat!(
    "INSERT INTO request_events (",
    event_insert_columns!(),
    ") VALUES "
);
pub(super) const INSERT_EVENT_WIDTH: usize = column_count(event_insert_columns!());

/// PostgreSQL: a group of new requests, their tasks and their events in
/// one statement, one round trip and no explicit transaction (one statement
/// commits or fails whole). Each table's rows come as one array per column,
/// in the order of [`INSERT_NEW_REQUESTS_HEAD`] (with the tip),
/// [`INSERT_TASKS_HEAD`] and [`INSERT_EVENTS_HEAD`], opened with `UNNEST`:
/// the text is the same for a group of any size, so each connection
/// prepares it once, and the server parses one parameter per column rather
/// than one per value. Tasks and events go in only for the requests the
/// statement inserted (not those whose `request_id` was taken); the foreign
/// keys are checked at the end of the statement, when all three are in.
/// Returns the ids of the requests inserted.
pub(super) static INSERT_GROUP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let requests = INSERT_NEW_REQUEST_WIDTH;
    let tasks = INSERT_TASK_WIDTH;
    let events = INSERT_EVENT_WIDTH;
    format!(
        "WITH new AS (INSERT INTO data_subject_requests ({request_columns}, \
         audit_head, last_event_sequence, last_event_hash) \
         SELECT * FROM {request_rows}{tail} RETURNING id), \
         new_tasks AS (INSERT INTO tasks ({task_columns}) \
         SELECT * FROM {task_rows} AS t ({task_columns}) \
         WHERE t.data_subject_request_id IN (SELECT id FROM new)), \
         new_events AS (INSERT INTO request_events ({event_columns}) \
         SELECT * FROM {event_rows} AS e ({event_columns}) \
         WHERE e.data_subject_request_id IN (SELECT id FROM new)) \
         SELECT id FROM new",
        request_columns = request_columns!(),
        task_columns = task_columns!(),
        event_columns = event_insert_columns!(),
        request_rows = unnest(1, requests),
        task_rows = unnest(1 + requests, tasks),
        event_rows = unnest(1 + requests + tasks, events),
        tail = INSERT_NEW_REQUESTS_TAIL,
    )
});

/// [`INSERT_GROUP`] for a group that may repeat open requests
/// ([`crate::domain::duplicate`]), when none of its requests repeats
/// another of the group: the same statement, which first calls
/// `gdpr_lock_and_find_open` (migrations/postgres/0009_duplicates.sql)
/// with the group's keys as three arrays after the rows' parameters
/// (controllers, subjects, types) and its lock numbers as a fourth (see
/// [`SUBJECT_LOCKS`]). The function takes the locks, held until the
/// statement commits, then reads the open requests about the keys; being
/// volatile, it reads them as committed when it runs, not when the
/// statement began, so it sees whatever another transaction that held one
/// of the locks committed. If it finds one, nothing is inserted and the
/// statement returns the ids found, marked `true`, for the caller to decide
/// in a transaction ([`super::sql_store`]'s duplicates); otherwise it
/// inserts the group as [`INSERT_GROUP`] does and returns the ids
/// inserted, marked `false`. In the common case, a group that repeats
/// nothing, the check costs no round trip of its own.
pub(super) static INSERT_GROUP_UNLESS_OPEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(
    || {
        let rows = INSERT_NEW_REQUEST_WIDTH + INSERT_TASK_WIDTH + INSERT_EVENT_WIDTH;
        let keys = placeholder_list(rows + 1, 4, Placeholders::Numbered);
        let group = INSERT_GROUP
            .replacen(
                "WITH new AS (",
                &format!(
                    "WITH found AS MATERIALIZED (SELECT id FROM gdpr_lock_and_find_open({keys}) AS f (id)), \
                     new AS ("
                ),
                1,
            )
            .replacen(
                " ON CONFLICT",
                " WHERE NOT EXISTS (SELECT 1 FROM found) ON CONFLICT",
                1,
            );
        let select = "SELECT id FROM new";
        debug_assert!(group.ends_with(select));
        format!(
            "{}SELECT id, FALSE FROM new UNION ALL SELECT id, TRUE FROM found",
            &group[..group.len() - select.len()]
        )
    },
);

/// `UNNEST($first, …)` over `count` array parameters.
fn unnest(first: usize, count: usize) -> String {
    format!(
        "UNNEST({})",
        placeholder_list(first, count, Placeholders::Numbered)
    )
}

/// Which of `n` request ids (`$1`…) are stored: after an insert that
/// skipped some rows, the ids it did insert (a new request's id is fresh,
/// so it is stored only if that insert stored it).
pub(super) fn stored_request_ids(n: usize, placeholders: Placeholders) -> String {
    format!(
        "SELECT id FROM data_subject_requests WHERE id IN ({})",
        placeholder_list(1, n, placeholders)
    )
}

/// Writes every mutable column of a task: `$1` id, then the new values.
/// The SLA marks are the watchdog's alone ([`MARK_TASK_SLA`]).
pub(super) const UPDATE_TASK: &str = "UPDATE tasks SET \
     state = $2, attempt = $3, lease_token = $4, lease_expire_time = $5, \
     outcome = $6, reason = $7, result_uri = $8, note = $9, \
     update_time = $10, complete_time = $11 \
     WHERE id = $1";

/// Every task of one request of one controller, oldest first.
pub(super) const REQUEST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE data_subject_request_id = $1 AND controller_id = $2 \
     ORDER BY create_time, id"
);

/// The open (pending or leased) tasks of one request of one controller.
pub(super) const OPEN_REQUEST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE data_subject_request_id = $1 AND controller_id = $2 \
     AND state IN ('pending', 'leased') ORDER BY id"
);

/// [`OPEN_REQUEST_TASKS`], locking them; in id order, so that two
/// transactions locking the same tasks take them in the same order.
pub(super) const OPEN_REQUEST_TASKS_LOCKED: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE data_subject_request_id = $1 AND controller_id = $2 \
     AND state IN ('pending', 'leased') ORDER BY id FOR NO KEY UPDATE"
);

/// The tasks of processor `$1` that a claim at `$2` may hand out, earliest
/// due first: `FROM` on, without a limit.
macro_rules! claimable_tasks_of {
    () => {
        " FROM tasks WHERE processor_id = $1 \
         AND state IN ('pending', 'leased') \
         AND (state = 'pending' OR lease_expire_time <= $2) \
         ORDER BY due_time, id"
    };
}

/// Up to `$3` tasks of processor `$1` that a claim at `$2` may hand out
/// (pending, or leased under a lease that has ended), earliest due first.
/// The state is spelled as the `IN` list of the partial `tasks_claim`
/// index (open tasks only, by processor in due order; migration 0002), so
/// that both databases read that index in order and stop after `$3` rows,
/// whatever the backlog, rather than scan and sort the processor's tasks.
pub(super) const CLAIMABLE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    claimable_tasks_of!(),
    " LIMIT CAST($3 AS BIGINT)"
);

/// [`CLAIMABLE_TASKS`], locking the rows it returns and passing over rows
/// that another claim has locked: concurrent claimers take disjoint tasks
/// without waiting for each other. A row another claim changed and
/// committed meanwhile is checked against the condition again, so a task
/// just leased by someone else is not returned.
pub(super) const CLAIMABLE_TASKS_LOCKED: &str = concat!(
    "SELECT ",
    task_columns!(),
    claimable_tasks_of!(),
    " LIMIT CAST($3 AS BIGINT) FOR NO KEY UPDATE SKIP LOCKED"
);

/// [`request_columns!`] of the table aliased `r`, then the tip of its
/// audit chain, for a task read with its request in one statement.
macro_rules! request_columns_of_r_with_tip {
    () => {
        "r.id, r.controller_id, r.request_id, r.request_type, \
         r.subject_external_id, r.subject_email, r.subject_date_of_birth, \
         r.subject_country, r.subject_subdivision, r.details, r.corrections, \
         r.state, r.regime, r.received_at, r.create_time, r.update_time, \
         r.original_due_time, r.due_time, \
         r.extension_reason, r.extension_time, r.extended_by, \
         r.guardian_full_name, r.guardian_relationship, r.guardian_email, \
         r.guardian_verification_method, r.guardian_consented_at, \
         r.guardian_consent_record_time, r.guardian_consent_recorded_by, \
         r.closure_outcome, r.closure_refusal_reason, r.closure_explanation, \
         r.close_time, r.cancellation_reason, r.unrouted, r.fingerprint, r.version, \
         r.origin_traceparent, r.origin_tracestate, \
         r.sla_at_risk_reported_at, r.sla_breached_reported_at, r.purge_time, \
         r.clock_start_time, r.clock_pauses, r.clock_paused_since, r.duplicate_of, \
         r.last_event_sequence, r.last_event_hash"
    };
}

/// A task (aliased `t`) with its request and the request's tip: the task
/// columns, then the request's, then the tip ([`task_columns_of_t!`],
/// [`request_columns_of_r_with_tip!`]).
macro_rules! task_and_request_from {
    ($($tasks:expr),+) => {
        concat!(
            "SELECT ",
            task_columns_of_t!(),
            ", ",
            request_columns_of_r_with_tip!(),
            " FROM ",
            $($tasks),+,
            " t JOIN data_subject_requests r \
             ON r.id = t.data_subject_request_id AND r.controller_id = t.controller_id"
        )
    };
}

/// One task of one processor (`$1` id, `$2` processor) with its request
/// and the request's tip, in one statement (SQLite: one writer, no locks).
pub(super) const TASK_AND_REQUEST: &str = concat!(
    task_and_request_from!("tasks"),
    " WHERE t.id = $1 AND t.processor_id = $2"
);

/// The request's tasks and the request, for [`TASK_REQUEST_AND_SIBLINGS`]
/// and [`TASK_REQUEST_AND_SIBLINGS_LOCKED`].
macro_rules! task_request_and_siblings_from {
    () => {
        task_and_request_from!(
            "(SELECT s.* FROM tasks o JOIN tasks s \
             ON s.data_subject_request_id = o.data_subject_request_id \
             AND s.controller_id = o.controller_id \
             WHERE o.id = $1 AND o.processor_id = $2)"
        )
    };
}

/// Every task of the request that task `$1` of processor `$2` belongs to,
/// oldest first (as [`REQUEST_TASKS`]), each with that request and its
/// tip; no rows if the processor has no such task. What a completion
/// reads on SQLite, in one statement: the task, its request, and the
/// tasks that decide whether it completes the request.
pub(super) const TASK_REQUEST_AND_SIBLINGS: &str = concat!(
    task_request_and_siblings_from!(),
    " ORDER BY t.create_time, t.id"
);

/// The text of [`TASK_AND_REQUEST_LOCKED`], for the statements built on it.
macro_rules! task_and_request_locked {
    () => {
        concat!(
            task_and_request_from!("tasks"),
            " WHERE t.id = $1 AND t.processor_id = $2 FOR NO KEY UPDATE OF t, r"
        )
    };
}

/// [`TASK_AND_REQUEST`], locking the task, then the request: the order
/// every transaction that locks both takes them in. A wait for either
/// re-reads the joined row, so the request and its tip are the latest.
pub(super) const TASK_AND_REQUEST_LOCKED: &str = task_and_request_locked!();

/// What a completion reads on PostgreSQL, in one statement: first the row
/// of [`TASK_AND_REQUEST_LOCKED`] (task `$1` of processor `$2` and its
/// request, locked, as they are once the locks are held), then every task
/// of that request, each with the request and its tip, as the statement's
/// snapshot saw them, before it waited for any lock; the last column,
/// `part`, says which part a row is from (0 or 1). The other tasks stay
/// unlocked. There is no `ORDER BY`: under a task transaction's
/// `enable_sort = off` a sort costs the planner's penalty, which would
/// put the statement above the JIT compiler's threshold.
///
/// A task's state changes only in a transaction that writes an event on
/// its request, and so moves the request's tip. If the tip the locked row
/// reads is the tip the snapshot saw, no such transaction committed in
/// between, and the snapshot's tasks are the tasks as they are now; if
/// the tips differ, the caller reads the tasks again
/// ([`REQUEST_TASKS`]).
pub(super) const TASK_REQUEST_AND_SIBLINGS_LOCKED: &str = concat!(
    "SELECT l.*, CAST(0 AS BIGINT) AS part FROM (",
    task_and_request_locked!(),
    ") l UNION ALL SELECT k.*, CAST(1 AS BIGINT) FROM (",
    task_request_and_siblings_from!(),
    ") k"
);

/// [`TASK_AND_REQUEST`], locking only the task: a lease renewal writes
/// no event and leaves the request row alone.
pub(super) const TASK_LOCKED_AND_REQUEST: &str = concat!(
    task_and_request_from!("tasks"),
    " WHERE t.id = $1 AND t.processor_id = $2 FOR NO KEY UPDATE OF t"
);

/// The one task a claim of a single task may take ([`CLAIMABLE_TASKS`]
/// with `$3` = 1) with its request and the request's tip, in one
/// statement.
pub(super) const CLAIMABLE_TASK_AND_REQUEST: &str =
    task_and_request_from!("(SELECT *", claimable_tasks_of!(), " LIMIT 1)");

/// [`CLAIMABLE_TASK_AND_REQUEST`], locking the task as
/// [`CLAIMABLE_TASKS_LOCKED`] does (passing over tasks another claim
/// holds), then its request. One task, so one request: the request locks
/// of a claim of several tasks are taken one statement at a time, in id
/// order, instead.
pub(super) const CLAIMABLE_TASK_AND_REQUEST_LOCKED: &str = concat!(
    task_and_request_from!(
        "(SELECT *",
        claimable_tasks_of!(),
        " LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED)"
    ),
    " FOR NO KEY UPDATE OF r"
);

/// One task of one processor as the processor sees it: `$1` id, `$2`
/// processor.
pub(super) const SELECT_TASK_VIEW: &str = concat!(
    task_view_from!(),
    " WHERE t.id = $1 AND t.processor_id = $2"
);

/// A page of one processor's tasks: `$1` processor, `$2`/`$3` the cursor's
/// create time and id, `$4` the limit, then the state filter's value;
/// `processor_id <> ''` is tasks_list's predicate, as for requests.
macro_rules! list_tasks {
    ($filter:literal) => {
        concat!(
            task_view_from!(),
            " WHERE t.processor_id = $1 AND t.processor_id <> '' \
             AND (t.create_time, t.id) > ($2, $3)",
            $filter,
            " ORDER BY t.create_time, t.id LIMIT CAST($4 AS BIGINT)"
        )
    };
}

const LIST_TASKS: &str = list_tasks!("");
/// Visibly pending: pending, or leased under a lease that ended by `$5`.
const LIST_TASKS_PENDING: &str =
    list_tasks!(" AND (t.state = 'pending' OR (t.state = 'leased' AND t.lease_expire_time <= $5))");
/// Visibly leased: under a lease still running at `$5`.
const LIST_TASKS_LEASED: &str = list_tasks!(" AND t.state = 'leased' AND t.lease_expire_time > $5");
/// A final state, `$5`.
const LIST_TASKS_IN_STATE: &str = list_tasks!(" AND t.state = $5");

/// What a task listing binds after its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TaskFilterValue {
    /// Nothing: no filter.
    None,
    /// The time the visible state is judged at.
    Now,
    /// The stored state's name.
    State(&'static str),
}

/// The listing statement for a visible-state filter and what it binds.
pub(super) fn list_tasks(state: Option<TaskState>) -> (&'static str, TaskFilterValue) {
    match state {
        None => (LIST_TASKS, TaskFilterValue::None),
        Some(TaskState::Pending) => (LIST_TASKS_PENDING, TaskFilterValue::Now),
        Some(TaskState::Leased) => (LIST_TASKS_LEASED, TaskFilterValue::Now),
        Some(s @ (TaskState::Completed | TaskState::Failed | TaskState::Cancelled)) => {
            (LIST_TASKS_IN_STATE, TaskFilterValue::State(s.as_str()))
        }
    }
}

/// Whether processor `$1` still owes work on some task.
pub(super) const PROCESSOR_HAS_OPEN_TASKS: &str = "SELECT 1 FROM tasks \
     WHERE processor_id = $1 AND state IN ('pending', 'leased') LIMIT 1";

// ---- SLA watchdog ----

/// The states a request is open in, as the partial index
/// `data_subject_requests_open` spells them: a statement must repeat an
/// index's condition word for word for SQLite to use it.
macro_rules! open_requests {
    () => {
        "state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', \
         'awaiting_identity_verification', 'awaiting_clarification')"
    };
}

/// The open requests about the (controller, subject, type) keys of a
/// group of submissions that may repeat them
/// ([`crate::domain::duplicate`]), on SQLite: `$1` the keys as one JSON
/// array of `[controller, subject, type]` arrays, one parameter whatever
/// their number. The writer runs alone, so what it reads stays so until
/// its commit.
pub(super) const OPEN_REQUESTS_ABOUT_SQLITE: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests \
     WHERE (controller_id, subject_external_id, request_type) IN \
     (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each($1)) AND ",
    open_requests!()
);

/// [`OPEN_REQUESTS_ABOUT_SQLITE`] on PostgreSQL: the keys as three
/// arrays (`$1` controllers, `$2` subjects, `$3` types), and each request
/// read locked, so that it stays open until the commit and its trail
/// takes the `duplicate_received` event. Run after [`SUBJECT_LOCKS`].
pub(super) const OPEN_REQUESTS_ABOUT_LOCKED: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests \
     WHERE (controller_id, subject_external_id, request_type) IN \
     (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])) AND ",
    open_requests!(),
    " FOR NO KEY UPDATE"
);

/// The namespace of [`SUBJECT_LOCKS`] among PostgreSQL's advisory locks
/// (`gdpr` in ASCII).
pub(super) const SUBJECT_LOCK_SPACE: i32 = 0x6764_7072;

/// PostgreSQL: takes, until the end of the transaction, the advisory lock
/// of each key in `$1` (ascending, so that two groups never wait for each
/// other in a circle), in [`SUBJECT_LOCK_SPACE`]. Submissions about the
/// same controller, subject and type then decide one after the other
/// whether they repeat an open request, on every replica.
pub(super) const SUBJECT_LOCKS: &str =
    "SELECT pg_advisory_xact_lock($2, k) FROM unnest($1::int4[]) AS k";

/// Up to `$4` open requests of every controller due by `$1` whose breach
/// was not reported, after the cursor `$2`/`$3` in `(due_time, id)` order.
/// A reported breach is final: a deadline cannot be extended once passed.
pub(super) const SLA_REQUESTS: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE ",
    open_requests!(),
    " AND due_time <= $1 AND sla_breached_reported_at IS NULL \
     AND (due_time, id) > ($2, $3) ORDER BY due_time, id LIMIT CAST($4 AS BIGINT)"
);

/// Up to `$4` requests of every controller awaiting guardian consent and
/// received before `$1`, after the cursor `$2`/`$3` in `(received_at, id)`
/// order.
pub(super) const AWAITING_CONSENT_SINCE: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE state = 'awaiting_guardian_consent' \
     AND received_at < $1 AND (received_at, id) > ($2, $3) \
     ORDER BY received_at, id LIMIT CAST($4 AS BIGINT)"
);

/// Up to `$4` requests of every controller waiting for their subject since
/// `$1` or before, after the cursor `$2`/`$3` in `(clock_paused_since, id)`
/// order (the partial index `data_subject_requests_awaiting_subject`).
pub(super) const AWAITING_SUBJECT_SINCE: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE clock_paused_since IS NOT NULL \
     AND clock_paused_since <= $1 AND (clock_paused_since, id) > ($2, $3) \
     ORDER BY clock_paused_since, id LIMIT CAST($4 AS BIGINT)"
);

/// Up to `$4` open tasks of every processor due by `$1` whose breach was
/// not reported, after the cursor `$2`/`$3` in `(due_time, id)` order.
pub(super) const SLA_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE state IN ('pending', 'leased') \
     AND due_time <= $1 AND sla_breached_reported_at IS NULL \
     AND (due_time, id) > ($2, $3) ORDER BY due_time, id LIMIT CAST($4 AS BIGINT)"
);

/// Sets a request's SLA marks to `$4` (at risk) and `$5` (breached) if it
/// is still as the watchdog read it: version `$3`, marks `$6` and `$7`.
/// Another sweeper that reported the same finding first changed the marks,
/// so of two only one writes. The version stays: a report changes nothing
/// a caller decides on.
pub(super) const MARK_REQUEST_SLA: &str = "UPDATE data_subject_requests SET \
     sla_at_risk_reported_at = $4, sla_breached_reported_at = $5 \
     WHERE id = $1 AND controller_id = $2 AND version = $3 \
     AND sla_at_risk_reported_at IS NOT DISTINCT FROM $6 \
     AND sla_breached_reported_at IS NOT DISTINCT FROM $7";

/// Sets an open task's SLA marks to `$2` (at risk) and `$3` (breached) if
/// they are still `$4` and `$5`.
pub(super) const MARK_TASK_SLA: &str = "UPDATE tasks SET \
     sla_at_risk_reported_at = $2, sla_breached_reported_at = $3 \
     WHERE id = $1 AND state IN ('pending', 'leased') \
     AND sla_at_risk_reported_at IS NOT DISTINCT FROM $4 \
     AND sla_breached_reported_at IS NOT DISTINCT FROM $5";

// ---- retention purge ----

/// Up to `$4` requests of every controller closed at or before `$1` and
/// not purged yet, after the cursor `$2`/`$3` in `(close_time, id)` order.
/// Only a request in a final state has a close time; the condition is the
/// partial index `data_subject_requests_purge`'s, word for word.
pub(super) const PURGE_DUE: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM data_subject_requests WHERE purge_time IS NULL AND close_time IS NOT NULL \
     AND close_time <= $1 AND (close_time, id) > ($2, $3) \
     ORDER BY close_time, id LIMIT CAST($4 AS BIGINT)"
);

/// Empties the personal-data columns of request `$1` of controller `$2`
/// and sets its purge time `$4` (also its update time) and version `$5`,
/// if it is still at version `$3` and not purged: purging twice writes
/// nothing the second time. The audit trail is not touched.
pub(super) const PURGE_REQUEST: &str = "UPDATE data_subject_requests SET \
     subject_email = NULL, subject_date_of_birth = NULL, \
     guardian_full_name = NULL, guardian_email = NULL, \
     details = '', corrections = '{}', \
     purge_time = $4, update_time = $4, version = $5 \
     WHERE id = $1 AND controller_id = $2 AND version = $3 AND purge_time IS NULL";

// ---- keys ----

/// Sealed personal-data values and the requests holding them, per data key
/// id (NULL: sealed before key ids). `substr` counts from 1 on both
/// backends; 12 is [`super::crypt::KEY_ID_LEN`].
pub(super) const KEY_USE: &str = "SELECT \
     CASE WHEN v LIKE 'v2.%' THEN substr(v, 4, 12) END AS key_id, \
     count(DISTINCT id) AS requests, count(*) AS sealed FROM ( \
     SELECT id, subject_email AS v FROM data_subject_requests WHERE subject_email IS NOT NULL \
     UNION ALL SELECT id, subject_date_of_birth FROM data_subject_requests \
     WHERE subject_date_of_birth IS NOT NULL \
     UNION ALL SELECT id, guardian_full_name FROM data_subject_requests \
     WHERE guardian_full_name IS NOT NULL \
     UNION ALL SELECT id, guardian_email FROM data_subject_requests \
     WHERE guardian_email IS NOT NULL \
     ) s GROUP BY 1 ORDER BY 1";

/// The keys of purpose `$1` made primary so far, the newest first.
pub(super) const REGISTERED_KEYS: &str = "SELECT key_id, primary_since, retired_since, \
     covers_unnamed FROM key_registry WHERE purpose = $1 ORDER BY primary_since DESC, key_id";

/// Records key `$2` of purpose `$1` as made primary at `$3`, covering what
/// names no key if `$4`, unless it was before (its first record stands).
pub(super) const REGISTER_KEY: &str = "INSERT INTO key_registry \
     (purpose, key_id, primary_since, covers_unnamed) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (purpose, key_id) DO NOTHING";

/// Retires key `$2` of purpose `$1` at `$3`: nothing stored needs it.
pub(super) const RETIRE_KEY: &str = "UPDATE key_registry SET retired_since = $3 \
     WHERE purpose = $1 AND key_id = $2 AND retired_since IS NULL";

/// Up to `$3` requests with a personal-data value sealed with the key whose
/// values begin with `$1` (`v2.<key id>.%`), or matching `$2` (`v1.%`,
/// values from before key ids, for the keys that cover them; `''`, which
/// no value matches, for the others).
pub(super) const SEALED_WITH: &str = "SELECT id FROM data_subject_requests \
     WHERE subject_date_of_birth LIKE $1 OR subject_email LIKE $1 \
     OR guardian_full_name LIKE $1 OR guardian_email LIKE $1 \
     OR subject_date_of_birth LIKE $2 OR subject_email LIKE $2 \
     OR guardian_full_name LIKE $2 OR guardian_email LIKE $2 \
     ORDER BY id LIMIT CAST($3 AS BIGINT)";

/// Up to `$3` requests with an event chained with the audit key whose
/// hashes begin with `$1` (`<key id>.%`), or whose hash matches `$2` (64
/// `_`: a bare hash from before key ids, for the keys that cover them;
/// `''` for the others). Each request's events are found through their
/// primary key, and the walk stops at the limit.
pub(super) const CHAINED_WITH: &str = "SELECT r.id FROM data_subject_requests r \
     WHERE EXISTS (SELECT 1 FROM request_events e \
     WHERE e.data_subject_request_id = r.id AND (e.hash LIKE $1 OR e.hash LIKE $2)) \
     ORDER BY r.id LIMIT CAST($3 AS BIGINT)";

/// The re-seal's page: up to `$3` requests with an id greater than `$1`
/// holding a personal-data value not sealed with the key whose values
/// begin with `$2` (`v2.<primary id>.%`), by id, with what the re-seal
/// rewrites.
pub(super) const RESEAL_CANDIDATES: &str = "SELECT id, controller_id, version, \
     subject_date_of_birth, subject_email, guardian_full_name, guardian_email \
     FROM data_subject_requests WHERE id > $1 AND ( \
     subject_date_of_birth NOT LIKE $2 OR subject_email NOT LIKE $2 \
     OR guardian_full_name NOT LIKE $2 OR guardian_email NOT LIKE $2) \
     ORDER BY id LIMIT CAST($3 AS BIGINT)";

/// Writes request `$1`'s personal data sealed anew (`$3`…`$6`), if it is
/// still at version `$2`. The version stays: the values are the same, and
/// a writer that read the row before this still writes its own sealing.
pub(super) const RESEAL_REQUEST: &str = "UPDATE data_subject_requests SET \
     subject_date_of_birth = $3, subject_email = $4, guardian_full_name = $5, guardian_email = $6 \
     WHERE id = $1 AND version = $2";

// ---- leases ----

/// Takes lease `$1` for holder `$2` until `$3`: a new row, or the existing
/// one if `$2` already holds it or it lapsed by `$4`. One statement, so of
/// two replicas asking at once exactly one gets it: PostgreSQL locks the
/// conflicting row and checks the condition on its latest version; SQLite
/// serialises writers. No row changed: someone else holds it.
pub(super) const ACQUIRE_LEASE: &str = "INSERT INTO leases (name, holder, expire_time) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expire_time = excluded.expire_time \
     WHERE leases.holder = excluded.holder OR leases.expire_time <= $4";

/// Gives lease `$1` up if holder `$2` holds it.
pub(super) const RELEASE_LEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";

/// PostgreSQL: taken before recording a revocation and held to the commit,
/// so revocations commit in the order of their numbers and a replica that
/// has loaded up to one number never misses a lower one committed later.
/// (Plain reads are not blocked; SQLite has one writer anyway.)
pub(super) const LOCK_REVOCATIONS: &str = "LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE";

/// Records revocation `$1` kind, `$2` value, `$3` reason, `$4` by whom, `$5`
/// when, unless its target is revoked already.
pub(super) const INSERT_REVOCATION: &str = "INSERT INTO revocations \
     (kind, value, reason, revoked_by, create_time) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kind, value) DO NOTHING";

/// The revocation of kind `$1` and value `$2`.
pub(super) const SELECT_REVOCATION: &str = "SELECT seq, kind, value, reason, revoked_by, \
     create_time FROM revocations WHERE kind = $1 AND value = $2";

/// Up to `$2` revocations numbered after `$1`, in order.
pub(super) const LIST_REVOCATIONS: &str = "SELECT seq, kind, value, reason, revoked_by, \
     create_time FROM revocations WHERE seq > $1 ORDER BY seq LIMIT CAST($2 AS BIGINT)";

/// Lease `$1`: its holder and expiry.
pub(super) const SELECT_LEASE: &str = "SELECT holder, expire_time FROM leases WHERE name = $1";

// ---- processors ----

/// Registers a processor unless the id is taken.
pub(super) const INSERT_PROCESSOR: &str = "INSERT INTO processors \
     (id, display_name, contact, create_time) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO NOTHING";

/// Up to `$2` processors with an id greater than `$1`.
pub(super) const LIST_PROCESSORS: &str = "SELECT id, display_name, contact, create_time \
     FROM processors WHERE id > $1 ORDER BY id LIMIT CAST($2 AS BIGINT)";

/// Whether processor `$1` exists.
pub(super) const SELECT_PROCESSOR_ID: &str = "SELECT id FROM processors WHERE id = $1";

/// [`SELECT_PROCESSOR_ID`], locking the row for its deletion: a route
/// being created for it (whose foreign-key check takes a key-share lock)
/// waits, then fails as `Missing`; one committed first is deleted with it.
pub(super) const SELECT_PROCESSOR_ID_LOCKED: &str =
    "SELECT id FROM processors WHERE id = $1 FOR UPDATE";

/// Deletes a processor; its routes go with it (`ON DELETE CASCADE`).
pub(super) const DELETE_PROCESSOR: &str = "DELETE FROM processors WHERE id = $1";

// ---- routes ----

/// The columns of `routes`, in the order of the placeholders of
/// [`INSERT_ROUTE`].
macro_rules! route_columns {
    () => {
        "id, controller_id, processor_id, request_types, task_sla_working_hours, create_time"
    };
}

/// Creates a route unless the controller already has one to the processor.
/// A processor that does not exist fails the foreign key.
pub(super) const INSERT_ROUTE: &str = concat!(
    "INSERT INTO routes (",
    route_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (controller_id, processor_id) DO NOTHING"
);

/// A page of routes: `$1`/`$2` the cursor's create time and id, `$3` the
/// limit, then the filters in the order controller, processor.
macro_rules! list_routes {
    ($filters:literal) => {
        concat!(
            "SELECT ",
            route_columns!(),
            " FROM routes WHERE (create_time, id) > ($1, $2)",
            $filters,
            " ORDER BY create_time, id LIMIT CAST($3 AS BIGINT)"
        )
    };
}

const LIST_ROUTES: &str = list_routes!("");
const LIST_ROUTES_BY_CONTROLLER: &str = list_routes!(" AND controller_id = $4");
const LIST_ROUTES_BY_PROCESSOR: &str = list_routes!(" AND processor_id = $4");
const LIST_ROUTES_BY_CONTROLLER_AND_PROCESSOR: &str =
    list_routes!(" AND controller_id = $4 AND processor_id = $5");

/// The listing statement for a filter; its filter values are bound after
/// the limit, controller first.
pub(super) fn list_routes(filter: &RouteFilter) -> &'static str {
    match (
        filter.controller_id.is_some(),
        filter.processor_id.is_some(),
    ) {
        (false, false) => LIST_ROUTES,
        (true, false) => LIST_ROUTES_BY_CONTROLLER,
        (false, true) => LIST_ROUTES_BY_PROCESSOR,
        (true, true) => LIST_ROUTES_BY_CONTROLLER_AND_PROCESSOR,
    }
}

/// Every route of controller `$1`, oldest first.
pub(super) const CONTROLLER_ROUTES: &str = concat!(
    "SELECT ",
    route_columns!(),
    " FROM routes WHERE controller_id = $1 ORDER BY create_time, id"
);

/// Deletes route `$1`.
pub(super) const DELETE_ROUTE: &str = "DELETE FROM routes WHERE id = $1";

/// The savepoint of one work in a write batch of several (SQLite), opened
/// before the work's writes in the same query: the first of the batch's,
/// or one after an earlier work's that is still open, which it releases
/// into the transaction.
pub(super) const OPEN_STEP: &str = "SAVEPOINT step";
pub(super) const NEXT_STEP: &str = "RELEASE step; SAVEPOINT step";

/// Undoes the writes of the work whose savepoint is the latest, and closes it.
pub(super) const UNDO_STEP: &str = "ROLLBACK TO step; RELEASE step";

/// The readiness round trip.
pub(super) const PING: &str = "SELECT 1";

/// Whether the PostgreSQL server runs autovacuum (`on` or `off`).
pub(super) const AUTOVACUUM: &str = "SELECT current_setting('autovacuum')";

/// The statements whose text depends on whether the backend takes row
/// locks: PostgreSQL runs the `…_LOCKED` variants ([`ROW_LOCKS`]); SQLite,
/// whose writes are serialised, runs the plain ones ([`NO_ROW_LOCKS`]). Each
/// names the use it serves rather than the clause it carries.
#[derive(Clone, Copy, Debug)]
pub struct Locking {
    /// A request about to get an event or a change (its sequence is taken),
    /// with the tip of its audit chain.
    pub request_for_update: &'static str,
    /// A task about to be released or completed by its processor, with
    /// its request (about to get an event) and the request's tip.
    pub task_and_request_for_update: &'static str,
    /// A task about to have its lease renewed, with its request, which
    /// the renewal leaves alone.
    pub task_for_update_and_request: &'static str,
    /// A task about to be completed, with its request and the request's
    /// tasks, in one statement. With row locks the request's other tasks
    /// stay unlocked, and the completion reads them again when they may
    /// have changed since ([`Siblings::Checked`]).
    pub task_request_and_siblings: Siblings,
    /// The one task a claim of a single task may take, with its request
    /// (about to get an event) and the request's tip.
    pub claimable_task_and_request: &'static str,
    /// The open tasks of a request about to be cancelled with it.
    pub open_tasks_for_update: &'static str,
    /// The tasks a claim may take; with row locks, passing over those
    /// another claim holds.
    pub claimable_tasks: &'static str,
    /// A processor about to be deleted.
    pub processor_for_delete: &'static str,
    /// Taken before recording a revocation, if the backend needs it for
    /// revocations to commit in the order of their numbers.
    pub revocations_lock: Option<&'static str>,
}

/// How a completion's first read gives the request's tasks.
#[derive(Clone, Copy, Debug)]
pub enum Siblings {
    /// Every row is one of the request's tasks with the request and its
    /// tip, all as they are now ([`TASK_REQUEST_AND_SIBLINGS`]: one writer).
    Current(&'static str),
    /// The row whose `part` is 0 is the task with its request as locked;
    /// the others (`part` 1) are the request's tasks as the statement's
    /// snapshot saw them, which stand for the tasks now only if their tip
    /// is the locked row's ([`TASK_REQUEST_AND_SIBLINGS_LOCKED`]).
    Checked(&'static str),
}

impl Siblings {
    /// The statement.
    pub fn statement(self) -> &'static str {
        match self {
            Self::Current(statement) | Self::Checked(statement) => statement,
        }
    }
}

/// Statements with row locks (PostgreSQL).
pub(super) const ROW_LOCKS: Locking = Locking {
    request_for_update: SELECT_REQUEST_LOCKED,
    task_and_request_for_update: TASK_AND_REQUEST_LOCKED,
    task_for_update_and_request: TASK_LOCKED_AND_REQUEST,
    task_request_and_siblings: Siblings::Checked(TASK_REQUEST_AND_SIBLINGS_LOCKED),
    claimable_task_and_request: CLAIMABLE_TASK_AND_REQUEST_LOCKED,
    open_tasks_for_update: OPEN_REQUEST_TASKS_LOCKED,
    claimable_tasks: CLAIMABLE_TASKS_LOCKED,
    processor_for_delete: SELECT_PROCESSOR_ID_LOCKED,
    revocations_lock: Some(LOCK_REVOCATIONS),
};

/// Statements without row locks (SQLite: one writer at a time).
pub(super) const NO_ROW_LOCKS: Locking = Locking {
    request_for_update: SELECT_REQUEST_WITH_TIP,
    task_and_request_for_update: TASK_AND_REQUEST,
    task_for_update_and_request: TASK_AND_REQUEST,
    task_request_and_siblings: Siblings::Current(TASK_REQUEST_AND_SIBLINGS),
    claimable_task_and_request: CLAIMABLE_TASK_AND_REQUEST,
    open_tasks_for_update: OPEN_REQUEST_TASKS,
    claimable_tasks: CLAIMABLE_TASKS,
    processor_for_delete: SELECT_PROCESSOR_ID,
    revocations_lock: None,
};
