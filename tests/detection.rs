//! Live detection: the alert lifecycle of the real daemon, spoken to over HTTP on an
//! ephemeral port, with a manual clock.
//!
//! The detection loop runs on a real-time interval (`evaluate_every = 100ms` here) and reads
//! the manual clock. A test therefore never knows which clock value an evaluation saw: it moves
//! the clock in small steps, feeding events after each step, and polls the API until the
//! expected state shows (see [`drive_until`]). Every dependency gets `fire_after = 1s` and
//! `resolve_after = 1s`, so a lifecycle takes seconds of event time instead of a minute.
//!
//! A negative result ("nothing fired") is only meaningful once the daemon has evaluated the
//! data in question. [`wait_for_evaluations`] provides that barrier: it makes a separate canary
//! dependency fail until its alert fires, then recover until it resolves, which takes at least
//! four evaluations (each of which evaluates every dependency).

// Each test crate uses a different part of the shared harness.
#[allow(dead_code)]
mod common;

use std::cell::RefCell;
use std::time::Duration;

use common::*;
use graywatch::detect::DependencySpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long (real time) any expected state may take to show.
const DEADLINE: Duration = Duration::from_secs(30);
/// Clock step between two feeds of events while waiting for the detectors.
const STEP_MS: i64 = 100;
/// Dependency used as an evaluation barrier; see [`wait_for_evaluations`].
const CANARY: &str = "canary-db";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A server evaluating every 100 ms, with `fire_after = resolve_after = 1s` for `dependencies`
/// (and for the canary).
async fn spawn_detecting(dependencies: &[&str]) -> TestApp {
    TestApp::spawn_with(|s| {
        s.detection.evaluate_every = Duration::from_millis(100);
        for name in dependencies.iter().chain([&CANARY]) {
            s.dependencies.insert(
                name.to_string(),
                DependencySpec {
                    fire_after: Some(Duration::from_secs(1)),
                    resolve_after: Some(Duration::from_secs(1)),
                    ..Default::default()
                },
            );
        }
    })
    .await
}

/// `n` calls of 20 ms with `outcome` at `ts`.
fn calls(dependency: &str, n: usize, outcome: &str, ts: i64) -> Vec<Value> {
    (0..n)
        .map(|_| event(dependency, 20.0, outcome, Some(ts)))
        .collect()
}

/// `n` calls of `instance` at `ts`, of which `errors` fail.
fn instance_calls(
    dependency: &str,
    instance: &str,
    n: usize,
    errors: usize,
    ts: i64,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut e = event(
                dependency,
                20.0,
                if i < errors { "error" } else { "ok" },
                Some(ts),
            );
            e["instance"] = json!(instance);
            e
        })
        .collect()
}

/// `GET /v1/alerts?{query}`, which must succeed; the `alerts` array.
async fn alerts(app: &TestApp, query: &str) -> Vec<Value> {
    let path = format!("/v1/alerts?{query}");
    let (status, body) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: `alerts` is an array: {body}"))
        .clone()
}

