//! The OpenAPI document at `/openapi.json`, against the real server over HTTP: it covers every
//! route the router serves (the paths come from the router itself, the methods from probing
//! the running server), it is OpenAPI 3.1 whose references resolve, it needs the `read`
//! scope, and schemathesis finds no answer of the live daemon that breaks it.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use common::*;
use graywatch::config::{Scope, Settings, TokenConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Pages and assets for browsers, and the dashboard's form sign-in: HTML, not the API.
const BROWSER_ONLY: [&str; 7] = [
    "/",
    "/dependencies/{name}",
    "/alerts",
    "/alerts/{id}",
    "/silences",
    "/assets/{file}",
    "/session",
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

const TOKEN: &str = "schema-admin-token-5e1c9a7b3d";
const INGEST_ONLY: &str = "schema-ingest-token-8d2f6b4a1e";

fn with_tokens(s: &mut Settings) {
    let token = |name: &str, scopes: &[Scope], secret: &str| TokenConfig {
        name: name.into(),
        scopes: scopes.to_vec(),
        sha256: Some(hex::encode(Sha256::digest(secret.as_bytes()))),
        ..TokenConfig::default()
    };
    s.auth.tokens = vec![
        token(
            "conformance",
            &[Scope::Ingest, Scope::Read, Scope::Admin],
            TOKEN,
        ),
        token("checkout", &[Scope::Ingest], INGEST_ONLY),
    ];
}

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

/// A concrete path for a template: every `{param}` becomes `1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the running server routes `method` on `path`: anything but the fallback's 404
/// and the method router's 405.
async fn routed(app: &TestApp, method: &str, path: &str) -> bool {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let resp = app
        .client
        .request(method.clone(), app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return false;
    }
    // An SSE stream never ends: its status is enough.
    if status == StatusCode::NOT_FOUND {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return body["error"] != "no such endpoint";
    }
    true
}

#[tokio::test]
async fn every_route_is_documented_with_its_methods() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let documented = doc["paths"].as_object().expect("paths");
    let (_, paths) = graywatch::api::routes(&app.state);
    let served: BTreeSet<&str> = paths
        .into_iter()
        .filter(|p| !BROWSER_ONLY.contains(p))
        .collect();
    assert!(served.len() >= 15, "the router lists its paths: {served:?}");
    for path in &served {
        let item = documented
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is served but not in /openapi.json"));
        for method in METHODS {
            let is_routed = routed(&app, method, &concrete(path)).await;
            assert_eq!(
                item.get(method).is_some(),
                is_routed,
                "{method} {path}: documented and served must agree"
            );
        }
    }
    for path in documented.keys() {
        assert!(
            served.contains(path.as_str()),
            "{path} is documented but not served"
        );
    }
}

/// Follows a local reference (`#/components/schemas/X`) in the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_whose_references_resolve() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut refs = Vec::new();
    references(&doc, &mut refs);
    assert!(refs.len() > 20, "schemas are shared by reference");
    for r in refs {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: a success answer"
            );
            for p in &params {
                assert!(
                    op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == *p && x["in"] == "path")),
                    "{method} {path}: path parameter {p} is declared"
                );
            }
            let open = ["/healthz", "/readyz"].contains(&path.as_str());
            let scopes = op["security"][0]["bearer"].as_array();
            if open {
                assert!(scopes.is_none(), "{method} {path} is open");
                continue;
            }
            let scopes = scopes.unwrap_or_else(|| panic!("{method} {path}: names its scope"));
            let want = match (method.as_str(), path.as_str()) {
                ("post", "/v1/events") => "ingest",
                ("get", _) => "read",
                _ => "admin",
            };
            assert_eq!(scopes, &[Value::from(want)], "{method} {path}");
            for status in ["401", "403"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path}: {status} in the error shape"
                );
            }
        }
    }
    // The error statuses the API answers, each documented with the error shape.
    let events = &doc["paths"]["/v1/events"]["post"]["responses"];
    for status in ["400", "401", "403", "408", "413", "415", "503"] {
        assert_eq!(
            events[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "POST /v1/events {status}"
        );
    }
}

