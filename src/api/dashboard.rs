//! The built-in dashboard: HTML pages, their scripts and styles (embedded in the binary), and
//! the overview endpoints that feed them one request per page refresh.
//!
//! Every page is the same small HTML shell; `app.js` reads the path and draws the page from the
//! JSON API, polling it every second. All routes are in [`router`], so that one layer (an
//! authentication check, say) covers the whole dashboard.
//!
//! Assets are served with an `ETag` (a hash of their bytes) and, when the shell asks for them
//! with that hash as `?v=`, as immutable for a year: a new binary changes the hash, so a
//! browser never runs stale code. They are gzipped once, on first use, and sent compressed to
//! clients that accept it.

pub(super) mod overview;

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::auth::CsrfToken;
use super::{ApiError, AppState};
use crate::detect::AlertStatus;
use crate::storage::AlertFilter;

/// The dashboard's routes: pages, assets and the overview endpoints.
pub(super) fn routes() -> super::Routes {
    super::Routes::new()
        .route("/", get(page))
        .route("/dependencies/{name}", get(page))
        .route("/alerts", get(page))
        .route("/alerts/{id}", get(page))
        .route("/silences", get(page))
        .route("/assets/{file}", get(asset))
        .route("/v1/overview", get(overview_all))
        .route("/v1/overview/{name}", get(overview_one))
}

/// An embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/assets/app.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/assets/charts.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("dashboard/assets/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("dashboard/assets/favicon.svg"),
    },
];

const SHELL: &str = include_str!("dashboard/assets/index.html");

/// An asset ready to send: its hash and its gzipped form (when that is smaller).
struct Prepared {
    etag: String,
    version: String,
    gzip: Option<Vec<u8>>,
}

/// Assets are hashed and compressed once, on first use.
fn prepared() -> &'static HashMap<&'static str, Prepared> {
    static PREPARED: OnceLock<HashMap<&'static str, Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let version = hex::encode(&Sha256::digest(a.bytes)[..8]);
                let gz = gzip(a.bytes);
                let p = Prepared {
                    etag: format!("\"{version}\""),
                    version,
                    gzip: (gz.len() < a.bytes.len()).then_some(gz),
                };
                (a.name, p)
            })
            .collect()
    })
}

/// The HTML shell with each asset's link carrying its version.
fn shell() -> &'static str {
    static SHELL_HTML: OnceLock<String> = OnceLock::new();
    SHELL_HTML.get_or_init(|| {
        let mut html = SHELL.to_string();
        for a in ASSETS {
            let v = &prepared()[a.name].version;
            html = html.replace(
                &format!("/assets/{}\"", a.name),
                &format!("/assets/{}?v={v}\"", a.name),
            );
        }
        html
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("compress in memory");
    enc.finish().expect("compress in memory")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Every page: the shell; `app.js` draws the page named by the path. A page opened with a
/// session cookie carries the session's CSRF value, which the script sends back on requests
/// that change state (see [`super::auth`]).
async fn page(csrf: Option<Extension<CsrfToken>>) -> Response {
    let html = match csrf {
        Some(Extension(CsrfToken(value))) => shell().replacen(
            "</head>",
            &format!("<meta name=\"graywatch-csrf\" content=\"{value}\">\n</head>"),
            1,
        ),
        None => shell().to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

async fn asset(
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return Err(ApiError::NotFound(format!("no asset {file:?}")));
    };
    let p = &prepared()[a.name];
    // Immutable only under the versioned URL the shell links to.
    let cache = if q.get("v") == Some(&p.version) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut builder = Response::builder()
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, &p.etag)
        .header(header::VARY, "accept-encoding");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == p.etag || t.trim() == "*"));
    if matches {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("static headers are valid"));
    }
    builder = builder.header(header::CONTENT_TYPE, a.content_type);
    let body = match &p.gzip {
        Some(gz) if accepts_gzip(&headers) => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            Body::from(gz.as_slice())
        }
        _ => Body::from(a.bytes),
    };
    Ok(builder.body(body).expect("static headers are valid"))
}

/// A JSON answer, gzipped (quickly) for a client that accepts it: the overview of 500
/// dependencies is about half a megabyte of JSON and a tenth of that compressed.
fn json_response(value: &impl serde::Serialize, gzip_ok: bool) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    let gzip = if gzip_ok && bytes.len() > GZIP_MIN_BYTES {
        Some(gzip_fast(&bytes))
    } else {
        None
    };
    Ok(json_bytes_response(bytes.into(), gzip.map(Bytes::from)))
}

/// Answers below this size are sent as they are.
const GZIP_MIN_BYTES: usize = 1024;

