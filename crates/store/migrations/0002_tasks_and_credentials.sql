-- Task-scoped credentials and delegation (issue 3).

-- OIDC issuers whose ID tokens prove a human.
CREATE TABLE trusted_issuers (
    issuer     TEXT PRIMARY KEY,
    jwks       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES tasks (id),
    root_id     TEXT   NOT NULL,
    depth       BIGINT NOT NULL,
    purpose     TEXT   NOT NULL,
    initiator   TEXT   NOT NULL REFERENCES humans (id),
    assignee    TEXT   NOT NULL REFERENCES agents (id),
    delegator   TEXT REFERENCES agents (id),
    scope       TEXT   NOT NULL,
    limits      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('open', 'completed', 'failed', 'revoked', 'expired')),
    created_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    end_reason  TEXT
);
CREATE INDEX tasks_by_parent ON tasks (parent_id);
CREATE INDEX tasks_by_root ON tasks (root_id);
CREATE INDEX tasks_by_assignee ON tasks (assignee, status);

-- Issued task credentials, by jti. The token itself is never stored.
CREATE TABLE credentials (
    jti        TEXT PRIMARY KEY,
    task_id    TEXT   NOT NULL REFERENCES tasks (id),
    agent_id   TEXT   NOT NULL REFERENCES agents (id),
    kid        TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    cnf_jkt    TEXT,
    revoked_at BIGINT
);
CREATE INDEX credentials_by_task ON credentials (task_id);

-- Single-use identifiers (agent assertion and DPoP proof jtis) until they expire.
CREATE TABLE used_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

ALTER TABLE signing_keys ADD COLUMN retired_at BIGINT;
