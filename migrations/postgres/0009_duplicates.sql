-- Duplicate requests: a submission looks for an open request of the same
-- controller, subject and type (src/domain/duplicate.rs) inside its
-- commit. This index finds them among the open requests only; the
-- statement repeats its condition word for word.
CREATE INDEX data_subject_requests_open_by_subject
    ON data_subject_requests (controller_id, subject_external_id, request_type)
    WHERE state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');

-- Takes the advisory locks of a group of submissions (namespace 'gdpr',
-- 0x67647072, one number per controller, subject and type, ascending)
-- until the transaction ends, then returns the ids of the open requests
-- about those keys (one element of the three arrays a key). A submission
-- that finds none inserts its group in the same statement
-- (src/store/sql.rs, INSERT_GROUP_UNLESS_OPEN). VOLATILE, so that its
-- query reads what is committed when it runs, after the locks are held,
-- not what was committed when the calling statement began: whatever a
-- transaction that held one of the locks before committed, it sees.
CREATE FUNCTION gdpr_lock_and_find_open(
    controllers text[], subjects text[], types text[], locks int4[])
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1734635634, k) FROM unnest(locks) AS k;
    RETURN QUERY
        SELECT r.id FROM data_subject_requests r
        WHERE (r.controller_id, r.subject_external_id, r.request_type) IN
            (SELECT * FROM unnest(controllers, subjects, types))
        AND r.state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', 'awaiting_identity_verification', 'awaiting_clarification');
END
$$;
