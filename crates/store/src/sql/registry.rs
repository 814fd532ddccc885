//! Installation, humans and agents: every write with its audit event.

use mandate_core::admin::AdminSecretHash;
use mandate_core::agent::{Agent, AgentStatus, AttestationKey, Lifecycle, NewAgent};
use mandate_core::audit::{Actor, AuditEvent, EventKind, hash_from_hex, to_hex};
use mandate_core::human::{Human, NewHuman};
use mandate_core::ids::{AdminCredentialId, AgentId, HumanId, SpiffeId, TrustDomain};
use mandate_core::jwk::Ed25519Jwk;
use serde_json::json;
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Row};

use super::audit::append;
use super::convert::{self, to_json};
use super::{SqlStore, WriteTx, db_error};
use crate::*;

const AGENT_SELECT: &str = "SELECT a.id, a.name, a.kind, a.spiffe_id, a.owner_id, a.description, a.ceiling, \
     a.keys, a.tools, a.data_sources, a.tags, a.status, a.created_at, a.updated_at, h.status AS owner_status \
     FROM agents a JOIN humans h ON h.id = a.owner_id";

pub(crate) fn event(change: &Change, kind: EventKind) -> AuditEvent {
    AuditEvent::new(kind, change.at, change.actor.clone()).request_id(change.request_id.clone())
}

// ---- installation ----------------------------------------------------------

pub(crate) async fn initialize(
    store: &SqlStore,
    install: &Installation,
    (admin_id, admin_hash): (AdminCredentialId, AdminSecretHash),
    key: &SigningKeyRecord,
) -> Result<()> {
    let mut w = store.write().await?;
    let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM installation")
        .fetch_one(w.conn())
        .await
        .map_err(db_error)?;
    if exists > 0 {
        return Err(RuleError::Conflict("this store is already initialised".into()).into());
    }
    sqlx::query("INSERT INTO installation (id, trust_domain, issuer, log_origin, created_at) VALUES (1, $1, $2, $3, $4)")
        .bind(install.trust_domain.to_string())
        .bind(install.issuer.clone())
        .bind(install.log_origin.clone())
        .bind(install.created_at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    sqlx::query("INSERT INTO admin_credentials (id, secret_hash, label, created_at) VALUES ($1, $2, $3, $4)")
        .bind(admin_id.to_string())
        .bind(to_hex(&admin_hash.0))
        .bind("initial")
        .bind(install.created_at.as_millis())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    insert_signing_key(&mut w, key).await?;
    let at = install.created_at;
    append(
        &mut w,
        AuditEvent::new(EventKind::SystemInitialized, at, Actor::System).details(json!({
            "trust_domain": install.trust_domain, "issuer": install.issuer,
            "log_origin": install.log_origin, "signing_kid": key.kid,
        })),
    )
    .await?;
    append(
        &mut w,
        AuditEvent::new(EventKind::AdminCredentialCreated, at, Actor::System)
            .details(json!({ "credential": admin_id, "label": "initial" })),
    )
    .await?;
    w.commit().await
}

pub(crate) async fn insert_signing_key(w: &mut WriteTx<'_>, key: &SigningKeyRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, public_key, sealed_private, created_at, active, retired_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.kid.clone())
    .bind(key.public_key.clone())
    .bind(key.sealed_private.clone())
    .bind(key.created_at.as_millis())
    .bind(i64::from(key.active))
    .bind(key.retired_at.map(|t| t.as_millis()))
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn installation(store: &SqlStore) -> Result<Option<Installation>> {
    let row = sqlx::query(
        "SELECT trust_domain, issuer, log_origin, created_at FROM installation WHERE id = 1",
    )
    .fetch_optional(store.pool())
    .await
    .map_err(db_error)?;
    row.map(|r| {
        Ok(Installation {
            trust_domain: TrustDomain::parse(&convert::text(&r, "trust_domain")?)?,
            issuer: convert::text(&r, "issuer")?,
            log_origin: convert::text(&r, "log_origin")?,
            created_at: convert::millis(&r, "created_at")?,
        })
    })
    .transpose()
}

pub(crate) async fn admin_credential(
    store: &SqlStore,
    id: AdminCredentialId,
) -> Result<Option<AdminSecretHash>> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT secret_hash FROM admin_credentials WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(store.pool())
            .await
            .map_err(db_error)?;
    Ok(hash.and_then(|h| hash_from_hex(&h)).map(AdminSecretHash))
}

pub(crate) async fn signing_keys(store: &SqlStore) -> Result<Vec<SigningKeyRecord>> {
    let rows = sqlx::query("SELECT kid, public_key, sealed_private, created_at, active, retired_at FROM signing_keys ORDER BY created_at")
        .fetch_all(store.pool())
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok(SigningKeyRecord {
                kid: convert::text(r, "kid")?,
                public_key: convert::text(r, "public_key")?,
                sealed_private: convert::text(r, "sealed_private")?,
                created_at: convert::millis(r, "created_at")?,
                active: r.try_get::<i64, _>("active").map_err(db_error)? == 1,
                retired_at: convert::opt_millis(r, "retired_at")?,
            })
        })
        .collect()
}

