//! What plain decisions count, kept in the group-commit batch and written
//! once per batch.
//!
//! Most decisions change nothing but counters: a task's calls made or
//! refused, and the agent's use of an action on a resource (for the
//! inventory). Run one by one, those were four statements inside the batch
//! for every decision, each a round trip to the database. Here they are
//! summed per task and per use and written just before anything else in the
//! batch runs a statement, and before its COMMIT, so no statement of the
//! batch and no reader after it sees the counts any different from before.
//! Decisions that must check a count (a call limit, a budget, an approval)
//! are not tallied: they keep their guarded statements.

use std::collections::HashMap;

use mandate_core::decision::Verdict;
use mandate_core::ids::{AgentId, TaskId};
use sqlx::AnyConnection;

use super::is_sqlite;
use super::statement::{Sql, Statement, Value};
use crate::Result;

/// One decision's counts.
pub(crate) struct Counted {
    pub(crate) task: TaskId,
    pub(crate) agent: AgentId,
    pub(crate) action: String,
    pub(crate) resource: String,
    pub(crate) verdict: Verdict,
    pub(crate) at: i64,
}

#[derive(Default, Clone, Copy)]
struct TaskCounts {
    calls: i64,
    denied: i64,
}

#[derive(Clone, Copy)]
struct Use {
    calls: i64,
    first: i64,
    last: i64,
}

/// Counts waiting for the batch's next statement or its COMMIT.
#[derive(Default)]
pub(crate) struct Tally {
    tasks: HashMap<TaskId, TaskCounts>,
    usage: HashMap<(AgentId, String, String), Use>,
}

/// Uses per INSERT: 6 parameters each.
const USES_PER_INSERT: usize = 512;

impl Tally {
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.usage.is_empty()
    }

    /// As `decisions::record_decision` counts: an allowed call is a call made
    /// and a use of its action on its resource; a refusal is a refused call.
    pub(crate) fn add(&mut self, c: Counted) {
        let counts = self.tasks.entry(c.task).or_default();
        match c.verdict {
            Verdict::Deny => counts.denied += 1,
            Verdict::NeedsApproval => {}
            Verdict::Allow => {
                counts.calls += 1;
                self.usage
                    .entry((c.agent, c.action, c.resource))
                    .and_modify(|u| {
                        u.calls += 1;
                        u.first = u.first.min(c.at);
                        u.last = u.last.max(c.at);
                    })
                    .or_insert(Use {
                        calls: 1,
                        first: c.at,
                        last: c.at,
                    });
            }
        }
    }

    /// Writes the counts and forgets them.
    pub(crate) async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
        for statement in self.take(is_sqlite(conn)) {
            statement.run(conn).await?;
        }
        Ok(())
    }

    /// The statements that write the counts; the tally is empty after.
    pub(crate) fn take(&mut self, sqlite: bool) -> Vec<Statement<'static>> {
        let mut out = Vec::new();
        for (task, n) in self.tasks.drain() {
            if n.calls == 0 && n.denied == 0 {
                continue;
            }
            out.push(Statement {
                sql: Sql::Plain(
                    "UPDATE tasks SET calls_used = calls_used + $1, denied_calls = denied_calls + $2 \
                     WHERE id = $3"
                        .into(),
                ),
                values: vec![
                    Value::Int(n.calls),
                    Value::Int(n.denied),
                    Value::owned(task.to_string()),
                ],
            });
        }
        let latest = if sqlite { "max" } else { "GREATEST" };
        let mut uses = self.usage.drain();
        loop {
            let chunk: Vec<_> = uses.by_ref().take(USES_PER_INSERT).collect();
            if chunk.is_empty() {
                break;
            }
            let sql = Sql::Rows {
                head: "INSERT INTO agent_usage \
                       (agent_id, action, resource, calls, first_used, last_used) VALUES ",
                columns: 6,
                tail: format!(
                    " ON CONFLICT (agent_id, action, resource) DO UPDATE SET \
                     calls = agent_usage.calls + excluded.calls, \
                     last_used = {latest}(agent_usage.last_used, excluded.last_used)"
                ),
            };
            let mut values = Vec::with_capacity(chunk.len() * 6);
            for ((agent, action, resource), u) in chunk {
                values.extend([
                    Value::owned(agent.to_string()),
                    Value::owned(action),
                    Value::owned(resource),
                    Value::Int(u.calls),
                    Value::Int(u.first),
                    Value::Int(u.last),
                ]);
            }
            out.push(Statement { sql, values });
        }
        out
    }
}
