-- Fills the task columns of entries appended before migration 9
-- (PostgreSQL). One statement for the whole log; if an entry is not JSON
-- (tampering, which `mandate audit verify` reports) the statement fails and
-- the rows are filled one by one instead, leaving that entry unindexed
-- rather than failing the upgrade.
DO $$
DECLARE
    r RECORD;
BEGIN
    BEGIN
        UPDATE audit_log
        SET task_id = (entry::jsonb) -> 'event' ->> 'task',
            root_id = CASE WHEN kind IN ('task.created', 'task.delegated')
                           THEN (entry::jsonb) -> 'event' -> 'details' ->> 'root' END
        WHERE jsonb_typeof((entry::jsonb) -> 'event' -> 'task') = 'string';
    EXCEPTION WHEN others THEN
        FOR r IN SELECT idx FROM audit_log LOOP
            BEGIN
                UPDATE audit_log
                SET task_id = (entry::jsonb) -> 'event' ->> 'task',
                    root_id = CASE WHEN kind IN ('task.created', 'task.delegated')
                                   THEN (entry::jsonb) -> 'event' -> 'details' ->> 'root' END
                WHERE idx = r.idx
                  AND jsonb_typeof((entry::jsonb) -> 'event' -> 'task') = 'string';
            EXCEPTION WHEN others THEN
                NULL;
            END;
        END LOOP;
    END;
END
$$;

CREATE INDEX IF NOT EXISTS audit_log_by_task ON audit_log (task_id, idx);
CREATE INDEX IF NOT EXISTS audit_log_by_root ON audit_log (root_id);
