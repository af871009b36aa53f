-- The listing indexes hold every row, but only a listing may plan them.
--
-- A lookup by key and tenant (`id = $1 AND controller_id = $2`: a Get,
-- every write that locks the request, and the check of each foreign key
-- that ties a task or an event to its request and controller) could be
-- served by the primary key or by any index that leads with controller_id.
-- On a table of a few rows the planner prices them all the same, and a
-- plan it keeps (a foreign-key check's, or a prepared statement's generic
-- plan) may then name a listing index: as the tenant's requests grow, each
-- lookup walks all of them (about 4 ms a check with 100,000 stored, which
-- stalled whole groups of submissions). Tasks looked up by id and
-- processor had the same choice with tasks_list.
--
-- The predicate `controller_id <> ''` (`processor_id <> ''` for tasks) is
-- true of every row, as the new checks make sure, yet a plan for
-- `controller_id = $2` cannot prove it; the listings state it word for
-- word. (Not `IS NOT NULL` on a NOT NULL column: newer planners, and
-- SQLite's, drop such a term from the query, and the listings would lose
-- their index.)
ALTER TABLE data_subject_requests
    ADD CONSTRAINT data_subject_requests_controller_named CHECK (controller_id <> '');
ALTER TABLE tasks ADD CONSTRAINT tasks_processor_named CHECK (processor_id <> '');
DROP INDEX data_subject_requests_list;
DROP INDEX data_subject_requests_list_by_state;
DROP INDEX data_subject_requests_list_by_type;
CREATE INDEX data_subject_requests_list
    ON data_subject_requests (controller_id, create_time, id)
    WHERE controller_id <> '';
CREATE INDEX data_subject_requests_list_by_state
    ON data_subject_requests (controller_id, state, create_time, id)
    WHERE controller_id <> '';
CREATE INDEX data_subject_requests_list_by_type
    ON data_subject_requests (controller_id, request_type, create_time, id)
    WHERE controller_id <> '';
DROP INDEX tasks_list;
CREATE INDEX tasks_list ON tasks (processor_id, create_time, id)
    WHERE processor_id <> '';
