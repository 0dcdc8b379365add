//! Everything a hunt detects with, assembled in one place: Sigma rules (the built-in pack and
//! the analyst's own), indicators, and the pack's behaviour detectors (beaconing, first seen).

use std::path::PathBuf;
use std::sync::Arc;

use nigehban_detect::pack::Behaviour;
use nigehban_detect::{BeaconDetector, DetectorSet, FirstSeenDetector, IndicatorDetector, SigmaDetector};
use nigehban_intel::Tlp;
use nigehban_sigma::{Level, LoadReport};

use crate::intel::{self, IntelReport};
use crate::rules;

/// What to detect with.
#[derive(Clone, Debug, Default)]
pub struct DetectorOptions {
    /// Sigma rule files and folders, added to the pack.
    pub rules: Vec<PathBuf>,
    /// Leave the built-in pack out.
    pub no_builtin: bool,
    /// Indicator files and folders (STIX bundles, plain lists).
    pub indicators: Vec<PathBuf>,
    /// MISP warninglists: listed values are not loaded as indicators.
    pub warninglists: Vec<PathBuf>,
    /// Report Sigma detections at this level or above only.
    pub min_level: Option<Level>,
    /// The time indicators are matched at for events without a timestamp (microseconds since
    /// the epoch); `None`: now.
    pub undated: Option<i64>,
    /// For live streams (`Detector::stream`) rather than one hunt (`Detector::correlate`):
    /// beaconing then makes observations instead of gathering connections itself.
    pub live: bool,
}

/// What was loaded.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub rules: LoadReport,
    /// Rule files or folders that could not be read (path, reason).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Sigma rules below `min_level` (loaded, not reported).
    pub below_min_level: usize,
    pub intel: Option<IntelReport>,
    pub behaviour: bool,
}

/// Why detectors could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("nothing to hunt with: no rules were loaded and no indicators given")]
    Nothing,
    #[error("--warninglists filters indicators: give indicators too")]
    WarninglistsAlone,
    #[error(transparent)]
    Intel(#[from] intel::IntelError),
    #[error("built-in pack: {0}")]
    Pack(String),
}

/// Assembles the detectors for `options`.
pub fn build(options: &DetectorOptions) -> Result<(DetectorSet, Loaded), SetupError> {
    if !options.warninglists.is_empty() && options.indicators.is_empty() {
        return Err(SetupError::WarninglistsAlone);
    }
    let pack = if options.no_builtin { Vec::new() } else { nigehban_detect::pack::prepared() };
    let loaded = rules::load_with(&options.rules, pack);
    if loaded.rules.is_empty() && options.indicators.is_empty() {
        return Err(SetupError::Nothing);
    }
    let mut report = Loaded {
        rules: loaded.rules.report().clone(),
        unreadable: loaded.unreadable,
        below_min_level: options
            .min_level
            .map_or(0, |min| loaded.rules.rules().filter(|(_, r)| r.rule.level < min).count()),
        ..Loaded::default()
    };
    let mut set = DetectorSet::new();
    set.push(Box::new(SigmaDetector::new(Arc::new(loaded.rules)).with_min_level(options.min_level)));
    if !options.indicators.is_empty() {
        let mut intel = IntelReport::default();
        let warn = if options.warninglists.is_empty() {
            None
        } else {
            Some(intel::load_warninglists(&options.warninglists, &mut intel)?)
        };
        let matcher = intel::load_indicators(&options.indicators, warn.as_ref(), Tlp::Clear, &mut intel)?;
        let undated = options.undated.unwrap_or_else(|| jiff::Timestamp::now().as_microsecond());
        set.push(Box::new(IndicatorDetector::new(Arc::new(matcher), undated)));
        report.intel = Some(intel);
    }
    if !options.no_builtin {
        let behaviour = Behaviour::builtin().map_err(SetupError::Pack)?;
        let beacon = BeaconDetector::new(behaviour.beaconing).map_err(SetupError::Pack)?;
        set.push(Box::new(if options.live { beacon.for_streams() } else { beacon }));
        set.push(Box::new(FirstSeenDetector::new(behaviour.first_seen).map_err(SetupError::Pack)?));
        report.behaviour = true;
    }
    Ok((set, report))
}