#[tokio::test]
async fn the_document_needs_the_read_scope() {
    let app = TestApp::spawn_with(with_tokens).await;
    let url = app.url("/openapi.json");
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let ingest = app
        .client
        .get(&url)
        .bearer_auth(INGEST_ONLY)
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), StatusCode::FORBIDDEN);
    let admin = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(
        admin.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
}

/// The description of the property `field` of the schema `schema`.
fn description(doc: &Value, schema: &str, field: &str) -> String {
    doc.pointer(&format!(
        "/components/schemas/{schema}/properties/{field}/description"
    ))
    .and_then(Value::as_str)
    .unwrap_or_else(|| panic!("{schema}.{field} has a description"))
    .to_string()
}

#[tokio::test]
async fn the_document_states_the_configured_bounds_and_the_daemon_keeps_to_them() {
    let app = TestApp::spawn_with(|s| {
        s.limits.max_comment_chars = 40;
        s.limits.max_silence_duration = std::time::Duration::from_secs(2 * 3600);
        s.limits.max_override_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    let doc = document(&app).await;
    let max_length = |schema: &str, field: &str| {
        doc.pointer(&format!(
            "/components/schemas/{schema}/properties/{field}/maxLength"
        ))
        .cloned()
    };
    assert_eq!(max_length("NewSilence", "comment"), Some(Value::from(40)));
    assert_eq!(max_length("OverrideBody", "reason"), Some(Value::from(40)));
    for (schema, field, says) in [
        ("NewSilence", "duration", "At most 2h here."),
        ("OverrideBody", "ttl", "At most 1h here."),
    ] {
        let d = description(&doc, schema, field);
        assert!(d.ends_with(says), "{schema}.{field}: {d}");
    }

    // What the document allows is accepted, one character more is refused.
    let silence =
        |comment: String| json!({"dependency": "db", "duration": "1h", "comment": comment});
    let (status, answer) = app
        .send_json(Method::POST, "/v1/silences", &silence("x".repeat(40)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = app
        .send_json(Method::POST, "/v1/silences", &silence("x".repeat(41)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A daemon with the defaults still states the defaults.
    let defaults = TestApp::spawn().await;
    let doc = document(&defaults).await;
    assert_eq!(
        doc.pointer("/components/schemas/NewSilence/properties/comment/maxLength"),
        Some(&Value::from(1000))
    );
    let d = description(&doc, "NewSilence", "duration");
    assert!(d.ends_with("At most 30days here."), "{d}");
}

/// The schemathesis CLI: `GRAYWATCH_SCHEMATHESIS`, else `st` on the `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRAYWATCH_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("st"))
            .find(|p| p.is_file())
    })
}

/// Examples per operation and the run's time budget: together about two minutes on the
/// shared 2-core CI machine.
const MAX_EXAMPLES: &str = "40";
const MAX_TIME_S: &str = "150";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_answer_that_breaks_the_document() {
    let Some(st) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "schemathesis (`st`) is required in CI: pip install schemathesis"
        );
        eprintln!(
            "\n\n*** SKIPPED: schemathesis (`st`) is not installed, so the API was NOT checked \
             against its OpenAPI document. `pip install schemathesis` (or set \
             GRAYWATCH_SCHEMATHESIS) to run it. ***\n"
        );
        return;
    };
    let app = TestApp::spawn_with(with_tokens).await;
    // Something to read: a dependency with calls and a breaker.
    let posted = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&[event("payments", 12.0, "ok", None)])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("openapi.json");
    let doc = app
        .client
        .get(app.url("/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(&schema, &doc).unwrap();
    let base = app.base.clone();
    let report = dir.path().join("report");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .arg("run")
            .arg(&schema)
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,\
                 status_code_conformance,content_type_conformance",
            ])
            // The stream lasts until the daemon stops: its status and content type are checked
            // by tests/auth.rs and tests/actions.rs.
            .args(["--exclude-path", "/v1/breakers/stream"])
            .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME_S])
            .args(["--seed", "20261206", "--request-timeout", "10"])
            .args(["--workers", "2", "--no-color"])
            .arg("--report-dir")
            .arg(&report)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("schemathesis ran for {took:.0?}:\n{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found answers that break /openapi.json (see above)"
    );
}
