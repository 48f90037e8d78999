//! The OpenAPI 3.1 document of the API, generated from the handlers' annotations and the
//! request and response types, served at `GET /openapi.json`.
//!
//! Types of the core that the API serializes as they are (window statistics, health, alerts,
//! outbox rows) are described here by documentation-only twins (`#[schema(as = ...)]`), so
//! that the core does not depend on the documentation crate; the conformance test run against
//! a live daemon (schemathesis, in CI) checks every answer against them.

use std::sync::OnceLock;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::actions::operator::human;
use crate::config::Settings;

/// Every error answer: `{"error": "<message naming the field or parameter at fault>"}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: String,
}

/// A time: epoch milliseconds or an RFC 3339 string.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only: handlers read times from JSON values.
pub enum TimeInput {
    EpochMs(i64),
    Rfc3339(String),
}

/// Health of a dependency, instance or zone.
#[derive(ToSchema)]
#[schema(as = Health, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum HealthDoc {
    NoData,
    Healthy,
    Degraded,
    Failing,
}

/// Health of a dependency and of those of its instances, zones and sources (callers) that are
/// not healthy.
#[derive(ToSchema)]
#[schema(as = DependencyHealth)]
#[allow(dead_code)]
pub struct DependencyHealthDoc {
    state: HealthDoc,
    instances: std::collections::BTreeMap<String, HealthDoc>,
    zones: std::collections::BTreeMap<String, HealthDoc>,
    /// Callers with an open alert. A bad caller leaves `state` alone: the dependency serves
    /// its other callers well, and `state` is what opens its breaker.
    sources: std::collections::BTreeMap<String, HealthDoc>,
    /// Whether the dependency has learnt its baseline (anomaly detectors need it).
    baseline_ready: bool,
}

/// Window statistics. Latencies (`p50` .. `mean`) are of the successful calls (errors and
/// timeouts are counted, not timed), in milliseconds, and null for a window without a
/// successful call.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = WindowStats)]
#[allow(dead_code)]
pub struct WindowStatsDoc {
    from: String,
    to: String,
    total: u64,
    ok: u64,
    error: u64,
    timeout: u64,
    clamped: u64,
    rate_per_s: f64,
    error_rate: f64,
    timeout_rate: f64,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

/// An alert of the log.
#[derive(ToSchema)]
#[schema(as = Alert)]
#[allow(dead_code)]
pub struct AlertDoc {
    id: i64,
    fingerprint: String,
    dependency: String,
    instance: Option<String>,
    zone: Option<String>,
    /// The caller (the events' `source`) the alert is localized to: one caller fares worse
    /// than the dependency's others. At most one of `instance`, `zone` and `source` is set.
    source: Option<String>,
    /// The detector that names the alert (its most severe condition).
    detector: String,
    /// Every detector that saw the incident while it was open, `detector` first.
    detectors: Vec<String>,
    /// `degraded` or `failing`.
    severity: String,
    /// `firing` or `resolved`.
    state: String,
    started_at: String,
    resolved_at: Option<String>,
    summary: String,
    /// The detector's figures (window, rates, p-value, ...).
    #[schema(value_type = Object)]
    evidence: serde_json::Value,
    updated_at: String,
}

/// A row of the outbox.
#[derive(ToSchema)]
#[schema(as = Notification)]
#[allow(dead_code)]
pub struct NotificationDoc {
    /// The delivery id (also sent to the receiver, for deduplication).
    id: String,
    alert_id: Option<i64>,
    notifier: String,
    kind: String,
    status: String,
    attempts: i64,
    next_attempt_at: String,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

/// A refused event.
#[derive(ToSchema)]
#[schema(as = EventError)]
#[allow(dead_code)]
pub struct EventErrorDoc {
    /// Index in the body (for NDJSON: the 0-based line number).
    index: u64,
    /// Starts with the field at fault.
    error: String,
}

/// The bearer scheme, and the answers every authenticated operation may give.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of `[[auth.tokens]]`. Each operation names the scope it needs: \
                         `ingest`, `read` or `admin`. With no tokens configured (loopback only), \
                         no token is needed.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "Error",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("No token, or an unknown one (with `WWW-Authenticate: Bearer`)")
                    });
                    responses
                        .entry("403".into())
                        .or_insert_with(|| error("The token lacks the scope"));
                }
                responses.entry("421".into()).or_insert_with(|| {
                    error("A daemon on a loopback address refuses other `Host` names")
                });
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "graywatch",
        description = "Gray-failure monitoring: ingest calls to dependencies, read their \
                       statistics, health, alerts and breakers, silence alerts and override \
                       breakers. Errors are `{\"error\": \"...\"}` naming the field at fault."
    ),
    paths(
        super::events::post_events,
        super::dependencies::list,
        super::dependencies::detail,
        super::dependencies::series,
        super::alerts::list,
        super::alerts::get,
        super::actions::notifications,
        super::actions::silences,
        super::actions::create_silence,
        super::actions::delete_silence,
        super::actions::breakers,
        super::actions::stream,
        super::actions::breaker,
        super::actions::breaker_history,
        super::actions::put_override,
        super::actions::delete_override,
        super::dashboard::overview_all,
        super::dashboard::overview_one,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody, super::actions::NotificationStatus)),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "Calls to dependencies, as events"),
        (name = "dependencies", description = "Window statistics and health"),
        (name = "alerts", description = "The alert log and its notifications"),
        (name = "notifications", description = "The outbox"),
        (name = "silences", description = "Muting alerts"),
        (name = "breakers", description = "Breaker signals for clients, and overrides"),
        (name = "dashboard", description = "What the built-in dashboard reads"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The generated document as a JSON value, built once. The bounds that settings can change
/// are those of the defaults here; [`document`] states the daemon's own.
fn generated() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// The document of a daemon with `settings`: every bound of a request that a setting can
/// change (comment and reason length, longest silence and override, body size) is the
/// configured one, so a client validating against it is refused nothing the document allows.
pub fn document(settings: &Settings) -> Vec<u8> {
    let mut doc = generated().clone();
    let limits = settings.limits.operator();
    let chars = limits.max_text_chars;
    set(
        &mut doc,
        "/components/schemas/NewSilence/properties/comment",
        |s| {
            s.insert("maxLength".into(), chars.into());
        },
    );
    set(
        &mut doc,
        "/components/schemas/OverrideBody/properties/reason",
        |s| {
            s.insert("maxLength".into(), chars.into());
        },
    );
    let at_most = |ms: i64| format!(" At most {} here.", human(ms));
    set(
        &mut doc,
        "/components/schemas/NewSilence/properties/duration",
        |s| {
            append_description(s, &at_most(limits.max_silence_ms));
        },
    );
    set(
        &mut doc,
        "/components/schemas/NewSilence/properties/ends_at",
        |s| {
            append_description(
                s,
                &format!(
                    " At most {} after `starts_at` here.",
                    human(limits.max_silence_ms)
                ),
            );
        },
    );
    set(
        &mut doc,
        "/components/schemas/OverrideBody/properties/ttl",
        |s| {
            append_description(s, &at_most(limits.max_override_ms));
        },
    );
    set(
        &mut doc,
        "/components/schemas/OverrideBody/properties/expires_at",
        |s| {
            append_description(
                s,
                &format!(" At most {} from now here.", human(limits.max_override_ms)),
            );
        },
    );
    let bytes = settings.ingest.max_body_bytes;
    set(&mut doc, "/paths/~1v1~1events/post/responses/413", |s| {
        append_description(s, &format!(" Here: {bytes} bytes."));
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Applies `change` to the object at `pointer`. Every pointer names a part of the generated
/// document (`tests::every_configured_bound_is_in_the_document` checks that each is found).
fn set(doc: &mut Value, pointer: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    match doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
        Some(object) => change(object),
        None => tracing::error!(
            pointer,
            "The OpenAPI document has no such part; its bound is the default."
        ),
    }
}

fn append_description(object: &mut serde_json::Map<String, Value>, text: &str) {
    let before = object
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end()
        .to_string();
    object.insert(
        "description".into(),
        format!("{before}{text}").trim().into(),
    );
}

/// This document (OpenAPI 3.1), with the daemon's configured bounds.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json",
        body = Object)),
    security(("bearer" = ["read"])))]
