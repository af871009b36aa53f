-- The change feed: every event gets a place in one order for the whole
-- database that a reader can follow without missing an event whose
-- transaction commits late.
--
-- feed_xid is, in the first place, the id of the transaction that wrote
-- the event. Several replicas write at once, so transactions commit in
-- another order than they began. The feed is read in (feed_xid, request,
-- sequence) order, and only below the oldest transaction still running
-- (pg_snapshot_xmin of the reader's snapshot): every transaction below it
-- has committed or aborted, so no event can appear there later, and a
-- reader that resumes after the last place it was given misses nothing.
-- Writers take no lock for this: the transaction id is theirs already.
--
-- A transaction may take its id before it waits for a request's row lock
-- (a task operation locks the task first), and then write the request's
-- next event after a younger transaction wrote the one before. So that a
-- request's events stay in their sequence order, an event's feed_xid is
-- never below its predecessor's (the trigger below). That keeps the
-- horizon sound: an event that commits after a read has a feed_xid at
-- least its own transaction's id, which that read's horizon was not past.
--
-- The events stored before this migration come first (feed_xid 0), by
-- request. Adding the column with a constant default is a change of the
-- catalogue only; the default for new rows then becomes the writer's id.
ALTER TABLE request_events ADD COLUMN feed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE request_events ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id();

-- Raises a new event's feed_xid to its predecessor's. Only events after a
-- request's first have one (a submission's event does not fire it). The
-- predecessor is the latest earlier event this statement can see: one
-- committed before the writer locked the request, or one written earlier
-- in the same transaction (which shares its id).
CREATE FUNCTION request_events_feed_after_predecessor() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    predecessor xid8;
BEGIN
    SELECT e.feed_xid INTO predecessor FROM request_events e
    WHERE e.data_subject_request_id = NEW.data_subject_request_id
      AND e.sequence < NEW.sequence
    ORDER BY e.sequence DESC LIMIT 1;
    IF predecessor > NEW.feed_xid THEN
        NEW.feed_xid := predecessor;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER request_events_feed_order
    BEFORE INSERT ON request_events
    FOR EACH ROW WHEN (NEW.sequence > 1)
    EXECUTE FUNCTION request_events_feed_after_predecessor();

-- A tenant's feed, in order, from any place.
CREATE INDEX request_events_feed
    ON request_events (controller_id, feed_xid, data_subject_request_id, sequence);
