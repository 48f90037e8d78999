//! graywatch: catches the partial ("gray") failures of service dependencies.
//!
//! Data flows left to right:
//!
//! ```text
//! ingest -> window -> (detect -> actions)
//!    ^         ^
//!   api     storage
//! ```
//!
//! `ingest` parses wire formats into [`domain::Event`]s, `window` keeps rolling HdrHistograms
//! per series on event time, `storage` persists per-minute roll-ups, and `api` serves HTTP.

pub mod actions;
pub mod api;
pub mod config;
pub mod demo;
pub mod detect;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod metrics;
pub mod replay;
pub mod rollup;
pub mod scenario;
pub mod serve;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tick;
pub mod time;
pub mod window;
