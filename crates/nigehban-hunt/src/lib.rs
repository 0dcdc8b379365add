//! Offline hunting: sweep files and folders of collected logs with detectors.
//!
//! - [`inputs`]: find the files under the given paths and recognise their formats.
//! - [`rules`]: load Sigma rules from files and folders (and the built-in pack), with the
//!   load report.
//! - [`detectors`]: assemble the detectors of a hunt (rules, indicators, behaviour).
//! - [`intel`]: load indicator lists, STIX bundles and MISP warninglists.
//! - [`run`]: read every input in parallel (EVTX files are also split by chunk ranges) and
//!   run a [`nigehban_detect::Detector`] over each event; memory does not grow with input size.
//! - [`output`]: the timeline as a table, JSON, JSON lines or CSV, and the summary.
//!
//! Architecture invariant: builds without sqlx, axum or NATS: this is the tool an
//! incident responder carries to a site with no platform.

pub mod detectors;
pub mod inputs;
pub mod intel;
pub mod output;
pub mod rules;
pub mod run;
pub mod store;

pub use run::{HuntOptions, HuntStats, hunt};