/// Compresses an answer quickly (assets, compressed once, take the best compression).
fn gzip_fast(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes).expect("compress in memory");
    enc.finish().expect("compress in memory")
}

/// A JSON answer already encoded: gzipped when `gzip` is given.
fn json_bytes_response(json: Bytes, gzip: Option<Bytes>) -> Response {
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::VARY, "accept-encoding");
    let body = match gzip {
        Some(gz) => {
            builder = builder.header(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            Body::from(gz)
        }
        None => Body::from(json),
    };
    builder.body(body).expect("static headers are valid")
}

/// The last answer of `GET /v1/overview`, shared by every client that asks within the same
/// second and evaluation: each open dashboard refreshes every second, and the answer reads
/// every series of the node (tens of milliseconds of CPU with 1,000 dependencies). Computed
/// by one request at a time; those that arrive meanwhile wait for it and take it.
#[derive(Default)]
pub struct OverviewCache {
    last: tokio::sync::Mutex<Option<CachedOverview>>,
}

struct CachedOverview {
    /// The clock when it was computed.
    at_ms: i64,
    /// The evaluation it shows.
    view: std::sync::Arc<crate::detect::EngineView>,
    json: Bytes,
    /// Compressed the first time a client asks for it.
    gzip: Option<Bytes>,
}

/// How long an overview is shared at most.
const OVERVIEW_REUSE_MS: i64 = 1_000;

/// Firing alerts per dependency.
async fn firing_counts(state: &AppState) -> Result<HashMap<String, usize>, ApiError> {
    let firing = state
        .storage
        .list_alerts(&AlertFilter {
            state: Some(AlertStatus::Firing),
            dependency: None,
            limit: i64::MAX,
        })
        .await?;
    let mut counts = HashMap::new();
    for a in firing {
        *counts.entry(a.dependency).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Every dependency, worst first, with its sparkline (what the dashboard's first page draws).
#[utoipa::path(get, path = "/v1/overview", tag = "dashboard",
    responses((status = 200, description = "The overview", body = overview::Overview)),
    security(("bearer" = ["read"])))]
pub(super) async fn overview_all(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let gzip_ok = accepts_gzip(&headers);
    let mut last = state.overview_cache.last.lock().await;
    let now = state.clock.now_ms();
    let view = state.engine_view();
    let fresh = last.as_ref().is_some_and(|c| {
        std::sync::Arc::ptr_eq(&c.view, &view) && (0..OVERVIEW_REUSE_MS).contains(&(now - c.at_ms))
    });
    if !fresh {
        let firing = firing_counts(&state).await?;
        let (store, board) = (state.store.clone(), state.actions.clone());
        let shown = view.clone();
        let json = tokio::task::spawn_blocking(move || {
            let inputs = overview::Inputs {
                health: shown.health.clone(),
                baselines: shown.baselines.clone(),
                breakers: board.board.lock().snapshot(),
                firing,
            };
            serde_json::to_vec(&overview::overview(&store, inputs, now))
        })
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
        *last = Some(CachedOverview {
            at_ms: now,
            view,
            json: Bytes::from(json),
            gzip: None,
        });
    }
    let c = last.as_mut().expect("computed above");
    if gzip_ok && c.gzip.is_none() && c.json.len() > GZIP_MIN_BYTES {
        let json = c.json.clone();
        let gz = tokio::task::spawn_blocking(move || gzip_fast(&json))
            .await
            .map_err(anyhow::Error::from)?;
        c.gzip = Some(Bytes::from(gz));
    }
    let gz = c.gzip.clone().filter(|_| gzip_ok);
    Ok(json_bytes_response(c.json.clone(), gz))
}

/// One dependency with each instance and zone and their sparklines.
#[utoipa::path(get, path = "/v1/overview/{name}", tag = "dashboard",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The dependency", body = overview::DependencyOverview),
        (status = 404, description = "No events received for it in the last hour", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(super) async fn overview_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let gzip_ok = accepts_gzip(&headers);
    tokio::task::spawn_blocking(move || {
        let now = state.clock.now_ms();
        let view = state.engine_view();
        let health = view.health.get(&name).cloned().unwrap_or_default();
        let baseline = view.baselines.get(&name).copied();
        let Some(view) = overview::dependency_overview(&state.store, &name, health, baseline, now)
        else {
            return Err(ApiError::NotFound(format!(
                "unknown dependency {name:?}: no events received for it in the last hour"
            )));
        };
        json_response(&view, gzip_ok)
    })
    .await
    .map_err(anyhow::Error::from)?
}
