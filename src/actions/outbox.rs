//! Delivery workers for the durable outbox.
//!
//! One worker per notifier, so a slow or hanging receiver delays only its own queue: never
//! another receiver, detection or ingest. A worker delivers due notifications one by one and
//! records each outcome; a notification stays `pending` until a receiver accepted it, so after
//! a crash every pending notification is delivered again, with the same delivery id (at least
//! once). Retries back off exponentially with jitter up to `max_backoff`; past
//! `retry_horizon` a notification is dead-lettered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};

use super::notice::Notice;
use super::notifier::{DeliveryError, Notifier};
use super::route::RoutingSettings;
use crate::metrics::Metrics;
use crate::storage::{AttemptOutcome, NotificationRecord, Silence, Storage};
use crate::time::Clock;

/// Delay before attempt `attempts + 1`: 1 s doubling per attempt, capped, with +-20% jitter so
/// that many notifications failing together do not retry in lockstep.
pub fn backoff(attempts: i64, max: Duration, jitter_unit: f64) -> Duration {
    let base_ms = 1_000f64 * 2f64.powi(attempts.clamp(0, 30) as i32);
    let capped = base_ms.min(max.as_millis() as f64);
    Duration::from_millis((capped * (0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0))) as u64)
}

/// A fresh delivery id: 128 random bits in hex.
pub fn new_delivery_id() -> String {
    let mut rng = rand::rng();
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// Shared by the workers and the code that enqueues: wakes a notifier's worker early.
#[derive(Clone, Default)]
pub struct Wakers(Arc<HashMap<String, Arc<Notify>>>);

impl Wakers {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            names
                .into_iter()
                .map(|n| (n, Arc::new(Notify::new())))
                .collect(),
        ))
    }

    pub fn wake_all(&self) {
        self.0.values().for_each(|n| n.notify_one());
    }

    pub fn wake(&self, notifier: &str) {
        if let Some(n) = self.0.get(notifier) {
            n.notify_one();
        }
    }

    fn get(&self, notifier: &str) -> Arc<Notify> {
        self.0.get(notifier).cloned().unwrap_or_default()
    }
}

