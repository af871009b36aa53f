-- Duplicate requests (SQLite; see migrations/postgres/0009_duplicates.sql).
CREATE INDEX data_subject_requests_open_by_subject
    ON data_subject_requests (controller_id, subject_external_id, request_type)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
