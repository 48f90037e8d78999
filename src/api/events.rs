//! `POST /v1/events`: the ingest endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::{ErrorBody, EventErrorDoc};
use super::{ApiError, AppState};
use crate::ingest::{self, BodyError, EventError, Format, Validation};

/// Bodies above this size are parsed on the blocking pool so that one large upload does not
/// hold an async worker for milliseconds.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    /// The first refused events, by index (at most `ingest.max_errors_reported`).
    #[schema(value_type = Vec<EventErrorDoc>)]
    pub errors: Vec<EventError>,
    /// Present and true when more events were rejected than `errors` lists.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub errors_truncated: bool,
    /// Refused events by reason (see [`crate::ingest::rejection_reason`]), all of them, not
    /// only those `errors` lists: for the metrics.
    #[serde(skip)]
    pub rejected_by: Vec<(&'static str, u64)>,
}

/// One call to a dependency.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
#[allow(dead_code)] // Documentation of what the ingest parsers accept.
pub struct EventDoc {
    /// 1 to 128 characters of `[A-Za-z0-9._:/-]`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/-]+$")]
    dependency: String,
    /// Finite, at least 0; fractions welcome.
    #[schema(minimum = 0)]
    duration_ms: f64,
    /// `ok` (default), `error` or `timeout`.
    #[schema(value_type = Option<String>, pattern = "^(ok|error|timeout)$")]
    outcome: Option<String>,
    /// Epoch milliseconds or RFC 3339; default: the time of receipt.
    #[schema(value_type = Option<super::openapi::TimeInput>)]
    ts: Option<String>,
    /// 1 to 128 characters, no control characters; `""` means absent.
    #[schema(max_length = 128)]
    instance: Option<String>,
    #[schema(max_length = 128)]
    zone: Option<String>,
    #[schema(max_length = 128)]
    source: Option<String>,
}

/// One event, or an array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Events)]
#[allow(dead_code)]
pub enum EventsDoc {
    One(EventDoc),
    Many(Vec<EventDoc>),
}

/// Records calls to dependencies: one JSON event, a JSON array, or NDJSON (one event per
/// line), optionally gzipped (`Content-Encoding: gzip`). Valid events are kept even when
/// others in the batch are refused.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content(
        (EventsDoc = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Accepted and refused events", body = IngestResponse),
        (status = 400, description = "The body is not events (syntax, shape, encoding)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body (decoded) is larger than `ingest.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not JSON nor NDJSON", body = ErrorBody),
        (status = 503, description = "Ingest is at capacity", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = ["ingest"])))]
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let started = std::time::Instant::now();
    let metrics = state.metrics.clone();
    let answer = ingest(state, headers, body).await;
    match &answer {
        Ok(Json(r)) => metrics.ingested(r.accepted, &r.rejected_by),
        Err(ApiError::Overloaded { .. }) => metrics.ingest_overloaded(),
        Err(_) => {}
    }
    metrics.ingest_request(started.elapsed());
    answer
}

/// `POST /v1/events` takes JSON and NDJSON (see [`Format::of_media_type`]). A body without a
/// content type is read as JSON, as before; anything else, `text/plain` or a form in
/// particular (what another web page can make a browser send without asking), is refused.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if value
        .to_str()
        .ok()
        .and_then(Format::of_media_type)
        .is_some()
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type: {:?} is not accepted; send application/json or \
             application/x-ndjson (gzip with Content-Encoding: gzip)",
            String::from_utf8_lossy(value.as_bytes())
        )))
    }
}

