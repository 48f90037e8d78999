//! Notifications, silences and breakers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::auth::Principal;
use super::{ApiError, AppState};
use crate::actions::breaker::ForcedState;
use crate::actions::hub::SetOverrideError;
use crate::storage::Silence;

/// Heartbeat interval of the breaker stream (a comment line keeps proxies from timing out).
const HEARTBEAT: Duration = Duration::from_secs(15);

fn limit_param(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("limit") {
        None => Ok(100),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad(format!("limit: {raw:?} is not a number from 1 to 1000"))),
    }
}

/// `GET /v1/notifications?alert=&status=&notifier=&limit=`.
pub async fn notifications(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let alert = q
        .get("alert")
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| ApiError::bad(format!("alert: {a:?} is not an alert id")))
        })
        .transpose()?;
    let status = q.get("status").map(String::as_str);
    if let Some(s) = status
        && !["pending", "delivered", "failed", "dead", "suppressed"].contains(&s)
    {
        return Err(ApiError::bad(format!(
            "status: {s:?} is not one of pending, delivered, failed, dead, suppressed"
        )));
    }
    let rows = state
        .storage
        .list_notifications(
            alert,
            status,
            q.get("notifier").map(String::as_str),
            limit_param(&q)?,
        )
        .await?;
    Ok(Json(json!({ "notifications": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    dependency: Option<String>,
    instance: Option<String>,
    zone: Option<String>,
    detector: Option<String>,
    /// RFC 3339 or epoch ms; default now.
    starts_at: Option<Value>,
    /// RFC 3339 or epoch ms; or give `duration`.
    ends_at: Option<Value>,
    /// e.g. "2h"; alternative to `ends_at`.
    duration: Option<String>,
    comment: String,
    /// Ignored: a silence is created by the caller's token (its name), or `anonymous`.
    #[serde(default, rename = "created_by")]
    _created_by: Option<Value>,
}

/// Active and scheduled silences at most; past it, creating one is refused.
pub const MAX_SILENCES: usize = 1_000;
/// Longest silence (from `starts_at` to `ends_at`).
pub const MAX_SILENCE_MS: i64 = 30 * DAY_MS;
/// Longest breaker override (from now to its expiry).
pub const MAX_OVERRIDE_MS: i64 = 7 * DAY_MS;
/// Longest comment of a silence, reason of an override, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
/// Longest matcher of a silence, in characters (names are at most 128).
const MAX_MATCHER_CHARS: usize = 256;
const DAY_MS: i64 = 86_400_000;
/// Accepted times: 1970 to 2200, which keeps every sum of them far from overflow.
const MAX_TIME_MS: i64 = 7_258_118_400_000;

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
fn duration_value(raw: &str, field: &str, max_ms: i64) -> Result<i64, ApiError> {
    let d = humantime::parse_duration(raw)
        .map_err(|e| ApiError::bad(format!("{field}: {raw:?} is not a duration ({e})")))?;
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= max_ms)
        .ok_or_else(|| ApiError::bad(format!("{field}: at most {}, got {raw:?}", days(max_ms))))
}

fn days(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
}

/// Refuses a text longer than [`MAX_TEXT_CHARS`] (or `max`), naming the field.
fn check_len(text: &str, field: &str, max: usize) -> Result<(), ApiError> {
    let n = text.chars().count();
    if n > max {
        return Err(ApiError::bad(format!(
            "{field}: at most {max} characters, got {n}"
        )));
    }
    // Hidden characters would make a silence or a reason read as something it is not.
    crate::domain::format_char(text).map_err(|e| ApiError::bad(format!("{field}: {e}")))
}

/// `POST /v1/silences`.
pub async fn create_silence(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let now = state.clock.now_ms();
    let starts = b
        .starts_at
        .as_ref()
        .map(|v| time_value(v, "starts_at"))
        .transpose()?
        .unwrap_or(now);
    let ends = match (&b.ends_at, &b.duration) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("ends_at: give ends_at or duration, not both"));
        }
        (Some(v), None) => time_value(v, "ends_at")?,
        (None, Some(d)) => starts + duration_value(d, "duration", MAX_SILENCE_MS)?,
        (None, None) => return Err(ApiError::bad("ends_at: required (or give duration)")),
    };
    if ends <= starts || ends <= now {
        return Err(ApiError::bad(
            "ends_at: must be after starts_at and in the future",
        ));
    }
    if ends - starts > MAX_SILENCE_MS {
        return Err(ApiError::bad(format!(
            "ends_at: a silence lasts at most {} from starts_at",
            days(MAX_SILENCE_MS)
        )));
    }
    if b.comment.trim().is_empty() {
        return Err(ApiError::bad("comment: must not be empty"));
    }
    check_len(&b.comment, "comment", MAX_TEXT_CHARS)?;
    for (field, m) in [
        ("dependency", &b.dependency),
        ("instance", &b.instance),
        ("zone", &b.zone),
        ("detector", &b.detector),
    ] {
        if let Some(m) = m {
            check_len(m, field, MAX_MATCHER_CHARS)?;
        }
    }
    if [&b.dependency, &b.instance, &b.zone, &b.detector]
        .iter()
        .all(|m| m.is_none())
    {
        return Err(ApiError::bad(
            "dependency: at least one matcher (dependency, instance, zone, detector) is required",
        ));
    }
    if let Some(d) = &b.detector
        && crate::detect::DetectorKind::parse(d).is_none()
    {
        return Err(ApiError::bad(format!("detector: {d:?} is not a detector")));
    }
    // Checked before the insert, so two requests at once may pass it together: the bound is
    // on memory and on what each evaluation matches against, not an exact quota.
    if state.storage.silences(now).await?.len() >= MAX_SILENCES {
        return Err(ApiError::bad(format!(
            "silences: at most {MAX_SILENCES} active or scheduled silences; expire some first"
        )));
    }
    let mut s = Silence {
        id: 0,
        dependency: b.dependency,
        instance: b.instance,
        zone: b.zone,
        detector: b.detector,
        starts_ms: starts,
        ends_ms: ends,
        comment: b.comment,
        created_by: who.name().to_string(),
        created_ms: now,
    };
    s.id = state.storage.create_silence(&s).await?;
    tracing::info!(silence = s.id, created_by = %s.created_by, "Silence created.");
    Ok((StatusCode::CREATED, Json(silence_json(&s))))
}

