-- Anchor `submit-write-set`: the rows one SubmitDataSubjectRequest stores,
-- written by pgbench in one transaction per request, with the statements
-- the store uses (src/store/batch.rs): the request row, every column as
-- the service fills it for an adult's access request in Germany that goes
-- in progress, then its `submitted` event, sequence 1.
--
-- It replays the case without a route, the one loadgen's `submit` scenario
-- measures: that scenario runs before claim-complete creates the loadgen
-- processor's route, so no submission of it writes a task or a
-- `task_created` event, and each request is stored with `unrouted` true.
-- Before it writes, the transaction checks for duplicates as the store's
-- group statement does (INSERT_GROUP_UNLESS_OPEN in src/store/sql.rs):
-- gdpr_lock_and_find_open takes the advisory lock of the request's
-- controller, subject and type and reads the open requests about them
-- (here none). The service also reads the controller's routes before it
-- writes; that read is not replayed here.
--
-- The values are what the service writes, or of the same length:
-- the personal-data columns hold text as long as the sealed value of the
-- subject's email and date of birth (`v2.`, the data key's id, a dot and
-- the base64 of a 24-byte nonce, the plaintext and a 16-byte tag; see
-- src/store/crypt.rs), `fingerprint` is 64 hexadecimal digits, `audit_head`
-- and the event's `hash` (which the row also keeps as the tip of its chain)
-- the audit key's 12-digit id, a dot and 64 hexadecimal digits (see
-- src/store/audit.rs), and ids are time-ordered like the service's UUIDv7 (PostgreSQL
-- 15 has no uuidv7(), so a millisecond prefix and random digits). Times are
-- microseconds since the epoch, as the schema keeps them.
--
-- Variables given with pgbench -D: `controller` (the anchor's own tenant,
-- whose rows loadgen deletes afterwards) and `actor` (the submitting
-- caller). Regenerate this script when the schema changes
-- (migrations/postgres/); loadgen's tests check that it names every column
-- of data_subject_requests and only columns that exist.
\set n random(1, 1000000000)
BEGIN;
SELECT count(*) FROM gdpr_lock_and_find_open(ARRAY[:controller]::text[],
    ARRAY['loadgen-subject-' || :n]::text[], ARRAY['access']::text[], ARRAY[:n]::int4[]);
INSERT INTO data_subject_requests (
    id, controller_id, request_id, request_type,
    subject_external_id, subject_email, subject_date_of_birth,
    subject_country, subject_subdivision, details, corrections,
    state, regime, received_at, create_time, update_time,
    original_due_time, due_time,
    extension_reason, extension_time, extended_by,
    guardian_full_name, guardian_relationship, guardian_email,
    guardian_verification_method, guardian_consented_at,
    guardian_consent_record_time, guardian_consent_recorded_by,
    closure_outcome, closure_refusal_reason, closure_explanation,
    close_time, cancellation_reason, unrouted, fingerprint, version,
    origin_traceparent, origin_tracestate,
    sla_at_risk_reported_at, sla_breached_reported_at, purge_time,
    audit_head, last_event_sequence, last_event_hash,
    clock_start_time, clock_pauses, clock_paused_since, duplicate_of)
VALUES (
    (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || substr(md5(random()::text), 1, 20))::uuid,
    :controller, gen_random_uuid(), 'access',
    'loadgen-subject-' || :n, 'v2.' || repeat('A', 93), 'v2.' || repeat('A', 81),
    'DE', NULL, 'please send me a copy of my data', '{}',
    'in_progress', 'GDPR',
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint + 2678400000000,
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint + 2678400000000,
    NULL, NULL, NULL,
    NULL, NULL, NULL,
    NULL, NULL,
    NULL, NULL,
    NULL, NULL, NULL,
    NULL, NULL, TRUE, md5(:n::text) || md5((:n + 1)::text), 1,
    NULL, NULL,
    NULL, NULL, NULL,
    substr(md5(:n::text), 1, 12) || '.' || md5((:n + 2)::text) || md5((:n + 3)::text),
    1, substr(md5(:n::text), 1, 12) || '.' || md5((:n + 4)::text) || md5((:n + 5)::text),
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint, '[]', NULL, NULL)
ON CONFLICT (controller_id, request_id) DO NOTHING
RETURNING id AS request \gset
INSERT INTO request_events (
    data_subject_request_id, controller_id, event_type, event_time,
    actor_id, actor_role, from_state, to_state, reason, task_id,
    sequence, hash, feed_xid)
VALUES (
    :request, :controller, 'submitted',
    (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,
    :actor, 'controller', NULL, 'in_progress', 'accepted', NULL,
    1, substr(md5(:n::text), 1, 12) || '.' || md5((:n + 4)::text) || md5((:n + 5)::text),
    pg_current_xact_id());
COMMIT;
