//! Integration tests of hunting over the shared corpus (SigmaHQ rules, regression data, the
//! EVTX sample set and the pySigma oracle). They need `../shared/corpus` (or
//! `NIGEHBAN_CORPUS`): without it they print a notice and pass, unless `CI=true`, where a
//! missing corpus is a failure.

mod corpus;
mod incidents;
mod oracle;
mod prefilter;
mod regression;
mod rules_load;
mod snapshot;
