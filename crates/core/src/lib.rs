//! Mandate's domain model and the rules that govern it.
//!
//! This crate owns the *meaning* of Mandate's concepts — principals, agents,
//! scopes, lifecycles, admin credentials and the tamper-evident audit log — as
//! plain types and pure functions. It performs no I/O: storage, HTTP and the
//! clock live in the crates above it, which keeps every rule here testable in
//! isolation and reusable by an offline verifier.
#![forbid(unsafe_code)]

pub mod admin;
pub mod agent;
pub mod approval;
pub mod audit;
pub mod breakglass;
pub mod credential;
pub mod decision;
pub mod delegation;
pub mod dpop;
pub mod error;
pub mod human;
pub mod ids;
pub mod inventory;
pub mod jwk;
pub mod outcome;
pub mod posture;
pub mod review;
pub mod scope;
pub mod sealed;
pub mod secret;
pub mod task;
pub mod time;
pub mod tool_call;

pub use error::RuleError;
