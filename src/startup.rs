//! Building and running the daemon. `main` and the integration tests build the application
//! the same way; tests pass port 0, a temporary database and, where they need to move time,
//! a manual clock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::actions::breaker::ForcedState;
use crate::actions::hub::Actions;
use crate::actions::spill;
use crate::api::auth::Auth;
use crate::api::{AppState, router};
use crate::config::Settings;
use crate::detect::{Engine, Transition};
use crate::metrics::Metrics;
use crate::rollup::{self, Flushed, Flusher};
use crate::storage::Storage;
use crate::time::Clock;
use crate::window::WindowStore;

/// How often windows are rolled forward on the wall clock.
const TICK: Duration = Duration::from_secs(1);

/// Shutdown budgets. Their sum (41 s) stays well inside systemd's default stop timeout of
/// 90 s (`deploy/graywatch.service` sets `TimeoutStopSec=60`), so graywatch is never killed
/// in the middle of writing.
/// In-flight HTTP requests get this long to finish once the listener is closed.
const HTTP_DRAIN: Duration = Duration::from_secs(10);
/// Detection stopping: its writer retries the alert transitions and breaker notifications the
/// database refused, then keeps what is left in a file for the next start
/// ([`crate::actions::spill`]).
const FINAL_TRANSITIONS: Duration = Duration::from_secs(10);
/// Part of [`FINAL_TRANSITIONS`] kept for writing that file: the writer makes no attempt that
/// could still be waiting for the database then.
const SPILL_RESERVE: Duration = Duration::from_secs(1);
/// Writing the roll-ups of every minute still in memory. Each transaction of the flush
/// commits on its own, so running out of time costs only the minutes not yet written.
const FINAL_FLUSH: Duration = Duration::from_secs(10);
/// Past [`FINAL_FLUSH`], how long the stop still waits for the flush to notice its deadline.
const FLUSH_GRACE: Duration = Duration::from_secs(1);
/// Deliveries in flight; an attempt cut short stays pending and is sent again after the
/// restart, under the same delivery id.
const STOP_DELIVERIES: Duration = Duration::from_secs(5);
/// Closing the database (waiting for connections to come back to the pool).
const CLOSE_DATABASE: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    flusher: Arc<Flusher>,
    shutdown_tx: watch::Sender<bool>,
}

