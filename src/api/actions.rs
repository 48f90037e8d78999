//! Notifications, silences and breakers: each handler parses its request into typed values,
//! calls one method of the actions (or one storage read) and maps the answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use utoipa::{IntoParams, ToSchema};

use super::auth::Principal;
use super::openapi::{ErrorBody, TimeInput};
use super::{ApiError, AppState};
use crate::actions::breaker::{BreakerState, BreakerView, ForcedState};
use crate::actions::history::{HistoryEntry, MAX_CHANGES_PER_DEPENDENCY};
use crate::actions::hub::SetOverrideError;
use crate::actions::operator::{RequestError, SilenceEnd, SilenceRequest, check_len, human};
use crate::storage::{NotificationRecord, Silence};

/// Heartbeat interval of the breaker stream (a comment line keeps proxies from timing out).
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Accepted times: 1970 to 2200, which keeps every sum of them far from overflow.
const MAX_TIME_MS: i64 = 7_258_118_400_000;

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            RequestError::NotFound(m) => ApiError::NotFound(m),
            RequestError::Storage(e) => e.into(),
        }
    }
}

/// A query string that does not parse is a 400 like any other, in the JSON error shape.
pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad(e.body_text()))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| ApiError::bad(e.body_text()))
}

/// A `limit` parameter from 1 to `max`.
pub(super) fn limit_param(
    raw: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!("limit: {raw:?} is not a number from 1 to {max}"))
            }),
    }
}

/// Notification statuses, as `GET /v1/notifications?status=` takes them.
const STATUSES: [&str; 5] = ["pending", "delivered", "failed", "dead", "suppressed"];

/// Query of `GET /v1/notifications`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only the notifications of this alert (its id).
    #[param(value_type = Option<i64>)]
    alert: Option<String>,
    /// One of `pending`, `delivered`, `failed`, `dead`, `suppressed`.
    #[param(value_type = Option<NotificationStatus>)]
    status: Option<String>,
    /// Only those of this notifier.
    notifier: Option<String>,
    /// From 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Where a notification stands in the outbox.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // Documentation only: the query is checked against `STATUSES`.
pub enum NotificationStatus {
    Pending,
    Delivered,
    Failed,
    Dead,
    Suppressed,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationList {
    #[schema(value_type = Vec<super::openapi::NotificationDoc>)]
    notifications: Vec<NotificationRecord>,
}

/// The outbox, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "Notifications, newest first", body = NotificationList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn notifications(
    State(state): State<AppState>,
    q: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Json<NotificationList>, ApiError> {
    let q = query(q)?;
    let alert = q
        .alert
        .as_deref()
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| ApiError::bad(format!("alert: {a:?} is not an alert id")))
        })
        .transpose()?;
    if let Some(s) = q.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::bad(format!(
            "status: {s:?} is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let limit = limit_param(q.limit.as_deref(), 100, 1000)? as i64;
    let notifications = state
        .storage
        .list_notifications(alert, q.status.as_deref(), q.notifier.as_deref(), limit)
        .await?;
    Ok(Json(NotificationList { notifications }))
}

/// Body of `POST /v1/silences`. At least one matcher; a matcher not given matches anything.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    #[schema(max_length = 256)]
    dependency: Option<String>,
    #[schema(max_length = 256)]
    instance: Option<String>,
    #[schema(max_length = 256)]
    zone: Option<String>,
    /// A caller (the events' `source`).
    #[schema(max_length = 256)]
    source: Option<String>,
    /// A detector name (see the README's detectors).
    #[schema(max_length = 256)]
    detector: Option<String>,
    /// RFC 3339 or epoch ms; default now.
    #[schema(value_type = Option<TimeInput>)]
    starts_at: Option<Value>,
    /// RFC 3339 or epoch ms; or give `duration`.
    #[schema(value_type = Option<TimeInput>)]
    ends_at: Option<Value>,
    /// e.g. "2h"; alternative to `ends_at`; at most `limits.max_silence_duration` (30 days
    /// by default).
    #[schema(example = "2h")]
    duration: Option<String>,
    /// Why; required, at most `limits.max_comment_chars` characters (1000 by default;
    /// `maxLength` is this daemon's setting).
    #[schema(min_length = 1, max_length = 1000)]
    comment: String,
    /// Ignored: a silence is created by the caller's token (its name), or `anonymous`.
    #[serde(default, rename = "created_by")]
    #[schema(value_type = Option<String>)]
    _created_by: Option<Value>,
}

