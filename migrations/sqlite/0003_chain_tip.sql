-- The tip of each request's audit chain, on the request row: the sequence
-- and hash of its last event, written with every event in the transaction
-- that writes it (as audit_head is). A transaction that locks or reads the
-- request row then has what the next event chains from, without reading
-- request_events; on PostgreSQL the row's lock also makes it the latest
-- tip, as a wait for the lock re-reads the row. audit_head still guards the
-- trail's end, keyed; these columns are only where the next event starts.
ALTER TABLE data_subject_requests ADD COLUMN last_event_sequence INTEGER;
ALTER TABLE data_subject_requests ADD COLUMN last_event_hash TEXT;
UPDATE data_subject_requests SET
    last_event_sequence = (SELECT e.sequence FROM request_events e
        WHERE e.data_subject_request_id = data_subject_requests.id
        ORDER BY e.sequence DESC LIMIT 1),
    last_event_hash = (SELECT e.hash FROM request_events e
        WHERE e.data_subject_request_id = data_subject_requests.id
        ORDER BY e.sequence DESC LIMIT 1);
