//! Why a policy set was refused, and where in its text.
//!
//! Cedar reports problems as `miette` diagnostics whose labels are byte spans
//! into the text it parsed. People fix policies in an editor, so every
//! problem is turned into a 1-based line and column (in characters) of the
//! text as pushed, next to Cedar's own message and hint.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 1-based position in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    /// The position of byte `offset` in `text` (clamped to its end, and to a
    /// character boundary so a span inside a multi-byte character still
    /// points at it).
    pub fn at(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        Location {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Which check refused the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not Cedar: the parser refused it.
    Syntax,
    /// Cedar, but not well typed against Mandate's schema (unknown attribute,
    /// optional attribute read without `has`, wrong type...).
    Schema,
    /// Valid Cedar that breaks a Mandate convention (`@id`, `@approval`,
    /// action ids, no templates, size).
    Convention,
}

/// One reason a policy set was refused (or, as a warning, looks wrong).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The policy's `@id`, when the problem is inside one that has it.
    pub policy_id: Option<String>,
    /// Cedar's message (or Mandate's, for conventions).
    pub message: String,
    /// Cedar's hint on how to fix it, when it has one.
    pub help: Option<String>,
    /// Where in the text; `None` only when Cedar gave no position at all.
    pub location: Option<Location>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(id) = &self.policy_id {
            write!(f, "policy {id:?}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

impl Problem {
    pub(crate) fn convention(
        policy_id: Option<&str>,
        message: impl Into<String>,
        location: Option<Location>,
    ) -> Problem {
        Problem {
            kind: ProblemKind::Convention,
            policy_id: policy_id.map(str::to_owned),
            message: message.into(),
            help: None,
            location,
        }
    }

    /// A Cedar diagnostic, positioned at its first labelled span in `text`.
    pub(crate) fn from_diagnostic(
        kind: ProblemKind,
        policy_id: Option<String>,
        d: &dyn miette::Diagnostic,
        text: &str,
    ) -> Problem {
        let location = d
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| Location::at(text, label.offset()));
        Problem {
            kind,
            policy_id,
            message: d.to_string(),
            help: d.help().map(|h| h.to_string()),
            location,
        }
    }
}

/// A policy set that was refused, with every problem found (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl PolicyError {
    pub(crate) fn new(problems: Vec<Problem>) -> PolicyError {
        debug_assert!(!problems.is_empty());
        PolicyError { problems }
    }

    /// The first problem: the one to show when there is room for one.
    pub fn first(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [] => f.write_str("invalid policy set"),
            [one] => write!(f, "invalid policy set: {one}"),
            [first, rest @ ..] => write!(
                f,
                "invalid policy set: {first} (and {} more problem{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_lines_and_character_columns() {
        let text = "ab\ncé\nxyz";
        assert_eq!(Location::at(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::at(text, 3), Location { line: 2, column: 1 });
        // 'é' is two bytes; the character after it is column 3.
        assert_eq!(Location::at(text, 6), Location { line: 2, column: 3 });
        // Inside 'é': points at it.
        assert_eq!(Location::at(text, 5), Location { line: 2, column: 2 });
        assert_eq!(Location::at(text, 999), Location { line: 3, column: 4 });
    }
}