fn time_value(v: &Value, field: &str) -> Result<i64, ApiError> {
    let t = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => crate::time::parse_rfc3339(s),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad(format!("{field}: must be RFC 3339 or epoch milliseconds")))?;
    if !(0..=MAX_TIME_MS).contains(&t) {
        return Err(ApiError::bad(format!(
            "{field}: must be between 1970 and 2200"
        )));
    }
    Ok(t)
}

/// A duration parameter in milliseconds, at most `max_ms` (so that adding it to a time
/// cannot overflow).
/// A duration of at most `max_ms`, which the setting `limit` sets; a message naming `field`
/// (and the setting) otherwise.
fn duration_value(raw: &str, field: &str, max_ms: i64, limit: &str) -> Result<i64, ApiError> {
    let d = humantime::parse_duration(raw)
        .map_err(|e| ApiError::bad(format!("{field}: {raw:?} is not a duration ({e})")))?;
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= max_ms)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "{field}: at most {} ({limit}), got {raw:?}",
                human(max_ms)
            ))
        })
}

/// A silence as the API shows it: times in epoch ms and in RFC 3339.
#[derive(Serialize, ToSchema)]
pub struct SilenceView {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dependency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detector: Option<String>,
    starts_ms: i64,
    ends_ms: i64,
    starts_at: String,
    ends_at: String,
    comment: String,
    /// The name of the token that created it.
    created_by: String,
    created_ms: i64,
}

impl From<Silence> for SilenceView {
    fn from(s: Silence) -> Self {
        Self {
            starts_at: crate::time::to_rfc3339(s.starts_ms),
            ends_at: crate::time::to_rfc3339(s.ends_ms),
            id: s.id,
            dependency: s.dependency,
            instance: s.instance,
            zone: s.zone,
            source: s.source,
            detector: s.detector,
            starts_ms: s.starts_ms,
            ends_ms: s.ends_ms,
            comment: s.comment,
            created_by: s.created_by,
            created_ms: s.created_ms,
        }
    }
}

/// Mutes the alerts that match while it lasts (their notifications are held, not lost).
#[utoipa::path(post, path = "/v1/silences", tag = "silences",
    request_body = NewSilence,
    responses(
        (status = 201, description = "Created", body = SilenceView),
        (status = 400, description = "The body is invalid, or too many silences exist", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])))]
pub async fn create_silence(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let b = body(b)?;
    let starts_ms = b
        .starts_at
        .as_ref()
        .map(|v| time_value(v, "starts_at"))
        .transpose()?;
    let ends = match (&b.ends_at, &b.duration) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("ends_at: give ends_at or duration, not both"));
        }
        (Some(v), None) => SilenceEnd::At(time_value(v, "ends_at")?),
        (None, Some(d)) => SilenceEnd::After(duration_value(
            d,
            "duration",
            state.actions.limits().max_silence_ms,
            "limits.max_silence_duration",
        )?),
        (None, None) => return Err(ApiError::bad("ends_at: required (or give duration)")),
    };
    let request = SilenceRequest {
        dependency: b.dependency,
        instance: b.instance,
        zone: b.zone,
        source: b.source,
        detector: b.detector,
        starts_ms,
        ends,
        comment: b.comment,
    };
    let now = state.clock.now_ms();
    let s = state
        .actions
        .create_silence(&state.storage, request, who.name(), now)
        .await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

#[derive(Serialize, ToSchema)]
pub struct SilenceList {
    silences: Vec<SilenceView>,
}

/// Active and scheduled silences.
#[utoipa::path(get, path = "/v1/silences", tag = "silences",
    responses((status = 200, description = "Active and scheduled silences", body = SilenceList)),
    security(("bearer" = ["read"])))]