/// `GET /v1/alerts/{id}`, which must succeed.
async fn alert(app: &TestApp, id: i64) -> Value {
    let path = format!("/v1/alerts/{id}");
    let (status, body) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Sends only healthy payments-api calls, two minutes on, until alert `id` resolves; returns
/// the alert.
async fn recover(app: &TestApp, id: i64, what: &str) -> Value {
    app.advance(2 * MINUTE);
    drive_until(
        app,
        what,
        STEP_MS,
        |now| calls("payments-api", 40, "ok", now),
        async |app: &TestApp| {
            let a = alert(app, id).await;
            (a["state"] == "resolved").then_some(a)
        },
    )
    .await
}

fn id_of(alert: &Value) -> i64 {
    alert["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("an alert has an integer id: {alert}"))
}

fn ms_of(alert: &Value, key: &str) -> i64 {
    let s = alert[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is a string: {alert}"));
    graywatch::time::parse_rfc3339(s).unwrap_or_else(|| panic!("`{key}` is RFC 3339: {alert}"))
}

/// The dependency's entry in `GET /v1/dependencies`.
async fn listed(app: &TestApp, name: &str) -> Value {
    let (status, body) = app.get("/v1/dependencies").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["dependencies"]
        .as_array()
        .unwrap_or_else(|| panic!("`dependencies` is an array: {body}"))
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {body}"))
        .clone()
}

/// Moves the clock `step_ms` at a time, posting `feed(now)` after each move, until `check`
/// sees what it waits for (within [`DEADLINE`] of real time).
async fn drive_until<T>(
    app: &TestApp,
    what: &str,
    step_ms: i64,
    feed: impl Fn(i64) -> Vec<Value>,
    check: impl AsyncFn(&TestApp) -> Option<T>,
) -> T {
    let (feed, check) = (&feed, &check);
    poll_until(what, DEADLINE, || async move {
        app.advance(step_ms);
        app.post_ok(&feed(app.now())).await;
        check(app).await
    })
    .await
}

/// The firing alert of `dependency` whose detector is `detector`, if listed.
async fn firing(app: &TestApp, dependency: &str, detector: &str) -> Option<Value> {
    alerts(app, &format!("state=firing&dependency={dependency}"))
        .await
        .into_iter()
        .find(|a| a["detector"] == detector)
}

/// Makes `dependency` fail hard (every call an error) until its alert fires; returns the alert
/// as listed by `GET /v1/alerts?state=firing`. Posts 200 errors at the current clock first.
async fn fail_until_fired(app: &TestApp, dependency: &str) -> Value {
    app.post_ok(&calls(dependency, 200, "error", app.now()))
        .await;
    drive_until(
        app,
        &format!("a hard_failure alert of {dependency} is firing"),
        STEP_MS,
        |now| calls(dependency, 20, "error", now),
        async |app: &TestApp| firing(app, dependency, "hard_failure").await,
    )
    .await
}

/// Returns once the daemon has evaluated every dependency several times since the call, at
/// the clock of the call and later: the canary dependency fails until its alert fires (two
/// evaluations at least `fire_after` apart), then recovers until the alert resolves (two more),
/// which leaves it ready for the next barrier. `feed(now)` goes on feeding the other
/// dependencies meanwhile.
async fn wait_for_evaluations(app: &TestApp, feed: impl Fn(i64) -> Vec<Value>) {
    let feed_with = |outcome: &'static str| {
        let feed = &feed;
        move |now: i64| {
            let mut events = feed(now);
            events.extend(calls(CANARY, 40, outcome, now));
            events
        }
    };
    let canary = drive_until(
        app,
        "the canary's alert fires (evaluation barrier)",
        STEP_MS,
        feed_with("error"),
        async |app: &TestApp| firing(app, CANARY, "hard_failure").await,
    )
    .await;
    let id = id_of(&canary);
    drive_until(
        app,
        "the canary's alert resolves (evaluation barrier)",
        STEP_MS,
        feed_with("ok"),
        async |app: &TestApp| (alert(app, id).await["state"] == "resolved").then_some(()),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Firing and resolving
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_failure_fires_a_failing_alert_with_evidence_and_marks_the_dependency_failing() {
    let app = spawn_detecting(&["payments-api"]).await;
    let t0 = app.now();
    let listed_alert = fail_until_fired(&app, "payments-api").await;

    assert_eq!(listed_alert["dependency"], "payments-api", "{listed_alert}");
    assert_eq!(listed_alert["detector"], "hard_failure", "{listed_alert}");
    assert_eq!(listed_alert["severity"], "failing", "{listed_alert}");
    assert_eq!(listed_alert["state"], "firing", "{listed_alert}");
    assert!(listed_alert.get("instance").is_none(), "{listed_alert}");
    assert!(listed_alert.get("zone").is_none(), "{listed_alert}");
    assert!(listed_alert.get("resolved_at").is_none(), "{listed_alert}");
    assert!(
        !listed_alert["summary"].as_str().unwrap_or("").is_empty(),
        "{listed_alert}"
    );
    // The condition must have held for fire_after (1 s) before the alert started.
    let started = ms_of(&listed_alert, "started_at");
    assert!(
        started >= t0 + SECOND && started <= app.now(),
        "started_at {started} must lie in [{}, {}]: {listed_alert}",
        t0 + SECOND,
        app.now()
    );

    // The evidence holds the figures the detector judged and the 1-minute window stats.
    let evidence = &listed_alert["evidence"];
    assert!(evidence.is_object(), "{listed_alert}");
    assert_eq!(evidence["rate"], json!(1.0), "{evidence}");
    assert_eq!(evidence["timeouts"], json!(0), "{evidence}");
    let calls_judged = evidence["calls"].as_u64().expect("evidence.calls");
    assert!(calls_judged >= 200, "{evidence}");
    assert_eq!(evidence["errors"], json!(calls_judged), "{evidence}");
    let stats = &evidence["window_stats_1m"];
    let total = stats["total"].as_u64().expect("window_stats_1m.total");
    assert!(total >= 200, "{evidence}");
    assert_eq!(stats["error"], json!(total), "{evidence}");
    assert_eq!(stats["ok"], json!(0), "{evidence}");
    assert_eq!(stats["error_rate"], json!(1.0), "{evidence}");

    // One alert for the occurrence, served the same by id.
    let id = id_of(&listed_alert);
    assert_eq!(alert(&app, id).await, listed_alert);
    let all = alerts(&app, "dependency=payments-api").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(id_of(&all[0]), id);

    let summary = listed(&app, "payments-api").await;
    assert_eq!(summary["health"]["state"], "failing", "{summary}");
    let detail = app.detail("payments-api", "1m").await;
    assert_eq!(detail["health"]["state"], "failing", "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fired_alert_resolves_once_only_healthy_calls_arrive_and_health_returns_to_healthy() {
    let app = spawn_detecting(&["payments-api"]).await;
    let fired = fail_until_fired(&app, "payments-api").await;
    let id = id_of(&fired);
    let started = ms_of(&fired, "started_at");

    // Recovery: the failures leave the 1-minute window; only healthy calls arrive.
    let resolved = recover(&app, id, "the alert is resolved").await;

    let resolved_at = ms_of(&resolved, "resolved_at");
    assert!(
        resolved_at >= started + 2 * MINUTE && resolved_at <= app.now(),
        "resolved_at {resolved_at}: {resolved}"
    );
    // It is the same occurrence: identity, start and description are unchanged.
    for key in [
        "fingerprint",
        "dependency",
        "detector",
        "severity",
        "started_at",
        "summary",
        "evidence",
    ] {
        assert_eq!(resolved[key], fired[key], "{key}: {resolved} vs {fired}");
    }

    let summary = listed(&app, "payments-api").await;
    assert_eq!(summary["health"]["state"], "healthy", "{summary}");
    let detail = app.detail("payments-api", "1m").await;
    assert_eq!(detail["health"]["state"], "healthy", "{detail}");

    let listed_resolved = alerts(&app, "state=resolved").await;
    assert!(
        listed_resolved.iter().any(|a| id_of(a) == id),
        "{listed_resolved:?}"
    );
    let listed_firing = alerts(&app, "state=firing&dependency=payments-api").await;
    assert!(listed_firing.is_empty(), "{listed_firing:?}");
    // Exactly one row for the occurrence: resolving updated it rather than adding one.
    let all = alerts(&app, "dependency=payments-api").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0], resolved);
}

// ---------------------------------------------------------------------------------------------
// Localization
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_instance_of_ten_is_named_by_its_alert_and_in_health_and_no_other_is() {
    let app = spawn_detecting(&["orders-db"]).await;
    let instances: Vec<String> = (0..10).map(|i| format!("10.0.2.{}", 20 + i)).collect();
    let bad = instances[3].clone();
    // Per instance: n calls, of which the bad instance fails 80%.
    let feed = |n: usize, ts: i64| -> Vec<Value> {
        instances
            .iter()
            .flat_map(|i| {
                let errors = if *i == bad { n * 4 / 5 } else { 0 };
                instance_calls("orders-db", i, n, errors, ts)
            })
            .collect()
    };
    app.post_ok(&feed(60, app.now())).await;
    let fired = drive_until(
        &app,
        "an alert names the bad instance",
        STEP_MS,
        |now| feed(5, now),
        async |app: &TestApp| {
            alerts(app, "state=firing&dependency=orders-db")
                .await
                .into_iter()
                .find(|a| a["instance"] == bad.as_str())
        },
    )
    .await;

    let detector = fired["detector"].as_str().unwrap_or_default();
    assert!(
        ["peer_errors", "hard_failure"].contains(&detector),
        "{fired}"
    );
    assert_eq!(fired["dependency"], "orders-db", "{fired}");
    assert!(fired.get("zone").is_none(), "{fired}");

    let detail = app.detail("orders-db", "1m").await;
    let health = &detail["health"];
    let unhealthy: Vec<&String> = health["instances"]
        .as_object()
        .unwrap_or_else(|| panic!("health.instances is an object: {detail}"))
        .keys()
        .collect();
    assert_eq!(unhealthy, [&bad], "{health}");
    assert_ne!(health["instances"][&bad], "healthy", "{health}");
    // A localized problem degrades the dependency as a whole, without failing it.
    assert_eq!(health["state"], "degraded", "{health}");

    // Every alert of the dependency (firing or not) is about the bad instance: the problem is
    // neither blamed on a healthy instance nor on the whole dependency.
    let all = alerts(&app, "dependency=orders-db").await;
    assert!(!all.is_empty());
    for a in &all {
        assert_eq!(a["instance"], bad.as_str(), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_caller_is_named_by_its_alert_leaves_the_dependency_healthy_and_survives_a_restart()
 {
    let app = spawn_detecting(&["orders-db"]).await;
    let callers = ["checkout", "search", "billing-batch", "mobile-bff"];
    let bad = "billing-batch";
    let instances: Vec<String> = (0..6).map(|i| format!("10.0.2.{}", 20 + i)).collect();
    // Per caller: n calls spread over every instance; the bad caller fails 80% of them, so
    // every instance sees the same share of errors and the dependency a fifth.
    let feed = |n: usize, ts: i64| -> Vec<Value> {
        callers
            .iter()
            .flat_map(|c| {
                let errors = if *c == bad { n * 4 / 5 } else { 0 };
                (0..n).map(move |k| (c, k < errors, k))
            })
            .map(|(c, failed, k)| {
                let mut e = event(
                    "orders-db",
                    20.0,
                    if failed { "error" } else { "ok" },
                    Some(ts),
                );
                e["instance"] = json!(instances[k % instances.len()]);
                e["source"] = json!(c);
                e
            })
            .collect()
    };
    app.post_ok(&feed(60, app.now())).await;
    let fired = drive_until(
        &app,
        "an alert names the bad caller",
        STEP_MS,
        |now| feed(6, now),
        async |app: &TestApp| {
            alerts(app, "state=firing&dependency=orders-db")
                .await
                .into_iter()
                .find(|a| a["source"] == bad)
        },
    )
    .await;
    assert_eq!(
        fired["fingerprint"], "orders-db/source=billing-batch",
        "{fired}"
    );
    assert!(
        fired.get("instance").is_none() && fired.get("zone").is_none(),
        "{fired}"
    );
    let detector = fired["detector"].as_str().unwrap_or_default();
    assert!(
        ["peer_errors", "hard_failure"].contains(&detector),
        "{fired}"
    );
    assert_eq!(alert(&app, id_of(&fired)).await["source"], bad);

    // The caller is unhealthy; the dependency, which serves its other callers well, is not.
    let detail = app.detail("orders-db", "1m").await;
    let health = &detail["health"];
    let bad_callers: Vec<&String> = health["sources"]
        .as_object()
        .unwrap_or_else(|| panic!("health.sources is an object: {detail}"))
        .keys()
        .collect();
    assert_eq!(bad_callers, [bad], "{health}");
    assert_eq!(health["state"], "healthy", "{health}");
    assert_eq!(health["instances"], json!({}), "{health}");

    // Neither an instance nor the dependency is blamed, before or after a restart (the
    // stored alert is restored on its caller, not fired again as a second row).
    let app = app.restart().await;
    wait_for_evaluations(&app, |now| feed(6, now)).await;
    let all = alerts(&app, "dependency=orders-db").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(id_of(&all[0]), id_of(&fired), "{all:?}");
    assert_eq!(all[0]["source"], bad, "{all:?}");
    assert_eq!(all[0]["state"], "firing", "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_going_down_alerts_within_three_seconds_despite_the_default_hold() {
    // No spec: `fire_after` is the default 15 s, so only the two-whole-seconds rule can be
    // this fast.
    let app = TestApp::spawn_with(|s| {
        s.detection.evaluate_every = Duration::from_millis(100);
    })
    .await;
    // Healthy calls for a few seconds, 20 a second.
    for _ in 0..30 {
        app.advance(STEP_MS);
        app.post_ok(&calls("checkout-db", 2, "ok", app.now())).await;
    }
    let onset = app.now();
    let fired = drive_until(
        &app,
        "checkout-db's alert fires",
        STEP_MS,
        |now| calls("checkout-db", 2, "error", now),
        async |app: &TestApp| {
            alerts(app, "state=firing&dependency=checkout-db")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(fired["detector"], "hard_failure", "{fired}");
    assert_eq!(fired["severity"], "failing", "{fired}");
    let after = ms_of(&fired, "started_at") - onset;
    assert!(after <= 3_000, "fired {after} ms after the onset: {fired}");
    // The breaker opened with it.
    let (status, body) = app.get("/v1/breakers/checkout-db").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["breakers"][0]["state"], "open", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_instances_going_down_together_are_one_alert_on_the_dependency() {
    let app = spawn_detecting(&["orders-db"]).await;
    let instances: Vec<String> = (0..10).map(|i| format!("10.0.3.{}", 20 + i)).collect();
    // Every call of every instance fails.
    let feed = |n: usize, ts: i64| -> Vec<Value> {
        instances
            .iter()
            .flat_map(|i| instance_calls("orders-db", i, n, n, ts))
            .collect()
    };
    app.post_ok(&feed(30, app.now())).await;
    let fired = drive_until(
        &app,
        "an alert of orders-db fires",
        STEP_MS,
        |now| feed(3, now),
        async |app: &TestApp| {
            alerts(app, "state=firing&dependency=orders-db")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    // Let the detectors run on well past the firing: any per-instance alert would fire by then.
    wait_for_evaluations(&app, |now| feed(3, now)).await;

    let all = alerts(&app, "dependency=orders-db").await;
    assert_eq!(all.len(), 1, "one incident, one alert: {all:?}");
    let alert = &all[0];
    assert_eq!(alert["id"], fired["id"]);
    assert!(alert.get("instance").is_none(), "{alert}");
    assert_eq!(alert["severity"], "failing", "{alert}");
    let detectors: Vec<&str> = alert["detectors"]
        .as_array()
        .unwrap_or_else(|| panic!("detectors is a list: {alert}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(detectors[0], alert["detector"], "{alert}");
    assert!(detectors.contains(&"hard_failure"), "{alert}");
    // The instances it explains are named in its evidence instead of paging on their own.
    let evidence = &alert["evidence"];
    let findings = evidence["findings"].as_array().expect("findings listed");
    assert!(!findings.is_empty(), "{evidence}");
    let absorbed = evidence["absorbed"]
        .as_array()
        .expect("absorbed instances listed");
    assert!(
        absorbed.iter().any(|a| a == "instance=10.0.3.20"),
        "{evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_whose_calls_stop_is_no_data_and_keeps_its_alert_open() {
    let app = spawn_detecting(&["payments-api"]).await;
    let fired = fail_until_fired(&app, "payments-api").await;
    // No more calls of payments-api: after a minute its windows hold nothing to judge.
    app.advance(61_000);
    let health = drive_until(
        &app,
        "payments-api is reported as no_data",
        STEP_MS,
        |now| calls(CANARY, 5, "ok", now),
        async |app: &TestApp| {
            let row = listed(app, "payments-api").await;
            (row["health"]["state"] == "no_data").then_some(row)
        },
    )
    .await;
    assert_eq!(health["health"]["state"], "no_data", "{health}");
    // Silence is not recovery: the alert is still open after the detectors ran on.
    wait_for_evaluations(&app, |_| Vec::new()).await;
    assert_eq!(alert(&app, id_of(&fired)).await["state"], "firing");
}

// ---------------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_day_long_anchor_is_read_back_from_stored_minutes_without_incidents() {
    use graywatch::detect::{AlertStatus, DetectorKind, Severity, Transition};
    use graywatch::storage::{RollupRow, Storage};
    use graywatch::window::{Counts, SeriesKey, SeriesKind, encode_histogram, new_histogram};

    const DEP: &str = "ledger-db";
    let app = TestApp::spawn().await;
    let (settings, clock, dir) = app.stop().await;
    let now = clock.load(std::sync::atomic::Ordering::SeqCst);
    // 23 hours of stored minutes of the dependency (60 calls of 10 ms each), up to now, as
    // an earlier run of this node would have written them.
    let first = minute_of(now) - 23 * 60 * MINUTE;
    let mut hist = new_histogram();
    hist.record_n(10_000, 60).unwrap();
    let histogram = encode_histogram(&hist);
    let rows: Vec<RollupRow> = (0..23 * 60)
        .map(|m| RollupRow {
            key: SeriesKey {
                dependency: DEP.into(),
                kind: SeriesKind::Dependency,
                label: String::new(),
            },
            minute_ms: first + m * MINUTE,
            node: settings.node_id.clone(),
            part: 0,
            counts: Counts {
                ok: 60,
                ..Counts::default()
            },
            histogram: histogram.clone(),
        })
        .collect();
    let storage = Storage::connect(&settings.database).await.unwrap();
    storage.write_rollups(&rows).await.unwrap();
    // Its first three hours were an incident: a latency alert that resolved. Those minutes
    // did not join the baseline live, and are not read back.
    let incident = |status, resolved_ms: Option<i64>| Transition {
        at_ms: resolved_ms.unwrap_or(first),
        status,
        dependency: DEP.into(),
        instance: None,
        zone: None,
        source: None,
        detector: DetectorKind::LatencyTail,
        detectors: vec![DetectorKind::LatencyTail],
        severity: Severity::Degraded,
        previous_severity: None,
        summary: "p99 above the baseline".into(),
        evidence: json!({}),
        started_ms: first,
        resolved_ms,
    };
    let resolved = first + 3 * 60 * MINUTE;
    for t in [
        incident(AlertStatus::Firing, None),
        incident(AlertStatus::Resolved, Some(resolved)),
    ] {
        storage
            .record_transitions(&[t], now, &|_, _| Vec::new())
            .await
            .unwrap();
    }
    storage.close().await;

    let app = TestApp::resume(settings, clock, dir).await;
    let series =
        format!("graywatch_dependency_anchor_start_timestamp_seconds{{dependency=\"{DEP}\"}}");
    let start = poll_until("the anchor read back", DEADLINE, || async {
        let v = app.try_metric(&series).await?;
        // Before the stored day is read back, the anchor starts with the warmed hour.
        (v * 1000.0 < (now - 2 * 60 * MINUTE) as f64).then_some(v)
    })
    .await;
    assert_eq!(
        (start * 1000.0).round() as i64,
        resolved,
        "the anchor starts with the first minute after the incident ({} minutes after the first stored one)",
        (resolved - first) / MINUTE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_survives_a_restart_without_firing_twice_and_resolves_later() {
    let app = spawn_detecting(&["payments-api"]).await;
    let fired = fail_until_fired(&app, "payments-api").await;
    let id = id_of(&fired);

    let app = app.restart().await;
    let after = alerts(&app, "state=firing&dependency=payments-api").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(id_of(&after[0]), id, "{after:?}");
    assert_eq!(after[0]["started_at"], fired["started_at"], "{after:?}");

    // The failure goes on after the restart. Had the daemon forgotten the alert, the
    // condition would fire it again within fire_after, as a second row.
    wait_for_evaluations(&app, |now| calls("payments-api", 20, "error", now)).await;
    let all = alerts(&app, "dependency=payments-api").await;
    assert_eq!(all.len(), 1, "one row for the fingerprint: {all:?}");
    assert_eq!(id_of(&all[0]), id, "{all:?}");
    assert_eq!(all[0]["state"], "firing", "{all:?}");
    assert_eq!(all[0]["fingerprint"], fired["fingerprint"], "{all:?}");
    let detail = app.detail("payments-api", "1m").await;
    assert_eq!(detail["health"]["state"], "failing", "{detail}");

    // The restored alert resolves through the usual clear spell, closing the same row.
    let resolved = recover(&app, id, "the restored alert is resolved").await;
    assert_eq!(resolved["started_at"], fired["started_at"], "{resolved}");
    let all = alerts(&app, "dependency=payments-api").await;
    assert_eq!(all, [resolved]);
    let detail = app.detail("payments-api", "1m").await;
    assert_eq!(detail["health"]["state"], "healthy", "{detail}");
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_queries_with_bad_parameters_are_refused_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (path, param) in [
        ("/v1/alerts?state=bogus", "state"),
        ("/v1/alerts?limit=0", "limit"),
        ("/v1/alerts?limit=1001", "limit"),
        ("/v1/alerts?limit=ten", "limit"),
        ("/v1/alerts/abc", "id"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {body}");
        assert!(
            error_of(&body).contains(param),
            "GET {path}: the error names `{param}`: {body}"
        );
    }
    let (status, body) = app.get("/v1/alerts/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    error_of(&body);

    // The valid forms of the same parameters.
    for path in [
        "/v1/alerts",
        "/v1/alerts?state=firing",
        "/v1/alerts?state=resolved&limit=1000",
        "/v1/alerts?limit=1",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        assert_eq!(body["alerts"], json!([]), "GET {path}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// No false alarms
// ---------------------------------------------------------------------------------------------

/// `per_s` ok calls a second of `dependency` over the `span_ms` before `now`, with log-normal
/// latencies (median `median_ms`, sigma 0.4) drawn from `rng`.
fn healthy_calls(
    rng: &mut StdRng,
    dependency: &str,
    median_ms: f64,
    now: i64,
    span_ms: i64,
    per_s: i64,
) -> Vec<Value> {
    let latency = LogNormal::new(median_ms.ln(), 0.4).unwrap();
    (0..per_s * span_ms / SECOND)
        .map(|_| {
            let ts = now - rng.random_range(0..span_ms);
            event(dependency, latency.sample(rng), "ok", Some(ts))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_dependency_learns_a_baseline_and_raises_no_alert() {
    let app = spawn_detecting(&["search-api"]).await;
    let rng = RefCell::new(StdRng::seed_from_u64(7));
    let healthy = |now: i64, span_ms: i64| {
        healthy_calls(&mut rng.borrow_mut(), "search-api", 40.0, now, span_ms, 20)
    };

    // Eight minutes of clock in five-second steps: enough healthy minutes for the baseline
    // (5 minutes, each absorbed 90 s after it ends), so that the statistical detectors judge
    // the dependency from then on, not only the hard-failure one.
    for _ in 0..8 * 12 {
        app.advance(5 * SECOND);
        app.post_ok(&healthy(app.now(), 5 * SECOND)).await;
    }
    wait_for_evaluations(&app, |now| healthy(now, STEP_MS)).await;
    let detail = app.detail("search-api", "1m").await;
    assert_eq!(detail["health"]["baseline_ready"], true, "{detail}");

    // A minute of one-second steps, judged against the baseline.
    for _ in 0..60 {
        app.advance(SECOND);
        app.post_ok(&healthy(app.now(), SECOND)).await;
    }
    wait_for_evaluations(&app, |now| healthy(now, STEP_MS)).await;

    let raised = alerts(&app, "dependency=search-api").await;
    assert!(raised.is_empty(), "{raised:?}");
    let detail = app.detail("search-api", "1m").await;
    assert_eq!(detail["health"]["state"], "healthy", "{detail}");
    assert_eq!(detail["health"]["instances"], json!({}), "{detail}");
    assert_eq!(detail["health"]["zones"], json!({}), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_ready_is_reported_once_the_baseline_detectors_judge_and_not_before() {
    let app = spawn_detecting(&["search-api"]).await;
    let rng = RefCell::new(StdRng::seed_from_u64(11));
    let calls_at = |median_ms: f64, now: i64, span_ms: i64| {
        healthy_calls(
            &mut rng.borrow_mut(),
            "search-api",
            median_ms,
            now,
            span_ms,
            20,
        )
    };

    // Cold start: the baseline detectors need 5 healthy minutes (and 200 calls); the first
    // complete minute is learned 90 s after it ends, the fifth not before 6.5 min of traffic.
    let start = app.now();
    drive_until(
        &app,
        "health.baseline_ready of search-api",
        5 * SECOND,
        |now| calls_at(40.0, now, 5 * SECOND),
        async |app: &TestApp| {
            let d = app.detail("search-api", "1m").await;
            (d["health"]["baseline_ready"] == true).then_some(())
        },
    )
    .await;
    let learned_for = app.now() - start;
    assert!(
        learned_for >= 5 * MINUTE,
        "baseline_ready after only {} s of traffic",
        learned_for / SECOND
    );

    // Ready means judged: every call ten times slower is a latency-tail shift.
    let fired = drive_until(
        &app,
        "a latency_tail alert of search-api fires",
        STEP_MS,
        |now| calls_at(400.0, now, STEP_MS * 4),
        async |app: &TestApp| firing(app, "search-api", "latency_tail").await,
    )
    .await;
    assert_eq!(fired["severity"], "degraded", "{fired}");
}
