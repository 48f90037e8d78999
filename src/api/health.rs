//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::storage::WriteStatus;

/// The process is alive and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take traffic: the database answers and migrations are applied.
///
/// Failing writes (a read-only or locked database, a full disk) leave graywatch ready: ingest,
/// detection and breakers work from memory, and the writes are retried. The answer says
/// `"status": "degraded"` with the failure, so a probe or an operator sees it without taking
/// the instance out of service, which would stop the events that detection needs.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.storage.ready().await {
        Ok(()) => match state.storage.write_status() {
            WriteStatus::Ok => (StatusCode::OK, Json(json!({ "status": "ready" }))),
            WriteStatus::Failing { failures, error } => (
                StatusCode::OK,
                Json(json!({
                    "status": "degraded",
                    "database": "writes failing; retrying",
                    "failed_writes": failures,
                    "error": error,
                })),
            ),
        },
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "error": format!("{e:#}") })),
        ),
    }
}
