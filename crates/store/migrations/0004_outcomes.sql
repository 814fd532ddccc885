-- Outcomes and Return on AI (issue 6). Portable like 0001-0003.

-- Workflows whose outcomes count; the definition (baseline, value model,
-- currency) is the core `NewWorkflow` as JSON.
CREATE TABLE workflows (
    name       TEXT PRIMARY KEY,
    definition TEXT   NOT NULL,
    owner      TEXT   NOT NULL REFERENCES humans (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Refused decisions under a task, raised by the decision that refuses, so an
-- outcome can be classified without reading the log.
ALTER TABLE tasks ADD COLUMN denied_calls BIGINT NOT NULL DEFAULT 0;

-- First report of each idempotency key: the primary key is what makes a
-- concurrent retry from another connection a duplicate, never a second count.
CREATE TABLE outcome_keys (
    workflow    TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome_id  TEXT NOT NULL,
    PRIMARY KEY (workflow, idem_key)
);

-- Every reported outcome, retries included. The full record is the
-- `outcome.reported` audit entry at `audit_idx`; these columns are what
-- reports aggregate.
CREATE TABLE outcomes (
    id             TEXT PRIMARY KEY,
    workflow       TEXT   NOT NULL REFERENCES workflows (name),
    reported_at    BIGINT NOT NULL,
    task_id        TEXT   NOT NULL,
    agent_id       TEXT   NOT NULL,
    initiator      TEXT   NOT NULL,
    classification TEXT   NOT NULL,
    value          BIGINT NOT NULL,
    cost           BIGINT NOT NULL,
    minutes        BIGINT NOT NULL,
    tokens         BIGINT NOT NULL,
    audit_idx      BIGINT NOT NULL
);
CREATE INDEX outcomes_by_workflow_time ON outcomes (workflow, reported_at);

-- Per-day sums of `outcomes`, kept in the same transaction as each insert,
-- so a report over millions of outcomes reads a few thousand rows. Days are
-- UTC, as epoch milliseconds of their start.
CREATE TABLE outcome_rollup (
    workflow       TEXT   NOT NULL,
    day            BIGINT NOT NULL,
    agent_id       TEXT   NOT NULL,
    initiator      TEXT   NOT NULL,
    classification TEXT   NOT NULL,
    n              BIGINT NOT NULL,
    value          BIGINT NOT NULL,
    cost           BIGINT NOT NULL,
    minutes        BIGINT NOT NULL,
    tokens         BIGINT NOT NULL,
    PRIMARY KEY (workflow, day, agent_id, initiator, classification)
);