pub async fn silences(State(state): State<AppState>) -> Result<Json<SilenceList>, ApiError> {
    let now = state.clock.now_ms();
    let silences = state.actions.silences(&state.storage, now).await?;
    Ok(Json(SilenceList {
        silences: silences.into_iter().map(SilenceView::from).collect(),
    }))
}

/// Ends a silence now; what it held back is delivered at once.
#[utoipa::path(delete, path = "/v1/silences/{id}", tag = "silences",
    params(("id" = i64, Path, description = "The silence's id")),
    responses(
        (status = 204, description = "Expired"),
        (status = 400, description = "Not a silence id", body = ErrorBody),
        (status = 404, description = "No active silence with that id", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])))]
pub async fn delete_silence(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("id: {id:?} is not a silence id")))?;
    let now = state.clock.now_ms();
    state
        .actions
        .expire_silence(&state.storage, id, who.name(), now)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A breaker as the API shows it: times in epoch ms and in RFC 3339.
#[derive(Serialize, ToSchema)]
pub struct BreakerOut {
    dependency: String,
    /// The instance, for an instance's breaker; absent for the dependency's.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// The effective state: the forced one while an override is active.
    #[schema(value_type = BreakerStateDoc)]
    state: BreakerState,
    /// The automatic machine's state (differs from `state` only under an override).
    #[schema(value_type = BreakerStateDoc)]
    automatic: BreakerState,
    reason: String,
    since_ms: i64,
    since: String,
    /// When an automatically open breaker goes half-open.
    next_probe_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_probe_at: Option<String>,
    trips: u32,
    /// True while an operator override is active.
    forced: bool,
    override_expires_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    override_expires_at: Option<String>,
}

/// The state of a breaker.
#[derive(ToSchema)]
#[schema(as = BreakerState, rename_all = "snake_case")]
#[allow(dead_code)] // Documentation of `BreakerState`'s wire names.
pub enum BreakerStateDoc {
    Closed,
    Open,
    HalfOpen,
}

impl From<BreakerView> for BreakerOut {
    fn from(v: BreakerView) -> Self {
        Self {
            since: crate::time::to_rfc3339(v.since_ms),
            next_probe_at: v.next_probe_ms.map(crate::time::to_rfc3339),
            override_expires_at: v.override_expires_ms.map(crate::time::to_rfc3339),
            dependency: v.dependency,
            instance: v.instance,
            state: v.state,
            automatic: v.automatic,
            reason: v.reason,
            since_ms: v.since_ms,
            next_probe_ms: v.next_probe_ms,
            trips: v.trips,
            forced: v.forced,
            override_expires_ms: v.override_expires_ms,
        }
    }
}

fn outs(views: Vec<BreakerView>) -> Vec<BreakerOut> {
    views.into_iter().map(BreakerOut::from).collect()
}

#[derive(Serialize, ToSchema)]
pub struct BreakerList {
    breakers: Vec<BreakerOut>,
}

/// Every breaker, each dependency's before its instances'.
#[utoipa::path(get, path = "/v1/breakers", tag = "breakers",
    responses((status = 200, description = "Every breaker", body = BreakerList)),
    security(("bearer" = ["read"])))]
pub async fn breakers(State(state): State<AppState>) -> Json<BreakerList> {
    Json(BreakerList {
        breakers: outs(state.actions.breakers()),
    })
}

#[derive(Serialize, ToSchema)]
pub struct DependencyBreakers {
    dependency: String,
    /// The dependency's breaker, then its instances'.
    breakers: Vec<BreakerOut>,
}

