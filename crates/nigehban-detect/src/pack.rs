//! The built-in rule pack: Sigma rules (with correlation rules) and the behaviour detectors'
//! settings, compiled into the binary so that `hunt` and live monitoring work with no rule
//! files at hand. The files live in `crates/nigehban-detect/pack/`; each rule has positive
//! and negative test cases in `pack/tests/` (run by this crate's `pack` test).

use serde::Deserialize;

use crate::beacon::BeaconConfig;
use crate::firstseen::FirstSeenRule;

/// The pack's Sigma files: (display path, YAML text).
pub const SIGMA: &[(&str, &str)] = &[
    ("builtin/sigma/authentication.yml", include_str!("../pack/sigma/authentication.yml")),
    ("builtin/sigma/mail.yml", include_str!("../pack/sigma/mail.yml")),
    ("builtin/sigma/vm_deletion.yml", include_str!("../pack/sigma/vm_deletion.yml")),
    ("builtin/sigma/zimbra.yml", include_str!("../pack/sigma/zimbra.yml")),
];

/// The pack's Sigma rules, parsed and compiled, ready for a `RuleSetBuilder`.
pub fn prepared() -> Vec<nigehban_sigma::ruleset::Prepared> {
    SIGMA.iter().map(|(path, text)| nigehban_sigma::ruleset::prepare(path, text)).collect()
}

/// The behaviour detectors' settings as the pack writes them.
pub const BEHAVIOUR: &str = include_str!("../pack/behaviour.yml");

/// The `behaviour.yml` file, read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    pub beaconing: BeaconConfig,
    #[serde(default)]
    pub first_seen: Vec<FirstSeenRule>,
}

impl Behaviour {
    /// Reads a behaviour file (the built-in one, or an analyst's own).
    pub fn parse(text: &str) -> Result<Behaviour, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// The pack's own settings.
    pub fn builtin() -> Result<Behaviour, String> {
        Behaviour::parse(BEHAVIOUR).map_err(|e| format!("builtin/behaviour.yml: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_pack_reads_and_builds() {
        let b = Behaviour::builtin().unwrap();
        crate::BeaconDetector::new(b.beaconing).unwrap();
        assert!(b.first_seen.len() >= 4);
        crate::FirstSeenDetector::new(b.first_seen).unwrap();
        let mut builder = nigehban_sigma::RuleSetBuilder::new();
        for p in prepared() {
            builder.add_prepared(p);
        }
        let rules = builder.build();
        let report = rules.report();
        assert!(report.failed.is_empty(), "{:#?}", report.failed);
        assert!(report.loaded >= 15 && report.correlations >= 8, "{report:?}");
    }
}