/// `GET /v1/silences`: active and future silences.
pub async fn silences(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now_ms();
    let list: Vec<Value> = state
        .storage
        .silences(now)
        .await?
        .iter()
        .map(silence_json)
        .collect();
    Ok(Json(json!({ "silences": list })))
}

/// A silence with its times also in RFC 3339 (as they are given).
fn silence_json(s: &Silence) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    v["starts_at"] = json!(crate::time::to_rfc3339(s.starts_ms));
    v["ends_at"] = json!(crate::time::to_rfc3339(s.ends_ms));
    v
}

/// `DELETE /v1/silences/{id}`.
pub async fn delete_silence(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("id: {id:?} is not a silence id")))?;
    let now = state.clock.now_ms();
    if state.storage.delete_silence(id, now).await? {
        // What the silence held back is due now, not at its original end.
        state.storage.release_silenced(id, now).await?;
        state.actions.wake_all();
        tracing::info!(silence = id, by = who.name(), "Silence expired.");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no active silence with id {id}"
        )))
    }
}

/// Every breaker on the board, as the API shows them.
fn board_json(state: &AppState) -> Value {
    let views: Vec<Value> = state
        .actions
        .board
        .lock()
        .snapshot()
        .iter()
        .map(|v| v.to_json())
        .collect();
    json!({ "breakers": views })
}

