-- Fills the task columns of entries appended before migration 9 (SQLite).
-- An entry that is not JSON (tampering, which `mandate audit verify`
-- reports) is left unindexed rather than failing the upgrade.
UPDATE audit_log
SET task_id = json_extract(entry, '$.event.task'),
    root_id = CASE WHEN kind IN ('task.created', 'task.delegated')
                   THEN json_extract(entry, '$.event.details.root') END
WHERE json_valid(entry) AND json_type(entry, '$.event.task') = 'text';

CREATE INDEX IF NOT EXISTS audit_log_by_task ON audit_log (task_id, idx);
CREATE INDEX IF NOT EXISTS audit_log_by_root ON audit_log (root_id);
