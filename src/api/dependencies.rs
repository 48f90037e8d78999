//! `GET /v1/dependencies[/{name}[/series]]`: window statistics for dashboards and tools.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actions::query;
use super::openapi::{DependencyHealthDoc, ErrorBody, WindowStatsDoc};
use super::{ApiError, AppState};
use crate::detect::DependencyHealth;
use crate::domain::DependencyName;
use crate::window::{SeriesKey, SeriesKind, Slot, Snapshot, Window, WindowStats, decode_stored};

#[derive(Serialize, ToSchema)]
pub struct DependencySummary {
    pub name: String,
    #[schema(value_type = DependencyHealthDoc)]
    pub health: DependencyHealth,
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
}

#[derive(Serialize, ToSchema)]
pub struct DependencyList {
    /// The window of `stats`: `1m`.
    pub window: &'static str,
    pub dependencies: Vec<DependencySummary>,
}

/// Every dependency with events in the last minute, its health and statistics.
#[utoipa::path(get, path = "/v1/dependencies", tag = "dependencies",
    responses((status = 200, description = "Dependencies", body = DependencyList)),
    security(("bearer" = ["read"])))]
pub async fn list(State(state): State<AppState>) -> Json<DependencyList> {
    let now = state.clock.now_ms();
    let view = state.engine_view();
    let health = &view.health;
    let dependencies = state
        .store
        .dependencies(Window::M1, now)
        .into_iter()
        .map(|(name, snap)| DependencySummary {
            health: health.get(&name).cloned().unwrap_or_default(),
            name,
            stats: snap.stats(),
        })
        .collect();
    Json(DependencyList {
        window: Window::M1.as_str(),
        dependencies,
    })
}

#[derive(Serialize, ToSchema)]
pub struct LabelStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
}

#[derive(Serialize, ToSchema)]
pub struct DependencyDetail {
    pub name: String,
    #[schema(value_type = DependencyHealthDoc)]
    pub health: DependencyHealth,
    pub window: &'static str,
    #[schema(value_type = WindowStatsDoc)]
    pub stats: WindowStats,
    pub instances: Vec<LabelStats>,
    pub zones: Vec<LabelStats>,
    /// Callers (the events' `source`).
    pub sources: Vec<LabelStats>,
}

fn parse_name(name: &str) -> Result<DependencyName<'_>, ApiError> {
    DependencyName::parse(name).map_err(|e| ApiError::bad(format!("name: {e}")))
}

fn unknown(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "unknown dependency {name:?}: no events received for it"
    ))
}

fn window_param(raw: Option<&str>, default: Window) -> Result<Window, ApiError> {
    match raw {
        None => Ok(default),
        Some(w) => w.parse().map_err(|e| ApiError::bad(format!("window: {e}"))),
    }
}

/// Query of `GET /v1/dependencies/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetailQuery {
    /// One of the rolling windows: `10s`, `1m`, `5m`, `15m` (default `1m`).
    window: Option<String>,
}

/// A dependency's statistics over a rolling window, in total, per instance, per zone and per
/// source.
#[utoipa::path(get, path = "/v1/dependencies/{name}", tag = "dependencies",
    params(("name" = String, Path), DetailQuery),
    responses(
        (status = 200, description = "The dependency", body = DependencyDetail),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No events received for that dependency", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub async fn detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Json<DependencyDetail>, ApiError> {
    let q = query(q)?;
    parse_name(&name)?;
    let window = window_param(q.window.as_deref(), Window::M1)?;
    let now = state.clock.now_ms();
    let view = state
        .store
        .dependency(&name, window, now)
        .ok_or_else(|| unknown(&name))?;
    let label = |(k, s): (String, Snapshot), kind: SeriesKind| LabelStats {
        instance: (kind == SeriesKind::Instance).then(|| k.clone()),
        zone: (kind == SeriesKind::Zone).then(|| k.clone()),
        source: (kind == SeriesKind::Source).then_some(k),
        stats: s.stats(),
    };
    let labels = |v: Vec<(String, Snapshot)>, kind: SeriesKind| -> Vec<LabelStats> {
        v.into_iter().map(|e| label(e, kind)).collect()
    };
    let health = state
        .engine
        .lock()
        .health_of(&name)
        .cloned()
        .unwrap_or_default();
    Ok(Json(DependencyDetail {
        name,
        health,
        window: window.as_str(),
        stats: view.total.stats(),
        instances: labels(view.instances, SeriesKind::Instance),
        zones: labels(view.zones, SeriesKind::Zone),
        sources: labels(view.sources, SeriesKind::Source),
    }))
}