impl Application {
    /// Opens the database, warms the windows from stored roll-ups and binds the listener.
    ///
    /// Refuses to serve a non-loopback address without tokens (unless
    /// `auth.allow_anonymous`), and reads every configured token once.
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        if let Some(why) = settings.auth.anonymous_exposure(settings.listen) {
            anyhow::bail!("{why}");
        }
        let secure_cookie = settings
            .routing
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        let auth = Arc::new(Auth::from_settings(&settings.auth, secure_cookie)?);
        if !auth.enabled() && !settings.listen.ip().is_loopback() {
            tracing::warn!(address = %settings.listen, "Serving without authentication on a non-loopback address (auth.allow_anonymous): anyone who reaches it can send events, read and change everything.");
        }
        tracing::info!(
            tokens = settings.auth.tokens.len(),
            public_metrics = settings.auth.public_metrics,
            "Authentication {}.",
            if auth.enabled() { "on" } else { "off" }
        );
        let storage = Storage::connect(&settings.database).await?;
        let store = Arc::new(WindowStore::new(settings.limits.series()));
        // Minutes the last shutdown could not write go in first: the windows warm from them.
        rollup::write_kept(&storage, &settings.database).await;
        let loaded = rollup::warm(&store, &storage, &settings.node_id, clock.now_ms()).await?;
        tracing::info!(rollups = loaded, "Loaded recent roll-ups.");
        let ahead = store.minutes_ahead();
        if ahead > 0 {
            tracing::warn!(
                rollups = ahead,
                "Stored minutes lie ahead of the clock (it stepped back since they were written): each joins its windows when the clock reaches it."
            );
        }
        let flusher = Arc::new(Flusher::new(&storage, &settings.node_id).await?);
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        // Links in notifications use the address actually bound (port 0 resolved), unless
        // `routing.public_url` says how receivers reach this graywatch.
        let bound = listener.local_addr()?;
        if settings.routing.public_url.is_none() && bound.ip().is_unspecified() {
            tracing::warn!(address = %bound, "Listening on all interfaces without routing.public_url: links in notifications will not be reachable.");
        }
        let actions = Actions::new(&Settings {
            listen: bound,
            ..settings.clone()
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let now = clock.now_ms();
        for (dependency, instance, state, reason, expires_ms) in
            storage.active_overrides(now).await?
        {
            let forced = if state == "open" {
                ForcedState::Open
            } else {
                ForcedState::Closed
            };
            let _ = actions.board.lock().set_override(
                &dependency,
                instance.as_deref(),
                forced,
                &reason,
                expires_ms,
                now,
            );
        }
        let mut engine = Engine::new(settings.detection.clone(), settings.dependencies.clone());
        // What the last shutdown could not write goes in first, so that a firing alert kept
        // there is restored as firing below.
        if let Some(path) = spill::path_for(&settings.database) {
            restore_unsaved(path, &storage, &actions, engine.specs(), now).await;
        }
        // Incidents that ended within the baseline's reach: their minutes are not relearnt
        // from the stored roll-ups, and their evidence cannot fire them again.
        let reach = i64::try_from(settings.detection.baseline_max_age.as_millis()).unwrap_or(0);
        for a in storage
            .resolved_alerts_since(now.saturating_sub(reach))
            .await?
        {
            let Some(resolved_ms) = a.resolved_at_ms else {
                continue;
            };
            engine.restore_resolved(
                &a.dependency,
                a.instance.as_deref(),
                a.zone.as_deref(),
                a.source.as_deref(),
                &a.all_detectors(),
                resolved_ms,
            );
        }
        for a in storage.firing_alerts().await? {
            engine.restore_firing(
                &a.dependency,
                a.instance.as_deref(),
                a.zone.as_deref(),
                a.source.as_deref(),
                &a.all_detectors(),
                &a.severity,
                a.started_at_ms,
                &a.summary,
                a.evidence.clone(),
            );
        }
        let state = AppState {
            store,
            storage,
            clock,
            ingest_permits: Arc::new(Semaphore::new(settings.ingest.max_in_flight)),
            ingest_receiving: Arc::default(),
            series_permits: Arc::new(Semaphore::new(crate::api::MAX_CONCURRENT_SERIES)),
            engine_view: Arc::new(parking_lot::RwLock::new(Arc::new(engine.view()))),
            engine: Arc::new(parking_lot::Mutex::new(engine)),
            actions: Arc::new(actions),
            metrics: Arc::new(
                Metrics::new().with_notifiers(settings.notifiers.iter().map(|n| n.name.as_str())),
            ),
            shutdown: shutdown_rx,
            settings: Arc::new(settings),
            auth,
            overview_cache: Arc::default(),
        };
        Ok(Self {
            listener,
            state,
            flusher,
            shutdown_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops in order, each step bounded: stop
    /// accepting and let in-flight requests finish ([`HTTP_DRAIN`]), stop detection after a
    /// last write of what it could not save ([`FINAL_TRANSITIONS`]), write every unsaved
    /// minute ([`FINAL_FLUSH`]), stop deliveries ([`STOP_DELIVERIES`]) and close the
    /// database. Deliveries go on while roll-ups are written, so notifications keep flowing
    /// until the end.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            flusher,
            shutdown_tx,
        } = self;
        tracing::info!(address = %listener.local_addr()?, "Listening.");
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_deliveries_tx, stop_deliveries_rx) = watch::channel(false);
        let background = tokio::spawn(background(state.clone(), flusher.clone(), stop_rx.clone()));
        let workers = state.actions.spawn_workers(
            &state.storage,
            &state.clock,
            &state.metrics,
            &stop_deliveries_rx,
        );
        tokio::spawn(prime_anchors(state.clone(), stop_rx.clone()));
        let detection = tokio::spawn(detection(state.clone(), stop_rx));

        let mut signalled = shutdown_tx.subscribe();
        let serve = crate::serve::serve(
            listener,
            router(state.clone()),
            &state.settings.http,
            async move {
                shutdown.await;
                let _ = shutdown_tx.send(true);
            },
        );
        let drain_deadline = async {
            let _ = signalled.wait_for(|stop| *stop).await;
            tokio::time::sleep(HTTP_DRAIN).await;
        };
        tokio::select! {
            served = serve => served.context("HTTP server failed")?,
            _ = drain_deadline => tracing::warn!(
                budget = ?HTTP_DRAIN,
                "Shutting down: requests still in flight after the drain budget; not waiting for them."
            ),
        }

        tracing::info!("Shutting down: saving alert transitions and roll-ups.");
        let _ = stop_tx.send(true);
        let stopped = tokio::time::timeout(FINAL_TRANSITIONS, async {
            let _ = detection.await;
            let _ = background.await;
        })
        .await;
        if stopped.is_err() {
            tracing::error!(budget = ?FINAL_TRANSITIONS, "Shutting down: detection did not stop in time.");
        }
        let now = state.clock.now_ms();
        let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
        // The deadline stops the writes; taking and encoding the minutes are bounded work,
        // but the stop must not hang on them either.
        let flushed = tokio::time::timeout_at(
            deadline + FLUSH_GRACE,
            flusher.flush(&state.store, &state.storage, now, true, Some(deadline)),
        )
        .await;
        match flushed {
            Ok(Ok(Flushed {
                written,
                unwritten: 0,
            })) => tracing::info!(rollups = written, "Flushed roll-ups."),
            Ok(Ok(Flushed { written, unwritten })) => tracing::warn!(
                budget = ?FINAL_FLUSH,
                written,
                unwritten,
                "Shutting down: writing roll-ups took too long."
            ),
            Ok(Err(ref error)) => tracing::warn!(
                error = format!("{error:#}"),
                "Shutting down: the database refuses the last roll-ups."
            ),
            Err(_) => tracing::error!(
                budget = ?FINAL_FLUSH,
                "Shutting down: taking the roll-ups took too long; the minutes not written are lost."
            ),
        }
        // What the database did not take goes to a file the next start writes.
        if matches!(flushed, Ok(Ok(Flushed { unwritten: 1.., .. })) | Ok(Err(_))) {
            flusher
                .keep_unwritten(&state.store, &state.settings.database, now)
                .await;
        }

        let _ = stop_deliveries_tx.send(true);
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        let joined = tokio::time::timeout(STOP_DELIVERIES, async {
            for w in workers {
                let _ = w.await;
            }
        })
        .await;
        if joined.is_err() {
            aborts.iter().for_each(|a| a.abort());
            tracing::warn!(
                budget = ?STOP_DELIVERIES,
                "Shutting down: deliveries still in flight; they stay pending and are sent after the restart."
            );
        }
        if tokio::time::timeout(CLOSE_DATABASE, state.storage.close())
            .await
            .is_err()
        {
            tracing::warn!("Shutting down: the database did not close in time.");
        }
        Ok(())
    }
}

/// Reads the last day's stored minutes back into the dependencies' anchors (see
/// [`rollup::prime_anchors`]). A failure only costs the creep guard its head start. A stop
/// ends the reading: the database is about to close under it.
async fn prime_anchors(state: AppState, mut stop: watch::Receiver<bool>) {
    let started = std::time::Instant::now();
    let max_age =
        i64::try_from(state.settings.detection.baseline_max_age.as_millis()).unwrap_or(i64::MAX);
    let now = state.clock.now_ms();
    let primed = tokio::select! {
        primed = rollup::prime_anchors(&state.engine, &state.store, &state.storage, max_age, now) => primed,
        _ = stop.wait_for(|stop| *stop) => {
            tracing::info!("Shutting down before the last day's stored minutes were read back into the anchors; the next start reads them.");
            return;
        }
    };
    match primed {
        Ok(minutes) => tracing::info!(
            minutes,
            took_ms = started.elapsed().as_millis() as u64,
            "Read the last day's stored minutes back into the anchors."
        ),
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "Cannot read stored minutes back into the anchors; the creep guard waits for a day of new minutes."
        ),
    }
}