/// `GET /v1/breakers`.
pub async fn breakers(State(state): State<AppState>) -> Json<Value> {
    Json(board_json(&state))
}

/// `GET /v1/breakers/{dependency}`: the dependency's breaker, then its instances'.
pub async fn breaker(
    State(state): State<AppState>,
    Path(dep): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = state.actions.board.lock().get(&dep);
    if views.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no breaker for dependency {dep:?}"
        )));
    }
    Ok(Json(
        json!({ "dependency": dep, "breakers": views.iter().map(|v| v.to_json()).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/breakers/{dependency}/history?limit=`: the dependency's recent breaker changes
/// (its own and its instances'), newest first; kept in memory since the daemon started.
pub async fn breaker_history(
    State(state): State<AppState>,
    Path(dep): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let max = crate::actions::history::MAX_CHANGES_PER_DEPENDENCY;
    let limit = match q.get("limit") {
        None => max,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!("limit: {raw:?} is not a number from 1 to {max}"))
            })?,
    };
    let changes = {
        let history = state.actions.history.lock();
        history.knows(&dep).then(|| history.recent(&dep, limit))
    };
    let changes = match changes {
        Some(c) => c,
        // A breaker that has not changed since the daemon started has an empty history.
        None if !state.actions.board.lock().get(&dep).is_empty() => Vec::new(),
        None => {
            return Err(ApiError::NotFound(format!(
                "no breaker for dependency {dep:?}"
            )));
        }
    };
    Ok(Json(json!({
        "dependency": dep,
        "changes": changes.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    state: ForcedState,
    reason: String,
    instance: Option<String>,
    /// RFC 3339 or epoch ms; or give `ttl`.
    expires_at: Option<Value>,
    /// e.g. "30m".
    ttl: Option<String>,
}

/// `PUT /v1/breakers/{dependency}`: force open or closed until an expiry.
pub async fn put_override(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(dep): Path<String>,
    body: Result<Json<OverrideBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    crate::domain::DependencyName::parse(dep.as_str())
        .map_err(|e| ApiError::bad(format!("dependency: {e}")))?;
    let now = state.clock.now_ms();
    let expires = match (&b.expires_at, &b.ttl) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "expires_at: give expires_at or ttl, not both",
            ));
        }
        (Some(v), None) => {
            let t = time_value(v, "expires_at")?;
            if t - now > MAX_OVERRIDE_MS {
                return Err(ApiError::bad(format!(
                    "expires_at: an override lasts at most {} from now",
                    days(MAX_OVERRIDE_MS)
                )));
            }
            t
        }
        (None, Some(t)) => now + duration_value(t, "ttl", MAX_OVERRIDE_MS)?,
        (None, None) => return Err(ApiError::bad("expires_at: required (or give ttl)")),
    };
    check_len(&b.reason, "reason", MAX_TEXT_CHARS)?;
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
    Ok(Json(
        json!({ "override_id": id, "created_by": who.name(), "breakers": views.iter().map(|v| v.to_json()).collect::<Vec<_>>() }),
    ))
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

/// `DELETE /v1/breakers/{dependency}?instance=`: removes the override.
pub async fn delete_override(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(dep): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let now = state.clock.now_ms();
    let instance = q.get("instance").map(String::as_str);
    state
        .actions
        .clear_override(&state.storage, &dep, instance, now)
        .await
        .map_err(override_error)?;
    tracing::info!(dependency = %dep, by = who.name(), "Breaker override removed.");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/breakers/stream`: Server-Sent Events. A `snapshot` event on connect, a `change`
/// event per breaker change, heartbeats in between. A subscriber too slow to keep up gets a
/// fresh `snapshot` instead of the changes it missed.
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.actions.changes.subscribe();
    let state_shutdown = state.shutdown.clone();
    let snapshot = |s: &AppState| {
        Event::default()
            .event("snapshot")
            .json_data(board_json(s))
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
