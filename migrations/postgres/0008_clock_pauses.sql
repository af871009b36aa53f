-- The clock as the law runs it, and duplicate requests.
--
-- Three new states: awaiting identity verification and awaiting
-- clarification (open: the request waits for its subject, its clock
-- paused) and duplicate (final). Six new event types for the pauses and
-- the duplicates. The domains of 0004_value_domains.sql get the new
-- values; nothing stored changes.
ALTER DOMAIN request_state DROP CONSTRAINT request_state_check;
ALTER DOMAIN request_state ADD CONSTRAINT request_state_check CHECK (VALUE IN (
    'awaiting_guardian_consent', 'in_progress', 'needs_attention',
    'completed', 'refused', 'cancelled', 'expired',
    'awaiting_identity_verification', 'awaiting_clarification', 'duplicate'));
ALTER DOMAIN event_kind DROP CONSTRAINT event_kind_check;
ALTER DOMAIN event_kind ADD CONSTRAINT event_kind_check CHECK (VALUE IN (
    'submitted', 'guardian_consent_recorded', 'deadline_extended',
    'cancelled', 'closed', 'expired', 'needs_attention',
    'task_created', 'task_claimed', 'task_released', 'task_completed',
    'task_failed', 'task_cancelled', 'sla_at_risk', 'sla_breached',
    'purged',
    'identity_verification_requested', 'identity_verification_recorded',
    'clarification_requested', 'clarification_recorded',
    'duplicate_received', 'duplicate_stored'));

-- clock_start_time: when the statutory period began (receipt, or under
-- the UK's Art. 12A the arrival of the identity information, if later);
-- every request stored so far began at receipt.
-- clock_pauses: the pauses of the clock, oldest first, as a JSON array
-- (src/store/codec.rs): kind, reason, start and end, the days counted,
-- the state to go back to. Never personal data beyond the caller's
-- reason, which is kept as an extension's reason is.
-- clock_paused_since: the start of the open pause while the request
-- waits for its subject, NULL otherwise: the awaiting-subject timeout's
-- index.
-- duplicate_of: for a duplicate, the open request it repeats (of the same
-- controller).
ALTER TABLE data_subject_requests
    ADD COLUMN clock_start_time BIGINT,
    ADD COLUMN clock_pauses TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN clock_paused_since BIGINT,
    ADD COLUMN duplicate_of UUID;
UPDATE data_subject_requests SET clock_start_time = received_at;
ALTER TABLE data_subject_requests
    ALTER COLUMN clock_start_time SET NOT NULL,
    ADD CONSTRAINT data_subject_requests_duplicate_named
        CHECK ((state = 'duplicate') = (duplicate_of IS NOT NULL));

-- The open states now include the two awaiting ones; the queries repeat
-- the condition word for word.
DROP INDEX data_subject_requests_open;
CREATE INDEX data_subject_requests_open
    ON data_subject_requests (due_time, id)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
-- The awaiting-subject timeout: requests waiting for their subject, by
-- the start of the wait.
CREATE INDEX data_subject_requests_awaiting_subject
    ON data_subject_requests (clock_paused_since, id)
    WHERE clock_paused_since IS NOT NULL;
