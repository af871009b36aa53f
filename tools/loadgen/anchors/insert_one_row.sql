-- Anchor `insert-one-row`: one row per transaction, as a submission would
-- store it (an adult's access request in Germany, in progress, fingerprint
-- and times filled), into loadgen_pgbench_requests, a scratch copy of
-- data_subject_requests (`LIKE … INCLUDING ALL`: the same columns, checks
-- and indexes, no foreign keys point at it) that loadgen creates before
-- the run and drops after it. A submission writes more than this one row
-- (the request and its audit event), so this is a demanding yardstick on
-- purpose. The subject's date of birth and email are made up and not
-- sealed.
--
-- Regenerate this script when the schema changes (migrations/postgres/);
-- loadgen's tests check that every column it names exists.
\set n random(1, 1000000000)
INSERT INTO loadgen_pgbench_requests (
    id, controller_id, request_id, request_type, subject_external_id,
    subject_email, subject_date_of_birth, subject_country, subject_subdivision,
    details, corrections, state, regime, received_at, create_time, update_time,
    original_due_time, due_time, fingerprint, version, clock_start_time)
VALUES (
    gen_random_uuid(), 'loadgen', gen_random_uuid(), 'access',
    'loadgen-subject-' || :n, 'subject@example.org', '1985-12-10', 'DE', NULL,
    'please send me a copy of my data', '{}', 'in_progress', 'GDPR',
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + 2678400000000,
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + 2678400000000,
    md5(:n::text) || md5((:n + 1)::text), 1,
    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