/// Rolls windows forward every second, flushes completed minutes and prunes old rows. A flush
/// runs as a task of its own, one at a time, so that rolling forward goes on while it writes
/// (at 100,000 series a minute's roll-ups take seconds); stopping waits for it.
async fn background(state: AppState, flusher: Arc<Flusher>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush_every = state.settings.storage.flush_interval;
    let mut last_flush = tokio::time::Instant::now();
    let mut flushing: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                if let Some(flush) = flushing {
                    let _ = flush.await;
                }
                return;
            }
        }
        let now = state.clock.now_ms();
        let (store, engine, actions) = (
            state.store.clone(),
            state.engine.clone(),
            state.actions.clone(),
        );
        // Advancing touches every series; keep it off the async workers. Dependencies the
        // store dropped are then forgotten by detection and the breaker board too, unless an
        // alert or a breaker still speaks of them (locks in the order detection takes them).
        let forgot = tokio::task::spawn_blocking(move || {
            store.advance_all(now);
            let mut engine = engine.lock();
            let gone = crate::tick::forget_gone(&store, &mut engine, &mut actions.board.lock());
            if gone.is_empty() {
                return None;
            }
            tracing::info!(dependencies = ?gone, "Forgot idle dependencies.");
            Some(engine.view())
        })
        .await;
        if let Ok(Some(view)) = forgot {
            state.publish_engine_view(view);
        }
        if last_flush.elapsed() >= flush_every && flushing.as_ref().is_none_or(|f| f.is_finished())
        {
            last_flush = tokio::time::Instant::now();
            flushing = Some(tokio::spawn(flush_once(
                state.clone(),
                flusher.clone(),
                now,
            )));
        }
        if last_prune.is_none_or(|t| t.elapsed() >= state.settings.storage.prune_interval) {
            last_prune = Some(tokio::time::Instant::now());
            let storage = &state.settings.storage;
            let before = |keep: Duration| {
                now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
            };
            let cutoffs = crate::storage::PruneBefore {
                rollups_ms: before(storage.retention),
                notifications_ms: before(storage.notification_retention),
                alerts_ms: before(storage.alert_retention),
                silences_ms: before(storage.silence_retention),
            };
            match state.storage.prune(cutoffs).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    rollups = pruned.rollups,
                    alerts = pruned.alerts,
                    notifications = pruned.notifications,
                    silences = pruned.silences,
                    overrides = pruned.overrides,
                    "Pruned rows past their retention."
                ),
                Ok(_) => {}
                Err(error) => {
                    state.metrics.database_error("prune");
                    tracing::warn!(%error, "Pruning old rows failed; will retry.")
                }
            }
        }
    }
}

