-- Console speed (issue 10), portable part.
--
-- The audit log indexed by task: `task_id` is the task an entry names and
-- `root_id` the tree root a task's creation entry (`task.created`,
-- `task.delegated`) names. Both are copied from the hashed entry when it is
-- appended and are not part of it, so a tree's entries are an index range
-- and the log's hashes are unchanged. Rows older than this migration are
-- filled from their entries by the backend-specific part that follows.
ALTER TABLE audit_log ADD COLUMN task_id TEXT;
ALTER TABLE audit_log ADD COLUMN root_id TEXT;

-- The inventory counts live credentials per agent, many agents at a time.
CREATE INDEX credentials_by_agent ON credentials (agent_id);

-- The request context an approval was raised for, as JSON (the approval is
-- bound to it by `digest`): the approver sees exactly what they approve.
-- NULL for approvals raised before it was kept.
ALTER TABLE approvals ADD COLUMN context TEXT;

-- A human's registration among the many entries naming them (a trace names
-- its humans by their registrations): only registrations are indexed, so
-- appends of other kinds do not pay for it.
CREATE INDEX audit_log_registrations ON audit_log (human_id, kind)
    WHERE kind = 'human.registered';
