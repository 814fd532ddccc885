//! Per-thread caches of the entities that stay the same over many calls.
//!
//! Building Cedar entities (evaluating their attributes, computing the
//! transitive closure) is most of a decision's cost, and an agent makes many
//! calls under one task with the same chain, often on the same resources,
//! and many tasks as the same agent. So three caches: a task's whole set
//! with one action and resource added (what an agent's repeated call needs),
//! a task's base (its chain and the task), and each agent's entity on its
//! own, which a new task of a known agent reuses. All are keyed by the facts
//! themselves — every agent of the chain with its kind, owner and tags, the
//! task with its purpose and depth, the initiator, the action and the groups
//! it is in, the resource with its sensitivity and labels, the environment
//! and the tool — so a changed fact is a different key, never a stale answer.
//! They live per thread (no lock on the hot path) and are bounded: when full
//! they start over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityUid};
use mandate_core::ids::HumanId;

use crate::request::{AgentFacts, DecisionRequest, ResourceFacts, TaskFacts};

/// Entries each cache keeps per thread.
const CAPACITY: usize = 4096;

/// A task's base: its chain of agents and the task itself.
struct Base {
    chain: Vec<AgentFacts>,
    task: TaskFacts,
    initiator: HumanId,
    entities: Arc<Entities>,
}

/// A base with the request's own two entities added: the resource (with its
/// environment and tool as parents) and the action (with its groups).
struct Whole {
    base: Arc<Base>,
    action: String,
    action_parents: Vec<EntityUid>,
    resource: ResourceFacts,
    environment: String,
    tool: Option<String>,
    entities: Arc<Entities>,
}

impl Whole {
    fn is_for(&self, r: &DecisionRequest, action_parents: &[EntityUid]) -> bool {
        self.action == r.action
            && self.action_parents == action_parents
            && self.resource == r.resource
            && self.environment == r.context.environment
            && self.tool == r.context.tool
            && self.base.is_for(r)
    }
}

impl Base {
    fn is_for(&self, r: &DecisionRequest) -> bool {
        self.initiator == r.initiator && self.task == r.task && self.chain.iter().eq(r.chain())
    }
}

thread_local! {
    static WHOLES: RefCell<HashMap<u64, Whole>> = RefCell::new(HashMap::new());
    static BASES: RefCell<HashMap<u64, Arc<Base>>> = RefCell::new(HashMap::new());
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

fn whole_digest(base: u64, r: &DecisionRequest, action_parents: &[EntityUid]) -> u64 {
    let mut h = DefaultHasher::new();
    base.hash(&mut h);
    r.action.hash(&mut h);
    action_parents.hash(&mut h);
    r.resource.hash(&mut h);
    r.context.environment.hash(&mut h);
    r.context.tool.hash(&mut h);
    h.finish()
}

/// All the entities of `r`: from the cache when its exact facts were seen on
/// this thread; otherwise `add` puts the resource and the action into the
/// base (itself from the cache, or from `build`), and the result is
/// remembered if the base was.
pub(crate) fn whole(
    r: &DecisionRequest,
    action_parents: &[EntityUid],
    build: impl FnOnce() -> Result<Entities, String>,
    add: impl FnOnce(Entities) -> Result<Entities, String>,
) -> Result<Arc<Entities>, String> {
    let base_key = digest(r);
    let key = whole_digest(base_key, r, action_parents);
    let hit = WHOLES.with(|w| {
        w.borrow()
            .get(&key)
            .filter(|c| c.is_for(r, action_parents))
            .map(|c| c.entities.clone())
    });
    if let Some(entities) = hit {
        return Ok(entities);
    }
    let (base, seen) = base(r, base_key, build)?;
    let entities = Arc::new(add(Entities::clone(&base.entities))?);
    // A task's first call is often its only one with these facts (a new
    // task on every call would just churn this cache): remember the whole
    // set from the second call of a task on.
    if !seen {
        return Ok(entities);
    }
    let cached = Whole {
        base,
        action: r.action.clone(),
        action_parents: action_parents.to_vec(),
        resource: r.resource.clone(),
        environment: r.context.environment.clone(),
        tool: r.context.tool.clone(),
        entities: entities.clone(),
    };
    // A digest collision replaces the other entry: both stay correct.
    WHOLES.with(|w| remember(&mut w.borrow_mut(), key, cached));
    Ok(entities)
}

/// The base entities of `r` (under `key`, its digest): from the cache when
/// its exact facts were seen on this thread (then `true`), otherwise from
/// `build` (and remembered).
fn base(
    r: &DecisionRequest,
    key: u64,
    build: impl FnOnce() -> Result<Entities, String>,
) -> Result<(Arc<Base>, bool), String> {
    let hit = BASES.with(|b| b.borrow().get(&key).filter(|c| c.is_for(r)).cloned());
    if let Some(cached) = hit {
        return Ok((cached, true));
    }
    let cached = Arc::new(Base {
        chain: r.chain().cloned().collect(),
        task: r.task.clone(),
        initiator: r.initiator,
        entities: Arc::new(build()?),
    });
    // A digest collision replaces the other entry: both stay correct.
    BASES.with(|b| remember(&mut b.borrow_mut(), key, cached.clone()));
    Ok((cached, false))
}
