-- Appending speed (issue 5), portable part: every index of the log is one
-- more B-tree every append writes.
--
-- No query looks entries up by human alone (a human's registration has its
-- own partial index, `audit_log_registrations`), so that index goes.
DROP INDEX audit_log_by_human;

-- Only a task's creation names a tree root; the index of the others' NULLs
-- was written on every append and never read. A lookup `root_id = ?`
-- implies `root_id IS NOT NULL`, so it still uses this index.
DROP INDEX audit_log_by_root;
CREATE INDEX audit_log_by_root ON audit_log (root_id) WHERE root_id IS NOT NULL;
