//! The HTTP API: an edge that reads the core and feeds ingest; nothing in the core calls it.

mod actions;
mod alerts;
pub mod auth;
mod dashboard;
mod dependencies;
mod error;
mod events;
mod health;
mod metrics;
pub mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, post, put};
use tokio::sync::Semaphore;
use tower_http::trace::TraceLayer;

pub use dependencies::{MAX_BUCKET_MERGES, MAX_CONCURRENT_SERIES};
pub use error::ApiError;
pub use events::{IngestResponse, ingest_body};

use crate::actions::hub::Actions;
use crate::config::{Scope, Settings};
use crate::detect::Engine;
use crate::storage::Storage;
use crate::time::Clock;
use crate::window::WindowStore;

/// Shared state of all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<WindowStore>,
    pub storage: Storage,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    /// Bounds concurrent ingest requests (and so the memory held by their bodies); a request
    /// that finds no permit is answered 503 at once rather than queued.
    pub ingest_permits: Arc<Semaphore>,
    /// Bounds the series reads computed at once (`GET /v1/dependencies/{name}/series`).
    pub series_permits: Arc<Semaphore>,
    /// Ingest requests still receiving their body (they hold no permit yet).
    pub ingest_receiving: Arc<std::sync::atomic::AtomicUsize>,
    /// The detection engine; evaluation holds the lock while it judges every dependency (a
    /// good part of a second with many series). API reads do not take it: they read
    /// `engine_view`.
    pub engine: Arc<parking_lot::Mutex<Engine>>,
    /// What the last evaluation found (health, baselines, summaries), published after each.
    pub engine_view: Arc<parking_lot::RwLock<Arc<crate::detect::EngineView>>>,
    /// Notifiers, routing, the breaker board and its change stream.
    pub actions: Arc<Actions>,
    /// graywatch's own metrics, updated where things happen and rendered by `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Turns true when the daemon starts shutting down: long-lived responses (SSE) end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Tokens (digests only) and dashboard sessions.
    pub auth: Arc<auth::Auth>,
    /// The overview answer every open dashboard shares (see [`dashboard::OverviewCache`]).
    pub overview_cache: Arc<dashboard::OverviewCache>,
}

impl AppState {
    /// What the last evaluation found; never waits for an evaluation in progress.
    pub fn engine_view(&self) -> Arc<crate::detect::EngineView> {
        self.engine_view.read().clone()
    }

    /// Publishes what the engine holds now (after an evaluation, or a change made outside
    /// one, such as forgetting idle dependencies).
    pub fn publish_engine_view(&self, view: crate::detect::EngineView) {
        *self.engine_view.write() = Arc::new(view);
    }
}

/// Routes being declared, with their paths kept: the test of the OpenAPI document checks
/// that each path the router serves is documented.
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn route(mut self, path: &'static str, method: MethodRouter<AppState>) -> Self {
        self.paths.push(path);
        self.router = self.router.route(path, method);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.paths.extend(other.paths);
        self.router = self.router.merge(other.router);
        self
    }

    /// Every route of the group needs `scope`.
    fn gated(mut self, state: &AppState, scope: Scope) -> Self {
        let gate = middleware::from_fn_with_state(auth::require(&state.auth, scope), auth::check);
        self.router = self.router.route_layer(gate);
        self
    }
}

/// Every route, grouped by the scope it needs (see [`auth`]); `/healthz`, `/readyz` and
/// signing in are open. Returns the paths too, each once per group that serves it.
pub fn routes(state: &AppState) -> (Router<AppState>, Vec<&'static str>) {
    // Settings do not change while the daemon runs: its document is built once.
    let document = openapi::Document(openapi::document(&state.settings).into());
    let ingest = Routes::new()
        .route("/v1/events", post(events::post_events))
        .gated(state, Scope::Ingest);
    let mut read = Routes::new()
        .route("/v1/dependencies", get(dependencies::list))
        .route("/v1/dependencies/{name}", get(dependencies::detail))
        .route("/v1/dependencies/{name}/series", get(dependencies::series))
        .route("/v1/notifications", get(actions::notifications))
        .route("/v1/silences", get(actions::silences))
        .route("/v1/breakers", get(actions::breakers))
        .route("/v1/breakers/stream", get(actions::stream))
        .route("/v1/breakers/{dependency}", get(actions::breaker))
        .route(
            "/v1/breakers/{dependency}/history",
            get(actions::breaker_history),
        )
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{id}", get(alerts::get))
        .route(
            "/openapi.json",
            get(openapi::openapi_json).layer(axum::Extension(document)),
        )
        .merge(dashboard::routes());
    let mut open = Routes::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/session", post(auth::sign_in).delete(auth::sign_out));
    if state.settings.auth.public_metrics {
        open = open.route("/metrics", get(metrics::metrics));
    } else {
        read = read.route("/metrics", get(metrics::metrics));
    }
    let read = read.gated(state, Scope::Read);
    let admin = Routes::new()
        .route("/v1/silences", post(actions::create_silence))
        .route("/v1/silences/{id}", delete(actions::delete_silence))
        .route(
            "/v1/breakers/{dependency}",
            put(actions::put_override).delete(actions::delete_override),
        )
        .gated(state, Scope::Admin);
    let all = Routes::new()
        .merge(ingest)
        .merge(read)
        .merge(admin)
        .merge(open);
    (all.router, all.paths)
}

/// The application's router: [`routes`], a JSON 404 for anything else, the `Host` check of a
/// loopback listener and request tracing.
pub fn router(state: AppState) -> Router {
    let (routes, _) = routes(&state);
    let mut app = routes.fallback(|| async { ApiError::NotFound("no such endpoint".into()) });
    if state.settings.listen.ip().is_loopback() {
        app = app.layer(middleware::from_fn(auth::loopback_host));
    }
    app.layer(TraceLayer::new_for_http()).with_state(state)
}
