//! `GET /metrics`: the Prometheus exposition of the real daemon, scraped over HTTP.

// Each test crate uses a different part of the shared harness.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use graywatch::actions::notifier::NotifierConfig;
use graywatch::detect::DependencySpec;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One scrape: every sample by its name and sorted labels.
struct Exposition {
    text: String,
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Exposition {
    /// The value of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples.get(&(name.to_string(), key)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} is exported:\n{}", self.text))
    }

    /// Every sample of `name` whose labels include `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Vec<(String, String)>, f64)> {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }
}

/// Parses the text format strictly: every line is a comment or `name{labels} value`.
fn parse(text: &str) -> Exposition {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("`name value`: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("labels end with }}: {line:?}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "a metric name: {line:?}"
        );
        let mut labels = labels;
        labels.sort();
        let previous = samples.insert((name.to_string(), labels), value);
        assert!(previous.is_none(), "one sample per series: {line:?}");
    }
    Exposition {
        text: text.to_string(),
        samples,
    }
}

fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("key=\"value\": {line:?}"));
        let end = after
            .find('"')
            .unwrap_or_else(|| panic!("a closing quote: {line:?}"));
        out.push((key.to_string(), after[..end].to_string()));
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    out
}

async fn scrape(app: &TestApp) -> Exposition {
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    parse(&resp.text().await.expect("a text body"))
}

fn call(dependency: &str, ms: f64, outcome: &str, instance: &str, zone: &str) -> Value {
    json!({"dependency": dependency, "duration_ms": ms, "outcome": outcome,
           "instance": instance, "zone": zone})
}

