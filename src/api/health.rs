//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Probe {
    /// `ok`, `ready` or `not ready`.
    status: &'static str,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Probe)))]
pub async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        error: None,
    })
}

/// Ready to take traffic: the database answers and migrations are applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Probe),
        (status = 503, description = "Not ready (the database does not answer)", body = Probe),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Probe>) {
    match state.storage.ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Probe {
                status: "ready",
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                error: Some(format!("{e:#}")),
            }),
        ),
    }
}