// ---- humans ------------------------------------------------------------------

pub(crate) async fn create_human(
    store: &SqlStore,
    change: &Change,
    id: HumanId,
    new: &NewHuman,
) -> Result<Human> {
    new.validate()?;
    let mut w = store.write().await?;
    let taken: Option<String> =
        sqlx::query_scalar("SELECT id FROM humans WHERE issuer = $1 AND subject = $2")
            .bind(new.issuer.clone())
            .bind(new.subject.clone())
            .fetch_optional(w.conn())
            .await
            .map_err(db_error)?;
    if let Some(other) = taken {
        return Err(RuleError::Conflict(format!(
            "a human with issuer {:?} and subject {:?} is already registered (id {other})",
            new.issuer, new.subject
        ))
        .into());
    }
    sqlx::query(
        "INSERT INTO humans (id, issuer, subject, display_name, email, roles, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7)",
    )
    .bind(id.to_string())
    .bind(new.issuer.clone())
    .bind(new.subject.clone())
    .bind(new.display_name.clone())
    .bind(new.email.clone())
    .bind(to_json(&new.roles))
    .bind(change.at.as_millis())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    append(
        &mut w,
        event(change, EventKind::HumanRegistered)
            .human(id)
            .details(json!({
                "issuer": new.issuer, "subject": new.subject, "display_name": new.display_name,
                "roles": new.roles,
            })),
    )
    .await?;
    let human = human_in(w.conn(), id).await?;
    w.commit().await?;
    Ok(human)
}

/// Reads a human through a pool or an open transaction.
pub(crate) async fn human<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: HumanId,
) -> Result<Option<Human>> {
    let row = sqlx::query("SELECT * FROM humans WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
    row.as_ref().map(convert::human).transpose()
}

pub(crate) async fn human_by_subject(
    pool: &sqlx::AnyPool,
    issuer: &str,
    subject: &str,
) -> Result<Option<Human>> {
    let row = sqlx::query("SELECT * FROM humans WHERE issuer = $1 AND subject = $2")
        .bind(issuer.to_owned())
        .bind(subject.to_owned())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    row.as_ref().map(convert::human).transpose()
}

pub(crate) async fn human_in(conn: &mut AnyConnection, id: HumanId) -> Result<Human> {
    human(conn, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("human {id}")))
}

pub(crate) async fn list_humans(
    store: &SqlStore,
    filter: &HumanFilter,
    page: &PageRequest,
) -> Result<Page<Human>> {
    let mut q = Filtered::new("SELECT * FROM humans h");
    if let Some(s) = filter.status {
        q.and("h.status", s.as_str().to_owned());
    }
    let rows = q.page("h.id", page).fetch_all(store).await?;
    let items = rows
        .iter()
        .map(convert::human)
        .collect::<Result<Vec<_>>>()?;
    Ok(paginate(items, page, |h| h.id.to_string()))
}

