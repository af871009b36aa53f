-- The change feed: every event gets a place in one order for the whole
-- database that a reader can follow without missing an event whose
-- transaction commits late.
--
-- feed_xid is the id of the transaction that wrote the event. Several
-- replicas write at once, so transactions commit in another order than
-- they began. The feed is read in (feed_xid, request, sequence) order, and
-- only below the oldest transaction still running (pg_snapshot_xmin of the
-- reader's snapshot): every transaction below it has committed or aborted,
-- so no event can appear there later, and a reader that resumes after the
-- last place it was given misses nothing. Writers take no lock and no
-- extra step for this: the transaction id is theirs already.
--
-- The events stored before this migration come first (transaction id 0),
-- by request.
ALTER TABLE request_events ADD COLUMN feed_xid xid8;
UPDATE request_events SET feed_xid = '0';
ALTER TABLE request_events
    ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN feed_xid SET NOT NULL;

-- A tenant's feed, in order, from any place.
CREATE INDEX request_events_feed
    ON request_events (controller_id, feed_xid, data_subject_request_id, sequence);
