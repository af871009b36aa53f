-- The clock as the law runs it, and duplicate requests (SQLite; see
-- migrations/postgres/0008_clock_pauses.sql for what each change is).
--
-- New states (awaiting_identity_verification, awaiting_clarification,
-- duplicate) and event types are values the CHECKs of data_subject_requests
-- and request_events do not allow, and SQLite cannot change a CHECK: both
-- tables are rebuilt with every row, their indexes made again.
--
-- Other tables (tasks, request_events) refer to data_subject_requests by
-- foreign key, so its rows cannot simply move to a table then renamed:
-- the rows are set aside, the table dropped and created again under its
-- name, and the rows put back. Foreign keys are checked at the commit
-- (defer_foreign_keys lasts until then), when every request is back.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE data_subject_requests_saved AS SELECT * FROM data_subject_requests;
CREATE TABLE request_events_saved AS SELECT * FROM request_events;
DROP TABLE request_events;
DROP TABLE data_subject_requests;

CREATE TABLE data_subject_requests (
    id TEXT NOT NULL PRIMARY KEY,
    controller_id TEXT NOT NULL,
    -- The caller's idempotency key, unique per controller.
    request_id TEXT NOT NULL,
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
        'completed', 'refused', 'cancelled', 'expired',
        'awaiting_identity_verification', 'awaiting_clarification', 'duplicate')),
    regime TEXT NOT NULL CHECK (regime IN ('GDPR', 'CCPA', 'LGPD')),
    received_at INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    original_due_time INTEGER NOT NULL,
    due_time INTEGER NOT NULL,
    extension_reason TEXT,
    extension_time INTEGER,
    extended_by TEXT,
    guardian_full_name TEXT,
    guardian_relationship TEXT CHECK (guardian_relationship IN ('parent', 'legal_guardian')),
    guardian_email TEXT,
    guardian_verification_method TEXT,
    guardian_consented_at INTEGER,
    guardian_consent_record_time INTEGER,
    guardian_consent_recorded_by TEXT,
    closure_outcome TEXT CHECK (closure_outcome IN ('completed', 'refused')),
    closure_refusal_reason TEXT CHECK (closure_refusal_reason IN (
        'manifestly_unfounded', 'excessive', 'identity_not_verified',
        'legal_exemption', 'other')),
    closure_explanation TEXT,
    close_time INTEGER,
    cancellation_reason TEXT,
    -- 1 (true) when the request went in progress and no route matched it.
    unrouted INTEGER NOT NULL DEFAULT 0 CHECK (unrouted IN (0, 1)),
    -- Digest of the submitted content, to tell a retry from a reuse of the
    -- same request_id.
    fingerprint TEXT NOT NULL,
    -- Optimistic concurrency: 1 at creation, +1 per change.
    version INTEGER NOT NULL CHECK (version >= 1),
    -- The W3C trace context of the submitting call, for span links from
    -- later spans about the request; NULL when that call was not traced.
    origin_traceparent TEXT,
    origin_tracestate TEXT,
    -- When the SLA watchdog reported the request at risk of missing its
    -- deadline, and past it. Written only by the watchdog, with the
    -- finding's event; a report does not change the version.
    sla_at_risk_reported_at INTEGER,
    sla_breached_reported_at INTEGER,
    -- HMAC of the request's last event's sequence and hash (see
    -- src/store/audit.rs), so that removing events from the end of the
    -- trail is caught; written with every event.
    audit_head TEXT,
    -- When the retention purge removed the personal data: the subject's
    -- email and date of birth, the guardian's name and email (NULL), the
    -- details ('') and the corrections ('{}'). Set once, in the
    -- transaction that writes its `purged` event.
    purge_time INTEGER,
    -- 0003_chain_tip.sql.
    last_event_sequence INTEGER,
    last_event_hash TEXT,
    -- When the statutory period began: receipt, or under the UK's Art. 12A
    -- the arrival of the identity information, if later.
    clock_start_time INTEGER NOT NULL,
    -- The pauses of the clock, oldest first, as a JSON array
    -- (src/store/codec.rs).
    clock_pauses TEXT NOT NULL DEFAULT '[]',
    -- The start of the open pause while the request waits for its
    -- subject; NULL otherwise.
    clock_paused_since INTEGER,
    -- For a duplicate: the open request it repeats (same controller).
    duplicate_of TEXT,
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
    CHECK ((state = 'duplicate') = (duplicate_of IS NOT NULL)),
    CHECK ((closure_outcome IS NULL) = (closure_explanation IS NULL)
        AND (closure_outcome IS NOT NULL OR closure_refusal_reason IS NULL))
) STRICT;