pub(crate) async fn deactivate_human(
    store: &SqlStore,
    change: &Change,
    id: HumanId,
) -> Result<Human> {
    let mut w = store.write().await?;
    deactivate_in(&mut w, change, id).await?;
    let human = human_in(w.conn(), id).await?;
    w.commit().await?;
    Ok(human)
}

/// Deactivates inside the caller's transaction; the agents still owned
/// (not retired) become orphaned and are named in the event.
async fn deactivate_in(w: &mut WriteTx<'_>, change: &Change, id: HumanId) -> Result<()> {
    let human = human_in(w.conn(), id).await?;
    let status = human.deactivate()?;
    sqlx::query("UPDATE humans SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(change.at.as_millis())
        .bind(id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    let orphaned = owned_agents(w, id).await?;
    append(
        w,
        event(change, EventKind::HumanDeactivated)
            .human(id)
            .details(json!({ "orphaned_agents": orphaned })),
    )
    .await?;
    Ok(())
}

async fn owned_agents(w: &mut WriteTx<'_>, owner: HumanId) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT id FROM agents WHERE owner_id = $1 AND status <> 'retired' ORDER BY id",
    )
    .bind(owner.to_string())
    .fetch_all(w.conn())
    .await
    .map_err(db_error)
}

/// Offboarding: every agent the human still owns is transferred or retired
/// as `plan` says, then the human is deactivated, all in one transaction.
/// A plan that leaves an agent out, or names one the human does not own,
/// changes nothing.
pub(crate) async fn offboard_human(
    store: &SqlStore,
    change: &Change,
    id: HumanId,
    plan: &[(AgentId, Disposition)],
) -> Result<Human> {
    let mut w = store.write().await?;
    human_in(w.conn(), id).await?;
    let owned = owned_agents(&mut w, id).await?;
    let planned: Vec<String> = plan.iter().map(|(a, _)| a.to_string()).collect();
    let missing: Vec<&String> = owned.iter().filter(|a| !planned.contains(a)).collect();
    let foreign: Vec<&String> = planned.iter().filter(|a| !owned.contains(a)).collect();
    if !missing.is_empty() || !foreign.is_empty() || planned.len() != owned.len() {
        return Err(RuleError::Invalid {
            what: "offboarding plan",
            why: format!(
                "it must transfer or retire each agent the human owns, once: missing {missing:?}, not theirs or repeated {foreign:?}"
            ),
        }
        .into());
    }
    for (agent, disposition) in plan {
        let event = match disposition {
            Disposition::Transfer(to) => transfer_in(&mut w, change, *agent, *to).await?,
            Disposition::Retire => lifecycle_in(&mut w, change, *agent, Lifecycle::Retire).await?,
        };
        append(&mut w, event).await?;
    }
    deactivate_in(&mut w, change, id).await?;
    let human = human_in(w.conn(), id).await?;
    w.commit().await?;
    Ok(human)
}

// ---- agents ------------------------------------------------------------------

/// Loads the owner inside the transaction and applies the ownership rule, so a
/// concurrent deactivation cannot slip between the check and the write.
async fn active_owner(w: &mut WriteTx<'_>, owner: HumanId) -> Result<Human> {
    let lock = if w.backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM humans WHERE id = $1{lock}"
    )))
    .bind(owner.to_string())
    .fetch_optional(w.conn())
    .await
    .map_err(db_error)?;
    let human = row
        .as_ref()
        .map(convert::human)
        .transpose()?
        .ok_or_else(|| RuleError::Invalid {
            what: "owner",
            why: format!("no human with id {owner} is registered"),
        })?;
    human.check_may_own_agents()?;
    Ok(human)
}

