//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::storage::WriteStatus;

/// A probe's answer.
#[derive(Serialize, ToSchema, Default)]
pub struct Probe {
    /// `ok`, `ready`, `degraded` (ready, but database writes are failing and being retried) or
    /// `not ready`.
    status: &'static str,
    /// What is failing, when `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'static str>,
    /// Writes in a row that failed, when `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_writes: Option<u64>,
    /// Why not ready, or the latest write error when `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Probe)))]
pub async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        ..Probe::default()
    })
}

/// Ready to take traffic: the database answers and migrations are applied.
///
/// Failing writes (a read-only or locked database, a full disk) leave graywatch ready: ingest,
/// detection and breakers work from memory, and the writes are retried. The answer says
/// `"status": "degraded"` with the failure, so a probe or an operator sees it without taking
/// the instance out of service, which would stop the events that detection needs.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready, or degraded (writes failing and retried)", body = Probe),
        (status = 503, description = "Not ready (the database does not answer)", body = Probe),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Probe>) {
    match state.storage.ready().await {
        Ok(()) => match state.storage.write_status() {
            WriteStatus::Ok => (
                StatusCode::OK,
                Json(Probe {
                    status: "ready",
                    ..Probe::default()
                }),
            ),
            WriteStatus::Failing { failures, error } => (
                StatusCode::OK,
                Json(Probe {
                    status: "degraded",
                    database: Some("writes failing; retrying"),
                    failed_writes: Some(failures),
                    error: Some(error),
                }),
            ),
        },
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                error: Some(format!("{e:#}")),
                ..Probe::default()
            }),
        ),
    }
}
