//! A validated, immutable policy set: parsing, Mandate's conventions, identity by hash.
//!
//! A policy set is accepted whole or refused whole: Cedar must parse it,
//! every policy must follow Mandate's conventions, and the validator must
//! type-check every policy against the schema in strict mode. Refusing at
//! push time is the point: a policy that reads data a decision will not
//! carry would otherwise fail silently at run time, on every request.
//!
//! Conventions on top of Cedar:
//! - every policy has `@id("...")`, unique in the set. Cedar's positional ids
//!   (`policy0`, ...) change when a policy is inserted above; reasons, audit
//!   records and diffs need names that survive edits;
//! - `@approval("required")` is only allowed on `forbid` (see the crate docs
//!   for why), with exactly that value;
//! - every `Mandate::Action::"..."` id is a valid task-scope action or
//!   trailing-`*` group, so policies and scopes share one vocabulary;
//! - no templates (`?principal` slots): Mandate has no linking step, and an
//!   unlinked template would never apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use cedar_policy::{Policy, PolicyId, ValidationMode, ValidationWarning, Validator};
use mandate_core::scope::ActionPattern;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Location, PolicyError, Problem, ProblemKind};
use crate::schema::{self, TYPES};
use crate::slice::ActionIndex;

/// Larger texts are refused before Cedar sees them: a push is reviewed by
/// people, and parsing cost grows with size.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Longest accepted `@id`.
pub const MAX_ID_LEN: usize = 128;

/// The annotation that names a policy.
pub const ID_ANNOTATION: &str = "id";
/// The annotation that turns a `forbid` into an approval gate.
pub const APPROVAL_ANNOTATION: &str = "approval";
/// The only accepted value of [`APPROVAL_ANNOTATION`].
pub const APPROVAL_REQUIRED: &str = "required";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Permit,
    Forbid,
}

impl From<cedar_policy::Effect> for Effect {
    fn from(e: cedar_policy::Effect) -> Self {
        match e {
            cedar_policy::Effect::Permit => Effect::Permit,
            cedar_policy::Effect::Forbid => Effect::Forbid,
        }
    }
}

/// One policy of a set, as listed by `mandate policy list | show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// Its `@id`.
    pub id: String,
    pub effect: Effect,
    /// Every annotation, `id` included (`@reason`, `@approval`, ...).
    pub annotations: BTreeMap<String, String>,
    /// Where the policy starts in the set's text.
    pub location: Location,
    /// Its source text, annotations included.
    pub text: String,
    /// Cedar's JSON form, without layout or comments: what "changed" compares.
    #[serde(skip)]
    pub(crate) canonical: String,
}

impl PolicyInfo {
    /// Is this a `forbid` that a human approval lifts?
    pub fn is_approval_gate(&self) -> bool {
        self.effect == Effect::Forbid
            && self
                .annotations
                .get(APPROVAL_ANNOTATION)
                .map(String::as_str)
                == Some(APPROVAL_REQUIRED)
    }
}

/// A parsed, validated policy set. Immutable: a change is a new set with a
/// new hash.
#[derive(Debug)]
pub struct PolicySet {
    text: String,
    hash: String,
    policies: Vec<PolicyInfo>,
    by_id: HashMap<String, usize>,
    warnings: Vec<Problem>,
    pub(crate) index: ActionIndex,
}

