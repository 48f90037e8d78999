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
use crate::api::auth::Auth;
use crate::api::{AppState, router};
use crate::config::Settings;
use crate::detect::{Engine, Transition};
use crate::metrics::Metrics;
use crate::rollup::{self, Flusher};
use crate::storage::Storage;
use crate::time::Clock;
use crate::window::WindowStore;

/// How often windows are rolled forward on the wall clock.
const TICK: Duration = Duration::from_secs(1);
/// How often old roll-ups are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
        let store = Arc::new(WindowStore::new(settings.limits));
        let loaded = rollup::warm(&store, &storage, &settings.node_id, clock.now_ms()).await?;
        tracing::info!(rollups = loaded, "Loaded recent roll-ups.");
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
        for a in storage.firing_alerts().await? {
            let mut detectors = a.detectors.clone();
            if !detectors.contains(&a.detector) {
                detectors.insert(0, a.detector.clone());
            }
            engine.restore_firing(
                &a.dependency,
                a.instance.as_deref(),
                a.zone.as_deref(),
                &detectors,
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
            engine: Arc::new(parking_lot::Mutex::new(engine)),
            actions: Arc::new(actions),
            metrics: Arc::new(Metrics::new()),
            shutdown: shutdown_rx,
            settings: Arc::new(settings),
            auth,
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

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// writes every unsaved minute and closes the database.
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
        let background = tokio::spawn(background(state.clone(), flusher.clone(), stop_rx.clone()));
        let workers =
            state
                .actions
                .spawn_workers(&state.storage, &state.clock, &state.metrics, &stop_rx);
        let detection = tokio::spawn(detection(state.clone(), stop_rx));
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = shutdown_tx.send(true);
            })
            .await
            .context("HTTP server failed")?;
        tracing::info!("Shutting down: flushing roll-ups.");
        let _ = stop_tx.send(true);
        let _ = background.await;
        let _ = detection.await;
        for w in workers {
            let _ = w.await;
        }
        let now = state.clock.now_ms();
        let written = flusher
            .flush(&state.store, &state.storage, now, true)
            .await?;
        tracing::info!(rollups = written, "Flushed roll-ups.");
        state.storage.close().await;
        Ok(())
    }
}

/// Rolls windows forward every second, flushes completed minutes and prunes old roll-ups.
async fn background(state: AppState, flusher: Arc<Flusher>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush_every = state.settings.storage.flush_interval;
    let mut last_flush = tokio::time::Instant::now();
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = state.clock.now_ms();
        let store = state.store.clone();
        // Advancing touches every series; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || store.advance_all(now)).await;
        if last_flush.elapsed() >= flush_every {
            last_flush = tokio::time::Instant::now();
            let started = std::time::Instant::now();
            let flushed = flusher
                .flush(&state.store, &state.storage, now, false)
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
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            let before = now - state.settings.storage.retention.as_millis() as i64;
            match state.storage.prune_rollups(before).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "Pruned old roll-ups."),
                Ok(_) => {}
                Err(error) => {
                    state.metrics.database_error("rollup_prune");
                    tracing::warn!(%error, "Roll-up pruning failed.")
                }
            }
        }
    }
}

/// How often firing alerts are checked for re-notification.
/// (At most; a short `renotify_every` is checked at a quarter of its length.)
const RENOTIFY_CHECK: Duration = Duration::from_secs(60);

/// Transitions kept for a retry when the database refuses them; beyond this the oldest go.
const MAX_UNSAVED_TRANSITIONS: usize = 10_000;

/// Evaluates the detectors every `detection.evaluate_every` and records alert transitions.
async fn detection(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.settings.detection.evaluate_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unsaved: Vec<Transition> = Vec::new();
    let mut last_renotify: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = state.clock.now_ms();
        let (store, engine) = (state.store.clone(), state.engine.clone());
        let started = std::time::Instant::now();
        let Ok(found) =
            tokio::task::spawn_blocking(move || engine.lock().evaluate(&store, now)).await
        else {
            continue;
        };
        state.metrics.evaluated(now, started.elapsed());
        for t in &found {
            tracing::info!(
                status = t.status.as_str(),
                dependency = %t.dependency,
                instance = t.instance.as_deref().unwrap_or(""),
                zone = t.zone.as_deref().unwrap_or(""),
                detector = t.detector.as_str(),
                detectors = t.detectors.len(),
                severity = t.severity.as_str(),
                summary = %t.summary,
                "Alert transition."
            );
        }
        // Breakers first: clients waiting on the stream should not wait for the database.
        let (conditions, specs) = {
            let engine = state.engine.lock();
            (engine.conditions(), engine.specs().clone())
        };
        state
            .actions
            .update_breakers(&state.storage, &conditions, &specs, now)
            .await;
        let renotify_check = (state.actions.shortest_renotify() / 4)
            .clamp(Duration::from_millis(100), RENOTIFY_CHECK);
        if last_renotify.is_none_or(|t: tokio::time::Instant| t.elapsed() >= renotify_check) {
            last_renotify = Some(tokio::time::Instant::now());
            if let Err(error) = state.actions.renotify(&state.storage, &specs, now).await {
                tracing::warn!(%error, "Cannot queue re-notifications.");
            }
        }
        unsaved.extend(found);
        if unsaved.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let recorded = state
            .actions
            .record(&state.storage, &unsaved, &specs, now)
            .await;
        state
            .metrics
            .database_write("record_transitions", started.elapsed());
        match recorded {
            Ok(_) => unsaved.clear(),
            Err(error) => {
                state.metrics.database_error("record_transitions");
                tracing::warn!(%error, pending = unsaved.len(), "Cannot record alert transitions; will retry.");
                if unsaved.len() > MAX_UNSAVED_TRANSITIONS {
                    let excess = unsaved.len() - MAX_UNSAVED_TRANSITIONS;
                    tracing::error!(
                        dropped = excess,
                        "Dropping the oldest unsaved alert transitions."
                    );
                    unsaved.drain(..excess);
                }
            }
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
