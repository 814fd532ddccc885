-- The gateway (issue 7): downstream secrets it injects on agents' behalf,
-- sealed with the master key (the name is the associated data). Rotation
-- replaces the value and raises the version; the audit log has each change.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    sealed     TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT NOT NULL
);
