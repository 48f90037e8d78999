//! The actions hub: turns transitions and health into outbox rows, breaker signals and
//! stream events. The daemon's detection loop calls it after every evaluation.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::breaker::{
    BreakerBoard, BreakerChange, BreakerState, BreakerView, ForcedState, OverrideError,
};
use super::breaker_notices::{BreakerNotices, Waiting};
use super::history::BreakerHistory;
use super::notice::{AlertNotice, Notice};
use super::notifier::Notifier;
use super::operator::OperatorLimits;
use super::outbox::{Wakers, new_delivery_id, run_worker};
use super::route::{Router, RoutingSettings};
use crate::config::Settings;
use crate::detect::{Severity, Specs, Transition};
use crate::metrics::Metrics;
use crate::storage::{NewNotification, Storage};
use crate::time::Clock;

/// Breaker changes a stream subscriber has not read yet; a slower subscriber gets a fresh
/// snapshot instead of an unbounded backlog.
const STREAM_BUFFER: usize = 1_024;

/// Why a manual override was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SetOverrideError {
    /// The request itself is wrong (expired, no reason).
    #[error(transparent)]
    Invalid(#[from] OverrideError),
    /// No override to remove.
    #[error("no override on {0}")]
    NotFound(String),
    /// The database did not take the change; the board is unchanged.
    #[error("the override could not be recorded: {0}")]
    Storage(#[from] sqlx::Error),
}

pub struct Actions {
    router: Router,
    routing: RoutingSettings,
    public_url: String,
    notifiers: HashMap<String, Arc<Notifier>>,
    wakers: Wakers,
    /// The breaker board; updated once per evaluation, read by the API.
    pub board: parking_lot::Mutex<BreakerBoard>,
    /// Breaker changes as JSON, for SSE subscribers.
    pub changes: broadcast::Sender<Arc<serde_json::Value>>,
    /// The recent breaker changes of each dependency (in memory, bounded), read by the API.
    pub history: parking_lot::Mutex<BreakerHistory>,
    /// What silences and overrides may ask for (`[limits]`).
    limits: OperatorLimits,
    /// Breaker notifications not yet in the outbox, the latest change of each breaker per
    /// notifier. A mutex, not a channel: the detection loop and override requests both add
    /// and both write, and a failed write must give its changes back unless a newer one of
    /// the same breaker came meanwhile.
    unqueued: parking_lot::Mutex<BreakerNotices>,
}

/// Where the breaker notifications stand after [`Actions::queue_breaker_notices`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerNoticesQueued {
    /// Still waiting for the outbox (the database refused them).
    pub waiting: usize,
    /// Whether a write was tried and failed.
    pub failed: bool,
}

