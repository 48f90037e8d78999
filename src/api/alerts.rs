//! `GET /v1/alerts[/{id}]`: the alert log.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actions::{limit_param, query};
use super::openapi::{AlertDoc, ErrorBody};
use super::{ApiError, AppState};
use crate::detect::AlertStatus;
use crate::storage::{AlertFilter, AlertRecord};

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    #[schema(value_type = Vec<AlertDoc>)]
    pub alerts: Vec<AlertRecord>,
}

/// Query of `GET /v1/alerts`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `firing` or `resolved`; default both.
    state: Option<String>,
    /// Only this dependency's alerts.
    dependency: Option<String>,
    /// From 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// The alert log, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first", body = AlertList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let q = query(q)?;
    let status = match q.state.as_deref() {
        None | Some("") => None,
        Some("firing") => Some(AlertStatus::Firing),
        Some("resolved") => Some(AlertStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "state: {other:?} is not a state; use firing or resolved"
            )));
        }
    };
    let limit = limit_param(q.limit.as_deref(), 100, 1000)? as i64;
    let filter = AlertFilter {
        state: status,
        dependency: q.dependency,
        limit,
    };
    Ok(Json(AlertList {
        alerts: state.storage.list_alerts(&filter).await?,
    }))
}

/// One alert.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The alert", body = AlertDoc),
        (status = 400, description = "Not an alert id", body = ErrorBody),
        (status = 404, description = "No alert with that id", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertRecord>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("id: {id:?} is not an alert id")))?;
    state
        .storage
        .get_alert(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no alert with id {id}")))
}