pub(crate) async fn create_agent(
    store: &SqlStore,
    change: &Change,
    id: AgentId,
    spiffe_id: &SpiffeId,
    new: &NewAgent,
) -> Result<Agent> {
    new.validate()?;
    let mut w = store.write().await?;
    let owner = active_owner(&mut w, new.owner).await?;
    let taken: Option<String> = sqlx::query_scalar("SELECT status FROM agents WHERE name = $1")
        .bind(new.name.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db_error)?;
    if let Some(status) = taken {
        let why = if status == AgentStatus::Retired.as_str() {
            " by a retired agent; names are never reused"
        } else {
            ""
        };
        return Err(RuleError::Conflict(format!(
            "the agent name {:?} is already taken{why}",
            new.name.as_str()
        ))
        .into());
    }
    let keys: Vec<AttestationKey> = new
        .keys
        .iter()
        .map(|k| AttestationKey {
            kid: k.kid().to_owned(),
            jwk: k.clone(),
            created_at: change.at,
        })
        .collect();
    sqlx::query(
        "INSERT INTO agents (id, name, kind, spiffe_id, owner_id, description, ceiling, keys, tools, data_sources, \
         tags, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active', $12, $12)",
    )
    .bind(id.to_string())
    .bind(new.name.to_string())
    .bind(new.kind.as_str())
    .bind(spiffe_id.to_string())
    .bind(owner.id.to_string())
    .bind(new.description.clone())
    .bind(to_json(&new.ceiling))
    .bind(to_json(&keys))
    .bind(to_json(&new.tools))
    .bind(to_json(&new.data_sources))
    .bind(to_json(&new.tags))
    .bind(change.at.as_millis())
    .execute(w.conn())
    .await
    .map_err(db_error)?;
    for tag in &new.tags {
        sqlx::query("INSERT INTO agent_tags (agent_id, tag) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(tag.clone())
            .execute(w.conn())
            .await
            .map_err(db_error)?;
    }
    commit_agent(
        w,
        id,
        event(change, EventKind::AgentRegistered)
            .agent(id)
            .human(owner.id)
            .details(json!({
                "name": new.name, "kind": new.kind, "spiffe_id": spiffe_id, "ceiling": new.ceiling,
                "keys": keys.iter().map(|k| &k.kid).collect::<Vec<_>>(), "tags": new.tags,
            })),
    )
    .await
}

/// Reads one agent where `column` equals `value`, through a pool or an open
/// transaction; `suffix` is a locking clause or empty.
pub(crate) async fn agent_where<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    column: &'static str,
    value: String,
    suffix: &'static str,
) -> Result<Option<Agent>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{AGENT_SELECT} WHERE {column} = $1{suffix}"
    )))
    .bind(value)
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    row.as_ref().map(convert::agent).transpose()
}

/// Reads and, on PostgreSQL, row-locks an agent for the rest of the transaction.
pub(crate) async fn agent_for_update(w: &mut WriteTx<'_>, id: AgentId) -> Result<Agent> {
    agent_in(w, id).await
}

async fn agent_in(w: &mut WriteTx<'_>, id: AgentId) -> Result<Agent> {
    let lock = if w.backend == Backend::Postgres {
        " FOR UPDATE OF a"
    } else {
        ""
    };
    agent_where(w.conn(), "a.id", id.to_string(), lock)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent {id}")))
}

/// The common tail of every agent change: record the event, read the agent
/// back as stored, commit.
async fn commit_agent(mut w: WriteTx<'_>, id: AgentId, event: AuditEvent) -> Result<Agent> {
    append(&mut w, event).await?;
    let agent = agent_in(&mut w, id).await?;
    w.commit().await?;
    Ok(agent)
}

pub(crate) async fn list_agents(
    store: &SqlStore,
    filter: &AgentFilter,
    page: &PageRequest,
) -> Result<Page<Agent>> {
    let mut q = Filtered::new(AGENT_SELECT);
    if let Some(o) = filter.owner {
        q.and("a.owner_id", o.to_string());
    }
    if let Some(k) = filter.kind {
        q.and("a.kind", k.as_str().to_owned());
    }
    if let Some(s) = filter.status {
        q.and("a.status", s.as_str().to_owned());
    }
    if let Some(t) = &filter.tag {
        q.and_raw(
            "EXISTS (SELECT 1 FROM agent_tags t WHERE t.agent_id = a.id AND t.tag = ${})",
            t.clone(),
        );
    }
    if let Some(o) = filter.orphaned {
        q.and(
            "h.status",
            if o { "deactivated" } else { "active" }.to_owned(),
        );
    }
    if let Some(text) = &filter.name_contains {
        // LIKE's wildcards in the text are escaped: it matches literally.
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q.and_raw("a.name LIKE '%' || ${} || '%' ESCAPE '\\'", escaped);
    }
    let rows = q.page("a.id", page).fetch_all(store).await?;
    let items = rows
        .iter()
        .map(convert::agent)
        .collect::<Result<Vec<_>>>()?;
    Ok(paginate(items, page, |a| a.id.to_string()))
}

