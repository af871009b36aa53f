-- Data-subject requests, their audit trail, and their routing to processors
-- as tasks (PostgreSQL).
--
-- Kept column for column in step with migrations/sqlite/0001_init.sql.
-- Times are microseconds since the Unix epoch, UTC: exact, ordered, and the
-- same on both backends. Enum values are stored by their `as_str()` names.
-- Personal data (subject_email, subject_date_of_birth, guardian_full_name,
-- guardian_email) sit in their own TEXT columns so that they can later be
-- encrypted column by column; for the same reason the date of birth is an
-- ISO 8601 text rather than a date.
--
-- Times are BIGINT rather than timestamptz: the precision would be the same,
-- but the two backends would then read and compare times differently.

CREATE TABLE data_subject_requests (
    id UUID NOT NULL PRIMARY KEY,
    controller_id TEXT NOT NULL,
    -- The caller's idempotency key, unique per controller.
    request_id UUID NOT NULL,
    request_type TEXT NOT NULL CHECK (request_type IN (
        'access', 'rectification', 'erasure', 'restriction', 'portability',
        'objection', 'withdraw_consent')),
    subject_external_id TEXT NOT NULL,
    subject_email TEXT,
    -- NULL only once purged (see purge_time).
    subject_date_of_birth TEXT,
    subject_country TEXT NOT NULL,
    subject_subdivision TEXT,
    details TEXT NOT NULL,
    -- A JSON object of field name to corrected value.
    corrections TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired')),
    regime TEXT NOT NULL CHECK (regime IN ('GDPR', 'CCPA', 'LGPD')),
    received_at BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    original_due_time BIGINT NOT NULL,
    due_time BIGINT NOT NULL,
    extension_reason TEXT,
    extension_time BIGINT,
    extended_by TEXT,
    guardian_full_name TEXT,
    guardian_relationship TEXT CHECK (guardian_relationship IN ('parent', 'legal_guardian')),
    guardian_email TEXT,
    guardian_verification_method TEXT,
    guardian_consented_at BIGINT,
    guardian_consent_record_time BIGINT,
    guardian_consent_recorded_by TEXT,
    closure_outcome TEXT CHECK (closure_outcome IN ('completed', 'refused')),
    closure_refusal_reason TEXT CHECK (closure_refusal_reason IN (
        'manifestly_unfounded', 'excessive', 'identity_not_verified',
        'legal_exemption', 'other')),
    closure_explanation TEXT,
    close_time BIGINT,
    cancellation_reason TEXT,
    -- True when the request went in progress and no route matched it.
    unrouted BOOLEAN NOT NULL DEFAULT FALSE,
    -- Digest of the submitted content, to tell a retry from a reuse of the
    -- same request_id.
    fingerprint TEXT NOT NULL,
    -- Optimistic concurrency: 1 at creation, +1 per change.
    version BIGINT NOT NULL CHECK (version >= 1),
    -- The W3C trace context of the submitting call, for span links from
    -- later spans about the request; NULL when that call was not traced.
    origin_traceparent TEXT,
    origin_tracestate TEXT,
    -- When the SLA watchdog reported the request at risk of missing its
    -- deadline, and past it. Written only by the watchdog, with the
    -- finding's event; a report does not change the version.
    sla_at_risk_reported_at BIGINT,
    sla_breached_reported_at BIGINT,
    -- HMAC of the request's last event's sequence and hash (see
    -- src/store/audit.rs), so that removing events from the end of the
    -- trail is caught; written with every event.
    audit_head TEXT,
    -- When the retention purge removed the personal data: the subject's
    -- email and date of birth, the guardian's name and email (NULL), the
    -- details ('') and the corrections ('{}'). Set once, in the
    -- transaction that writes its `purged` event.
    purge_time BIGINT,
    UNIQUE (controller_id, request_id),
    -- The target of request_events' foreign key, which ties an event's
    -- controller to its request's.
    UNIQUE (id, controller_id),
    -- Optional parts of a request are stored whole or not at all.
    CHECK ((extension_reason IS NULL) = (extension_time IS NULL)
        AND (extension_reason IS NULL) = (extended_by IS NULL)),
    CHECK ((guardian_relationship IS NULL) = (guardian_verification_method IS NULL)
        AND (guardian_relationship IS NULL) = (guardian_consented_at IS NULL)
        AND (guardian_relationship IS NULL) = (guardian_consent_record_time IS NULL)
        AND (guardian_relationship IS NULL) = (guardian_consent_recorded_by IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_email IS NULL)),
    -- Until the retention purge the personal data are there (the
    -- guardian's with the consent); after it, none is.
    CHECK (CASE WHEN purge_time IS NULL
        THEN subject_date_of_birth IS NOT NULL
            AND (guardian_full_name IS NULL) = (guardian_relationship IS NULL)
        ELSE subject_email IS NULL AND subject_date_of_birth IS NULL
            AND guardian_full_name IS NULL AND guardian_email IS NULL
            AND details = '' AND corrections = '{}' END),
    CHECK ((closure_outcome IS NULL) = (closure_explanation IS NULL)
        AND (closure_outcome IS NOT NULL OR closure_refusal_reason IS NULL))
);

-- Listing a controller's requests in (create_time, id) order, with and
-- without the state and type filters.
CREATE INDEX data_subject_requests_list
    ON data_subject_requests (controller_id, create_time, id);
CREATE INDEX data_subject_requests_list_by_state
    ON data_subject_requests (controller_id, state, create_time, id);
CREATE INDEX data_subject_requests_list_by_type
    ON data_subject_requests (controller_id, request_type, create_time, id);
-- The SLA watchdog and the open-requests gauge: open requests of every
-- controller by deadline, and those awaiting a guardian by receipt. The
-- queries repeat each WHERE clause word for word, so that both databases
-- use these partial indexes.
CREATE INDEX data_subject_requests_open
    ON data_subject_requests (due_time, id)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention');
CREATE INDEX data_subject_requests_awaiting_consent
    ON data_subject_requests (received_at, id)
    WHERE state = 'awaiting_guardian_consent';
-- The retention purge: closed requests not purged yet, by close time.
CREATE INDEX data_subject_requests_purge
    ON data_subject_requests (close_time, id)
    WHERE purge_time IS NULL AND close_time IS NOT NULL;

-- The processors requests are routed to (a controller's vendors, its own
-- departments). The id is chosen by the administrator. Processor ids are
-- compared bytewise ("C"), as SQLite does, so that listing them by id gives
-- the same order and pages on both backends whatever the database's locale.
CREATE TABLE processors (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name TEXT NOT NULL,
    contact TEXT,
    create_time BIGINT NOT NULL
);

-- Which processor receives which of a controller's requests. Deleting a
-- processor deletes its routes.
CREATE TABLE routes (
    id UUID NOT NULL PRIMARY KEY,
    controller_id TEXT NOT NULL,
    processor_id TEXT COLLATE "C" NOT NULL REFERENCES processors (id) ON DELETE CASCADE,
    -- Comma-separated request type names; empty means every type.
    request_types TEXT NOT NULL,
    task_sla_working_hours BIGINT NOT NULL CHECK (task_sla_working_hours >= 1),
    create_time BIGINT NOT NULL,
    UNIQUE (controller_id, processor_id)
);

-- Listing routes in (create_time, id) order, all of them or those of one
-- controller or one processor; the last also serves the cascade.
CREATE INDEX routes_list ON routes (create_time, id);
CREATE INDEX routes_list_by_controller ON routes (controller_id, create_time, id);
CREATE INDEX routes_list_by_processor ON routes (processor_id, create_time, id);

-- A processor's share of a request. What the processor is told about the
-- subject is read from the request when the task is shown, never copied
-- here. processor_id has no foreign key on purpose: a processor with open
-- tasks cannot be deleted, and finished tasks outlive their processor as
-- history.
CREATE TABLE tasks (
    id UUID NOT NULL PRIMARY KEY,
    data_subject_request_id UUID NOT NULL,
    -- Copied from the request, tied to it by the foreign key.
    controller_id TEXT NOT NULL,
    processor_id TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL CHECK (state IN (
        'pending', 'leased', 'completed', 'failed', 'cancelled')),
    -- How many times the task was handed out.
    attempt BIGINT NOT NULL CHECK (attempt >= 0),
    due_time BIGINT NOT NULL,
    -- The current (or, once finished, the last) lease; kept after a
    -- completion to recognise its retry.
    lease_token TEXT,
    lease_expire_time BIGINT,
    outcome TEXT CHECK (outcome IN ('done', 'no_data_held', 'failed')),
    reason TEXT,
    result_uri TEXT,
    note TEXT,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    complete_time BIGINT,
    -- When the SLA watchdog reported the task at risk, and past its due
    -- time; written only by the watchdog.
    sla_at_risk_reported_at BIGINT,
    sla_breached_reported_at BIGINT,
    FOREIGN KEY (data_subject_request_id, controller_id)
        REFERENCES data_subject_requests (id, controller_id),
    -- The target of request_events' foreign key, which ties an event's
    -- task to the event's request.
    UNIQUE (id, data_subject_request_id),
    -- A leased task has a lease; a finished one an outcome and a time.
    CHECK (state <> 'leased' OR (lease_token IS NOT NULL AND lease_expire_time IS NOT NULL)),
    CHECK ((outcome IS NOT NULL) = (state IN ('completed', 'failed'))),
    CHECK ((complete_time IS NOT NULL) = (state IN ('completed', 'failed')))
);

-- Claiming: a processor's open tasks, earliest due first.
CREATE INDEX tasks_claim ON tasks (processor_id, state, due_time, id);
-- Listing a processor's tasks in (create_time, id) order.
CREATE INDEX tasks_list ON tasks (processor_id, create_time, id);
-- A request's tasks, oldest first.
CREATE INDEX tasks_by_request ON tasks (data_subject_request_id, create_time, id);
-- The SLA watchdog: open tasks of every processor by due time.
CREATE INDEX tasks_open ON tasks (due_time, id) WHERE state IN ('pending', 'leased');

CREATE TABLE request_events (
    data_subject_request_id UUID NOT NULL,
    -- Copied from the request so that every read is scoped to a tenant
    -- without a join; the foreign key keeps it equal to the request's.
    controller_id TEXT NOT NULL,
    -- 1, 2, 3… per request, assigned in the transaction that writes it.
    sequence BIGINT NOT NULL CHECK (sequence >= 1),
    event_type TEXT NOT NULL CHECK (event_type IN (
        'submitted', 'guardian_consent_recorded', 'deadline_extended',
        'cancelled', 'closed', 'expired', 'needs_attention',
        'task_created', 'task_claimed', 'task_released', 'task_completed',
        'task_failed', 'task_cancelled', 'sla_at_risk', 'sla_breached',
        'purged')),
    event_time BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    from_state TEXT CHECK (from_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired')),
    to_state TEXT NOT NULL CHECK (to_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired')),
    reason TEXT NOT NULL,
    -- The task a task event is about.
    task_id UUID,
    -- HMAC-SHA256 of the previous event's hash and this event's columns,
    -- keyed with the audit key (src/store/audit.rs), in lower-case hex.
    hash TEXT NOT NULL,
    PRIMARY KEY (data_subject_request_id, sequence),
    FOREIGN KEY (data_subject_request_id, controller_id)
        REFERENCES data_subject_requests (id, controller_id),
    FOREIGN KEY (task_id, data_subject_request_id)
        REFERENCES tasks (id, data_subject_request_id)
);

-- Time-limited leases on jobs that one replica at a time should run (the
-- SLA watchdog's sweep, named `sla-watchdog`). A replica holds a lease
-- until expire_time and renews it while it works; once it has lapsed,
-- any replica may take it.
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expire_time BIGINT NOT NULL
);

-- Revoked callers (`subject`, a token's `sub`) and tokens (`token_id`, a
-- token's `jti`). Every replica reloads them every --revocation-refresh;
-- `seq` numbers them in the order they were recorded.
CREATE TABLE revocations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('subject', 'token_id')),
    value TEXT NOT NULL CHECK (length(value) BETWEEN 1 AND 512),
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    UNIQUE (kind, value)
);
