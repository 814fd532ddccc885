//! Renders a [`RoaiReport`] for people: a terminal table ([`table()`]), a
//! long-format CSV for finance ([`csv()`]) and one self-contained HTML page
//! with server-made SVG charts ([`html()`]); the charts are reusable on their
//! own ([`svg`]).
//!
//! This crate owns presentation only. Every figure comes from
//! `mandate_core`'s fold; the only arithmetic here is what a reader needs to
//! compare and read figures (baseline change, minutes to hours, ratio to
//! percent, chart geometry), so a rendered report can never disagree with
//! the report it renders.
//!
//! [`RoaiReport`]: mandate_core::outcome::RoaiReport

#![forbid(unsafe_code)]

mod csv;
mod html;
mod model;
pub mod svg;
mod table;

pub use crate::csv::csv;
pub use crate::html::{body, html, split_chart};
pub use crate::table::table;