/// One regular flush of the completed minutes, timed for `/metrics`.
async fn flush_once(state: AppState, flusher: Arc<Flusher>, now: i64) {
    let started = std::time::Instant::now();
    let flushed = flusher
        .flush(&state.store, &state.storage, now, false, None)
        .await;
    state
        .metrics
        .database_write("rollup_flush", started.elapsed());
    if let Err(error) = flushed {
        state.metrics.database_error("rollup_flush");
        tracing::warn!(
            error = format!("{error:#}"),
            "Roll-up flush failed; will retry."
        );
    }
}

/// How often firing alerts are checked for re-notification.
/// (At most; a short `renotify_every` is checked at a quarter of its length.)
const RENOTIFY_CHECK: Duration = Duration::from_secs(60);

/// Transitions kept for a retry when the database refuses them; beyond this the oldest go.
const MAX_UNSAVED_TRANSITIONS: usize = 10_000;
/// Evaluations' transitions waiting for the writer task (one entry per evaluation that found
/// transitions or breaker changes). Full only if the writer is stuck for this many
/// evaluations; then the newest batch is dropped and counted.
const TRANSITION_QUEUE: usize = 1_024;
/// How often the writer task retries what the database refused.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// One evaluation's alert transitions, on their way to the writer task.
struct ToSave {
    transitions: Vec<Transition>,
    specs: crate::detect::Specs,
    now: i64,
}

