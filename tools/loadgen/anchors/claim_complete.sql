-- Anchor `claim-complete`: one step of a processor, a claim of one task
-- then its completion, each in its own transaction as the service makes
-- them (ClaimTasks with max_tasks 1, then CompleteTask with outcome DONE),
-- on the real tasks table. pgbench counts the whole script as one
-- transaction, so its tps is steps per second.
--
-- The claim is the service's statement (CLAIMABLE_TASKS_LOCKED in
-- src/store/sql.rs, reduced to the id): the processor's open tasks in due
-- order through the partial tasks_claim index, locked with the lock an
-- UPDATE takes itself and passing over those another claimer holds. The
-- updates change what a claim and a completion change in the domain
-- (Task in src/domain/routing.rs); the checks of the tasks table require a
-- lease token and expiry on a leased task, an outcome and a completion
-- time on a completed one.
--
-- Not replayed, so the anchor does less than the service's step: what the
-- service writes besides the task (the lock on the request, its
-- `task_claimed` and `task_completed` events with their chained hashes,
-- the request's audit head, the request's own move to completed once its
-- last task is done) and the lock it takes on the task before completing.
--
-- loadgen queues the tasks first, each of a request of its own controller,
-- for a processor of its own, and deletes them afterwards. When the queue
-- runs dry, the next claim finds no row and pgbench stops that client;
-- loadgen reports the steps made until then and warns.
--
-- Variables given with pgbench -D: `processor` and `lease_us` (the
-- lease's length in microseconds). Regenerate this script when the schema
-- changes (migrations/postgres/); loadgen's tests check that every column
-- it names exists.
BEGIN;
SELECT id AS task FROM tasks
WHERE processor_id = :processor
    AND state IN ('pending', 'leased')
    AND (state = 'pending'
        OR lease_expire_time <= (extract(epoch FROM statement_timestamp()) * 1000000)::bigint)
ORDER BY due_time, id LIMIT 1
FOR NO KEY UPDATE SKIP LOCKED \gset
UPDATE tasks SET state = 'leased', attempt = attempt + 1,
    lease_token = gen_random_uuid()::text,
    lease_expire_time = (extract(epoch FROM statement_timestamp()) * 1000000)::bigint + :lease_us,
    update_time = (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
WHERE id = :task;
COMMIT;
BEGIN;
UPDATE tasks SET state = 'completed', outcome = 'done',
    complete_time = (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,
    update_time = (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
WHERE id = :task;
COMMIT;
