-- Duplicate requests: a submission looks for an open request of the same
-- controller, subject and type (src/domain/duplicate.rs) inside its
-- commit. This index finds them among the open requests only; the
-- statement repeats its condition word for word.
CREATE INDEX data_subject_requests_open_by_subject
    ON data_subject_requests (controller_id, subject_external_id, request_type)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