/// Evaluates the detectors every `detection.evaluate_every` and records alert transitions.
async fn detection(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.settings.detection.evaluate_every);
    // A tick taking more than half the interval is logged: evaluations are falling behind
    // or about to.
    let slow_tick = state.settings.detection.evaluate_every / 2;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Transitions and breaker notifications are written by a task of their own, so an
    // evaluation never waits for the database (a locked one can take the busy timeout).
    let (to_save, queue) = tokio::sync::mpsc::channel::<ToSave>(TRANSITION_QUEUE);
    // When detection stops: the time by which the writer must have kept what the database
    // still refuses.
    let (stopping_tx, stopping) = watch::channel(None);
    let writer = tokio::spawn(save_loop(state.clone(), queue, stopping));
    // Re-notifications read and write the database too: a task of their own as well.
    let renotifier = tokio::spawn(renotify_loop(state.clone(), stop.clone()));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now = state.clock.now_ms();
        let (store, engine, actions) = (
            state.store.clone(),
            state.engine.clone(),
            state.actions.clone(),
        );
        let Ok((outcome, view, took, cpu)) = tokio::task::spawn_blocking(move || {
            // Timed on the blocking thread: the evaluation itself (its locks included), not
            // the wait for a thread.
            let started = std::time::Instant::now();
            let cpu_before = crate::metrics::thread_cpu_time();
            let mut engine = engine.lock();
            let outcome = crate::tick::evaluate(&store, &mut engine, || actions.board.lock(), now);
            let view = engine.view();
            drop(engine);
            let cpu = crate::metrics::thread_cpu_since(cpu_before);
            (outcome, view, started.elapsed(), cpu)
        })
        .await
        else {
            continue;
        };
        state.publish_engine_view(view);
        state.metrics.evaluated(now, took, cpu);
        if took > slow_tick {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                series = state.store.series_count(),
                "Slow evaluation: the detectors took more than half their interval."
            );
        }
        let found = outcome.transitions;
        for t in &found {
            tracing::info!(
                status = t.status.as_str(),
                dependency = %t.dependency,
                instance = t.instance.as_deref().unwrap_or(""),
                zone = t.zone.as_deref().unwrap_or(""),
                source = t.source.as_deref().unwrap_or(""),
                detector = t.detector.as_str(),
                detectors = t.detectors.len(),
                severity = t.severity.as_str(),
                // Debug: a summary quotes labels sent by clients; escaped, they cannot forge log lines.
                summary = ?t.summary,
                "Alert transition."
            );
        }
        // Breakers first: clients waiting on the stream do not wait for the database; their
        // notifications are written by the writer task.
        state.actions.announce(&outcome.breakers, now);
        if found.is_empty() && outcome.breakers.is_empty() {
            continue;
        }
        let batch = ToSave {
            transitions: found,
            specs: state.engine.lock().specs().clone(),
            now,
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) = to_save.try_send(batch) {
            state
                .metrics
                .transitions_dropped("queue_full", batch.transitions.len());
            tracing::error!(
                dropped = batch.transitions.len(),
                "The alert transition writer is behind by {TRANSITION_QUEUE} evaluations; dropped this evaluation's transitions."
            );
        }
    }
    // The writer retries what it holds within the shutdown budget once the queue is closed,
    // and keeps what the database still refuses for the next start.
    let _ = stopping_tx.send(Some(save_deadline()));
    drop(to_save);
    let _ = writer.await;
    let _ = renotifier.await;
}

/// Queues reminders of alerts still firing, every `renotify_every / 4` (at least every
/// [`RENOTIFY_CHECK`], at most every 100 ms). It reads the firing alerts and writes the
/// outbox, so a locked database can hold it for the busy timeout: on a task of its own, that
/// wait never delays an evaluation. A check the database refuses is simply made again at the
/// next round (nothing is lost: the alert is still firing and its last notice unchanged).
async fn renotify_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let every =
        (state.actions.shortest_renotify() / 4).clamp(Duration::from_millis(100), RENOTIFY_CHECK);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = state.clock.now_ms();
        let specs = state.engine.lock().specs().clone();
        // Shutdown does not wait for a locked database: the check is made again at start.
        let checked = tokio::select! {
            checked = state.actions.renotify(&state.storage, &specs, now) => checked,
            _ = stop.changed() => return,
        };
        if let Err(error) = checked {
            state.metrics.database_error("renotify");
            tracing::warn!(%error, "Cannot queue re-notifications; will retry.");
        }
    }
}

/// When detection stops now: the time by which its writer must have kept what the database
/// still refuses, leaving [`SPILL_RESERVE`] of the stop budget for writing the spill file.
fn save_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + FINAL_TRANSITIONS - SPILL_RESERVE
}

