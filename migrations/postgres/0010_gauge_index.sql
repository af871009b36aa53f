-- The backlog gauges count the open requests by state and by deadline
-- window on every replica, once per --sla-check-interval
-- (src/store/gauges.rs). With the state carried in the open requests'
-- index, one index-only scan answers both counts without reading the
-- table. The condition is the queries', word for word.
DROP INDEX data_subject_requests_open;
CREATE INDEX data_subject_requests_open
    ON data_subject_requests (due_time, id) INCLUDE (state)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