#[derive(Serialize)]
pub struct SeriesPoint {
    /// End of the point's window (exclusive), RFC 3339.
    pub t: String,
    pub t_ms: i64,
    #[serde(flatten)]
    pub stats: WindowStats,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesResponse {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub window: String,
    pub step: String,
    pub resolution: String,
    #[schema(value_type = Vec<SeriesPointDoc>)]
    pub points: Vec<SeriesPoint>,
    /// With `heatmap=true`: how many successful calls of each point fell in each latency
    /// band (errors and timeouts are counted, not timed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<Heatmap>,
}

/// Latency bands of the successful calls over time. The bands are log-spaced between the
/// fastest and the slowest successful call of the whole range, so that they fit the
/// dependency at any scale.
#[derive(Serialize, ToSchema)]
pub struct Heatmap {
    /// `HEATMAP_BANDS + 1` edges in milliseconds, ascending: band `i` holds calls from
    /// `bounds_ms[i]` (inclusive) to `bounds_ms[i + 1]` (exclusive; the last band inclusive).
    pub bounds_ms: Vec<f64>,
    /// One row per point, one count per band.
    pub counts: Vec<Vec<u64>>,
}

/// Latency bands of a heatmap: enough to see a second mode, few enough for 1,440 points.
pub const HEATMAP_BANDS: usize = 24;

/// The heatmap of `snaps` (one per point): each point's recorded buckets binned into bands.
/// Work is bounded by points x histogram buckets.
fn heatmap(snaps: &[(i64, Snapshot)]) -> Heatmap {
    let nonempty = || snaps.iter().map(|(_, s)| s).filter(|s| !s.hist.is_empty());
    let lo = nonempty().map(|s| s.hist.min()).min().unwrap_or(1).max(1);
    let hi = nonempty()
        .map(|s| s.hist.max())
        .max()
        .unwrap_or(1)
        .max(lo + 1);
    let (llo, lhi) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
    let width = (lhi - llo) / HEATMAP_BANDS as f64;
    let band = |us: u64| -> usize {
        let x = ((us.max(1) as f64).ln() - llo) / width;
        (x.max(0.0) as usize).min(HEATMAP_BANDS - 1)
    };
    let counts = snaps
        .iter()
        .map(|(_, s)| {
            let mut row = vec![0u64; HEATMAP_BANDS];
            if !s.hist.is_empty() {
                for v in s.hist.iter_recorded() {
                    let us = s.hist.median_equivalent(v.value_iterated_to());
                    row[band(us)] += u64::from(v.count_at_value());
                }
            }
            row
        })
        .collect();
    Heatmap {
        bounds_ms: (0..=HEATMAP_BANDS)
            .map(|i| (llo + width * i as f64).exp() / 1000.0)
            .collect(),
        counts,
    }
}

const TEN_S: i64 = 10_000;
const MINUTE: i64 = 60_000;
/// Most points one request may ask for.
pub const MAX_POINTS: i64 = 1_440;
/// Most bucket merges one request may cost (points x buckets in each point's window): a
/// week of minutes at `window = step`, or 70 weeks-worth of minutes in all. A merge adds one
/// histogram into another, a few microseconds, so a request costs well under a second of
/// CPU, off the async workers.
pub const MAX_BUCKET_MERGES: i64 = 100_800;
/// Series reads computed at once; more are answered `503` with `Retry-After`.
pub const MAX_CONCURRENT_SERIES: usize = 4;

fn duration_param(raw: Option<&String>, key: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let d = humantime::parse_duration(raw).map_err(|e| {
        ApiError::bad(format!(
            "{key}: {raw:?} is not a duration ({e}); e.g. 10s, 1m, 5m"
        ))
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms < TEN_S || ms % TEN_S != 0 {
        return Err(ApiError::bad(format!(
            "{key}: must be a positive multiple of 10s, got {raw:?}"
        )));
    }
    Ok(Some(ms))
}

/// Accepted query times: 1970 to 2200, which keeps every computation far from overflow.
const MAX_QUERY_TIME_MS: i64 = 7_258_118_400_000;

fn time_param(raw: Option<&String>, key: &str) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| {
        let t = crate::time::parse_query_time(raw).ok_or_else(|| {
            ApiError::bad(format!(
                "{key}: {raw:?} is neither epoch milliseconds nor RFC 3339"
            ))
        })?;
        if !(0..=MAX_QUERY_TIME_MS).contains(&t) {
            return Err(ApiError::bad(format!(
                "{key}: {raw:?} is outside 1970 to 2200"
            )));
        }
        Ok(t)
    })
    .transpose()
}

/// A point of a series: its time and the statistics of the window ending there.
#[derive(ToSchema, Serialize)]
#[schema(as = SeriesPoint)]
#[allow(dead_code)] // Documentation of `SeriesPoint`: its window's statistics, flattened in.
pub struct SeriesPointDoc {
    /// End of the point's window (exclusive), RFC 3339.
    t: String,
    t_ms: i64,
    #[serde(flatten)]
    stats: WindowStatsDoc,
}

/// Query of `GET /v1/dependencies/{name}/series`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// The series of this instance (not with `zone` or `source`).
    instance: Option<String>,
    /// The series of this zone (not with `instance` or `source`).
    zone: Option<String>,
    /// The series of this caller (not with `instance` or `zone`).
    source: Option<String>,
    /// Start (exclusive): epoch ms or RFC 3339; default `to` minus an hour.
    from: Option<String>,
    /// End: epoch ms or RFC 3339; default now.
    to: Option<String>,
    /// Between points: a multiple of 10s, e.g. `1m`.
    step: Option<String>,
    /// Window of each point: a multiple of 10s; default `step`.
    window: Option<String>,
    /// `true` adds the latency heatmap.
    #[param(value_type = Option<bool>)]
    heatmap: Option<String>,
}