pub(crate) async fn change_agent_lifecycle(
    store: &SqlStore,
    change: &Change,
    id: AgentId,
    op: Lifecycle,
) -> Result<Agent> {
    let mut w = store.write().await?;
    let event = lifecycle_in(&mut w, change, id, op).await?;
    commit_agent(w, id, event).await
}

/// Applies `op` inside the caller's transaction; returns the event to append.
/// Suspending or retiring revokes the agent's open tasks (and so every
/// credential it could present, at the gateway too); retiring also removes
/// its attestation keys, so nothing can act as it again.
pub(crate) async fn lifecycle_in(
    w: &mut WriteTx<'_>,
    change: &Change,
    id: AgentId,
    op: Lifecycle,
) -> Result<AuditEvent> {
    let agent = agent_in(w, id).await?;
    let status = agent.status.apply(op)?;
    sqlx::query("UPDATE agents SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(change.at.as_millis())
        .bind(id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    if matches!(op, Lifecycle::Suspend | Lifecycle::Retire) {
        let reason = format!("agent {} was {}", agent.spiffe_id, status.as_str());
        super::tasks::revoke_agent_tasks(w, change, id, &reason).await?;
    }
    let mut details = json!({ "from": agent.status, "to": status });
    if op == Lifecycle::Retire && !agent.keys.is_empty() {
        set_keys(w, change, id, &[]).await?;
        details["keys_removed"] = json!(agent.keys.iter().map(|k| &k.kid).collect::<Vec<_>>());
    }
    let kind = match op {
        Lifecycle::Suspend => EventKind::AgentSuspended,
        Lifecycle::Resume => EventKind::AgentResumed,
        Lifecycle::Retire => EventKind::AgentRetired,
    };
    Ok(event(change, kind).agent(id).details(details))
}

pub(crate) async fn transfer_agent(
    store: &SqlStore,
    change: &Change,
    id: AgentId,
    new_owner: HumanId,
) -> Result<Agent> {
    let mut w = store.write().await?;
    let event = transfer_in(&mut w, change, id, new_owner).await?;
    commit_agent(w, id, event).await
}

async fn transfer_in(
    w: &mut WriteTx<'_>,
    change: &Change,
    id: AgentId,
    new_owner: HumanId,
) -> Result<AuditEvent> {
    let agent = agent_in(w, id).await?;
    let owner = active_owner(w, new_owner).await?;
    agent.check_transfer(&owner)?;
    sqlx::query("UPDATE agents SET owner_id = $1, updated_at = $2 WHERE id = $3")
        .bind(owner.id.to_string())
        .bind(change.at.as_millis())
        .bind(id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    Ok(event(change, EventKind::AgentOwnerTransferred)
        .agent(id)
        .human(owner.id)
        .details(json!({ "from": agent.owner, "to": owner.id, "was_orphaned": agent.orphaned })))
}

async fn set_keys(
    w: &mut WriteTx<'_>,
    change: &Change,
    id: AgentId,
    keys: &[AttestationKey],
) -> Result<()> {
    sqlx::query("UPDATE agents SET keys = $1, updated_at = $2 WHERE id = $3")
        .bind(to_json(&keys))
        .bind(change.at.as_millis())
        .bind(id.to_string())
        .execute(w.conn())
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn add_agent_key(
    store: &SqlStore,
    change: &Change,
    id: AgentId,
    key: &Ed25519Jwk,
) -> Result<Agent> {
    let mut w = store.write().await?;
    let mut agent = agent_in(&mut w, id).await?;
    agent.check_add_key(key)?;
    agent.keys.push(AttestationKey {
        kid: key.kid().to_owned(),
        jwk: key.clone(),
        created_at: change.at,
    });
    set_keys(&mut w, change, id, &agent.keys).await?;
    commit_agent(
        w,
        id,
        event(change, EventKind::AgentKeyAdded)
            .agent(id)
            .details(json!({ "kid": key.kid(), "thumbprint": key.thumbprint() })),
    )
    .await
}

pub(crate) async fn remove_agent_key(
    store: &SqlStore,
    change: &Change,
    id: AgentId,
    kid: &str,
) -> Result<Agent> {
    let mut w = store.write().await?;
    let mut agent = agent_in(&mut w, id).await?;
    agent.check_remove_key(kid)?;
    agent.keys.retain(|k| k.kid != kid);
    set_keys(&mut w, change, id, &agent.keys).await?;
    commit_agent(
        w,
        id,
        event(change, EventKind::AgentKeyRemoved)
            .agent(id)
            .details(json!({ "kid": kid })),
    )
    .await
}

// ---- filtered, paginated listing ----------------------------------------------

/// Builds `SELECT ... WHERE a = $1 AND b = $2 ... ORDER BY id LIMIT n`. Only
/// placeholders go into the SQL text; every value is bound.
pub(crate) struct Filtered {
    sql: String,
    binds: Vec<String>,
    conditions: usize,
    limit: u32,
}

impl Filtered {
    pub(crate) fn new(select: &str) -> Self {
        Filtered {
            sql: select.to_owned(),
            binds: Vec::new(),
            conditions: 0,
            limit: 0,
        }
    }

    pub(crate) fn and(&mut self, column: &'static str, value: String) {
        self.binds.push(value);
        let n = self.binds.len();
        self.push_cond(&format!("{column} = ${n}"));
    }

    /// `template` has one `${}` for this value's placeholder number.
    fn and_raw(&mut self, template: &'static str, value: String) {
        self.binds.push(value);
        let n = self.binds.len();
        self.push_cond(&template.replace("${}", &format!("${n}")));
    }

    /// A condition on an instant: `{t}` in `template` becomes its epoch
    /// milliseconds, an integer literal (no injection possible).
    pub(crate) fn and_at(&mut self, template: &'static str, t: Timestamp) {
        self.push_cond(&template.replace("{t}", &t.as_millis().to_string()));
    }

    /// A condition with no value (constant SQL).
    pub(crate) fn and_const(&mut self, cond: &'static str) {
        self.push_cond(cond);
    }

    fn push_cond(&mut self, cond: &str) {
        self.sql.push_str(if self.conditions == 0 {
            " WHERE "
        } else {
            " AND "
        });
        self.conditions += 1;
        self.sql.push_str(cond);
    }

    /// Orders an unpaged listing by `clause` (constant SQL, e.g. `x DESC`).
    pub(crate) fn order_by(mut self, clause: &'static str) -> Self {
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(clause);
        self
    }

    pub(crate) fn page(mut self, key: &'static str, page: &PageRequest) -> Self {
        if let Some(after) = &page.after {
            self.and_raw_key(key, after.clone());
        }
        self.limit = clamp_limit(page.limit);
        // One extra row tells whether there is a next page.
        self.sql
            .push_str(&format!(" ORDER BY {key} LIMIT {}", self.limit + 1));
        self
    }

    fn and_raw_key(&mut self, key: &'static str, after: String) {
        self.binds.push(after);
        let n = self.binds.len();
        self.push_cond(&format!("{key} > ${n}"));
    }

    pub(crate) async fn fetch_all(self, store: &SqlStore) -> Result<Vec<sqlx::any::AnyRow>> {
        let mut q = sqlx::query(AssertSqlSafe(self.sql));
        for b in self.binds {
            q = q.bind(b);
        }
        q.fetch_all(store.pool()).await.map_err(db_error)
    }
}

pub(crate) fn clamp_limit(limit: u32) -> u32 {
    if limit == 0 { 50 } else { limit.min(MAX_PAGE) }
}

pub(crate) fn paginate<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = clamp_limit(page.limit) as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}
