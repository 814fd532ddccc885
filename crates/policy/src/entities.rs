//! A per-thread cache of the entities that stay the same over a task's calls.
//!
//! Building Cedar entities (evaluating their attributes, computing the
//! transitive closure) is most of a decision's cost, and an agent makes many
//! calls under one task with the same chain. The cache is keyed by the facts
//! themselves — every agent of the chain with its kind, owner and tags, the
//! task with its purpose and depth, the initiator — so a changed fact is a
//! different key, never a stale answer. It lives per thread (no lock on the
//! hot path) and is bounded: when full it starts over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use cedar_policy::Entities;
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
    BASES.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() >= CAPACITY {
            b.clear();
        }
        // A digest collision replaces the other entry: both stay correct.
        b.insert(
            key,
            Cached {
                chain: r.chain().cloned().collect(),
                task: r.task.clone(),
                initiator: r.initiator,
                entities: entities.clone(),
            },
        );
    });
    Ok(entities)
}
