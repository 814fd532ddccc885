-- Portable across SQLite and PostgreSQL: TEXT and BIGINT only (sqlx Any cannot
-- decode SQLite booleans, so flags are BIGINT 0/1).
-- Times are milliseconds since the Unix epoch; structured values are JSON text.

CREATE TABLE installation (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    trust_domain TEXT   NOT NULL,
    issuer       TEXT   NOT NULL,
    log_origin   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE admin_credentials (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT   NOT NULL,
    label       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    public_key     TEXT    NOT NULL,
    sealed_private TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    active         BIGINT  NOT NULL CHECK (active IN (0, 1))
);

CREATE TABLE humans (
    id           TEXT PRIMARY KEY,
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    email        TEXT,
    status       TEXT   NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);

-- Retired agents stay forever, so UNIQUE(name) also means "never reused".
CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    name         TEXT   NOT NULL UNIQUE,
    kind         TEXT   NOT NULL CHECK (kind IN ('agent', 'model', 'pipeline', 'service')),
    spiffe_id    TEXT   NOT NULL UNIQUE,
    owner_id     TEXT   NOT NULL REFERENCES humans (id),
    description  TEXT   NOT NULL,
    ceiling      TEXT   NOT NULL,
    keys         TEXT   NOT NULL,
    tools        TEXT   NOT NULL,
    data_sources TEXT   NOT NULL,
    tags         TEXT   NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('active', 'suspended', 'retired')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX agents_by_owner ON agents (owner_id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    tag      TEXT NOT NULL,
    PRIMARY KEY (agent_id, tag)
);
CREATE INDEX agent_tags_by_tag ON agent_tags (tag);

-- The audit log. idx is dense from 0; entry is the exact hashed text.
CREATE TABLE audit_log (
    idx       BIGINT PRIMARY KEY,
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    agent_id  TEXT,
    human_id  TEXT,
    leaf_hash TEXT   NOT NULL,
    entry     TEXT   NOT NULL
);
CREATE INDEX audit_log_by_agent ON audit_log (agent_id);
CREATE INDEX audit_log_by_human ON audit_log (human_id);

CREATE TABLE audit_checkpoints (
    tree_size  BIGINT PRIMARY KEY,
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
