//! Sigma rules (specification v2): parsed from YAML, compiled once into matchers, and
//! evaluated against normalized events.
//!
//! - [`rule`]: the YAML document → [`Rule`] (metadata, log source, detection).
//! - [`condition`]: the condition language → an expression over searches.
//! - [`value`]: Sigma strings (wildcards, escapes) and the value modifiers.
//! - [`yaml`]: rule files' YAML → JSON values (a fast path for the YAML rules use).
//! - [`compile`]: a detection → [`compile::CompiledDetection`], evaluated per event.
//! - [`logsource`]: which events a rule applies to, from a data table of log sources.
//! - [`ruleset`]: many rules, loaded with a report, indexed so that an event is only
//!   tested against the rules of its log source.
//!
//! Architecture invariant: no I/O here beyond what the caller passes in (rule text with its
//! path); nothing is dropped silently: a rule that cannot be compiled is reported.

pub mod compile;
pub mod condition;
pub mod correlation;
pub mod glob;
mod grams;
pub mod logsource;
pub mod rule;
pub mod ruleset;
pub mod value;
pub mod yaml;

pub use rule::{Level, LogSource, Rule};
pub use ruleset::{LoadReport, RuleId, RuleSet, RuleSetBuilder};

/// Why a rule could not be used. Each names what was wrong; the path is added by the loader.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("missing or invalid `{0}`")]
    Missing(&'static str),
    #[error("detection `{search}`: {message}")]
    Search { search: String, message: String },
    #[error("condition `{condition}`: {message}")]
    Condition { condition: String, message: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("correlation: {0}")]
    Correlation(String),
}
