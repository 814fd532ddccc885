-- What each agent was actually allowed to do (issue 8): one row per agent,
-- action and resource, raised in the transaction of the decision that
-- allowed it. The inventory lists it beside the ceiling; decisions made
-- before this table existed are in the audit log only.
CREATE TABLE agent_usage (
    agent_id   TEXT   NOT NULL REFERENCES agents (id),
    action     TEXT   NOT NULL,
    resource   TEXT   NOT NULL,
    calls      BIGINT NOT NULL,
    first_used BIGINT NOT NULL,
    last_used  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, action, resource)
);
