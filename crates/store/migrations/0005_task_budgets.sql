-- Task budgets (issue 4): money a task may move, in minor units, beside its
-- call limit. `budget` mirrors `limits.budget` so the spend guard is plain
-- SQL; `budget_spent` is raised by allowed decisions that carry an amount,
-- on the task and on every ancestor that has a budget.
ALTER TABLE tasks ADD COLUMN budget BIGINT;
ALTER TABLE tasks ADD COLUMN budget_spent BIGINT NOT NULL DEFAULT 0;
