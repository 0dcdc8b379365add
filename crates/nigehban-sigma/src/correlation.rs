//! Sigma correlation rules. Being written: see the module owner's notes.

use crate::Error;
use crate::rule::Rule;
use crate::ruleset::LoadedRule;

#[derive(Debug, Clone)]
pub struct CorrelationRule;

impl CorrelationRule {
    pub fn from_rule(_rule: &Rule, _rules: &[LoadedRule]) -> Result<CorrelationRule, Error> {
        Err(Error::Correlation("correlation rules are not supported yet".into()))
    }
}
