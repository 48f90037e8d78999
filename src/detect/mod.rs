//! Detection: pure functions of window snapshots and event time to health states and alert
//! transitions. No wall clock, no I/O: the daemon and `replay` run the same code.
//!
//! - `stats`: the statistical tests (binomial tail, two proportions, Holm), I/O-free maths.
//! - `baseline`: what a dependency's healthy minutes look like.
//! - `detectors`: one function per detector, from windows to findings.
//! - `traffic`: drops and surges of the number of calls against the usual minutes.
//! - `sequential`: CUSUMs on per-second counts that decide how soon a finding fires.
//! - `state`: the alert lifecycle with hysteresis and flap damping.
//! - `engine`: runs it all over the window store at one instant.
//! - `spec`: detection settings and per-dependency fault-tolerance specs.

pub mod baseline;
pub mod detectors;
pub mod engine;
pub mod incident;
pub mod sequential;
pub mod spec;
pub mod state;
pub mod stats;
pub mod traffic;

pub use detectors::{DetectorKind, Severity};
pub use engine::{
    AlertStatus, Conditions, DependencyHealth, DetectionSummary, Engine, EngineView, Health, Scope,
    Transition,
};
pub use spec::{BreakerPolicy, DependencySpec, DetectionSettings, Specs};
