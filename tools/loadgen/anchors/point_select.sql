-- Anchor `point-select`: the statement of GetDataSubjectRequest
-- (SELECT_REQUEST in src/store/sql.rs: every column the store reads, by
-- id and controller) for a request picked at random among those the
-- service stored in the run.
--
-- pgbench cannot hold a list of uuids, so loadgen copies the ids of the
-- service's requests into loadgen_anchor_ids (k from 1 to N, a primary
-- key) before the run and drops it after; each transaction draws k and
-- finds the id with a subquery in the same statement. That is one round
-- trip, as the service's call makes, plus one probe of a small index the
-- service does not make: the anchor is a little slower than the bare
-- statement, so the ratio flatters the service by that much. (Fetching
-- the id first with \gset would run the exact statement, but a second
-- round trip would cost far more than the probe.)
--
-- Variables given with pgbench -D: `ids` (N) and `controller` (the
-- service's tenant). Regenerate this script when the schema changes
-- (migrations/postgres/); loadgen's tests check that it reads every column
-- of data_subject_requests but audit_head, as the store does.
\set k random(1, :ids)
SELECT id, controller_id, request_id, request_type,
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
    clock_start_time, clock_pauses, clock_paused_since, duplicate_of
FROM data_subject_requests
WHERE id = (SELECT id FROM loadgen_anchor_ids WHERE k = :k)
    AND controller_id = :controller;