/// Writes the transitions detection queues, and the breaker notifications waiting in memory.
/// What the database refuses is kept (at most [`MAX_UNSAVED_TRANSITIONS`]) and retried every
/// [`SAVE_RETRY`]. Once detection stops (`stopping` holds a deadline), see
/// [`save_before_stopping`].
async fn save_loop(
    state: AppState,
    mut queue: tokio::sync::mpsc::Receiver<ToSave>,
    stopping: watch::Receiver<Option<tokio::time::Instant>>,
) {
    let mut unsaved: Vec<Transition> = Vec::new();
    let mut specs = state.engine.lock().specs().clone();
    let stopping_by = || *stopping.borrow();
    let deadline = loop {
        if let Some(deadline) = stopping_by() {
            break deadline;
        }
        let mut now = state.clock.now_ms();
        match tokio::time::timeout(SAVE_RETRY, queue.recv()).await {
            Ok(Some(first)) => {
                let mut next = Some(first);
                while let Some(batch) = next {
                    unsaved.extend(batch.transitions);
                    specs = batch.specs;
                    now = batch.now;
                    next = queue.try_recv().ok();
                }
            }
            Ok(None) => {
                break stopping_by().unwrap_or_else(save_deadline);
            }
            Err(_) => {}
        }
        state.metrics.transitions_waiting(unsaved.len());
        let saved = save_transitions(&state, &mut unsaved, &specs, now).await;
        state.metrics.transitions_waiting(unsaved.len());
        // Stopping, a refused write is not followed by another that may wait as long: the
        // budget left is for retries and for keeping what is refused.
        if !saved && stopping_by().is_some() {
            continue;
        }
        save_breaker_notices(&state, now).await;
    };
    // The last evaluations' transitions, if any are still queued.
    while let Ok(batch) = queue.try_recv() {
        unsaved.extend(batch.transitions);
        specs = batch.specs;
    }
    save_before_stopping(&state, unsaved, &specs, deadline).await;
}

/// At shutdown: retries what the database refused, every [`SAVE_RETRY`], as long as an
/// attempt (which may wait the busy timeout for a lock) ends before `deadline`; then keeps
/// what is still refused in the spill file beside the database, which the next start writes.
async fn save_before_stopping(
    state: &AppState,
    mut unsaved: Vec<Transition>,
    specs: &crate::detect::Specs,
    deadline: tokio::time::Instant,
) {
    // An attempt writes the transitions, then the breaker notifications.
    let attempt_bound = crate::storage::BUSY_TIMEOUT + Duration::from_secs(1);
    let mut attempts = 0u32;
    loop {
        if unsaved.is_empty() && state.actions.breaker_notices_waiting() == 0 {
            if attempts > 1 {
                tracing::info!(
                    attempts,
                    "Shutting down: wrote the alert transitions and breaker notifications the database had refused."
                );
            }
            return;
        }
        if tokio::time::Instant::now() + attempt_bound > deadline {
            break;
        }
        attempts += 1;
        let now = state.clock.now_ms();
        if save_transitions(state, &mut unsaved, specs, now).await {
            save_breaker_notices(state, now).await;
        }
        if !unsaved.is_empty() || state.actions.breaker_notices_waiting() > 0 {
            tokio::time::sleep(SAVE_RETRY).await;
        }
    }
    let notices = state.actions.take_breaker_notices();
    let (transitions, breakers) = (unsaved.len(), notices.len());
    let Some(path) = spill::path_for(&state.settings.database) else {
        tracing::error!(
            transitions,
            breaker_notifications = breakers,
            attempts,
            "Shutting down: the database refused alert transitions and breaker notifications, and an in-memory database has no file to keep them in; they are lost."
        );
        return;
    };
    let file = path.display().to_string();
    let kept = tokio::task::spawn_blocking(move || spill::keep(&path, &unsaved, &notices)).await;
    match kept {
        Ok(Ok(kept)) => {
            tracing::warn!(
                transitions = kept.transitions,
                breaker_notifications = kept.breaker_notices,
                earlier = kept.earlier,
                attempts,
                file,
                "Shutting down: the database still refuses these alert transitions and breaker notifications; kept in a file, the next start writes them."
            );
            if kept.dropped > 0 {
                tracing::error!(
                    dropped = kept.dropped,
                    bound = spill::MAX_BYTES,
                    file,
                    "Shutting down: the file of unsaved alert transitions and breaker notifications is full; the rest are lost."
                );
            }
        }
        Ok(Err(error)) => tracing::error!(
            %error,
            transitions,
            breaker_notifications = breakers,
            file,
            "Shutting down: cannot keep the alert transitions and breaker notifications the database refused; they are lost."
        ),
        Err(error) => {
            tracing::error!(%error, transitions, breaker_notifications = breakers, "Shutting down: keeping what the database refused failed; it is lost.")
        }
    }
}