/// The text a policy set is stored, hashed and located by. Line endings are
/// unified so a file saved on Windows is the same version; nothing else is
/// touched, because comments and layout are part of what reviewers read.
pub fn canonical_text(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Hex SHA-256 of [`canonical_text`]: `sha256sum` of the stored text.
pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(canonical_text(text).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl PolicySet {
    /// Parses and validates `text`. Every problem found is reported, each
    /// with its line and column.
    pub fn parse(text: &str) -> Result<PolicySet, PolicyError> {
        let text = canonical_text(text);
        if text.len() > MAX_TEXT_BYTES {
            return Err(PolicyError::new(vec![Problem::convention(
                None,
                format!(
                    "policy text is {} bytes; at most {MAX_TEXT_BYTES} are accepted",
                    text.len()
                ),
                Some(Location::at(&text, MAX_TEXT_BYTES)),
            )]));
        }
        let parsed = cedar_policy::PolicySet::from_str(&text).map_err(|errs| {
            PolicyError::new(
                errs.iter()
                    .map(|e| Problem::from_diagnostic(ProblemKind::Syntax, None, e, &text))
                    .collect(),
            )
        })?;
        let checked = apply_conventions(&parsed, &text)?;
        let warnings = validate(&checked, &text)?;
        let index = ActionIndex::build(checked.cedar.iter().zip(&checked.infos))
            .map_err(|msg| PolicyError::new(vec![Problem::convention(None, msg, None)]))?;
        let by_id = checked
            .infos
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Ok(PolicySet {
            hash: hash_text(&text),
            text,
            policies: checked.infos,
            by_id,
            warnings,
            index,
        })
    }

    /// The canonical text, as hashed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Hex SHA-256 of [`PolicySet::text`]: the version's identity.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Every policy, in source order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    /// Every policy's `@id`, in source order.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.id.as_str())
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.by_id.get(id).map(|i| &self.policies[*i])
    }

    /// Position of a policy in source order, to sort reasons stably.
    pub(crate) fn position(&self, id: &str) -> usize {
        self.by_id.get(id).copied().unwrap_or(usize::MAX)
    }

    /// Cedar's validator warnings that do not refuse a set (look-alike
    /// characters from mixed scripts); tools should show them.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// The policies after Mandate's conventions: renamed to their `@id`s.
struct Checked {
    /// Renamed Cedar policies, parallel to `infos`.
    cedar: Vec<Policy>,
    infos: Vec<PolicyInfo>,
    /// Every action id the policies mention.
    actions: BTreeSet<String>,
}

/// A Cedar policy id as the plain string it was made from (its `Display`
/// escapes).
pub(crate) fn pid(id: &PolicyId) -> &str {
    AsRef::<str>::as_ref(id)
}

/// Cedar numbers what it parses `policy0`, `policy1`, ... in source order,
/// templates included; that number recovers the order its maps lose.
fn source_number(id: &PolicyId) -> usize {
    pid(id)
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn apply_conventions(parsed: &cedar_policy::PolicySet, text: &str) -> Result<Checked, PolicyError> {
    enum Item<'a> {
        Policy(&'a Policy),
        Template,
    }
    let mut items: Vec<(usize, String, Item<'_>)> = parsed
        .policies()
        .map(|p| {
            (
                source_number(p.id()),
                p.to_cedar().unwrap_or_default(),
                Item::Policy(p),
            )
        })
        .chain(
            parsed
                .templates()
                .map(|t| (source_number(t.id()), t.to_cedar(), Item::Template)),
        )
        .collect();
    items.sort_by_key(|(n, _, _)| *n);

    let mut problems = Vec::new();
    let mut out = Checked {
        cedar: Vec::new(),
        infos: Vec::new(),
        actions: BTreeSet::new(),
    };
    let mut seen: HashMap<String, Location> = HashMap::new();
    // Cedar hands back each policy's exact source text; finding them in order
    // gives each one's position in the whole text.
    let mut cursor = 0;
    for (_, source, item) in items {
        let start = text[cursor..]
            .find(&source)
            .map_or(cursor, |at| cursor + at);
        cursor = (start + source.len()).min(text.len());
        let location = Location::at(text, start);
        let policy = match item {
            Item::Template => {
                problems.push(Problem::convention(
                    None,
                    "templates (policies with ?principal or ?resource slots) are not supported: \
                     name the entity in the policy",
                    Some(location),
                ));
                continue;
            }
            Item::Policy(p) => p,
        };
        let annotations: BTreeMap<String, String> = policy
            .annotations()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let effect = Effect::from(policy.effect());

        let Some(id) = annotations.get(ID_ANNOTATION).cloned() else {
            problems.push(Problem::convention(
                None,
                "policy has no @id(\"...\") annotation: every policy needs a unique, stable \
                 name for decisions, audit records and diffs",
                Some(location),
            ));
            continue;
        };
        if let Err(why) = check_id(&id) {
            problems.push(Problem::convention(Some(&id), why, Some(location)));
            continue;
        }
        if let Some(first) = seen.get(&id) {
            problems.push(Problem::convention(
                Some(&id),
                format!("duplicate @id {id:?} (first used at {first})"),
                Some(location),
            ));
            continue;
        }
        seen.insert(id.clone(), location);

        if let Some(value) = annotations.get(APPROVAL_ANNOTATION) {
            if value != APPROVAL_REQUIRED {
                problems.push(Problem::convention(
                    Some(&id),
                    format!(
                        "@approval({value:?}) is not understood: the only value is \
                         @approval(\"{APPROVAL_REQUIRED}\")"
                    ),
                    Some(location),
                ));
            } else if effect != Effect::Forbid {
                problems.push(Problem::convention(
                    Some(&id),
                    "@approval(\"required\") belongs on a forbid: it marks what needs a human \
                     approval, and only a forbid can hold back what other policies permit",
                    Some(location),
                ));
            }
        }

        for uid in policy.entity_literals() {
            if uid.type_name() != &TYPES.action {
                continue;
            }
            let action = uid.id().unescaped();
            match ActionPattern::parse(action) {
                Ok(_) => {
                    out.actions.insert(action.to_owned());
                }
                Err(e) => problems.push(Problem::convention(
                    Some(&id),
                    format!("action {action:?} is not a valid Mandate action: {e}"),
                    Some(locate_in(text, start, &source, action)),
                )),
            }
        }

        let canonical = policy
            .to_json()
            .map(|v| v.to_string())
            .unwrap_or_else(|_| source.clone());
        out.cedar.push(policy.new_id(PolicyId::new(&id)));
        out.infos.push(PolicyInfo {
            id,
            effect,
            annotations,
            location,
            text: source,
            canonical,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(PolicyError::new(problems))
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("@id must be 1 to {MAX_ID_LEN} bytes"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "@id {id:?} contains whitespace or control characters"
        ));
    }
    Ok(())
}

/// Where `needle` (an action id, quoted) first appears inside the policy that starts
/// at `start`; the policy's own start when it cannot be found.
fn locate_in(text: &str, start: usize, source: &str, needle: &str) -> Location {
    let quoted = format!("\"{needle}\"");
    let at = source.find(&quoted).map_or(start, |i| start + i);
    Location::at(text, at)
}

fn validate(checked: &Checked, text: &str) -> Result<Vec<Problem>, PolicyError> {
    let schema = schema::build(&checked.actions).map_err(|msg| {
        PolicyError::new(vec![Problem {
            kind: ProblemKind::Schema,
            policy_id: None,
            message: msg,
            help: None,
            location: None,
        }])
    })?;
    let set = cedar_policy::PolicySet::from_policies(checked.cedar.iter().cloned())
        .map_err(|e| PolicyError::new(vec![Problem::convention(None, e.to_string(), None)]))?;
    let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
    let as_problem = |d: &dyn miette::Diagnostic, id: &PolicyId| {
        Problem::from_diagnostic(ProblemKind::Schema, Some(pid(id).to_owned()), d, text)
    };
    let mut problems: Vec<Problem> = result
        .validation_errors()
        .map(|e| as_problem(e, e.policy_id()))
        .collect();
    let mut warnings = Vec::new();
    for w in result.validation_warnings() {
        if refuses(w) {
            problems.push(as_problem(w, w.policy_id()));
        } else {
            warnings.push(as_problem(w, w.policy_id()));
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(PolicyError::new(problems))
    }
}

/// Validator warnings that refuse a push. A policy that can never apply is
/// almost always a mistake, and a silent one: a forbid that never fires
/// looks like protection. Bidirectional control characters can make a
/// policy read differently from what it does. Look-alike scripts only warn:
/// they are legitimate in names and labels.
fn refuses(w: &ValidationWarning) -> bool {
    matches!(
        w,
        ValidationWarning::ImpossiblePolicy(_)
            | ValidationWarning::InvalidActionApplication(_)
            | ValidationWarning::BidiCharsInString(_)
            | ValidationWarning::BidiCharsInIdentifier(_)
    )
}
