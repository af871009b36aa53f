-- Data-subject requests and their audit trail (PostgreSQL).
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
    subject_date_of_birth TEXT NOT NULL,
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
    -- Digest of the submitted content, to tell a retry from a reuse of the
    -- same request_id.
    fingerprint TEXT NOT NULL,
    -- Optimistic concurrency: 1 at creation, +1 per change.
    version BIGINT NOT NULL CHECK (version >= 1),
    UNIQUE (controller_id, request_id),
    -- The target of request_events' foreign key, which ties an event's
    -- controller to its request's.
    UNIQUE (id, controller_id),
    -- Optional parts of a request are stored whole or not at all.
    CHECK ((extension_reason IS NULL) = (extension_time IS NULL)
        AND (extension_reason IS NULL) = (extended_by IS NULL)),
    CHECK ((guardian_full_name IS NULL) = (guardian_relationship IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_email IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_verification_method IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_consented_at IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_consent_record_time IS NULL)
        AND (guardian_full_name IS NULL) = (guardian_consent_recorded_by IS NULL)),
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

CREATE TABLE request_events (
    data_subject_request_id UUID NOT NULL,
    -- Copied from the request so that every read is scoped to a tenant
    -- without a join; the foreign key keeps it equal to the request's.
    controller_id TEXT NOT NULL,
    -- 1, 2, 3… per request, assigned in the transaction that writes it.
    sequence BIGINT NOT NULL CHECK (sequence >= 1),
    event_type TEXT NOT NULL CHECK (event_type IN (
        'submitted', 'guardian_consent_recorded', 'deadline_extended',
        'cancelled', 'closed', 'expired')),
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
    PRIMARY KEY (data_subject_request_id, sequence),
    FOREIGN KEY (data_subject_request_id, controller_id)
        REFERENCES data_subject_requests (id, controller_id)
);