/// 1,000 calls of payments-api lasting 1, 2, ..., 1000 ms (every tenth an error, every tenth
/// from the fifth a timeout) over two instances in two zones, and 250 of redis-cache.
fn known_calls() -> Vec<Value> {
    let mut events: Vec<Value> = (1..=1000)
        .map(|k| {
            let outcome = match k % 10 {
                0 => "error",
                5 => "timeout",
                _ => "ok",
            };
            let (instance, zone) = if k % 2 == 1 {
                ("10.0.0.1", "eu-1a")
            } else {
                ("10.0.0.2", "eu-1b")
            };
            call("payments-api", f64::from(k), outcome, instance, zone)
        })
        .collect();
    events.extend((0..200).map(|_| call("redis-cache", 0.5, "ok", "r1", "eu-1a")));
    events.extend((0..50).map(|_| call("redis-cache", 5.0, "timeout", "r2", "eu-1a")));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_has_exact_call_counts_cumulative_buckets_and_minute_quantiles() {
    let app = TestApp::spawn().await;
    app.post_ok(&known_calls()).await;
    let m = scrape(&app).await;

    let calls = |dep: &str, outcome: &str| {
        m.value(
            "graywatch_dependency_calls_total",
            &[("dependency", dep), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("payments-api", "ok"), 800.0);
    assert_eq!(calls("payments-api", "error"), 100.0);
    assert_eq!(calls("payments-api", "timeout"), 100.0);
    assert_eq!(calls("redis-cache", "ok"), 200.0);
    assert_eq!(calls("redis-cache", "error"), 0.0);
    assert_eq!(calls("redis-cache", "timeout"), 50.0);

    // Buckets: cumulative, +Inf equal to _count equal to the successful calls (errors and
    // timeouts are counted, not timed); 1 ms to 1000 ms land on the bounds exactly.
    let hist = "graywatch_dependency_call_duration_seconds";
    for (dep, total) in [("payments-api", 800.0), ("redis-cache", 200.0)] {
        let mut buckets: Vec<(f64, f64)> = m
            .matching(&format!("{hist}_bucket"), &[("dependency", dep)])
            .into_iter()
            .map(|(labels, v)| {
                let le = &labels.iter().find(|(k, _)| k == "le").unwrap().1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
        assert_eq!(
            bounds,
            [
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                f64::INFINITY
            ]
        );
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets.last().unwrap().1, total);
        assert_eq!(
            m.value(&format!("{hist}_count"), &[("dependency", dep)]),
            total
        );
    }
    let bucket = |le: &str| {
        m.value(
            &format!("{hist}_bucket"),
            &[("dependency", "payments-api"), ("le", le)],
        )
    };
    // Of every ten calls, the one ending in 0 ms fails and the one ending in 5 times out.
    assert_eq!(bucket("0.001"), 1.0);
    assert_eq!(bucket("0.01"), 8.0);
    assert_eq!(bucket("0.1"), 80.0);
    assert_eq!(bucket("1"), 800.0);
    let sum = m.value(&format!("{hist}_sum"), &[("dependency", "payments-api")]);
    // 1 + 2 + ... + 1000 ms less the failed calls' 10, 20, ... and 5, 15, ... ms.
    assert!(relative_error(sum, 400.0) < 0.01, "sum {sum}");
    let redis_fast = m.value(
        &format!("{hist}_bucket"),
        &[("dependency", "redis-cache"), ("le", "0.001")],
    );
    assert_eq!(redis_fast, 200.0);

    // The minute's quantiles: nearest rank of the successful calls' 1..=1000 ms, within 1%.
    for (q, want_s) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("0.999", 0.999)] {
        let got = m.value(
            "graywatch_dependency_latency_seconds",
            &[("dependency", "payments-api"), ("quantile", q)],
        );
        assert!(
            relative_error(got, want_s) < 0.01,
            "q {q}: {got} vs {want_s}"
        );
    }

    // Instances and zones: counts by outcome, p99.
    let peer = |kind: &str, name: &str, outcome: &str| {
        m.value(
            "graywatch_peer_calls_total",
            &[
                ("dependency", "payments-api"),
                ("kind", kind),
                ("peer", name),
                ("outcome", outcome),
            ],
        )
    };
    // Odd k: 1, 3, ..., 999 -> 500 calls, of which k % 10 == 5 (100) time out.
    assert_eq!(peer("instance", "10.0.0.1", "ok"), 400.0);
    assert_eq!(peer("instance", "10.0.0.1", "timeout"), 100.0);
    assert_eq!(peer("instance", "10.0.0.2", "error"), 100.0);
    assert_eq!(peer("zone", "eu-1b", "ok"), 400.0);
    let p99 = m.value(
        "graywatch_peer_latency_p99_seconds",
        &[
            ("dependency", "payments-api"),
            ("kind", "instance"),
            ("peer", "10.0.0.2"),
        ],
    );
    assert!(relative_error(p99, 0.990) < 0.01, "p99 {p99}");
    assert_eq!(
        m.value(
            "graywatch_peer_health",
            &[
                ("dependency", "redis-cache"),
                ("kind", "zone"),
                ("peer", "eu-1a")
            ]
        ),
        0.0
    );

    // Series against their limits.
    let series = |kind: &str| m.value("graywatch_series", &[("kind", kind)]);
    assert_eq!(series("dependency"), 2.0);
    assert_eq!(series("instance"), 4.0);
    assert_eq!(series("zone"), 3.0);
    let limits = app.settings.limits;
    let limit = |kind: &str| m.value("graywatch_series_limit", &[("kind", kind)]);
    assert_eq!(limit("dependency"), limits.max_dependencies as f64);
    assert_eq!(
        limit("instance"),
        limits.max_instances_per_dependency as f64
    );
    assert_eq!(limit("zone"), limits.max_zones_per_dependency as f64);
    assert_eq!(
        m.value("graywatch_series_total_limit", &[]),
        limits.max_series as f64
    );

    // Breakers closed; graywatch's own figures.
    assert_eq!(
        m.value(
            "graywatch_dependency_breaker_state",
            &[("dependency", "payments-api")]
        ),
        0.0
    );
    assert_eq!(m.value("graywatch_events_accepted_total", &[]), 1250.0);
    assert_eq!(
        m.value("graywatch_ingest_request_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(m.value("graywatch_ingest_requests_in_flight", &[]), 0.0);
    assert_eq!(m.value("graywatch_ingest_bodies_receiving", &[]), 0.0);
    assert_eq!(
        m.value(
            "graywatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);

    // Refusals, by reason; a body refused whole is counted as a body.
    let (status, body) = app
        .post_events(&json!([
            {"dependency": "payments-api", "duration_ms": -3},
            {"dependency": "payments-api", "duration_ms": 1, "outcome": "maybe"},
            {"dependency": "payments-api", "duration_ms": 1, "ts": 1},
            {"dependency": "payments-api", "duration_ms": 1},
        ]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.post_raw(b"{not json".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let m = scrape(&app).await;
    let rejected = |reason: &str| m.value("graywatch_events_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("invalid_duration"), 1.0);
    assert_eq!(rejected("invalid_outcome"), 1.0);
    assert_eq!(rejected("ts_too_old"), 1.0);
    assert_eq!(m.value("graywatch_events_accepted_total", &[]), 1251.0);
    assert_eq!(
        m.value(
            "graywatch_ingest_bodies_rejected_total",
            &[("reason", "invalid_json")]
        ),
        1.0
    );
    promtool_check(&m.text);
}

/// `promtool check metrics` on a scrape, when promtool is installed (Debian: `prometheus`).
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool is not installed: skipping `promtool check metrics`.");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // One lint is expected and accepted: `graywatch_dependency_latency_seconds` is a gauge
    // with a `quantile` label, the name, type and label the dashboards and alert rules use.
    let expected = "graywatch_dependency_latency_seconds non-summary metrics should not have \"quantile\" label";
    let problems = String::from_utf8_lossy(&out.stderr);
    let lint_only = problems.lines().all(|l| l.trim() == expected) && out.stdout.is_empty();
    assert!(
        out.status.success() || (out.status.code() == Some(3) && lint_only),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_never_decrease_across_scrapes_while_calls_arrive_late_ones_included() {
    let app = TestApp::spawn().await;
    let mut posted = 0.0;
    let mut last: Option<Exposition> = None;
    for step in 0..40 {
        app.advance(700);
        let now = app.now();
        // On time, 4 s late (a live second), 30 s late (past the 1-second slots) and 5 min
        // late (past the 10-second ones).
        let mut events = Vec::new();
        for (late_ms, n) in [(0, 150), (4_000, 3), (30_000, 3), (300_000, 2)] {
            for i in 0..n {
                let mut e = call("payments-api", 3.0 + f64::from(i), "ok", "i-1", "z-1");
                e["ts"] = json!(now - late_ms);
                events.push(e);
            }
        }
        app.post_ok(&events).await;
        posted += events.len() as f64;
        let m = scrape(&app).await;
        let ok = &[("dependency", "payments-api"), ("outcome", "ok")];
        let peer = &[
            ("dependency", "payments-api"),
            ("kind", "instance"),
            ("peer", "i-1"),
            ("outcome", "ok"),
        ];
        let count = &[("dependency", "payments-api")];
        let count_name = "graywatch_dependency_call_duration_seconds_count";
        assert_eq!(
            m.value("graywatch_dependency_calls_total", ok),
            posted,
            "step {step}"
        );
        assert_eq!(
            m.value("graywatch_peer_calls_total", peer),
            posted,
            "step {step}"
        );
        assert_eq!(m.value(count_name, count), posted, "step {step}");
        if let Some(prev) = &last {
            for ((name, labels), v) in &prev.samples {
                let is_counter = name.ends_with("_total")
                    || name.ends_with("_bucket")
                    || name.ends_with("_count");
                if is_counter && let Some(now_v) = m.samples.get(&(name.clone(), labels.clone())) {
                    assert!(now_v >= v, "{name}{labels:?} went from {v} to {now_v}");
                }
            }
        }
        last = Some(m);
    }
}

/// A webhook receiver that accepts everything; returns its URL and how many it received.
async fn receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let received = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_failure_turns_the_health_gauge_to_failing_and_its_notification_is_counted() {
    let (url, received) = receiver().await;
    let hook: NotifierConfig = toml::from_str(&format!(
        "name = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\n"
    ))
    .expect("a webhook notifier");
    let app = TestApp::spawn_with(|s| {
        s.detection.evaluate_every = Duration::from_millis(100);
        s.notifiers = vec![hook];
        s.dependencies.insert(
            "payments-api".into(),
            DependencySpec {
                fire_after: Some(Duration::from_secs(1)),
                resolve_after: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        );
    })
    .await;
    let health = &[("dependency", "payments-api")];
    // Healthy first.
    poll_until(
        "payments-api is evaluated healthy",
        Duration::from_secs(30),
        || async {
            app.advance(100);
            let events: Vec<Value> = (0..20)
                .map(|_| call("payments-api", 20.0, "ok", "i-1", "z-1"))
                .collect();
            app.post_ok(&events).await;
            (scrape(&app)
                .await
                .get("graywatch_dependency_health", health)
                == Some(0.0))
            .then_some(())
        },
    )
    .await;
    // Every call fails until the gauge says failing.
    let m = poll_until(
        "the health gauge shows failing",
        Duration::from_secs(30),
        || async {
            app.advance(100);
            let events: Vec<Value> = (0..40)
                .map(|_| call("payments-api", 20.0, "error", "i-1", "z-1"))
                .collect();
            app.post_ok(&events).await;
            let m = scrape(&app).await;
            (m.get("graywatch_dependency_health", health) == Some(2.0)).then_some(m)
        },
    )
    .await;
    assert!(m.value("graywatch_evaluation_duration_seconds_count", &[]) >= 1.0);
    // Timed by its thread's CPU clock as well (every evaluation, on Linux).
    assert!(m.value("graywatch_evaluation_cpu_seconds_count", &[]) >= 1.0);
    assert!(m.get("graywatch_evaluation_lag_seconds", &[]).is_some());
    // The alert fires and its notification is delivered.
    let m = poll_until(
        "the notification is delivered",
        Duration::from_secs(30),
        || async {
            app.advance(100);
            let events: Vec<Value> = (0..40)
                .map(|_| call("payments-api", 20.0, "error", "i-1", "z-1"))
                .collect();
            app.post_ok(&events).await;
            let m = scrape(&app).await;
            let delivered = m.get(
                "graywatch_notifications",
                &[("notifier", "hook"), ("status", "delivered")],
            );
            (delivered >= Some(1.0)).then_some(m)
        },
    )
    .await;
    assert!(received.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(m.value("graywatch_dependency_alerts_firing", health) >= 1.0);
    assert_eq!(
        m.value(
            "graywatch_notifications",
            &[("notifier", "hook"), ("status", "dead")]
        ),
        0.0
    );
    let delivery = "graywatch_notification_delivery_seconds_count";
    assert!(m.value(delivery, &[("notifier", "hook")]) >= 1.0);
    let writes = "graywatch_database_write_duration_seconds_count";
    assert!(m.value(writes, &[("operation", "record_transitions")]) >= 1.0);
    promtool_check(&m.text);
}