/// Runs one notifier's worker until `stop` turns true.
pub async fn run_worker(
    notifier: Arc<Notifier>,
    storage: Storage,
    clock: Clock,
    settings: RoutingSettings,
    wakers: Wakers,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let wake = wakers.get(&notifier.name);
    loop {
        if *stop.borrow() {
            return;
        }
        let now = clock.now_ms();
        let due = match storage.due_notifications(&notifier.name, now, 32).await {
            Ok(d) => d,
            Err(error) => {
                metrics.database_error("outbox_read");
                tracing::warn!(notifier = %notifier.name, %error, "Cannot read the outbox.");
                Vec::new()
            }
        };
        if due.is_empty() {
            // Sleep until woken, a second passes (the clock may be moved), or shutdown.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // Fail closed: without the silences nobody can tell whether a notification is muted,
        // so none goes out; the rows stay due and are tried again on the next round.
        let silences = match storage.silences(now).await {
            Ok(s) => s,
            Err(error) => {
                metrics.database_error("silences_read");
                tracing::warn!(notifier = %notifier.name, %error, held = due.len(), "Cannot read the silences; holding notifications until they can be read.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        for row in due {
            if *stop.borrow() {
                return;
            }
            let outcome = attempt(&notifier, &storage, &clock, &settings, &silences, &row).await;
            match &outcome {
                AttemptOutcome::Delivered => {
                    let queued_ms = (clock.now_ms() - row.created_ms).max(0) as u64;
                    metrics.delivered(&notifier.name, Duration::from_millis(queued_ms));
                    tracing::info!(notifier = %notifier.name, delivery = %row.id, kind = %row.kind, "Notification delivered.")
                }
                AttemptOutcome::Retry { error, .. } => {
                    tracing::warn!(notifier = %notifier.name, delivery = %row.id, %error, "Delivery failed; will retry.")
                }
                AttemptOutcome::Failed { error } | AttemptOutcome::Dead { error } => {
                    tracing::error!(notifier = %notifier.name, delivery = %row.id, %error, "Notification not delivered.")
                }
                _ => {}
            }
            let started = std::time::Instant::now();
            let finished = storage
                .finish_attempt(&row.id, &outcome, clock.now_ms())
                .await;
            metrics.database_write("finish_attempt", started.elapsed());
            if let Err(error) = finished {
                metrics.database_error("finish_attempt");
                tracing::warn!(notifier = %notifier.name, delivery = %row.id, %error, "Cannot record a delivery outcome.");
            }
        }
    }
}

async fn attempt(
    notifier: &Notifier,
    storage: &Storage,
    clock: &Clock,
    settings: &RoutingSettings,
    silences: &[Silence],
    row: &NotificationRecord,
) -> AttemptOutcome {
    let now = clock.now_ms();
    let notice: Notice = match serde_json::from_value(row.payload.clone()) {
        Ok(n) => n,
        Err(e) => {
            return AttemptOutcome::Failed {
                error: format!("unreadable payload: {e}"),
            };
        }
    };
    if let (Notice::Alert(a), Some(alert_id)) = (&notice, row.alert_id) {
        if a.status == "resolved" && !notifier.send_resolved {
            return AttemptOutcome::Suppressed {
                reason: "send_resolved = false".into(),
            };
        }
        let muted = silences.iter().find(|s| {
            s.mutes(
                &a.dependency,
                (
                    a.instance.as_deref(),
                    a.zone.as_deref(),
                    a.source.as_deref(),
                ),
                &a.detector,
                now,
            )
        });
        if let Some(s) = muted {
            return AttemptOutcome::Postpone {
                at_ms: s.ends_ms,
                reason: format!(
                    "silenced by silence {} until {}",
                    s.id,
                    crate::time::to_rfc3339(s.ends_ms)
                ),
            };
        }
        // Due after a silence ended: a firing notice only if the alert still fires; a resolve
        // only if its firing notice went out.
        let silenced_before = row
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("silenced"));
        if silenced_before {
            let still = match a.status.as_str() {
                "resolved" => storage
                    .firing_notice_status(alert_id, &notifier.name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s == "delivered"),
                _ => storage
                    .alert_state(alert_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s == "firing"),
            };
            if !still {
                return AttemptOutcome::Suppressed {
                    reason: "alert resolved while silenced".into(),
                };
            }
        }
    }
    // A resolve never overtakes its firing notice (a receiver would keep the alert open).
    if let (Notice::Alert(a), Some(alert_id)) = (&notice, row.alert_id)
        && a.status == "resolved"
        && let Ok(Some((status, next))) = storage.firing_notice(alert_id, &notifier.name).await
        && status == "pending"
    {
        return AttemptOutcome::Postpone {
            at_ms: next.max(now) + 1,
            reason: "waiting for the firing notice to be delivered first".into(),
        };
    }
    if now - row.horizon_start_ms.unwrap_or(now) > settings.retry_horizon.as_millis() as i64 {
        return AttemptOutcome::Dead {
            error: format!(
                "not delivered within the retry horizon of {}; last error: {}",
                humantime::format_duration(settings.retry_horizon),
                row.last_error.as_deref().unwrap_or("none")
            ),
        };
    }
    match notifier.deliver(&row.id, &notice).await {
        Ok(()) => AttemptOutcome::Delivered,
        Err(DeliveryError::Permanent(error)) => AttemptOutcome::Failed { error },
        Err(DeliveryError::Transient(error)) => {
            let wait = backoff(
                row.attempts,
                settings.max_backoff,
                rand::rng().random::<f64>(),
            );
            AttemptOutcome::Retry {
                at_ms: clock.now_ms() + wait.as_millis() as i64,
                error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max, 0.5), Duration::from_millis(1_000));
        assert_eq!(backoff(3, max, 0.5), Duration::from_millis(8_000));
        assert_eq!(backoff(3, max, 0.0), Duration::from_millis(6_400));
        assert_eq!(backoff(3, max, 1.0), Duration::from_millis(9_600));
        assert_eq!(backoff(40, max, 0.5), max);
    }

    #[test]
    fn delivery_ids_are_distinct_hex() {
        let (a, b) = (new_delivery_id(), new_delivery_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
