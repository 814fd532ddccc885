-- SQLite part: `idx BIGINT PRIMARY KEY` is not SQLite's rowid (only the
-- exact type name INTEGER makes the key an alias of it), so every append
-- wrote the table's rowid B-tree and a separate unique index on idx. The
-- table is rebuilt with idx as the rowid; rows, their order and every
-- stored byte are unchanged, and the indexes are made again.
CREATE TABLE audit_log_by_rowid (
    idx       INTEGER PRIMARY KEY,
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    agent_id  TEXT,
    human_id  TEXT,
    leaf_hash TEXT   NOT NULL,
    entry     TEXT   NOT NULL,
    task_id   TEXT,
    root_id   TEXT
);
INSERT INTO audit_log_by_rowid (idx, kind, at, agent_id, human_id, leaf_hash, entry, task_id, root_id)
    SELECT idx, kind, at, agent_id, human_id, leaf_hash, entry, task_id, root_id FROM audit_log ORDER BY idx;
DROP TABLE audit_log;
ALTER TABLE audit_log_by_rowid RENAME TO audit_log;
CREATE INDEX audit_log_by_agent ON audit_log (agent_id);
CREATE INDEX audit_log_registrations ON audit_log (human_id, kind)
    WHERE kind = 'human.registered';
CREATE INDEX audit_log_by_task ON audit_log (task_id, idx);
CREATE INDEX audit_log_by_root ON audit_log (root_id) WHERE root_id IS NOT NULL;