/// The dependency's breaker, then its instances'.
#[utoipa::path(get, path = "/v1/breakers/{dependency}", tag = "breakers",
    params(("dependency" = String, Path)),
    responses(
        (status = 200, description = "The dependency's breakers", body = DependencyBreakers),
        (status = 404, description = "No breaker for that dependency", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn breaker(
    State(state): State<AppState>,
    Path(dependency): Path<String>,
) -> Result<Json<DependencyBreakers>, ApiError> {
    let breakers = outs(state.actions.breakers_of(&dependency)?);
    Ok(Json(DependencyBreakers {
        dependency,
        breakers,
    }))
}

/// Query of `GET /v1/breakers/{dependency}/history`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// From 1 to 100 (the default: all that are kept).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// One change of one breaker.
#[derive(Serialize, ToSchema)]
pub struct ChangeOut {
    at_ms: i64,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[schema(value_type = BreakerStateDoc)]
    before: BreakerState,
    #[schema(value_type = BreakerStateDoc)]
    after: BreakerState,
    reason: String,
    forced: bool,
}

impl From<HistoryEntry> for ChangeOut {
    fn from(e: HistoryEntry) -> Self {
        Self {
            at: crate::time::to_rfc3339(e.at_ms),
            at_ms: e.at_ms,
            instance: e.instance,
            before: e.before,
            after: e.after,
            reason: e.reason,
            forced: e.forced,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BreakerHistoryOut {
    dependency: String,
    /// Newest first.
    changes: Vec<ChangeOut>,
}

/// The dependency's recent breaker changes (its own and its instances'), newest first; kept in
/// memory since the daemon started.
#[utoipa::path(get, path = "/v1/breakers/{dependency}/history", tag = "breakers",
    params(("dependency" = String, Path), HistoryQuery),
    responses(
        (status = 200, description = "Recent changes, newest first", body = BreakerHistoryOut),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No breaker for that dependency", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn breaker_history(
    State(state): State<AppState>,
    Path(dependency): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<BreakerHistoryOut>, ApiError> {
    let q = query(q)?;
    let max = MAX_CHANGES_PER_DEPENDENCY;
    let limit = limit_param(q.limit.as_deref(), max, max)?;
    let changes = state.actions.breaker_history(&dependency, limit)?;
    Ok(Json(BreakerHistoryOut {
        dependency,
        changes: changes.into_iter().map(ChangeOut::from).collect(),
    }))
}

/// Body of `PUT /v1/breakers/{dependency}`: force open or closed until an expiry (at most
/// `limits.max_override_ttl` ahead, 7 days by default).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    #[schema(value_type = ForcedStateDoc)]
    state: ForcedState,
    /// Why; required, at most `limits.max_comment_chars` characters (1000 by default;
    /// `maxLength` is this daemon's setting).
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
    /// Only this instance's breaker.
    instance: Option<String>,
    /// RFC 3339 or epoch ms; or give `ttl`.
    #[schema(value_type = Option<TimeInput>)]
    expires_at: Option<Value>,
    /// e.g. "30m"; at most `limits.max_override_ttl` (7 days by default).
    #[schema(example = "30m")]
    ttl: Option<String>,
}

/// A state an operator may force.
#[derive(ToSchema)]
#[schema(as = ForcedState, rename_all = "snake_case")]
#[allow(dead_code)] // Documentation of `ForcedState`'s wire names.
pub enum ForcedStateDoc {
    Open,
    Closed,
}

#[derive(Serialize, ToSchema)]
pub struct OverrideOut {
    override_id: i64,
    /// The name of the token that set it.
    created_by: String,
    /// The dependency's breakers after the change.
    breakers: Vec<BreakerOut>,
}

/// Forces a breaker open or closed until an expiry.
#[utoipa::path(put, path = "/v1/breakers/{dependency}", tag = "breakers",
    params(("dependency" = String, Path)),
    request_body = OverrideBody,
    responses(
        (status = 200, description = "The override is in force", body = OverrideOut),
        (status = 400, description = "The body is invalid", body = ErrorBody),
        (status = 503, description = "The database did not take it; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = ["admin"])))]
pub async fn put_override(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(dep): Path<String>,
    b: Result<Json<OverrideBody>, JsonRejection>,
) -> Result<Json<OverrideOut>, ApiError> {
    let b = body(b)?;
    crate::domain::DependencyName::parse(dep.as_str())
        .map_err(|e| ApiError::bad(format!("dependency: {e}")))?;
    let now = state.clock.now_ms();
    let limits = state.actions.limits();
    let expires = match (&b.expires_at, &b.ttl) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "expires_at: give expires_at or ttl, not both",
            ));
        }
        (Some(v), None) => {
            let t = time_value(v, "expires_at")?;
            if t - now > limits.max_override_ms {
                return Err(ApiError::bad(format!(
                    "expires_at: an override lasts at most {} from now (limits.max_override_ttl)",
                    human(limits.max_override_ms)
                )));
            }
            t
        }
        (None, Some(t)) => {
            now + duration_value(t, "ttl", limits.max_override_ms, "limits.max_override_ttl")?
        }
        (None, None) => return Err(ApiError::bad("expires_at: required (or give ttl)")),
    };
    check_len(&b.reason, "reason", limits.max_text_chars)?;
    let (id, views) = state
        .actions
        .set_override(
            &state.storage,
            &dep,
            b.instance.as_deref(),
            b.state,
            &b.reason,
            expires,
            who.name(),
            now,
        )
        .await
        .map_err(override_error)?;
    tracing::info!(override_id = id, dependency = %dep, created_by = who.name(), "Breaker override set.");
    Ok(Json(OverrideOut {
        override_id: id,
        created_by: who.name().to_string(),
        breakers: outs(views),
    }))
}

/// A refused override as the API answers it: a database that did not take it is a 503 (the
/// board is unchanged, so retrying is safe).
fn override_error(e: SetOverrideError) -> ApiError {
    match e {
        SetOverrideError::Invalid(e) => ApiError::bad(format!("override: {e}")),
        SetOverrideError::NotFound(what) => ApiError::NotFound(format!("no override on {what}")),
        SetOverrideError::Storage(error) => {
            tracing::warn!(%error, "Cannot record a breaker override; nothing changed.");
            ApiError::Overloaded {
                message: "the database did not accept the change; nothing changed, try again"
                    .into(),
                retry_after_s: 1,
            }
        }
    }
}

/// Query of `DELETE /v1/breakers/{dependency}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverrideTarget {
    /// The instance whose override to remove; absent for the dependency's.
    instance: Option<String>,
}

/// Removes a breaker's override.
#[utoipa::path(delete, path = "/v1/breakers/{dependency}", tag = "breakers",
    params(("dependency" = String, Path), OverrideTarget),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No override on that breaker", body = ErrorBody),
        (status = 503, description = "The database did not take it; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = ["admin"])))]
pub async fn delete_override(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(dep): Path<String>,
    q: Result<Query<OverrideTarget>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    let now = state.clock.now_ms();
    state
        .actions
        .clear_override(&state.storage, &dep, q.instance.as_deref(), now)
        .await
        .map_err(override_error)?;
    tracing::info!(dependency = %dep, by = who.name(), "Breaker override removed.");
    Ok(StatusCode::NO_CONTENT)
}

/// Server-Sent Events: a `snapshot` event (`{"breakers": [...]}`) on connect, a `change`
/// event (`{"before", "after", "verdict_at_ms"}`) per breaker change, `heartbeat` comments in
/// between. A subscriber too slow to keep up gets a fresh `snapshot` instead of the changes it
/// missed.
#[utoipa::path(get, path = "/v1/breakers/stream", tag = "breakers",
    responses((status = 200, description = "An event stream that lasts until the daemon stops",
        content_type = "text/event-stream", body = String)),
    security(("bearer" = ["read"])))]
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.actions.changes.subscribe();
    let state_shutdown = state.shutdown.clone();
    let snapshot = |s: &AppState| {
        Event::default()
            .event("snapshot")
            .json_data(BreakerList {
                breakers: outs(s.actions.breakers()),
            })
            .unwrap_or_default()
    };
    let first = snapshot(&state);
    let changes = BroadcastStream::new(rx).map(move |msg| {
        Ok(match msg {
            Ok(change) => Event::default()
                .event("change")
                .json_data(&*change)
                .unwrap_or_default(),
            Err(BroadcastStreamRecvError::Lagged(_)) => snapshot(&state),
        })
    });
    // End the stream when the daemon shuts down, or graceful shutdown would wait on it forever.
    let stopping = WatchStream::new(state_shutdown)
        .filter(|stop| *stop)
        .map(|_| None);
    let stream = tokio_stream::once(Ok(first))
        .chain(changes)
        .map(Some)
        .merge(stopping)
        .take_while(Option::is_some)
        .map(|e| e.expect("taken while Some"));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
}
