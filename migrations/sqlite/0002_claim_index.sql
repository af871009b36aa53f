-- Claiming reads a processor's open tasks in due order and stops at the
-- few it takes. The index of 0001 put `state` before `due_time`, so a
-- claim's `state IN ('pending', 'leased') ... ORDER BY due_time, id LIMIT n`
-- could not read it in order: it read every open task of the processor
-- and sorted them, a cost that grew with the backlog (about 60 ms a claim
-- with 100,000 tasks queued, against well under 1 ms in due order). This
-- one holds only open tasks, in the order claims want them; the same
-- condition lets the check for a processor's open tasks use it too.
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (processor_id, due_time, id)
    WHERE state IN ('pending', 'leased');
