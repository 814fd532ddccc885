-- SQLite part: a number that every change to a decision's context moves.
--
-- A decision reads its token's credential, its task and the task's
-- ancestors with their assignees, and the active policy's hash. On an SQLite
-- file that read costs more than the rest of the decision's storage work,
-- and almost none of it changes between two calls of a task. So the process
-- keeps what it read with the epoch it read it at, and each decision reads
-- the epoch (and the task's counters, which move with every call) to know
-- whether that is still what is stored. The triggers below move the epoch in
-- the same transaction as the change, whoever makes it (this process,
-- another process on the file, a hand-run statement), so a reused read is
-- never older than what had committed when the decision began.
--
-- It may run again (a test forgets the migrations from 10 on), so every
-- statement leaves what is already there.
CREATE TABLE IF NOT EXISTS context_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT OR IGNORE INTO context_epoch (id, n) VALUES (1, 0);

-- Every column of a task except its counters (calls used, denied calls,
-- budget spent), which each read takes afresh. A test checks that no other
-- column is missing here.
CREATE TRIGGER IF NOT EXISTS tasks_move_context_epoch AFTER UPDATE OF
    id, parent_id, root_id, depth, purpose, initiator, assignee, delegator,
    scope, limits, expires_at, status, created_at, ended_at, end_reason, budget
    ON tasks
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS tasks_deleted_move_context_epoch AFTER DELETE ON tasks
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;

CREATE TRIGGER IF NOT EXISTS credentials_move_context_epoch AFTER UPDATE ON credentials
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS credentials_deleted_move_context_epoch AFTER DELETE ON credentials
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;

CREATE TRIGGER IF NOT EXISTS agents_move_context_epoch AFTER UPDATE ON agents
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS agents_deleted_move_context_epoch AFTER DELETE ON agents
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;

CREATE TRIGGER IF NOT EXISTS active_policy_moves_context_epoch AFTER UPDATE ON active_policy
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS active_policy_deleted_moves_context_epoch AFTER DELETE ON active_policy
BEGIN UPDATE context_epoch SET n = n + 1 WHERE id = 1; END;
