//! `GET /v1/alerts[/{id}]`: the alert log.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::detect::AlertStatus;
use crate::storage::{AlertFilter, AlertRecord};

#[derive(Serialize)]
pub struct AlertList {
    pub alerts: Vec<AlertRecord>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AlertList>, ApiError> {
    let status = match q.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("firing") => Some(AlertStatus::Firing),
        Some("resolved") => Some(AlertStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "state: {other:?} is not a state; use firing or resolved"
            )));
        }
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!("limit: {raw:?} is not a number from 1 to 1000"))
            })?,
    };
    let filter = AlertFilter {
        state: status,
        dependency: q.get("dependency").cloned(),
        limit,
    };
    Ok(Json(AlertList {
        alerts: state.storage.list_alerts(&filter).await?,
    }))
}

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
