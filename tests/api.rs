//! Integration tests of the core daemon: a real server on an ephemeral port, spoken to over
//! HTTP, with a manual clock so that no test waits for time to pass.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use graywatch::config::{LimitSettings, Settings};
use graywatch::window::HIGHEST_US;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Pareto};
use reqwest::StatusCode;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// 1. Accuracy of the reported statistics
// ---------------------------------------------------------------------------------------------

const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999)];

/// Posts `n` samples of `dist` (milliseconds) for `dependency` in batches of 1000, without `ts`,
/// and checks the 1-minute window against statistics computed exactly from the same samples:
/// its counts from all of them, its latencies from the successful calls' (errors and
/// timeouts are counted, not timed).
async fn assert_stats_match_exact_values(
    dependency: &str,
    dist: impl Distribution<f64>,
    seed: u64,
) {
    let app = TestApp::spawn().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 100_000;
    let mut stored = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for _ in 0..n {
        let ms: f64 = dist.sample(&mut rng);
        let outcome = match rng.random::<f64>() {
            x if x < 0.03 => "error",
            x if x < 0.045 => "timeout",
            _ => "ok",
        };
        *counts.entry(outcome).or_default() += 1;
        if outcome == "ok" {
            stored.push(stored_us(ms));
        }
        events.push(event(dependency, ms, outcome, None));
    }
    app.post_ok(&events).await;

    let stats = app.stats(dependency, "1m").await;
    assert_eq!(stats["total"], json!(n), "{stats}");
    for outcome in ["ok", "error", "timeout"] {
        let want = counts.get(outcome).copied().unwrap_or(0);
        assert_eq!(stats[outcome], json!(want), "{outcome}: {stats}");
    }
    let clamped = stored.iter().filter(|&&us| us > HIGHEST_US).count();
    assert_eq!(stats["clamped"], json!(clamped), "{stats}");

    stored.sort_unstable();
    for (key, q) in QUANTILES {
        let exact_ms = nearest_rank(&stored, q) as f64 / 1000.0;
        let got = stats[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is a number: {stats}"));
        let err = relative_error(got, exact_ms);
        assert!(
            err <= 0.01,
            "{dependency} {key}: server {got} ms, exact {exact_ms} ms, relative error {err:.5}"
        );
    }
    // Durations beyond the histogram's range are recorded at its top.
    let in_range = |us: u64| us.min(HIGHEST_US);
    let exact_mean =
        stored.iter().map(|&us| in_range(us) as f64).sum::<f64>() / stored.len() as f64 / 1000.0;
    let mean = stats["mean"].as_f64().expect("mean is a number");
    assert!(
        relative_error(mean, exact_mean) <= 0.01,
        "{dependency} mean: server {mean} ms, exact {exact_mean} ms"
    );
    let exact_max = in_range(*stored.last().unwrap()) as f64 / 1000.0;
    let max = stats["max"].as_f64().expect("max is a number");
    assert!(
        relative_error(max, exact_max) <= 0.01,
        "{dependency} max: server {max} ms, exact {exact_max} ms"
    );
    assert!(
        (stats["error_rate"].as_f64().unwrap() - counts["error"] as f64 / n as f64).abs() < 1e-12,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lognormal_p50_to_p999_and_mean_are_within_one_percent_of_the_exact_values() {
    let dist = LogNormal::new(20f64.ln(), 0.9).unwrap();
    assert_stats_match_exact_values("lognormal-db", dist, 0x5EED_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_tailed_pareto_p50_to_p999_and_mean_are_within_one_percent_of_the_exact_values() {
    // Shape 1.2: finite mean, infinite variance; p999 sits some 300 times above p50.
    let dist = Pareto::new(2.0, 1.2).unwrap();
    assert_stats_match_exact_values("pareto-api", dist, 0x5EED_0002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dependency_list_reports_every_dependency_over_one_minute_sorted_by_name() {
    let app = TestApp::spawn().await;
    let posted = [("zeta", 3usize), ("alpha", 5), ("mid:dle/x", 2)];
    for (name, n) in posted {
        let events: Vec<Value> = (0..n)
            .map(|i| event(name, i as f64 + 1.0, "ok", None))
            .collect();
        app.post_ok(&events).await;
    }
    let (status, body) = app.get("/v1/dependencies").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["window"], "1m", "{body}");
    let mut want: Vec<(String, u64)> = posted
        .iter()
        .map(|(name, n)| (name.to_string(), *n as u64))
        .collect();
    want.sort();
    let got: Vec<(String, u64)> = body["dependencies"]
        .as_array()
        .expect("dependencies is an array")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["stats"]["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// 2. Bad input: every refusal has its documented status and a message naming the problem
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_refused_with_400_naming_the_line_and_column() {
    let app = TestApp::spawn().await;
    let body = "[\n  {\"dependency\": \"db\", \"duration_ms\": 1},\n  {\"dependency\": \"db\", \"duration_ms\": oops}\n]";
    // The position of the fault, from an independent JSON parser, and sanity-checked against
    // where the garbage was put.
    let oracle = serde_json::from_str::<Value>(body).unwrap_err();
    let garbage_line = body[..body.find("oops").unwrap()].matches('\n').count() + 1;
    assert_eq!(oracle.line(), garbage_line);

    let (status, resp) = app
        .post_raw(
            body.as_bytes().to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    let error = error_of(&resp);
    assert!(error.contains("not valid JSON"), "{error}");
    let position = format!("line {} column {}", oracle.line(), oracle.column());
    assert!(
        error.contains(&position),
        "{error:?} should name {position}"
    );
    // The body is refused whole: not even its valid first event is recorded.
    let (status, _) = app.get("/v1/dependencies/db").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_that_is_neither_an_object_nor_an_array_is_refused_with_400() {
    let app = TestApp::spawn().await;
    for body in ["42", "\"events\"", "true", "null"] {
        let (status, resp) = app
            .post_raw(body.into(), &[("content-type", "application/json")])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        let error = error_of(&resp);
        assert!(
            error.contains("event object or an array of event objects"),
            "{body}: {error}"
        );
    }
}

/// A JSON array of `n` small valid events.
fn batch_json(dependency: &str, n: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| event(dependency, (i % 50) as f64 + 0.5, "ok", None))
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// The largest batch whose JSON is at most `limit` bytes, and the smallest one above it.
fn batches_around(dependency: &str, limit: usize) -> ((usize, Vec<u8>), (usize, Vec<u8>)) {
    let mut n = 1;
    while batch_json(dependency, n + 1).len() <= limit {
        n += 1;
    }
    let under = batch_json(dependency, n);
    let over = batch_json(dependency, n + 1);
    assert!(under.len() <= limit && over.len() > limit);
    ((n, under), (n + 1, over))
}

fn small_body_limit(s: &mut Settings) {
    s.ingest.max_body_bytes = 4096;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_bytes_is_refused_with_413_and_one_at_the_limit_is_accepted() {
    let app = TestApp::spawn_with(small_body_limit).await;
    let limit = app.settings.ingest.max_body_bytes;
    let ((n_under, under), (_, over)) = batches_around("sized", limit);

    let (status, resp) = app
        .post_raw(over, &[("content-type", "application/json")])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert!(error_of(&resp).contains(&limit.to_string()), "{resp}");
    let (status, _) = app.get("/v1/dependencies/sized").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused body records nothing"
    );

    let (status, resp) = app
        .post_raw(under, &[("content-type", "application/json")])
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(n_under), "{resp}");
    assert_eq!(app.total("sized", "1m").await, n_under as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_body_is_refused_with_413_when_only_its_decompressed_size_exceeds_the_limit() {
    let app = TestApp::spawn_with(small_body_limit).await;
    let limit = app.settings.ingest.max_body_bytes;
    let ((n_under, under), (_, over)) = batches_around("zipped", limit);
    let over_gz = gzip(&over);
    assert!(
        over_gz.len() <= limit,
        "test premise: the compressed body ({} bytes) is within the limit",
        over_gz.len()
    );

    let (status, resp) = app
        .post_raw(
            over_gz,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    let error = error_of(&resp);
    assert!(error.contains(&limit.to_string()), "{error}");
    assert!(error.contains("after decompression"), "{error}");

    let (status, resp) = app
        .post_raw(
            gzip(&under),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(n_under), "{resp}");
    assert_eq!(app.total("zipped", "1m").await, n_under as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_valid_gzip_is_refused_with_400() {
    let app = TestApp::spawn().await;
    let valid = gzip(&batch_json("db", 20));
    let truncated = valid[..valid.len() / 2].to_vec();
    let mut corrupted = valid.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0xFF;
    for (what, body) in [
        ("plain text", b"definitely not gzip".to_vec()),
        ("a truncated stream", truncated),
        ("a corrupted stream", corrupted),
    ] {
        let (status, resp) = app.post_raw(body, &[("content-encoding", "gzip")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {resp}");
        assert!(error_of(&resp).contains("gzip"), "{what}: {resp}");
    }
    let (status, _) = app.get("/v1/dependencies/db").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_content_encoding_is_refused_with_400_naming_it() {
    let app = TestApp::spawn().await;
    let (status, resp) = app
        .post_raw(batch_json("db", 1), &[("content-encoding", "br")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(error_of(&resp).contains("\"br\""), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_event_is_reported_by_index_naming_its_field_and_the_good_ones_are_kept() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let dep = "checkout-db";
    // (event, expected start of its error; None for a valid event)
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({"dependency": dep, "duration_ms": 5}), None),
        (json!({"duration_ms": 5}), Some("dependency: required")),
        (
            json!({"dependency": "checkout db", "duration_ms": 5}),
            Some("dependency: contains ' '"),
        ),
        (
            json!({"dependency": dep, "duration_ms": -1.5}),
            Some("duration_ms: must be >= 0"),
        ),
        (
            json!({"dependency": dep, "duration_ms": 5, "outcome": "failed"}),
            Some("outcome: must be \"ok\", \"error\" or \"timeout\""),
        ),
        (
            json!({"dependency": dep, "duration_ms": 5, "ts": now - HOUR - 1}),
            Some("ts: older than the longest window (1h)"),
        ),
        (
            json!({"dependency": dep, "duration_ms": 5, "ts": now + 5 * MINUTE + 1}),
            Some("ts: more than 5 minutes in the future"),
        ),
        (json!(17), Some("event must be a JSON object, got a number")),
        (
            json!("checkout-db"),
            Some("event must be a JSON object, got a string"),
        ),
        (
            json!({"dependency": dep, "duration_ms": 7, "outcome": "error"}),
            None,
        ),
        (
            json!({"dependency": dep, "duration_ms": "slow"}),
            Some("duration_ms: must be a number"),
        ),
        (
            json!({"dependency": dep, "duration_ms": 9, "outcome": "timeout", "ts": now - 30 * SECOND}),
            None,
        ),
        (
            json!({"dependency": dep, "duration_ms": 1, "instance": 3}),
            Some("instance: must be a string"),
        ),
    ];
    let batch: Vec<Value> = cases.iter().map(|(e, _)| e.clone()).collect();
    let (status, resp) = app.post_events(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");

    let want_errors: Vec<(usize, &str)> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, (_, e))| e.map(|e| (i, e)))
        .collect();
    let valid: Vec<&Value> = cases
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(v, _)| v)
        .collect();
    assert_eq!(resp["accepted"], json!(valid.len()), "{resp}");
    assert_eq!(resp["rejected"], json!(want_errors.len()), "{resp}");
    assert!(resp.get("errors_truncated").is_none(), "{resp}");
    let errors = resp["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), want_errors.len(), "{resp}");
    for (got, (index, prefix)) in errors.iter().zip(&want_errors) {
        assert_eq!(got["index"], json!(index), "{resp}");
        let msg = got["error"].as_str().expect("error is a string");
        assert!(
            msg.starts_with(prefix),
            "event {index}: got {msg:?}, want it to start with {prefix:?}"
        );
    }

    // The valid events were recorded, with their outcomes.
    let stats = app.stats(dep, "1m").await;
    assert_eq!(stats["total"], json!(valid.len()), "{stats}");
    for outcome in ["ok", "error", "timeout"] {
        let want = valid
            .iter()
            .filter(|v| v.get("outcome").and_then(Value::as_str).unwrap_or("ok") == outcome)
            .count();
        assert_eq!(stats[outcome], json!(want), "{outcome}: {stats}");
    }
    // Nothing was recorded under the names of refused events.
    let (status, _) = app.get("/v1/dependencies/checkout%20db").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_right_at_the_age_limits_are_accepted_and_future_ones_count_as_now() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let batch = json!([
        {"dependency": "edge", "duration_ms": 1, "ts": now - HOUR},
        {"dependency": "edge", "duration_ms": 2, "ts": now + 5 * MINUTE},
        {"dependency": "edge", "duration_ms": 3, "ts": rfc3339(now + 4 * MINUTE)},
    ]);
    let (status, resp) = app.post_events(&batch).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(3), "{resp}");
    assert_eq!(resp["rejected"], json!(0), "{resp}");
    // Events from callers whose clocks run ahead are counted at receipt time.
    assert_eq!(app.total("edge", "10s").await, 2);
}

fn rfc3339(ms: i64) -> String {
    graywatch::time::to_rfc3339(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_list_is_capped_at_max_errors_reported_and_flagged_as_truncated() {
    let app = TestApp::spawn_with(|s| s.ingest.max_errors_reported = 5).await;
    let cap = app.settings.ingest.max_errors_reported;
    let bad = cap + 3;
    let mut batch: Vec<Value> = (0..bad)
        .map(|_| json!({"dependency": "db", "duration_ms": -1}))
        .collect();
    batch.push(event("db", 1.0, "ok", None));
    let (status, resp) = app.post_events(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(1), "{resp}");
    assert_eq!(resp["rejected"], json!(bad), "{resp}");
    assert_eq!(resp["errors"].as_array().unwrap().len(), cap, "{resp}");
    assert_eq!(resp["errors_truncated"], json!(true), "{resp}");
    // The first `cap` errors are listed, in order.
    let indexes: Vec<u64> = resp["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..cap as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_bad_elements_are_counted_but_only_the_reported_ones_get_a_message() {
    let app = TestApp::spawn().await;
    let cap = app.settings.ingest.max_errors_reported;
    // `[1,1,...,1]`: five million elements that are not objects, under the 10 MiB limit once
    // decompressed, about 10 KB on the wire.
    let n = 5_000_000;
    let mut plain = Vec::with_capacity(2 * n + 1);
    plain.push(b'[');
    for i in 0..n {
        if i > 0 {
            plain.push(b',');
        }
        plain.push(b'1');
    }
    plain.push(b']');
    assert!(plain.len() <= app.settings.ingest.max_body_bytes);
    let body = gzip(&plain);
    assert!(body.len() < 20_000, "{} bytes compressed", body.len());

    let started = std::time::Instant::now();
    let (status, resp) = app
        .post_raw(
            body,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(0), "{resp}");
    assert_eq!(resp["rejected"], json!(n), "{resp}");
    assert_eq!(resp["errors_truncated"], json!(true), "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    assert_eq!(errors.len(), cap, "{resp}");
    for (i, e) in errors.iter().enumerate() {
        assert_eq!(e["index"], json!(i), "{e}");
        assert_eq!(
            e["error"], "event must be a JSON object, got a number",
            "{e}"
        );
    }
    assert!(took < Duration::from_secs(20), "answered in {took:?}");
    // The metrics count every refusal, not only the listed ones.
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("graywatch_events_rejected_total{{reason=\"not_an_object\"}} {n}");
    assert!(text.lines().any(|l| l == line), "{line} in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_gzip_and_both_together_are_accepted() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..40)
        .map(|i| {
            event(
                "formats",
                i as f64,
                if i % 4 == 0 { "error" } else { "ok" },
                None,
            )
        })
        .collect();
    let ndjson = |evs: &[Value]| -> Vec<u8> {
        evs.iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let (a, rest) = events.split_at(10);
    let (b, rest) = rest.split_at(10);
    let (c, d) = rest.split_at(10);
    let posts = [
        (
            "NDJSON",
            a,
            ndjson(a),
            vec![("content-type", "application/x-ndjson")],
        ),
        (
            "gzip JSON",
            b,
            gzip(&serde_json::to_vec(b).unwrap()),
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        ),
        (
            "gzip NDJSON",
            c,
            gzip(&ndjson(c)),
            vec![
                ("content-type", "application/x-ndjson; charset=utf-8"),
                ("content-encoding", "gzip"),
            ],
        ),
        (
            "one JSON object",
            &d[..1],
            serde_json::to_vec(&d[0]).unwrap(),
            vec![("content-type", "application/json")],
        ),
    ];
    let mut sent = 0;
    for (what, evs, body, headers) in posts {
        let (status, resp) = app.post_raw(body, &headers).await;
        assert_eq!(status, StatusCode::OK, "{what}: {resp}");
        assert_eq!(resp["accepted"], json!(evs.len()), "{what}: {resp}");
        assert_eq!(resp["rejected"], json!(0), "{what}: {resp}");
        sent += evs.len();
    }
    let stats = app.stats("formats", "1m").await;
    assert_eq!(stats["total"], json!(sent), "{stats}");
    let errors = events[..sent]
        .iter()
        .filter(|e| e["outcome"] == "error")
        .count();
    assert_eq!(stats["error"], json!(errors), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ndjson_line_is_reported_by_line_and_the_other_lines_are_kept() {
    let app = TestApp::spawn().await;
    let lines = [
        event("nd", 1.0, "ok", None).to_string(),
        "{\"dependency\": \"nd\", oops".to_string(),
        String::new(),
        json!({"dependency": "nd"}).to_string(),
        event("nd", 2.0, "ok", None).to_string(),
    ];
    let body = lines.join("\n").into_bytes();
    let (status, resp) = app
        .post_raw(body, &[("content-type", "application/x-ndjson")])
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(2), "{resp}");
    assert_eq!(resp["rejected"], json!(2), "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    assert_eq!(errors[0]["index"], json!(1), "{resp}");
    let msg = errors[0]["error"].as_str().unwrap();
    assert!(msg.starts_with("line 2: invalid JSON"), "{msg}");
    assert_eq!(errors[1]["index"], json!(3), "{resp}");
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("duration_ms: required"),
        "{resp}"
    );
    assert_eq!(app.total("nd", "1m").await, 2);

    // A body in which no line is JSON is refused whole, naming the first bad line.
    let (status, resp) = app
        .post_raw(
            b"\nnot json\nat all\n".to_vec(),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(error_of(&resp).contains("line 2 column"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_an_unknown_dependency_or_endpoint_is_404() {
    let app = TestApp::spawn().await;
    app.post_ok(&[event("known", 1.0, "ok", None)]).await;
    let (status, resp) = app.get("/v1/dependencies/unknown-svc?window=1m").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{resp}");
    assert!(error_of(&resp).contains("\"unknown-svc\""), "{resp}");
    let (status, resp) = app.get("/v1/dependencies/unknown-svc/series?step=1m").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{resp}");
    assert!(error_of(&resp).contains("\"unknown-svc\""), "{resp}");
    let (status, resp) = app.get("/v2/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{resp}");
    // A name the ingest would refuse is a bad request, not a missing dependency.
    let (status, resp) = app.get("/v1/dependencies/bad%20name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(error_of(&resp).starts_with("name:"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_window_parameter_is_400_naming_window() {
    let app = TestApp::spawn().await;
    app.post_ok(&[event("db", 1.0, "ok", None)]).await;
    for window in ["2m", "1h30m", "", "forever"] {
        let (status, resp) = app
            .get(&format!("/v1/dependencies/db?window={window}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "window={window}: {resp}");
        assert!(error_of(&resp).starts_with("window:"), "{resp}");
    }
    // Every documented window is accepted and echoed.
    for window in ["10s", "1m", "5m", "15m", "1h"] {
        assert_eq!(app.detail("db", window).await["window"], window);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_parameters_that_make_no_sense_are_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    app.post_ok(&[event("db", 1.0, "ok", None)]).await;
    let now = app.now();
    let cases = [
        ("step=7s".to_string(), "step:"),
        ("step=banana".to_string(), "step:"),
        ("step=0s".to_string(), "step:"),
        ("step=1m&window=15s".to_string(), "window:"),
        (format!("from={}&to={}", now, now - MINUTE), "from:"),
        (format!("from={now}&to={now}"), "from:"),
        ("from=yesterday".to_string(), "from:"),
        ("to=soon".to_string(), "to:"),
        ("instance=a&zone=b".to_string(), "instance:"),
        // More than the point limit.
        (
            format!("step=10s&from={}&to={now}", now - 24 * HOUR),
            "step:",
        ),
        // 10-second buckets are kept for the last minute only.
        (
            format!("step=10s&from={}&to={now}", now - 10 * MINUTE),
            "step:",
        ),
    ];
    for (query, prefix) in cases {
        let path = format!("/v1/dependencies/db/series?{query}");
        let (status, resp) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {resp}");
        let error = error_of(&resp);
        assert!(error.starts_with(prefix), "{path}: {error:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Restarts keep the roll-ups
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_15m_and_1h_windows_and_the_per_instance_series_identical() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let mut rng = StdRng::seed_from_u64(0xBEEF);
    let latency = LogNormal::new(12f64.ln(), 0.7).unwrap();
    let instances = ["i-1", "i-2", "i-3"];
    let zones = ["eu-1a", "eu-1b"];
    let n = 6_000;
    let mut events = Vec::with_capacity(n);
    let mut per_instance: BTreeMap<&str, u64> = BTreeMap::new();
    let mut errors = 0;
    for _ in 0..n {
        // Spread over the last ten minutes, well inside the 15-minute window.
        let ts = now - rng.random_range(0..10 * MINUTE);
        let outcome = if rng.random_bool(0.05) { "error" } else { "ok" };
        errors += u64::from(outcome == "error");
        let instance = instances[rng.random_range(0..instances.len())];
        *per_instance.entry(instance).or_default() += 1;
        let mut e = event("orders-db", latency.sample(&mut rng), outcome, Some(ts));
        e["instance"] = json!(instance);
        e["zone"] = json!(zones[rng.random_range(0..zones.len())]);
        events.push(e);
    }
    app.post_ok(&events).await;

    let before_15m = app.detail("orders-db", "15m").await;
    let before_1h = app.detail("orders-db", "1h").await;
    let before_5m = app.detail("orders-db", "5m").await;
    assert_eq!(before_15m["stats"]["total"], json!(n), "{before_15m}");
    assert_eq!(before_15m["stats"]["error"], json!(errors), "{before_15m}");
    let instance_totals: BTreeMap<String, u64> = before_15m["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap().to_string(),
                i["stats"]["total"].as_u64().unwrap(),
            )
        })
        .collect();
    let want_instances: BTreeMap<String, u64> = per_instance
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(instance_totals, want_instances);
    let series_query = format!(
        "instance=i-2&step=1m&window=1m&from={}&to={}",
        minute_of(now) - 12 * MINUTE,
        minute_of(now) + MINUTE
    );
    let before_series = app.series("orders-db", &series_query).await;

    let app = app.restart().await;
    assert_eq!(app.now(), now, "the clock did not move");

    for (window, before) in [("15m", &before_15m), ("1h", &before_1h), ("5m", &before_5m)] {
        let after = app.detail("orders-db", window).await;
        for part in ["stats", "instances", "zones"] {
            assert_eq!(
                after[part], before[part],
                "{window} window, {part}, after the restart"
            );
        }
    }
    let after_series = app.series("orders-db", &series_query).await;
    assert_eq!(after_series["points"], before_series["points"]);
    let series_total: u64 = after_series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["total"].as_u64().unwrap())
        .sum();
    assert_eq!(series_total, per_instance["i-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_twice_does_not_count_stored_minutes_twice() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let events: Vec<Value> = (0..300)
        .map(|i| event("twice", 5.0, "ok", Some(now - (i % 8) * MINUTE)))
        .collect();
    app.post_ok(&events).await;
    let before = app.stats("twice", "15m").await;
    assert_eq!(before["total"], json!(events.len()));
    let app = app.restart().await;
    let app = app.restart().await;
    assert_eq!(app.stats("twice", "15m").await, before);
    // New data in a minute that came back from storage adds to it, once.
    app.post_ok(&[event("twice", 5.0, "ok", Some(now - 2 * MINUTE))])
        .await;
    let app = app.restart().await;
    assert_eq!(
        app.total("twice", "15m").await,
        events.len() as u64 + 1,
        "stored minutes plus the one new event"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Windows rotate on event time and on the wall clock
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fall_into_windows_by_their_own_timestamp() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let recent: Vec<Value> = (0..7)
        .map(|i| event("evt", 1.0, "ok", Some(now - 2 * SECOND - i * 100)))
        .collect();
    let half_minute: Vec<Value> = (0..11)
        .map(|i| event("evt", 1.0, "ok", Some(now - 30 * SECOND - i * 100)))
        .collect();
    let three_minutes: Vec<Value> = (0..13)
        .map(|i| event("evt", 1.0, "ok", Some(now - 3 * MINUTE - i * 100)))
        .collect();
    let forty_minutes: Vec<Value> = (0..17)
        .map(|i| event("evt", 1.0, "ok", Some(now - 40 * MINUTE - i * 100)))
        .collect();
    for batch in [&recent, &half_minute, &three_minutes, &forty_minutes] {
        app.post_ok(batch).await;
    }
    let (r, h, t, f) = (
        recent.len() as u64,
        half_minute.len() as u64,
        three_minutes.len() as u64,
        forty_minutes.len() as u64,
    );
    assert_eq!(
        app.total("evt", "10s").await,
        r,
        "10s: only the recent events"
    );
    assert_eq!(
        app.total("evt", "1m").await,
        r + h,
        "1m: not the 3-minute-old"
    );
    assert_eq!(
        app.total("evt", "5m").await,
        r + h + t,
        "5m: not the 40-minute-old"
    );
    assert_eq!(app.total("evt", "15m").await, r + h + t);
    assert_eq!(
        app.total("evt", "1h").await,
        r + h + t + f,
        "1h: all of them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_empty_as_the_wall_clock_moves_on_without_new_events() {
    let app = TestApp::spawn().await;
    let n = 25;
    let events: Vec<Value> = (0..n)
        .map(|i| event("idle", i as f64, "ok", None))
        .collect();
    app.post_ok(&events).await;
    assert_eq!(app.total("idle", "10s").await, n);
    assert_eq!(app.total("idle", "1m").await, n);

    app.advance(11 * SECOND);
    assert_eq!(app.total("idle", "10s").await, 0, "10 s later");
    assert_eq!(app.total("idle", "1m").await, n);

    app.advance(60 * SECOND);
    assert_eq!(app.total("idle", "1m").await, 0, "71 s later");
    assert_eq!(app.total("idle", "5m").await, n);

    app.advance(15 * MINUTE);
    assert_eq!(app.total("idle", "15m").await, 0, "16 m later");
    assert_eq!(app.total("idle", "1h").await, n);

    app.advance(45 * MINUTE);
    let stats = app.stats("idle", "1h").await;
    assert_eq!(stats["total"], json!(0), "61 m later: {stats}");
    assert_eq!(stats["p99"], Value::Null, "no latency in an empty window");
}

// ---------------------------------------------------------------------------------------------
// 5. Cardinality limits
// ---------------------------------------------------------------------------------------------

/// An event for `dep` with the given instance and zone labels.
fn labelled(dep: &str, instance: Option<&str>, zone: Option<&str>) -> Value {
    let mut e = event(dep, 3.0, "ok", None);
    if let Some(i) = instance {
        e["instance"] = json!(i);
    }
    if let Some(z) = zone {
        e["zone"] = json!(z);
    }
    e
}

/// Events per value of `field` (`dependency`, `instance`, `zone`) among `events` of `dep`.
fn tally(events: &[Value], dep: &str, field: &str) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e["dependency"] == dep) {
        if let Some(v) = e[field].as_str() {
            *out.entry(v.to_string()).or_default() += 1;
        }
    }
    out.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_caller_beyond_its_limit_is_refused_naming_source_while_known_callers_count() {
    let app = TestApp::spawn_with(|s| {
        s.limits = LimitSettings {
            max_sources_per_dependency: 1,
            ..LimitSettings::default()
        }
    })
    .await;
    let from = |source: Option<&str>| {
        let mut e = labelled("dep-a", Some("i-1"), None);
        if let Some(c) = source {
            e["source"] = json!(c);
        }
        e
    };
    app.post_ok(&[from(Some("web"))]).await;
    let batch = vec![from(Some("batch")), from(Some("web")), from(None)];
    let (status, resp) = app.post_events(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(2), "{resp}");
    assert_eq!(resp["rejected"], json!(1), "{resp}");
    let error = &resp["errors"][0];
    assert_eq!(error["index"], json!(0), "{resp}");
    let msg = error["error"].as_str().unwrap();
    assert!(msg.starts_with("source: limit of 1 "), "{msg}");

    // The known caller counted both its calls; the refused one left no series.
    let detail = app.detail("dep-a", "1m").await;
    assert_eq!(detail["stats"]["total"], json!(3), "{detail}");
    let sources = detail["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{detail}");
    assert_eq!(sources[0]["source"], "web", "{detail}");
    assert_eq!(sources[0]["stats"]["total"], json!(2), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_beyond_the_cardinality_limits_are_refused_while_existing_ones_keep_counting() {
    let app = TestApp::spawn_with(|s| {
        s.limits = LimitSettings {
            max_dependencies: 2,
            max_instances_per_dependency: 2,
            max_zones_per_dependency: 1,
            ..LimitSettings::default()
        }
    })
    .await;
    let limits = app.settings.limits;
    // Fill every limit.
    let filling = [
        labelled("dep-a", Some("i-1"), Some("z-1")),
        labelled("dep-a", Some("i-2"), None),
        labelled("dep-b", None, None),
    ];
    app.post_ok(&filling).await;

    let batch = vec![
        labelled("dep-c", None, None),
        labelled("dep-a", Some("i-1"), Some("z-1")),
        labelled("dep-a", Some("i-3"), None),
        labelled("dep-b", None, None),
        labelled("dep-a", None, Some("z-2")),
        labelled("dep-a", Some("i-2"), None),
        labelled("dep-a", None, None),
    ];
    let (status, resp) = app.post_events(&Value::Array(batch.clone())).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(4), "{resp}");
    assert_eq!(resp["rejected"], json!(3), "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    let expect = [
        (0, "dependency:", limits.max_dependencies),
        (2, "instance:", limits.max_instances_per_dependency),
        (4, "zone:", limits.max_zones_per_dependency),
    ];
    assert_eq!(errors.len(), expect.len(), "{resp}");
    for (got, (index, field, limit)) in errors.iter().zip(expect) {
        assert_eq!(got["index"], json!(index), "{resp}");
        let msg = got["error"].as_str().unwrap();
        assert!(msg.starts_with(field), "event {index}: {msg}");
        assert!(
            msg.contains(&format!("limit of {limit} ")),
            "event {index} names the limit {limit}: {msg}"
        );
    }

    // Refused events leave no trace; accepted ones for existing series are counted.
    let refused = [0, 2, 4];
    let accepted: Vec<Value> = filling
        .iter()
        .cloned()
        .chain(
            batch
                .iter()
                .enumerate()
                .filter(|(i, _)| !refused.contains(i))
                .map(|(_, e)| e.clone()),
        )
        .collect();
    let a = app.detail("dep-a", "1m").await;
    assert_eq!(
        a["stats"]["total"],
        json!(
            accepted
                .iter()
                .filter(|e| e["dependency"] == "dep-a")
                .count()
        ),
        "{a}"
    );
    let labels = |kind: &str| -> Vec<(String, u64)> {
        a[format!("{kind}s")]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l[kind].as_str().unwrap().to_string(),
                    l["stats"]["total"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(labels("instance"), tally(&accepted, "dep-a", "instance"));
    assert_eq!(labels("zone"), tally(&accepted, "dep-a", "zone"));
    assert_eq!(
        app.total("dep-b", "1m").await,
        accepted
            .iter()
            .filter(|e| e["dependency"] == "dep-b")
            .count() as u64
    );
    let (status, _) = app.get("/v1/dependencies/dep-c").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/v1/dependencies").await;
    let names: Vec<&str> = list["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dep-a", "dep-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_series_limit_refuses_new_series_of_every_kind_and_names_max_series() {
    let app = TestApp::spawn_with(|s| {
        s.limits = LimitSettings {
            max_series: 4,
            ..LimitSettings::default()
        }
    })
    .await;
    let max = app.settings.limits.max_series;
    // The dependency's total, two instances and a zone: four series.
    app.post_ok(&[
        labelled("svc", Some("i-1"), Some("z-1")),
        labelled("svc", Some("i-2"), None),
    ])
    .await;
    let batch = vec![
        labelled("other-svc", None, None),
        labelled("svc", None, Some("z-2")),
        labelled("svc", Some("i-1"), Some("z-1")),
        labelled("svc", Some("i-3"), None),
    ];
    let (status, resp) = app.post_events(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(1), "{resp}");
    assert_eq!(resp["rejected"], json!(3), "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 3], "{resp}");
    for e in errors {
        let msg = e["error"].as_str().unwrap();
        assert!(msg.contains("limits.max_series"), "{msg}");
        assert!(msg.contains(&format!("limit of {max} series")), "{msg}");
    }
    let (status, _) = app.get("/v1/dependencies/other-svc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let svc = app.detail("svc", "1m").await;
    assert_eq!(svc["stats"]["total"], json!(3), "{svc}");
    let labels = |kind: &str| -> Vec<String> {
        svc[format!("{kind}s")]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[kind].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(labels("instance"), ["i-1", "i-2"]);
    assert_eq!(labels("zone"), ["z-1"]);
}

// ---------------------------------------------------------------------------------------------
// Back-pressure and graceful shutdown
// ---------------------------------------------------------------------------------------------

/// Waits until an ingest request is refused for capacity (so every permit is held) and returns
/// that response's `Retry-After` header and body.
async fn wait_for_capacity_refusal(app: &TestApp) -> (Option<String>, Value) {
    poll_until(
        "an ingest request is refused for capacity",
        Duration::from_secs(10),
        || async {
            // Not JSON: if it gets a permit after all, it is refused without side effects.
            let resp = app
                .client
                .post(app.url("/v1/events"))
                .body("not json")
                .send()
                .await
                .expect("POST /v1/events");
            if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
                return None;
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            Some((retry_after, resp.json().await.expect("a JSON body")))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_beyond_max_in_flight_is_refused_with_503_and_retry_after_instead_of_queued() {
    let app = TestApp::spawn_with(|s| s.ingest.max_in_flight = 1).await;
    // The only permit is held as a request being processed would hold it (processing takes
    // microseconds, too short to catch over HTTP; a body still arriving holds none).
    let held = app
        .state
        .ingest_permits
        .clone()
        .try_acquire_owned()
        .expect("the permit is free");

    let (retry_after, body) = wait_for_capacity_refusal(&app).await;
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(error_of(&body).contains("capacity"), "{body}");

    // Once the permit is back, ingest goes on.
    drop(held);
    app.post_ok(&[event("held", 1.0, "ok", None)]).await;
    assert_eq!(app.total("held", "1m").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_finishes_the_in_flight_request_and_persists_it() {
    let mut app = TestApp::spawn().await;
    let events: Vec<Value> = (0..5)
        .map(|i| event("inflight", i as f64, "ok", None))
        .collect();
    let held = app
        .start_partial_post(serde_json::to_vec(&events).unwrap(), 10)
        .await;
    eventually(
        "the held request is receiving its body",
        Duration::from_secs(10),
        || async { app.metric("graywatch_ingest_bodies_receiving").await == 1.0 },
    )
    .await;

    app.begin_shutdown();
    let addr = app.addr;
    eventually(
        "the listener closes",
        Duration::from_secs(10),
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    let (status, resp) = held.finish().await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], json!(events.len()), "{resp}");

    let (settings, clock, dir) = app.stop().await;
    let app = TestApp::resume(settings, clock, dir).await;
    assert_eq!(app.total("inflight", "15m").await, events.len() as u64);
}

/// Sends a request's head to `addr`, then `raw` (the rest of the head, or a body) one byte a
/// second until the server answers or closes; returns the status, the body and how long after
/// the head the answer came (status 0 and an empty body when the server closed without one).
async fn trickle(
    addr: std::net::SocketAddr,
    head: String,
    raw: Vec<u8>,
) -> (u16, String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.expect("send the head");
    let started = tokio::time::Instant::now();
    let writer = tokio::spawn(async move {
        for byte in raw {
            if wr.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Keep the connection open until the test is done with it.
        std::future::pending::<()>().await;
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                let code = head.split(' ').nth(1).and_then(|c| c.parse().ok());
                break Some((code.expect("a status line"), body.to_string()));
            }
        }
    };
    let elapsed = started.elapsed();
    writer.abort();
    let (code, body) = answer.unwrap_or((0, String::new()));
    (code, body, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trickling_their_bodies_lock_nobody_out_and_are_cut_with_408() {
    let timeout = Duration::from_secs(5);
    let app = TestApp::spawn_with(|s| s.ingest.body_timeout = timeout).await;
    // More slow clients than ingest permits (32 by default).
    let slow = 40;
    assert!(slow > app.settings.ingest.max_in_flight);
    let tricklers: Vec<_> = (0..slow)
        .map(|_| {
            let addr = app.addr;
            let head = format!(
                "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n"
            );
            tokio::spawn(trickle(addr, head, vec![b' '; 1000]))
        })
        .collect();
    eventually(
        "every slow client is sending its body",
        Duration::from_secs(10),
        || async { app.metric("graywatch_ingest_bodies_receiving").await == slow as f64 },
    )
    .await;

    // A normal batch is served at once, while every slow client still holds its connection.
    tokio::time::timeout(
        Duration::from_secs(3),
        app.post_ok(&[
            event("fast", 1.0, "ok", None),
            event("fast", 2.0, "ok", None),
        ]),
    )
    .await
    .expect("a normal POST is answered within 3 s");
    assert!(tricklers.iter().all(|t| !t.is_finished()));
    assert_eq!(app.total("fast", "1m").await, 2);

    for t in tricklers {
        let (code, body, elapsed) = t.await.expect("the slow client does not panic");
        assert_eq!(code, 408, "{body}");
        let body: Value = serde_json::from_str(&body).expect("a JSON answer");
        assert!(error_of(&body).contains("ingest.body_timeout"), "{body}");
        assert!(
            elapsed >= timeout - Duration::from_millis(100) && elapsed < timeout * 3,
            "cut after {elapsed:?}, timeout {timeout:?}"
        );
    }
    assert_eq!(app.metric("graywatch_ingest_bodies_receiving").await, 0.0);
    assert_eq!(
        app.metric("graywatch_ingest_bodies_rejected_total{reason=\"timeout\"}")
            .await,
        slow as f64,
        "every 408 is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_received_at_once_are_bounded_and_the_next_is_told_to_retry() {
    let app = TestApp::spawn_with(|s| {
        s.ingest.body_timeout = Duration::from_secs(3);
        s.ingest.max_receiving = 3;
    })
    .await;
    let head = |addr: std::net::SocketAddr| {
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n"
        )
    };
    let tricklers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(trickle(app.addr, head(app.addr), vec![b' '; 1000])))
        .collect();
    eventually(
        "three slow clients are sending their bodies",
        Duration::from_secs(10),
        || async { app.metric("graywatch_ingest_bodies_receiving").await == 3.0 },
    )
    .await;
    // A fourth body is refused before it is read, with a delay to come back after.
    let resp = app
        .client
        .post(app.url("/v1/events"))
        .json(&[event("fast", 1.0, "ok", None)])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.expect("a JSON answer");
    assert!(error_of(&body).contains("ingest.max_receiving"), "{body}");
    // Once the slow clients are cut off (408), bodies are received again.
    for t in tricklers {
        let (code, body, _) = t.await.expect("the slow client does not panic");
        assert_eq!(code, 408, "{body}");
    }
    app.post_ok(&[event("fast", 1.0, "ok", None)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_slow_to_send_headers_or_idle_after_a_response_are_closed() {
    let header_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(|s| s.http.header_timeout = header_timeout).await;
    let addr = app.addr;
    let bound = |elapsed: Duration| {
        assert!(
            elapsed >= header_timeout - Duration::from_millis(100) && elapsed < header_timeout * 8,
            "closed after {elapsed:?}, header timeout {header_timeout:?}"
        );
    };

    // Headers one byte a second: never complete, closed after the timeout.
    let head = "GET /healthz HTTP/1.1\r\n".to_string();
    let rest = format!("Host: {addr}\r\nX-Slow: {}\r\n\r\n", "x".repeat(100)).into_bytes();
    let (code, _, elapsed) = trickle(addr, head, rest).await;
    assert_ne!(
        code, 200,
        "a request whose headers never completed was served"
    );
    bound(elapsed);

    // A kept-alive connection that stays idle after its response is closed after as long.
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await.expect("send");
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut got))
        .await
        .expect("the idle connection is closed")
        .expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    bound(started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    let app = TestApp::spawn_with(|s| s.http.max_connections = 16).await;
    // Reach the server's health page once so that the client's own connection is open.
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    // 15 more idle connections fill the cap (the client holds the 16th).
    let mut idle = Vec::new();
    for _ in 0..15 {
        idle.push(
            tokio::net::TcpStream::connect(app.addr)
                .await
                .expect("connect"),
        );
    }
    let fresh = reqwest::Client::new();
    let url = app.url("/healthz");
    let mut waiting = tokio::spawn(async move { fresh.get(url).send().await.map(|r| r.status()) });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(early.is_err(), "a connection beyond the cap was served");
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once connections closed")
        .expect("no panic")
        .expect("a response");
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// 6. Probes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok_and_readyz_reports_ready() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

// ---------------------------------------------------------------------------------------------
// 7. The series endpoint, from memory and from storage
// ---------------------------------------------------------------------------------------------

/// Totals of the points of a series response, by point time.
fn point_totals(series: &Value) -> BTreeMap<i64, u64> {
    series["points"]
        .as_array()
        .expect("points is an array")
        .iter()
        .map(|p| (p["t_ms"].as_i64().unwrap(), p["total"].as_u64().unwrap()))
        .collect()
}

/// What each 1-minute point from `from` (aligned) to `to` (aligned) should total: point `t`
/// covers `[t - 1m, t)`.
fn expected_minute_points(timestamps: &[i64], from: i64, to: i64) -> BTreeMap<i64, u64> {
    let mut want: BTreeMap<i64, u64> = (1..=(to - from) / MINUTE)
        .map(|i| (from + i * MINUTE, 0))
        .collect();
    for &ts in timestamps {
        if let Some(n) = want.get_mut(&(minute_of(ts) + MINUTE)) {
            *n += 1;
        }
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_series_match_the_posted_per_minute_counts_from_memory_and_after_a_restart_from_storage()
 {
    let app = TestApp::spawn().await;
    let now = app.now();
    let mut rng = StdRng::seed_from_u64(7);
    // A different number of events in each of the last ten minutes and the current one.
    let mut timestamps = Vec::new();
    for k in 0..=10 {
        let minute = minute_of(now) - k * MINUTE;
        let latest = if k == 0 { now - minute } else { MINUTE - 1 };
        for _ in 0..rng.random_range(1..=30) {
            timestamps.push(minute + rng.random_range(0..=latest));
        }
    }
    let events: Vec<Value> = timestamps
        .iter()
        .map(|&ts| {
            let mut e = event("series-db", rng.random_range(1.0..50.0), "ok", Some(ts));
            e["instance"] = json!("i-7");
            e
        })
        .collect();
    app.post_ok(&events).await;

    let from = minute_of(now) - 12 * MINUTE;
    let to = minute_of(now) + MINUTE;
    let want = expected_minute_points(&timestamps, from, to);
    let query = format!("step=1m&window=1m&from={from}&to={to}");
    let instance_query = format!("instance=i-7&{query}");

    let live = app.series("series-db", &query).await;
    assert_eq!(live["resolution"], "1m");
    assert_eq!(point_totals(&live), want, "from memory");
    assert_eq!(
        point_totals(&app.series("series-db", &instance_query).await),
        want
    );

    // Same clock: the minutes come back from storage into memory.
    let app = app.restart().await;
    assert_eq!(
        point_totals(&app.series("series-db", &query).await),
        want,
        "after a restart"
    );

    // Twenty minutes later every one of those minutes is older than the memory ring.
    app.advance(20 * MINUTE);
    let stored = app.series("series-db", &query).await;
    assert_eq!(point_totals(&stored), want, "from storage");
    assert_eq!(
        point_totals(&app.series("series-db", &instance_query).await),
        want,
        "instance series from storage"
    );
    // Wider windows sum the stored minutes: a 5-minute window stepped by 5 minutes.
    let from5 = from - from.rem_euclid(5 * MINUTE);
    let to5 = to - to.rem_euclid(5 * MINUTE) + 5 * MINUTE;
    let five = app
        .series(
            "series-db",
            &format!("step=5m&window=5m&from={from5}&to={to5}"),
        )
        .await;
    let mut want5: BTreeMap<i64, u64> = point_totals(&five).keys().map(|&t| (t, 0)).collect();
    for &ts in &timestamps {
        let end = ts - ts.rem_euclid(5 * MINUTE) + 5 * MINUTE;
        *want5.get_mut(&end).expect("a point covers every event") += 1;
    }
    assert_eq!(point_totals(&five), want5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_older_than_the_memory_ring_are_persisted_and_served_from_storage() {
    let app = TestApp::spawn_with(|s| s.storage.flush_interval = Duration::from_secs(1)).await;
    let now = app.now();
    let minutes_ago = [20, 27, 33, 41, 50];
    let timestamps: Vec<i64> = minutes_ago
        .iter()
        .flat_map(|&k| {
            let minute = minute_of(now) - k * MINUTE;
            (0..k).map(move |j| minute + j * 997 % MINUTE)
        })
        .collect();
    let events: Vec<Value> = timestamps
        .iter()
        .map(|&ts| event("late-db", 4.0, "ok", Some(ts)))
        .collect();
    app.post_ok(&events).await;

    let from = minute_of(now) - 55 * MINUTE;
    let to = minute_of(now) - 15 * MINUTE;
    let want = expected_minute_points(&timestamps, from, to);
    let query = format!("step=1m&window=1m&from={from}&to={to}");
    // The background flusher writes late data within a flush interval or two.
    eventually(
        "late minutes are stored",
        Duration::from_secs(20),
        || async { point_totals(&app.series("late-db", &query).await) == want },
    )
    .await;
    // And they are in the 1-hour window.
    assert_eq!(app.total("late-db", "1h").await, timestamps.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_requests_are_bounded_in_work_and_in_concurrency() {
    let app = TestApp::spawn().await;
    app.post_ok(&[event("bounded", 3.0, "ok", None)]).await;
    let now = app.now();
    let refused = |query: String, param: &'static str| {
        let app = &app;
        async move {
            let path = format!("/v1/dependencies/bounded/series?{query}");
            let (status, body) = app.get(&path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            let error = error_of(&body).to_string();
            assert!(error.starts_with(&format!("{param}: ")), "{path}: {error}");
            error
        }
    };
    // A step finer than the buckets.
    refused("window=7d&step=1s".into(), "step").await;
    // A window longer than the data kept (storage.retention = 7d).
    let error = refused("window=8d&step=1d".into(), "window").await;
    assert!(error.contains("storage.retention"), "{error}");
    // A day-long window for each of 12 hours of minutes: a million bucket merges.
    let day = 24 * HOUR;
    let error = refused(
        format!("from={}&to={now}&step=1m&window=1d", now - 12 * HOUR),
        "window",
    )
    .await;
    assert!(
        error.contains(&graywatch::api::MAX_BUCKET_MERGES.to_string()),
        "{error}"
    );

    // A legal heavy query, the dashboard's week (1008 points of 10 minutes), answers.
    let week = 7 * day;
    let body = app
        .series(
            "bounded",
            &format!("from={}&to={now}&step=10m&heatmap=true", now - week),
        )
        .await;
    let points = body["points"].as_array().unwrap();
    // 1009: `to` is not on a 10-minute boundary, so the partial step at the end has a point.
    assert_eq!(points.len(), 1009, "{}", points.len());
    let total: u64 = points.iter().map(|p| p["total"].as_u64().unwrap()).sum();
    assert_eq!(total, 1);

    // With every series slot taken, the next read is told to come back.
    let held = app
        .state
        .series_permits
        .clone()
        .try_acquire_many_owned(graywatch::api::MAX_CONCURRENT_SERIES as u32)
        .expect("no series read is running");
    let resp = app
        .client
        .get(app.url("/v1/dependencies/bounded/series"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    drop(held);
    app.series("bounded", "step=1m").await;
}

/// Names of the dependencies on `GET /v1/breakers`.
async fn breaker_names(app: &TestApp) -> Vec<String> {
    let (status, body) = app.get("/v1/breakers").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut names: Vec<String> = body["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["dependency"].as_str().unwrap().to_string())
        .collect();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_idle_past_eviction_are_forgotten_unless_a_breaker_is_forced() {
    let app = TestApp::spawn_with(|s| s.storage.flush_interval = Duration::from_secs(1)).await;
    app.post_ok(&[
        event("gone", 2.0, "ok", None),
        event("forced", 2.0, "ok", None),
    ])
    .await;
    eventually(
        "both dependencies have breakers",
        Duration::from_secs(10),
        || async { breaker_names(&app).await == ["forced", "gone"] },
    )
    .await;
    let resp = app
        .client
        .put(app.url("/v1/breakers/forced"))
        .json(&json!({"state": "open", "reason": "maintenance", "ttl": "1d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Two hours without a call: the store drops both (once their minutes are written).
    app.advance(2 * HOUR);
    eventually(
        "the idle dependency leaves the store, the engine and the board",
        Duration::from_secs(20),
        || async {
            let (_, list) = app.get("/v1/dependencies").await;
            list["dependencies"].as_array().unwrap().is_empty()
                && breaker_names(&app).await == ["forced"]
        },
    )
    .await;
    let health = app.state.engine.lock().health();
    assert!(!health.contains_key("gone"), "{health:?}");
    // The forced breaker is kept, and so is what detection knows of its dependency.
    assert!(health.contains_key("forced"), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_and_overrides_refuse_huge_times_long_texts_and_long_durations() {
    let app = TestApp::spawn().await;
    let now = app.now();
    let day = 24 * HOUR;
    let silence = |extra: Value| {
        let mut b = json!({"dependency": "db", "comment": "deploy"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let long = "x".repeat(1_001);
    let cases = [
        (silence(json!({"duration": "31d"})), "duration"),
        (silence(json!({"duration": "100000000000y"})), "duration"),
        (silence(json!({"ends_at": now + 31 * day})), "ends_at"),
        (silence(json!({"ends_at": i64::MAX})), "ends_at"),
        (silence(json!({"ends_at": u64::MAX})), "ends_at"),
        (
            silence(json!({"starts_at": 1e18 as i64, "duration": "1h"})),
            "starts_at",
        ),
        (
            silence(json!({"starts_at": -5, "duration": "1h"})),
            "starts_at",
        ),
        (
            silence(json!({"starts_at": i64::MIN, "ends_at": i64::MAX})),
            "starts_at",
        ),
        (
            silence(json!({"duration": "1h", "comment": long})),
            "comment",
        ),
        (
            silence(json!({"duration": "1h", "dependency": "d".repeat(300)})),
            "dependency",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .send_json(reqwest::Method::POST, "/v1/silences", &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = error_of(&answer);
        assert!(error.starts_with(&format!("{field}: ")), "{body}: {error}");
    }
    let (status, answer) = app
        .send_json(
            reqwest::Method::POST,
            "/v1/silences",
            &silence(json!({"duration": "30d", "comment": "y".repeat(1_000)})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let overrides = [
        (json!({"state": "open", "reason": "x", "ttl": "8d"}), "ttl"),
        (
            json!({"state": "open", "reason": "x", "ttl": "100000000000y"}),
            "ttl",
        ),
        (
            json!({"state": "open", "reason": "x", "expires_at": now + 8 * day}),
            "expires_at",
        ),
        (
            json!({"state": "open", "reason": "x", "expires_at": i64::MAX}),
            "expires_at",
        ),
        (
            json!({"state": "open", "reason": "x", "expires_at": i64::MIN}),
            "expires_at",
        ),
        (
            json!({"state": "open", "reason": "x".repeat(1_001), "ttl": "1h"}),
            "reason",
        ),
    ];
    for (body, field) in overrides {
        let (status, answer) = app
            .send_json(reqwest::Method::PUT, "/v1/breakers/db", &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = error_of(&answer);
        assert!(error.starts_with(&format!("{field}: ")), "{body}: {error}");
    }
    let (status, answer) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/breakers/db",
            &json!({"state": "open", "reason": "drill", "ttl": "7d"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_thousand_silences_are_active_or_scheduled() {
    let app = TestApp::spawn().await;
    let body =
        |i: usize| json!({"dependency": format!("dep-{i}"), "duration": "1h", "comment": "bulk"});
    for i in 0..1_000 {
        let (status, answer) = app
            .send_json(reqwest::Method::POST, "/v1/silences", &body(i))
            .await;
        assert_eq!(status, StatusCode::CREATED, "silence {i}: {answer}");
    }
    let (status, answer) = app
        .send_json(reqwest::Method::POST, "/v1/silences", &body(1_000))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        error_of(&answer).starts_with("silences: at most 1000"),
        "{answer}"
    );
    // Expiring one makes room again.
    let (_, list) = app.get("/v1/silences").await;
    let id = list["silences"][0]["id"].as_i64().unwrap();
    let resp = app
        .client
        .delete(app.url(&format!("/v1/silences/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, answer) = app
        .send_json(reqwest::Method::POST, "/v1/silences", &body(1_000))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_override_limits_follow_the_limits_settings() {
    let app = TestApp::spawn_with(|s| {
        s.limits.max_silences = 2;
        s.limits.max_silence_duration = Duration::from_secs(2 * 3600);
        s.limits.max_comment_chars = 10;
        s.limits.max_override_ttl = Duration::from_secs(3600);
    })
    .await;
    let now = app.now();
    let silence = |extra: Value| {
        let mut b = json!({"dependency": "db", "comment": "deploy"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // Each refusal names the field and the setting; the defaults would have taken them all.
    let refused = [
        (
            silence(json!({"duration": "3h"})),
            "duration: at most 2h (limits.max_silence_duration)",
        ),
        (
            silence(json!({"ends_at": now + 3 * HOUR})),
            "ends_at: a silence lasts at most 2h from starts_at (limits.max_silence_duration)",
        ),
        (
            silence(json!({"duration": "1h", "comment": "x".repeat(11)})),
            "comment: at most 10 characters, got 11",
        ),
    ];
    for (body, error) in &refused {
        let (status, answer) = app
            .send_json(reqwest::Method::POST, "/v1/silences", body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error_of(&answer).starts_with(error), "{body}: {answer}");
    }
    // At the limits: accepted, until there are max_silences of them.
    for body in [
        silence(json!({"duration": "2h", "comment": "x".repeat(10)})),
        silence(json!({"ends_at": now + 2 * HOUR})),
    ] {
        let (status, answer) = app
            .send_json(reqwest::Method::POST, "/v1/silences", &body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {answer}");
    }
    let (status, answer) = app
        .send_json(
            reqwest::Method::POST,
            "/v1/silences",
            &silence(json!({"duration": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        error_of(&answer)
            .starts_with("silences: at most 2 active or scheduled silences (limits.max_silences)"),
        "{answer}"
    );

    let overrides = [
        (
            json!({"state": "open", "reason": "drill", "ttl": "2h"}),
            "ttl: at most 1h (limits.max_override_ttl)",
        ),
        (
            json!({"state": "open", "reason": "drill", "expires_at": now + 2 * HOUR}),
            "expires_at: an override lasts at most 1h from now (limits.max_override_ttl)",
        ),
        (
            json!({"state": "open", "reason": "x".repeat(11), "ttl": "1h"}),
            "reason: at most 10 characters, got 11",
        ),
    ];
    for (body, error) in &overrides {
        let (status, answer) = app
            .send_json(reqwest::Method::PUT, "/v1/breakers/db", body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error_of(&answer).starts_with(error), "{body}: {answer}");
    }
    let (_, breakers) = app.get("/v1/breakers").await;
    assert_eq!(breakers["breakers"], json!([]), "nothing was forced");
    let (status, answer) = app
        .send_json(
            reqwest::Method::PUT,
            "/v1/breakers/db",
            &json!({"state": "open", "reason": "x".repeat(10), "ttl": "1h"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Known server bugs: each test states the intended behaviour and fails on the current code.
// Run them with `cargo test --test api -- --ignored`.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_the_oldest_in_memory_minute_is_persisted_before_its_slot_is_reused() {
    // No background flush during the test: only the shutdown flush writes.
    let app = TestApp::spawn_with(|s| s.storage.flush_interval = Duration::from_secs(60)).await;
    let oldest_minute = minute_of(app.now()) - 15 * MINUTE;
    app.post_ok(&[event("reused", 1.0, "ok", Some(oldest_minute + SECOND))])
        .await;
    // A minute later a new event's minute takes the ring slot of the oldest one.
    app.advance(MINUTE);
    app.post_ok(&[event("reused", 1.0, "ok", None)]).await;
    app.advance(10 * SECOND);
    let before = app.total("reused", "1h").await;
    assert_eq!(before, 2);

    let app = app.restart().await;
    assert_eq!(app.total("reused", "1h").await, before, "after a restart");
    let query = format!(
        "step=1m&window=1m&from={oldest_minute}&to={}",
        oldest_minute + MINUTE
    );
    assert_eq!(
        app.series("reused", &query).await["points"][0]["total"],
        json!(1),
        "the stored minute"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_for_one_minute_flushed_twice_keeps_both_parts() {
    let app = TestApp::spawn_with(|s| s.storage.flush_interval = Duration::from_secs(1)).await;
    let minute = minute_of(app.now()) - 30 * MINUTE;
    let query = format!("step=1m&window=1m&from={minute}&to={}", minute + MINUTE);
    let stored = || async { app.series("late-twice", &query).await["points"][0]["total"].clone() };

    app.post_ok(&[event("late-twice", 1.0, "ok", Some(minute + SECOND))])
        .await;
    eventually(
        "the first part is stored",
        Duration::from_secs(10),
        || async { stored().await == json!(1) },
    )
    .await;
    app.post_ok(&[
        event("late-twice", 1.0, "ok", Some(minute + 2 * SECOND)),
        event("late-twice", 1.0, "ok", Some(minute + 3 * SECOND)),
    ])
    .await;
    eventually("both parts are stored", Duration::from_secs(10), || async {
        stored().await == json!(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_by_the_series_limit_leaves_no_trace() {
    let app = TestApp::spawn_with(|s| {
        s.limits = LimitSettings {
            max_series: 4,
            ..LimitSettings::default()
        }
    })
    .await;
    let mut first = event("svc", 1.0, "ok", None);
    first["instance"] = json!("i-1");
    first["zone"] = json!("z-1");
    app.post_ok(&[first]).await;
    // Room for one more series: a new dependency's total, but not its instance too.
    let mut refused = event("ghost", 1.0, "ok", None);
    refused["instance"] = json!("i-1");
    let (status, resp) = app.post_events(&json!([refused])).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["rejected"], json!(1), "{resp}");

    let (status, body) = app.get("/v1/dependencies/ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The last series is still free.
    app.post_ok(&[event("other", 1.0, "ok", None)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_from_and_to_are_refused_with_400_instead_of_dropping_the_connection() {
    let app = TestApp::spawn().await;
    app.post_ok(&[event("db", 1.0, "ok", None)]).await;
    for query in [
        format!("from={}&to={}", i64::MIN, i64::MAX),
        format!("to={}", i64::MIN),
        format!("from=0&to={}&step=1m", i64::MAX),
    ] {
        let resp = app
            .client
            .get(app.url(&format!("/v1/dependencies/db/series?{query}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{query}: no response: {e}"));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

/// Reads of health never wait for an evaluation: the engine's lock is held while it judges
/// every dependency (a good part of a second with many series), so with that lock held here
/// the dependency list, the dashboard's overview and `/metrics` must still answer, with the
/// health the last evaluation published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_health_do_not_wait_for_an_evaluation_in_progress() {
    let app = spawn_quick(|_| {}).await;
    poll_until(
        "payments-api is failing",
        Duration::from_secs(30),
        || async {
            app.advance(SECOND);
            app.post_ok(&failing(app.now())).await;
            let (_, body) = app.get("/v1/dependencies").await;
            body["dependencies"]
                .as_array()?
                .iter()
                .any(|d| d["name"] == DEP && d["health"]["state"] == "failing")
                .then_some(())
        },
    )
    .await;

    // An evaluation that never ends: the lock held until the reads are done.
    let engine = app.state.engine.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _evaluating = engine.lock();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    let read = |path: &'static str| {
        let request = app.client.get(app.url(path)).send();
        async move {
            let response = tokio::time::timeout(Duration::from_secs(10), request)
                .await
                .unwrap_or_else(|_| panic!("GET {path} waited for the evaluation"))
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            response.text().await.unwrap()
        }
    };
    let list: Value = serde_json::from_str(&read("/v1/dependencies").await).unwrap();
    let overview: Value = serde_json::from_str(&read("/v1/overview").await).unwrap();
    let metrics = read("/metrics").await;
    release_tx.send(()).unwrap();
    holder.join().unwrap();

    for (what, body) in [("list", &list), ("overview", &overview)] {
        let row = body["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == DEP)
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert_eq!(row["health"]["state"], "failing", "{what}: {row}");
    }
    let health = format!("graywatch_dependency_health{{dependency=\"{DEP}\"}} 2");
    assert!(
        metrics.lines().any(|l| l == health),
        "{health} in {metrics}"
    );
}
