-- Runtime decisions: policy versions, call counting, approvals, break-glass.
-- Portable like 0001/0002: TEXT and BIGINT only, times in epoch milliseconds,
-- structured values as JSON text.

-- What a human may do beyond owning agents: a JSON array of role names.
ALTER TABLE humans ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';

-- Calls counted against the task's `limits.max_calls`, raised atomically by
-- the decision that counts them.
ALTER TABLE tasks ADD COLUMN calls_used BIGINT NOT NULL DEFAULT 0;

-- Every policy set ever pushed, immutable and addressed by the SHA-256 of its
-- text. `version` numbers them in push order.
CREATE TABLE policy_versions (
    hash      TEXT PRIMARY KEY,
    version   BIGINT NOT NULL UNIQUE,
    text      TEXT   NOT NULL,
    pushed_at BIGINT NOT NULL,
    -- The Actor who pushed it, as JSON.
    pushed_by TEXT   NOT NULL
);

-- The active version: always exactly one row, so at most one version is
-- active (none before the first push). Writers lock this row to activate.
CREATE TABLE active_policy (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    hash         TEXT REFERENCES policy_versions (hash),
    activated_at BIGINT
);
INSERT INTO active_policy (id, hash, activated_at) VALUES (1, NULL, NULL);

-- Human approvals, each bound to one exact request (task + digest).
CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    task_id      TEXT   NOT NULL REFERENCES tasks (id),
    agent_id     TEXT   NOT NULL REFERENCES agents (id),
    initiator    TEXT   NOT NULL REFERENCES humans (id),
    action       TEXT   NOT NULL,
    resource     TEXT   NOT NULL,
    digest       TEXT   NOT NULL,
    -- JSON array of the policy ids that asked for it.
    policies     TEXT   NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    requested_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    decided_by   TEXT REFERENCES humans (id),
    decided_at   BIGINT,
    note         TEXT
);
CREATE INDEX approvals_by_task_digest ON approvals (task_id, digest);
CREATE INDEX approvals_by_status ON approvals (status);

-- Emergency grants outside normal policy, flagged until reviewed.
CREATE TABLE breakglass (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT   NOT NULL REFERENCES agents (id),
    -- The Scope it allows, as JSON (like tasks.scope).
    scope       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    -- The Actor who granted it, as JSON.
    granted_by  TEXT   NOT NULL,
    granted_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    reviewed_by TEXT REFERENCES humans (id),
    reviewed_at BIGINT,
    review_note TEXT
);
CREATE INDEX breakglass_by_agent ON breakglass (agent_id, expires_at);
CREATE INDEX breakglass_by_review ON breakglass (reviewed_at);
