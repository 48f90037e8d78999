//! `GET /metrics`: the Prometheus exposition (see [`crate::metrics`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::metrics::{CONTENT_TYPE, NotificationCount, Scrape};

/// How long a scrape waits for the outbox counts before exporting without them.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Outbox statuses exported for every notifier, zero when it has none.
const STATUSES: [&str; 4] = ["pending", "delivered", "failed", "dead"];

/// graywatch's own metrics, in the Prometheus text format. Needs the `read` scope unless
/// `auth.public_metrics = true`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
    security(("bearer" = ["read"])))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let notifications = notification_counts(&state).await;
    // Reading every series and encoding thousands of lines is CPU work of milliseconds: off
    // the async workers.
    let body = tokio::task::spawn_blocking(move || {
        let now = state.clock.now_ms();
        let max = state.settings.ingest.max_in_flight;
        let in_flight = max.saturating_sub(state.ingest_permits.available_permits());
        let scrape = Scrape::collect(
            &state.store,
            &state.engine_view(),
            &state.actions.board,
            now,
            in_flight,
            state.metrics.evaluation_lag_s(now),
            notifications,
        )
        .receiving_bodies(state.ingest_receiving.load(Ordering::Relaxed));
        state.metrics.render(scrape)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body))
}

/// Outbox rows by notifier and status, with a zero for each configured notifier's statuses
/// that have no rows; on a database error or timeout, only the zeros (and the error counted).
async fn notification_counts(state: &AppState) -> Vec<NotificationCount> {
    let rows =
        match tokio::time::timeout(DATABASE_TIMEOUT, state.storage.notification_counts()).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                tracing::warn!(%error, "Cannot count notifications for the metrics.");
                state.metrics.database_error("notification_counts");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("Counting notifications for the metrics timed out.");
                state.metrics.database_error("notification_counts");
                Vec::new()
            }
        };
    let mut out = rows;
    for n in &state.settings.notifiers {
        for status in STATUSES {
            if !out
                .iter()
                .any(|r| r.notifier == n.name && r.status == status)
            {
                out.push(NotificationCount {
                    notifier: n.name.clone(),
                    status: status.into(),
                    count: 0,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.notifier, &a.status).cmp(&(&b.notifier, &b.status)));
    out
}
