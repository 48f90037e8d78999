//! Actions: what graywatch does about detection's verdicts.
//!
//! - `route`: which notifiers hear about which alert.
//! - `notice`: what a notification says; `notifier`: one integration per file (email,
//!   webhook), each saying whether a failure is worth retrying.
//! - `outbox`: delivery workers over the durable outbox (rows are written with the alert
//!   transition, in the same transaction).
//! - `breaker`: breaker signals clients poll or stream to trip their circuit breakers;
//!   `history`: their recent changes, in memory; `breaker_notices`: their notifications on
//!   the way to the outbox, one per breaker and notifier.
//! - `operator`: what operators ask through the API (silences, breaker reads), one method each.
//!
//! Nothing here knows about histograms: it consumes transitions and health states.

pub mod breaker;
pub mod breaker_notices;
pub mod history;
pub mod hub;
pub mod notice;
pub mod notifier;
pub mod operator;
pub mod outbox;
pub mod route;
pub mod spill;