pub async fn openapi_json(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}

/// The serialized [`document`] of this daemon, built once when the routes are.
#[derive(Clone)]
pub struct Document(pub axum::body::Bytes);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(doc: &Value, pointer: &str) -> Value {
        doc.pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the document"))
            .clone()
    }

    #[test]
    fn every_configured_bound_is_in_the_document() {
        let mut settings = Settings::default();
        settings.limits.max_comment_chars = 42;
        settings.limits.max_silence_duration = std::time::Duration::from_secs(2 * 3600);
        settings.limits.max_override_ttl = std::time::Duration::from_secs(30 * 60);
        settings.ingest.max_body_bytes = 12_345;
        let doc: Value = serde_json::from_slice(&document(&settings)).unwrap();
        let schemas = "/components/schemas";
        for field in [
            "NewSilence/properties/comment",
            "OverrideBody/properties/reason",
        ] {
            assert_eq!(
                at(&doc, &format!("{schemas}/{field}/maxLength")),
                42,
                "{field}"
            );
        }
        for (field, says) in [
            ("NewSilence/properties/duration", "At most 2h here."),
            (
                "NewSilence/properties/ends_at",
                "At most 2h after `starts_at` here.",
            ),
            ("OverrideBody/properties/ttl", "At most 30m here."),
            (
                "OverrideBody/properties/expires_at",
                "At most 30m from now here.",
            ),
        ] {
            let description = at(&doc, &format!("{schemas}/{field}/description"));
            assert!(
                description.as_str().unwrap().ends_with(says),
                "{field}: {description}"
            );
        }
        let too_large = at(&doc, "/paths/~1v1~1events/post/responses/413/description");
        assert!(
            too_large.as_str().unwrap().ends_with("Here: 12345 bytes."),
            "{too_large}"
        );
        // The generated document itself is left as it was, for the next daemon.
        assert_eq!(
            at(
                generated(),
                &format!("{schemas}/NewSilence/properties/comment/maxLength")
            ),
            1000
        );
    }
}