INSERT INTO data_subject_requests (
    id, controller_id, request_id, request_type, subject_external_id,
    subject_email, subject_date_of_birth, subject_country,
    subject_subdivision, details, corrections, state, regime, received_at,
    create_time, update_time, original_due_time, due_time, extension_reason,
    extension_time, extended_by, guardian_full_name, guardian_relationship,
    guardian_email, guardian_verification_method, guardian_consented_at,
    guardian_consent_record_time, guardian_consent_recorded_by,
    closure_outcome, closure_refusal_reason, closure_explanation, close_time,
    cancellation_reason, unrouted, fingerprint, version, origin_traceparent,
    origin_tracestate, sla_at_risk_reported_at, sla_breached_reported_at,
    audit_head, purge_time, last_event_sequence, last_event_hash,
    clock_start_time)
SELECT
    id, controller_id, request_id, request_type, subject_external_id,
    subject_email, subject_date_of_birth, subject_country,
    subject_subdivision, details, corrections, state, regime, received_at,
    create_time, update_time, original_due_time, due_time, extension_reason,
    extension_time, extended_by, guardian_full_name, guardian_relationship,
    guardian_email, guardian_verification_method, guardian_consented_at,
    guardian_consent_record_time, guardian_consent_recorded_by,
    closure_outcome, closure_refusal_reason, closure_explanation, close_time,
    cancellation_reason, unrouted, fingerprint, version, origin_traceparent,
    origin_tracestate, sla_at_risk_reported_at, sla_breached_reported_at,
    audit_head, purge_time, last_event_sequence, last_event_hash,
    received_at
FROM data_subject_requests_saved;
DROP TABLE data_subject_requests_saved;

-- Listing, as 0001_init.sql.
CREATE INDEX data_subject_requests_list
    ON data_subject_requests (controller_id, create_time, id);
CREATE INDEX data_subject_requests_list_by_state
    ON data_subject_requests (controller_id, state, create_time, id);
CREATE INDEX data_subject_requests_list_by_type
    ON data_subject_requests (controller_id, request_type, create_time, id);
-- The SLA watchdog and the open-requests gauge, now with the two awaiting
-- states; the queries repeat the condition word for word.
CREATE INDEX data_subject_requests_open
    ON data_subject_requests (due_time, id)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
CREATE INDEX data_subject_requests_awaiting_consent
    ON data_subject_requests (received_at, id)
    WHERE state = 'awaiting_guardian_consent';
CREATE INDEX data_subject_requests_purge
    ON data_subject_requests (close_time, id)
    WHERE purge_time IS NULL AND close_time IS NOT NULL;
-- The awaiting-subject timeout: requests waiting for their subject, by
-- the start of the wait.
CREATE INDEX data_subject_requests_awaiting_subject
    ON data_subject_requests (clock_paused_since, id)
    WHERE clock_paused_since IS NOT NULL;

-- The events, with their feed positions as they were (0005_change_feed.sql).
CREATE TABLE request_events_new (
    feed_position INTEGER PRIMARY KEY,
    data_subject_request_id TEXT NOT NULL,
    controller_id TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence >= 1),
    event_type TEXT NOT NULL CHECK (event_type IN (
        'submitted', 'guardian_consent_recorded', 'deadline_extended',
        'cancelled', 'closed', 'expired', 'needs_attention',
        'task_created', 'task_claimed', 'task_released', 'task_completed',
        'task_failed', 'task_cancelled', 'sla_at_risk', 'sla_breached',
        'purged',
        'identity_verification_requested', 'identity_verification_recorded',
        'clarification_requested', 'clarification_recorded',
        'duplicate_received', 'duplicate_stored')),
    event_time INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    from_state TEXT CHECK (from_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired',
        'awaiting_identity_verification', 'awaiting_clarification', 'duplicate')),
    to_state TEXT NOT NULL CHECK (to_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired',
        'awaiting_identity_verification', 'awaiting_clarification', 'duplicate')),
    reason TEXT NOT NULL,
    task_id TEXT,
    hash TEXT NOT NULL,
    UNIQUE (data_subject_request_id, sequence),
    FOREIGN KEY (data_subject_request_id, controller_id)
        REFERENCES data_subject_requests (id, controller_id),
    FOREIGN KEY (task_id, data_subject_request_id)
        REFERENCES tasks (id, data_subject_request_id)
) STRICT;

INSERT INTO request_events_new (
    feed_position, data_subject_request_id, controller_id, sequence, event_type,
    event_time, actor_id, actor_role, from_state, to_state, reason, task_id, hash)
SELECT feed_position, data_subject_request_id, controller_id, sequence, event_type,
    event_time, actor_id, actor_role, from_state, to_state, reason, task_id, hash
FROM request_events_saved ORDER BY feed_position;
DROP TABLE request_events_saved;
ALTER TABLE request_events_new RENAME TO request_events;
CREATE INDEX request_events_feed ON request_events (controller_id, feed_position);
