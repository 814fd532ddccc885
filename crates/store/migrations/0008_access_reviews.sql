-- Access reviews (issue 8): one row per campaign. The items and their
-- decisions are small (one owner's agents) and always read and changed
-- together, so they are kept as one JSON document under the row's lock;
-- `complete` lets posture read only the campaigns that can still escalate.
CREATE TABLE access_reviews (
    id         TEXT    PRIMARY KEY,
    owner_id   TEXT    NOT NULL REFERENCES humans (id),
    started_at BIGINT  NOT NULL,
    deadline   BIGINT  NOT NULL,
    complete   INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX access_reviews_owner ON access_reviews (owner_id, started_at);
CREATE INDEX access_reviews_open ON access_reviews (complete, deadline);