/// A time series of window statistics: point `t` covers `[t - window, t)`. Buckets come from
/// memory (10-second buckets for the last minute, minutes for the last 15) and from persisted
/// minute roll-ups for anything older.
#[utoipa::path(get, path = "/v1/dependencies/{name}/series", tag = "dependencies",
    params(("name" = String, Path), SeriesQuery),
    responses(
        (status = 200, description = "The series", body = SeriesResponse),
        (status = 400, description = "A parameter is invalid or asks for too much work", body = ErrorBody),
        (status = 404, description = "No events received for that dependency", body = ErrorBody),
        (status = 503, description = "Too many series reads at once", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = ["read"])))]
pub async fn series(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let q = query(q)?;
    parse_name(&name)?;
    let _permit = state
        .series_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            message: format!(
                "{MAX_CONCURRENT_SERIES} series reads are already running; retry after the indicated delay"
            ),
            retry_after_s: 1,
        })?;
    let now = state.clock.now_ms();
    let (kind, label) = match (&q.instance, &q.zone, &q.source) {
        (Some(i), None, None) => (SeriesKind::Instance, i.clone()),
        (None, Some(z), None) => (SeriesKind::Zone, z.clone()),
        (None, None, Some(c)) => (SeriesKind::Source, c.clone()),
        (None, None, None) => (SeriesKind::Dependency, String::new()),
        (Some(_), _, _) => {
            return Err(ApiError::bad(
                "instance: give one of instance, zone and source, not several",
            ));
        }
        (None, Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "zone: give one of instance, zone and source, not several",
            ));
        }
    };
    let to = time_param(q.to.as_ref(), "to")?.unwrap_or(now);
    let from = time_param(q.from.as_ref(), "from")?.unwrap_or((to - 3_600_000).max(0));
    if from >= to {
        return Err(ApiError::bad("from: must be before to"));
    }
    let step = duration_param(q.step.as_ref(), "step")?.unwrap_or(if to - from <= MINUTE {
        TEN_S
    } else {
        MINUTE
    });
    let window = duration_param(q.window.as_ref(), "window")?.unwrap_or(step);
    let resolution = if step % MINUTE == 0 && window % MINUTE == 0 {
        MINUTE
    } else {
        TEN_S
    };
    let first = from - from.rem_euclid(step) + step;
    let last = to - to.rem_euclid(step) + if to.rem_euclid(step) == 0 { 0 } else { step };
    let count = (last - first) / step + 1;
    if count > MAX_POINTS {
        return Err(ApiError::bad(format!(
            "step: {count} points requested; at most {MAX_POINTS} (use a larger step or a shorter range)"
        )));
    }
    let retention = i64::try_from(state.settings.storage.retention.as_millis()).unwrap_or(i64::MAX);
    if window > retention {
        return Err(ApiError::bad(format!(
            "window: {} is longer than the data kept (storage.retention = {})",
            humantime::format_duration(Duration::from_millis(window as u64)),
            humantime::format_duration(state.settings.storage.retention),
        )));
    }
    let merges = count.saturating_mul(window / resolution);
    if merges > MAX_BUCKET_MERGES {
        return Err(ApiError::bad(format!(
            "window: {count} points of {} buckets each is {merges} bucket merges; at most \
             {MAX_BUCKET_MERGES} per request (use a shorter window, a larger step or a shorter range)",
            window / resolution
        )));
    }
    let lo = first - window;
    // 10-second buckets exist in memory for the last minute only.
    if resolution == TEN_S && lo < now - now.rem_euclid(TEN_S) - 5 * TEN_S {
        return Err(ApiError::bad(
            "step: 10-second resolution covers the last minute only; for older data use a step and window that are multiples of 1m",
        ));
    }
    let key = SeriesKey {
        dependency: name.clone(),
        kind,
        label: label.clone(),
    };
    let tier = if resolution == MINUTE { 1 } else { 0 };
    // Minutes still in the memory ring are read from there; older ones from storage.
    let memory_from = if resolution == MINUTE {
        now - now.rem_euclid(MINUTE) - 14 * MINUTE
    } else {
        lo
    };
    let want_heatmap = match q.heatmap.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "heatmap: {other:?} is not a boolean; use true or false"
            )));
        }
    };
    let rows = if lo < memory_from {
        state
            .storage
            .series_rollups(&key, lo, memory_from.min(last))
            .await?
    } else {
        Vec::new()
    };
    let in_storage = !rows.is_empty();
    // Decoding roll-ups and merging buckets is CPU work (bounded above): off the async workers.
    let store = state.store.clone();
    let computed = tokio::task::spawn_blocking(move || {
        let mut buckets: BTreeMap<i64, Snapshot> = BTreeMap::new();
        let in_memory = store.buckets(&key, tier, lo.max(memory_from), last, now);
        if let Some(b) = &in_memory {
            buckets.extend(b.iter().map(|(k, v)| (*k, v.clone())));
        }
        for row in rows {
            let hist = decode_stored(&row.histogram).map_err(|e| anyhow::anyhow!(e))?;
            let slot = Slot::from_stored(row.minute_ms, hist, row.counts);
            buckets
                .entry(row.minute_ms)
                .or_insert_with(|| Snapshot::empty(row.minute_ms, row.minute_ms + MINUTE))
                .add_slot(&slot);
        }
        let known = in_memory.is_some() || in_storage || store.contains(&key.dependency);
        let snaps: Vec<(i64, Snapshot)> = (0..count)
            .map(|i| {
                let t = first + i * step;
                let mut snap = Snapshot::empty(t - window, t.min(now).max(t - window + 1));
                for (_, b) in buckets.range(t - window..t) {
                    snap.merge_data(b);
                }
                (t, snap)
            })
            .collect();
        let heatmap = want_heatmap.then(|| heatmap(&snaps));
        let points: Vec<SeriesPoint> = snaps
            .into_iter()
            .map(|(t, snap)| SeriesPoint {
                t: crate::time::to_rfc3339(t),
                t_ms: t,
                stats: snap.stats(),
            })
            .collect();
        Ok::<_, ApiError>((known, points, heatmap))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    let (known, points, heatmap) = computed;
    if !known && !state.storage.has_dependency(&name).await? {
        return Err(unknown(&name));
    }
    let fmt = |ms: i64| humantime::format_duration(Duration::from_millis(ms as u64)).to_string();
    Ok(Json(SeriesResponse {
        name,
        instance: (kind == SeriesKind::Instance).then(|| label.clone()),
        zone: (kind == SeriesKind::Zone).then(|| label.clone()),
        source: (kind == SeriesKind::Source).then_some(label),
        window: fmt(window),
        step: fmt(step),
        resolution: fmt(resolution),
        points,
        heatmap,
    }))
}