/// At start: writes what the last shutdown kept in the spill file at `path` (alert
/// transitions, then breaker notifications) and removes it. What the database refuses now
/// stays in the file for the next start (the next shutdown keeps it ahead of its own).
async fn restore_unsaved(
    path: std::path::PathBuf,
    storage: &Storage,
    actions: &Actions,
    specs: &crate::detect::Specs,
    now: i64,
) {
    let file = path.display().to_string();
    let read_from = path.clone();
    let mut unsaved = match tokio::task::spawn_blocking(move || spill::read(&read_from)).await {
        Ok(Ok(Some(unsaved))) => unsaved,
        Ok(Ok(None)) => return,
        Ok(Err(error)) => {
            tracing::error!(%error, file, "Cannot read the alert transitions and breaker notifications kept at the last shutdown; the file is left in place.");
            return;
        }
        Err(error) => {
            tracing::error!(%error, file, "Reading the file of unsaved alert transitions failed.");
            return;
        }
    };
    if unsaved.unreadable > 0 {
        tracing::error!(
            lines = unsaved.unreadable,
            file,
            "Lines of the file of unsaved alert transitions and breaker notifications cannot be read; they are skipped."
        );
    }
    let (transitions, breakers) = (unsaved.transitions.len(), unsaved.breaker_notices.len());
    if !unsaved.transitions.is_empty() {
        match actions
            .record(storage, &unsaved.transitions, specs, now)
            .await
        {
            Ok(()) => unsaved.transitions.clear(),
            Err(error) => {
                tracing::warn!(%error, transitions, file, "Cannot write the alert transitions kept at the last shutdown; they stay in the file.")
            }
        }
    }
    match actions
        .enqueue_breaker_notices(storage, &unsaved.breaker_notices, now)
        .await
    {
        Ok(()) => unsaved.breaker_notices.clear(),
        Err(error) => {
            tracing::warn!(%error, breaker_notifications = breakers, file, "Cannot queue the breaker notifications kept at the last shutdown; they stay in the file.")
        }
    }
    let left = (unsaved.transitions.len(), unsaved.breaker_notices.len());
    tracing::info!(
        transitions = transitions - left.0,
        breaker_notifications = breakers - left.1,
        file,
        "Wrote the alert transitions and breaker notifications kept at the last shutdown."
    );
    let rewrite_at = path.clone();
    match tokio::task::spawn_blocking(move || spill::rewrite(&rewrite_at, &unsaved)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, file, "Cannot update the file of unsaved alert transitions; what was written from it may be written again at the next start.")
        }
        Err(error) => {
            tracing::error!(%error, file, "Updating the file of unsaved alert transitions failed.")
        }
    }
}

/// Writes the breaker notifications waiting in memory to the outbox; returns how many still
/// wait (the database refused them: each breaker's latest change is kept for the next round).
async fn save_breaker_notices(state: &AppState, now: i64) -> usize {
    let queued = state
        .actions
        .queue_breaker_notices(&state.storage, now)
        .await;
    if queued.failed {
        state.metrics.database_error("breaker_notices");
    }
    state
        .metrics
        .breaker_notices(queued.waiting, state.actions.breaker_notices_dropped());
    queued.waiting
}

/// Records `unsaved` transitions; keeps them for the next call when the database refuses
/// (the oldest beyond [`MAX_UNSAVED_TRANSITIONS`] go). Returns whether none is left unsaved.
async fn save_transitions(
    state: &AppState,
    unsaved: &mut Vec<Transition>,
    specs: &crate::detect::Specs,
    now: i64,
) -> bool {
    if unsaved.is_empty() {
        return true;
    }
    let started = std::time::Instant::now();
    let recorded = state
        .actions
        .record(&state.storage, unsaved, specs, now)
        .await;
    state
        .metrics
        .database_write("record_transitions", started.elapsed());
    match recorded {
        Ok(_) => {
            unsaved.clear();
            true
        }
        Err(error) => {
            state.metrics.database_error("record_transitions");
            tracing::warn!(%error, pending = unsaved.len(), "Cannot record alert transitions; will retry.");
            if unsaved.len() > MAX_UNSAVED_TRANSITIONS {
                let excess = unsaved.len() - MAX_UNSAVED_TRANSITIONS;
                tracing::error!(
                    dropped = excess,
                    "Dropping the oldest unsaved alert transitions."
                );
                state.metrics.transitions_dropped("unsaved_limit", excess);
                unsaved.drain(..excess);
            }
            false
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