async fn ingest(
    state: AppState,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    check_content_type(&headers)?;
    let metrics = state.metrics.clone();
    let limit = state.settings.ingest.max_body_bytes;
    // The body is read before a permit is taken: a client trickling its body holds its own
    // connection for at most `body_timeout`, never a permit other clients need.
    let timeout = state.settings.ingest.body_timeout;
    let bytes = {
        // Bodies being received are bounded too: their memory is at most
        // `max_receiving` x `max_body_bytes`, whatever the number of connections.
        let max = state.settings.ingest.max_receiving;
        let Some(_receiving) = Receiving::try_new(&state.ingest_receiving, max) else {
            metrics.ingest_overloaded();
            return Err(ApiError::Overloaded {
                message: format!(
                    "{max} request bodies are being received (ingest.max_receiving); retry \
                     after the indicated delay"
                ),
                retry_after_s: 1,
            });
        };
        tokio::time::timeout(timeout, read_limited(body, limit, &metrics))
            .await
            .map_err(|_| {
                metrics.body_rejected("timeout");
                ApiError::RequestTimeout(format!(
                    "the request body was not received within {} (ingest.body_timeout)",
                    humantime::format_duration(timeout)
                ))
            })??
    };
    // Bounded concurrency instead of a queue: past the limit, callers are told to come back.
    let _permit = state
        .ingest_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            message: "ingest is at capacity; retry after the indicated delay".into(),
            retry_after_s: 1,
        })?;
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let encoding = header(header::CONTENT_ENCODING);
    let format = Format::from_content_type(header(header::CONTENT_TYPE).as_deref());
    let now = state.clock.now_ms();
    let max_errors = state.settings.ingest.max_errors_reported;
    let store = state.store.clone();
    let inline = bytes.len() <= INLINE_PARSE_BYTES;
    let work = move || {
        ingest_body(
            &store,
            &bytes,
            encoding.as_deref(),
            format,
            limit,
            now,
            max_errors,
        )
    };
    let resp = if inline {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
    };
    resp.map(Json).map_err(|e| {
        metrics.body_rejected(ingest::body_rejection_reason(&e));
        match e {
            BodyError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    })
}

/// Counts a request among those receiving their body while it lives.
struct Receiving<'a>(&'a AtomicUsize);

impl<'a> Receiving<'a> {
    /// Counts one more body being received, unless `max` already are.
    fn try_new(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(count))
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn read_limited(
    body: Body,
    limit: usize,
    metrics: &crate::metrics::Metrics,
) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let e = BodyError::TooLarge { limit };
            metrics.body_rejected(ingest::body_rejection_reason(&e));
            Err(ApiError::TooLarge(e.to_string()))
        }
        Err(e) => Err(ApiError::bad(format!("cannot read body: {e}"))),
    }
}

/// Decodes, parses, validates and records one body. Pure CPU work, no awaits.
pub fn ingest_body(
    store: &crate::window::WindowStore,
    bytes: &[u8],
    encoding: Option<&str>,
    format: Format,
    limit: usize,
    now_ms: i64,
    max_errors: usize,
) -> Result<IngestResponse, BodyError> {
    let decoded = ingest::decode_body(bytes, encoding, limit)?;
    // Every refusal is counted; messages are built for the first `max_errors` only.
    let parsed = ingest::parse_capped(&decoded, format, &Validation::live(now_ms), max_errors)?;
    let refused = store.record_batch(&parsed.events, now_ms);
    let accepted = parsed.events.len() - refused.len();
    let rejected = parsed.rejected + refused.len();
    let mut rejected_by = parsed.rejected_by;
    for (_, e) in &refused {
        let reason = ingest::record_rejection_reason(e);
        match rejected_by.iter_mut().find(|r| r.0 == reason) {
            Some(r) => r.1 += 1,
            None => rejected_by.push((reason, 1)),
        }
    }
    // Parse errors are found in index order, so the ones kept are the first; of the store's
    // refusals only the first `max_errors` by index can be among the first overall.
    let mut refused: Vec<(usize, &crate::window::RecordError)> = refused
        .iter()
        .map(|(i, e)| (parsed.indexes[*i], e))
        .collect();
    refused.sort_unstable_by_key(|r| r.0);
    refused.truncate(max_errors);
    let mut errors = parsed.errors;
    errors.extend(refused.into_iter().map(|(index, e)| EventError {
        index,
        error: e.to_string(),
    }));
    errors.sort_by_key(|e| e.index);
    let errors_truncated = rejected > max_errors;
    errors.truncate(max_errors);
    Ok(IngestResponse {
        accepted,
        rejected,
        errors,
        errors_truncated,
        rejected_by,
    })
}
