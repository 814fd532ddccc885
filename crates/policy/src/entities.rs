//! Per-thread caches of the entities that stay the same over many calls.
//!
//! Building Cedar entities (evaluating their attributes, computing the
//! transitive closure) is most of a decision's cost, and an agent makes many
//! calls under one task with the same chain, and many tasks as the same
//! agent. So two caches: a task's whole base (its chain and the task), and
//! each agent's entity on its own, which a new task of a known agent reuses.
//! Both are keyed by the facts themselves — every agent of the chain with its
//! kind, owner and tags, the task with its purpose and depth, the initiator —
//! so a changed fact is a different key, never a stale answer. They live per
//! thread (no lock on the hot path) and are bounded: when full they start
//! over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use cedar_policy::{Entities, Entity};
use mandate_core::ids::HumanId;

use crate::request::{AgentFacts, DecisionRequest, TaskFacts};

/// Chains and tasks remembered per thread.
const CAPACITY: usize = 4096;

struct Cached {
    chain: Vec<AgentFacts>,
    task: TaskFacts,
    initiator: HumanId,
    entities: Entities,
}

impl Cached {
    fn is_for(&self, r: &DecisionRequest) -> bool {
        self.initiator == r.initiator && self.task == r.task && self.chain.iter().eq(r.chain())
    }
}

thread_local! {
    static BASES: RefCell<HashMap<u64, Cached>> = RefCell::new(HashMap::new());
    static AGENTS: RefCell<HashMap<AgentFacts, Entity>> = RefCell::new(HashMap::new());
}

/// The entity of agent `facts`: from the cache when these exact facts were
/// seen on this thread, otherwise from `build` (and remembered).
pub(crate) fn agent(
    facts: &AgentFacts,
    build: impl FnOnce() -> Result<Entity, String>,
) -> Result<Entity, String> {
    if let Some(e) = AGENTS.with(|a| a.borrow().get(facts).cloned()) {
        return Ok(e);
    }
    let entity = build()?;
    AGENTS.with(|a| remember(&mut a.borrow_mut(), facts.clone(), entity.clone()));
    Ok(entity)
}

/// Inserts into one of the bounded caches, which starts over when full.
fn remember<K: Hash + Eq, V>(cache: &mut HashMap<K, V>, key: K, value: V) {
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(key, value);
}

fn digest(r: &DecisionRequest) -> u64 {
    let mut h = DefaultHasher::new();
    r.initiator.hash(&mut h);
    r.task.hash(&mut h);
    for a in r.chain() {
        a.hash(&mut h);
    }
    h.finish()
}

/// The base entities of `r`: from the cache when its exact facts were seen
/// on this thread, otherwise from `build` (and remembered).
pub(crate) fn base(
    r: &DecisionRequest,
    build: impl FnOnce() -> Result<Entities, String>,
) -> Result<Entities, String> {
    let key = digest(r);
    let hit = BASES.with(|b| {
        b.borrow()
            .get(&key)
            .filter(|c| c.is_for(r))
            .map(|c| c.entities.clone())
    });
    if let Some(entities) = hit {
        return Ok(entities);
    }
    let entities = build()?;
    let cached = Cached {
        chain: r.chain().cloned().collect(),
        task: r.task.clone(),
        initiator: r.initiator,
        entities: entities.clone(),
    };
    // A digest collision replaces the other entry: both stay correct.
    BASES.with(|b| remember(&mut b.borrow_mut(), key, cached));
    Ok(entities)
}