impl Actions {
    /// Builds notifiers (reading their secrets) and the router.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut notifiers = HashMap::new();
        for cfg in &settings.notifiers {
            let n =
                Notifier::new(cfg).map_err(|e| anyhow::anyhow!("notifier {}: {e:#}", cfg.name))?;
            notifiers.insert(cfg.name.clone(), Arc::new(n));
        }
        let names: Vec<String> = settings.notifiers.iter().map(|n| n.name.clone()).collect();
        Ok(Self {
            router: Router::new(&settings.routes, &settings.routing, &names),
            routing: settings.routing.clone(),
            public_url: settings
                .routing
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.listen)),
            wakers: Wakers::new(names),
            notifiers,
            board: parking_lot::Mutex::new(BreakerBoard::new(settings.breakers.clone())),
            changes: broadcast::channel(STREAM_BUFFER).0,
            history: parking_lot::Mutex::new(BreakerHistory::new()),
            limits: settings.limits.operator(),
            unqueued: parking_lot::Mutex::new(BreakerNotices::new(
                settings.routing.breaker_notifiers.len().saturating_mul(
                    settings.limits.max_dependencies.saturating_mul(
                        settings
                            .limits
                            .max_instances_per_dependency
                            .saturating_add(1),
                    ),
                ),
            )),
        })
    }

    /// What silences and overrides may ask for.
    pub fn limits(&self) -> OperatorLimits {
        self.limits
    }

    /// Wakes every delivery worker (after a silence was deleted).
    pub fn wake_all(&self) {
        self.wakers.wake_all();
    }

    /// The shortest re-notification interval of any notifier.
    pub fn shortest_renotify(&self) -> std::time::Duration {
        self.notifiers
            .values()
            .filter_map(|n| n.renotify_every)
            .fold(self.routing.renotify_every, std::cmp::min)
    }

    /// Starts one delivery worker per notifier.
    pub fn spawn_workers(
        &self,
        storage: &Storage,
        clock: &Clock,
        metrics: &Arc<Metrics>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.notifiers
            .values()
            .map(|n| {
                tokio::spawn(run_worker(
                    n.clone(),
                    storage.clone(),
                    clock.clone(),
                    self.routing.clone(),
                    self.wakers.clone(),
                    metrics.clone(),
                    stop.clone(),
                ))
            })
            .collect()
    }

    /// Records transitions and their notifications in one transaction, then wakes workers.
    pub async fn record(
        &self,
        storage: &Storage,
        transitions: &[Transition],
        specs: &Specs,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut woken: Vec<String> = Vec::new();
        let plan = |t: &Transition, alert_id: i64| {
            if !t.notifies() {
                return Vec::new();
            }
            let notice = Notice::Alert(AlertNotice::from_transition(t, alert_id, &self.public_url));
            let payload = serde_json::to_value(&notice).unwrap_or_default();
            self.router
                .notifiers_for(&t.dependency, t.severity, specs.get(&t.dependency))
                .into_iter()
                .filter(|n| self.notifiers.contains_key(n))
                .map(|notifier| NewNotification {
                    id: new_delivery_id(),
                    notifier,
                    kind: t.status.as_str(),
                    payload: payload.clone(),
                })
                .collect::<Vec<_>>()
        };
        let planned = storage
            .record_transitions(transitions, now_ms, &plan)
            .await?;
        for n in planned {
            if !woken.contains(&n) {
                self.wakers.wake(&n);
                woken.push(n);
            }
        }
        Ok(())
    }

    /// Broadcasts breaker changes, adds them to the history and queues them for
    /// `routing.breaker_notifiers`, with any the database refused before.
    pub async fn publish(&self, storage: &Storage, changes: &[BreakerChange], now_ms: i64) {
        self.announce(changes, now_ms);
        self.queue_breaker_notices(storage, now_ms).await;
    }

    /// The part of [`Self::publish`] that needs no database: broadcasts the changes, adds
    /// them to the history and keeps their notifications in memory for
    /// [`Self::queue_breaker_notices`].
    pub fn announce(&self, changes: &[BreakerChange], now_ms: i64) {
        if !changes.is_empty() {
            self.history.lock().record(changes, now_ms);
        }
        for c in changes {
            let mut event = serde_json::json!({ "before": c.before.as_ref().map(|b| b.to_json()), "after": c.after.to_json() });
            event["verdict_at_ms"] = now_ms.into();
            let _ = self.changes.send(Arc::new(event));
            tracing::info!(
                dependency = %c.after.dependency,
                instance = c.after.instance.as_deref().unwrap_or(""),
                state = c.after.state.as_str(),
                reason = ?c.after.reason,
                "Breaker changed."
            );
            if c.before.as_ref().is_some_and(|b| b.state == c.after.state)
                || (c.before.is_none() && c.after.state == BreakerState::Closed)
            {
                continue;
            }
            let mut waiting = self.unqueued.lock();
            for n in &self.routing.breaker_notifiers {
                let kept = waiting.push(Waiting::new(
                    n,
                    &c.after.dependency,
                    c.after.instance.as_deref(),
                    c.after.state,
                    &c.after.reason,
                    now_ms,
                ));
                if !kept {
                    tracing::error!(
                        notifier = %n,
                        dependency = %c.after.dependency,
                        instance = c.after.instance.as_deref().unwrap_or(""),
                        waiting = waiting.len(),
                        "Too many breakers wait for the database; this breaker's notification is dropped."
                    );
                }
            }
        }
    }

    /// Writes the breaker notifications waiting in memory to the outbox. What the database
    /// refuses waits for the next call (the writer task's next round, an override, or
    /// shutdown), folded into any newer change of the same breaker.
    pub async fn queue_breaker_notices(
        &self,
        storage: &Storage,
        now_ms: i64,
    ) -> BreakerNoticesQueued {
        let taken = self.unqueued.lock().take();
        let mut queued = BreakerNoticesQueued::default();
        if !taken.is_empty() {
            let rows: Vec<NewNotification> = taken.iter().map(breaker_row).collect();
            match storage.enqueue(None, &rows, now_ms).await {
                Ok(()) => rows.iter().for_each(|r| self.wakers.wake(&r.notifier)),
                Err(error) => {
                    queued.failed = true;
                    let mut waiting = self.unqueued.lock();
                    waiting.restore(taken);
                    tracing::warn!(
                        %error,
                        waiting = waiting.len(),
                        "Cannot queue breaker notifications; each breaker's latest state will be sent once the database takes writes."
                    );
                }
            }
        }
        queued.waiting = self.unqueued.lock().len();
        queued
    }

    /// Breaker notifications waiting in memory for the database.
    pub fn breaker_notices_waiting(&self) -> usize {
        self.unqueued.lock().len()
    }

    /// Takes every breaker notification waiting in memory, oldest first (at shutdown, to keep
    /// them in [`super::spill`] when the database still refuses them).
    pub fn take_breaker_notices(&self) -> Vec<Waiting> {
        self.unqueued.lock().take()
    }

    /// Puts breaker notifications kept over a restart straight into the outbox, in their
    /// order; nothing is kept in memory if the database refuses them.
    pub async fn enqueue_breaker_notices(
        &self,
        storage: &Storage,
        notices: &[Waiting],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewNotification> = notices.iter().map(breaker_row).collect();
        storage.enqueue(None, &rows, now_ms).await?;
        rows.iter().for_each(|r| self.wakers.wake(&r.notifier));
        Ok(())
    }

    /// Breaker notifications dropped since the last call: changes of a new breaker while
    /// breakers x notifiers were already waiting for the database.
    pub fn breaker_notices_dropped(&self) -> u64 {
        self.unqueued.lock().take_dropped()
    }

    /// Forces a breaker open or closed until `expires_ms`. The database comes first: if it
    /// refuses, the board is unchanged (a forced breaker that vanished at the next restart
    /// would be worse than a refused request). Returns the override id and the dependency's
    /// breakers.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_override(
        &self,
        storage: &Storage,
        dependency: &str,
        instance: Option<&str>,
        state: ForcedState,
        reason: &str,
        expires_ms: i64,
        created_by: &str,
        now_ms: i64,
    ) -> Result<(i64, Vec<BreakerView>), SetOverrideError> {
        BreakerBoard::check_override(reason, expires_ms, now_ms)?;
        let id = storage
            .record_override(
                &crate::storage::NewOverride {
                    dependency,
                    instance,
                    state: state.as_str(),
                    reason,
                    expires_ms,
                    created_by,
                },
                now_ms,
            )
            .await?;
        let (change, views) = {
            let mut board = self.board.lock();
            let change =
                board.set_override(dependency, instance, state, reason, expires_ms, now_ms)?;
            (change, board.get(dependency))
        };
        self.publish(storage, change.as_slice(), now_ms).await;
        Ok((id, views))
    }

    /// Removes a breaker's override: in the database first, then on the board.
    pub async fn clear_override(
        &self,
        storage: &Storage,
        dependency: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> Result<(), SetOverrideError> {
        if !self.board.lock().has_override(dependency, instance) {
            return Err(SetOverrideError::NotFound(format!("{dependency:?}")));
        }
        storage
            .remove_overrides(dependency, instance, now_ms)
            .await?;
        let change = self
            .board
            .lock()
            .remove_override(dependency, instance, now_ms);
        self.publish(storage, change.as_slice(), now_ms).await;
        Ok(())
    }

    /// Queues a reminder for alerts that have been firing for `renotify_every` since their
    /// last notification.
    pub async fn renotify(
        &self,
        storage: &Storage,
        specs: &Specs,
        now_ms: i64,
    ) -> sqlx::Result<usize> {
        let mut queued = 0;
        for a in storage.firing_alerts().await? {
            let Some(severity) = Severity::parse(&a.severity) else {
                continue;
            };
            for n in self
                .router
                .notifiers_for(&a.dependency, severity, specs.get(&a.dependency))
            {
                let Some(notifier) = self.notifiers.get(&n) else {
                    continue;
                };
                let every = notifier
                    .renotify_every
                    .unwrap_or(self.routing.renotify_every)
                    .as_millis() as i64;
                let last = storage
                    .last_firing_notice_ms(a.id, &n)
                    .await?
                    .unwrap_or(a.started_at_ms);
                if now_ms - last < every {
                    continue;
                }
                let notice = Notice::Alert(AlertNotice {
                    id: a.id,
                    status: "firing".into(),
                    dependency: a.dependency.clone(),
                    instance: a.instance.clone(),
                    zone: a.zone.clone(),
                    source: a.source.clone(),
                    detector: a.detector.clone(),
                    detectors: a.detectors.clone(),
                    severity: a.severity.clone(),
                    previous_severity: None,
                    summary: a.summary.clone(),
                    started_at: a.started_at.clone(),
                    resolved_at: None,
                    evidence: a.evidence.clone(),
                    dashboard_url: super::notice::alert_page_url(&self.public_url, a.id),
                });
                let row = NewNotification {
                    id: new_delivery_id(),
                    notifier: n.clone(),
                    kind: "renotify",
                    payload: serde_json::to_value(&notice).unwrap_or_default(),
                };
                storage.enqueue(Some(a.id), &[row], now_ms).await?;
                self.wakers.wake(&n);
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// The outbox row of a breaker change (a fresh delivery id: no receiver has seen it).
fn breaker_row(w: &Waiting) -> NewNotification {
    let notice = Notice::Breaker {
        dependency: w.dependency.clone(),
        instance: w.instance.clone(),
        state: w.state.as_str().to_string(),
        reason: w.reason.clone(),
        at: crate::time::to_rfc3339(w.at_ms),
        superseded: w.superseded,
    };
    NewNotification {
        id: new_delivery_id(),
        notifier: w.notifier.clone(),
        kind: "breaker",
        payload: serde_json::to_value(&notice).unwrap_or_default(),
    }
}
