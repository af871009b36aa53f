-- The listing indexes as PostgreSQL's migration 0005 makes them: whole,
-- but with the always-true predicate `create_time IS NOT NULL`, which the
-- listing statements repeat word for word. There a lookup by key and
-- tenant, a foreign-key check included, could otherwise keep a plan that
-- walks a listing index; here the same statements then read the same
-- indexes on both databases.
DROP INDEX data_subject_requests_list;
DROP INDEX data_subject_requests_list_by_state;
DROP INDEX data_subject_requests_list_by_type;
CREATE INDEX data_subject_requests_list
    ON data_subject_requests (controller_id, create_time, id)
    WHERE create_time IS NOT NULL;
CREATE INDEX data_subject_requests_list_by_state
    ON data_subject_requests (controller_id, state, create_time, id)
    WHERE create_time IS NOT NULL;
CREATE INDEX data_subject_requests_list_by_type
    ON data_subject_requests (controller_id, request_type, create_time, id)
    WHERE create_time IS NOT NULL;
DROP INDEX tasks_list;
CREATE INDEX tasks_list ON tasks (processor_id, create_time, id)
    WHERE create_time IS NOT NULL;
