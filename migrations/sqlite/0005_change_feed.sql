-- The change feed: every event gets a position in one order for the whole
-- database, the order in which the events were committed. SQLite commits
-- one write transaction at a time and gives a new row the rowid one past
-- the largest, so an INTEGER PRIMARY KEY (the rowid itself, kept by
-- VACUUM and backups, which an implicit rowid is not) numbers events in
-- commit order. Events are never deleted, so a number is never reused.
--
-- SQLite cannot add such a key to a table, so the table is rebuilt: same
-- columns and checks, the request's sequence kept unique as before, and
-- the events already stored numbered in the order they were written.
CREATE TABLE request_events_with_feed (
    feed_position INTEGER PRIMARY KEY,
    data_subject_request_id TEXT NOT NULL,
    controller_id TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence >= 1),
    event_type TEXT NOT NULL CHECK (event_type IN (
        'submitted', 'guardian_consent_recorded', 'deadline_extended',
        'cancelled', 'closed', 'expired', 'needs_attention',
        'task_created', 'task_claimed', 'task_released', 'task_completed',
        'task_failed', 'task_cancelled', 'sla_at_risk', 'sla_breached',
        'purged')),
    event_time INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    from_state TEXT CHECK (from_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired')),
    to_state TEXT NOT NULL CHECK (to_state IN (
        'awaiting_guardian_consent', 'in_progress', 'needs_attention',
        'completed', 'refused', 'cancelled', 'expired')),
    reason TEXT NOT NULL,
    task_id TEXT,
    hash TEXT NOT NULL,
    UNIQUE (data_subject_request_id, sequence),
    FOREIGN KEY (data_subject_request_id, controller_id)
        REFERENCES data_subject_requests (id, controller_id),
    FOREIGN KEY (task_id, data_subject_request_id)
        REFERENCES tasks (id, data_subject_request_id)
) STRICT;

INSERT INTO request_events_with_feed (
    data_subject_request_id, controller_id, sequence, event_type, event_time,
    actor_id, actor_role, from_state, to_state, reason, task_id, hash)
SELECT data_subject_request_id, controller_id, sequence, event_type, event_time,
    actor_id, actor_role, from_state, to_state, reason, task_id, hash
FROM request_events ORDER BY rowid;

DROP TABLE request_events;
ALTER TABLE request_events_with_feed RENAME TO request_events;

-- A tenant's feed, in order, from any position.
CREATE INDEX request_events_feed ON request_events (controller_id, feed_position);
