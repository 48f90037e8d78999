//! The Grafana dashboards, Prometheus rules and deploy examples, checked against the code:
//! every file parses, ports and paths agree with each other and with the daemon, the
//! ConfigMap's TOML passes graywatch's own validation, the probes answer on the real server,
//! and every PromQL expression names only metrics that graywatch exports.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestApp, poll_until};
use graywatch::config::Settings;
use serde_json::{Value, json};

const DASHBOARDS: [&str; 3] = [
    "graywatch-overview.json",
    "graywatch-dependency.json",
    "graywatch-self.json",
];
const RULES: &str = "deploy/prometheus/graywatch-rules.yml";
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";
const COMPOSE: &str = "deploy/compose.yaml";
const K8S: &str = "deploy/kubernetes";

// ---------------------------------------------------------------------------------------
// The metrics graywatch exports at /metrics (the names the dashboards and rules may use).

const COUNTERS: &[&str] = &[
    "graywatch_dependency_calls_total",
    "graywatch_peer_calls_total",
    "graywatch_events_accepted_total",
    "graywatch_events_rejected_total",
    "graywatch_ingest_overloaded_total",
    "graywatch_database_errors_total",
    "graywatch_rollups_dropped_total",
    "graywatch_alert_transitions_dropped_total",
    "graywatch_breaker_notifications_dropped_total",
];
const HISTOGRAMS: &[&str] = &[
    "graywatch_dependency_call_duration_seconds",
    "graywatch_ingest_request_duration_seconds",
    "graywatch_evaluation_duration_seconds",
    "graywatch_evaluation_cpu_seconds",
    "graywatch_notification_delivery_seconds",
    "graywatch_database_write_duration_seconds",
];
const GAUGES: &[&str] = &[
    "graywatch_dependency_latency_seconds",
    "graywatch_dependency_health",
    "graywatch_dependency_breaker_state",
    "graywatch_dependency_alerts_firing",
    "graywatch_dependency_baseline_p99_seconds",
    "graywatch_dependency_anchor_start_timestamp_seconds",
    "graywatch_peer_latency_p99_seconds",
    "graywatch_peer_health",
    "graywatch_ingest_requests_in_flight",
    "graywatch_ingest_bodies_receiving",
    "graywatch_evaluation_lag_seconds",
    "graywatch_alert_transitions_waiting",
    "graywatch_breaker_notifications_waiting",
    "graywatch_series",
    "graywatch_series_limit",
    "graywatch_notifications",
    "process_resident_memory_bytes",
    "graywatch_build_info",
];

/// Every sample name of the exported metrics: histograms as their `_bucket`, `_sum` and
/// `_count` series.
fn exported_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = COUNTERS
        .iter()
        .chain(GAUGES)
        .map(|s| s.to_string())
        .collect();
    for h in HISTOGRAMS {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

/// The values an enumerated label can take, as the metrics define them.
fn label_values(label: &str, metric: &str) -> Option<&'static [&'static str]> {
    Some(match label {
        "outcome" => &["ok", "error", "timeout"],
        "quantile" => &["0.5", "0.9", "0.99", "0.999"],
        "kind" if metric.starts_with("graywatch_series") => &["dependency", "instance", "zone"],
        "kind" => &["instance", "zone"],
        "status" => &["pending", "delivered", "failed", "dead"],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Reading the files.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn dashboard(name: &str) -> Value {
    let rel = format!("dashboards/{name}");
    serde_json::from_str(&read(&rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn k8s(name: &str) -> Value {
    yaml(&format!("{K8S}/{name}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a string at {pointer} in {v}"))
}

fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("an array at {pointer}"))
}

/// Every panel of a dashboard, those inside rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in array_at(d, "/panels") {
        out.push(p);
        if let Some(inner) = p.get("panels").and_then(Value::as_array) {
            out.extend(inner);
        }
    }
    out
}

/// `(where, expr)` of every query of every dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        for p in panels(&d) {
            for t in p
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let title = p["title"].as_str().unwrap_or("?");
                out.push((format!("{name}: {title}"), str_at(t, "/expr").to_string()));
            }
        }
    }
    out
}

/// `(alert, expr)` of every rule.
fn rule_exprs() -> Vec<(String, String)> {
    let rules = yaml(RULES);
    array_at(&rules, "/groups")
        .iter()
        .flat_map(|g| array_at(g, "/rules"))
        .map(|r| {
            (
                str_at(r, "/alert").to_string(),
                str_at(r, "/expr").to_string(),
            )
        })
        .collect()
}

/// A Kubernetes-style `host:port`'s port.
fn port_of(host_port: &str) -> u16 {
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("a host:port: {host_port:?}"))
}

/// The file path of a `sqlite://PATH` URL.
fn sqlite_path(url: &str) -> &Path {
    Path::new(
        url.strip_prefix("sqlite://")
            .unwrap_or_else(|| panic!("a sqlite:// URL: {url}")),
    )
}

// ---------------------------------------------------------------------------------------
// PromQL: the metric names and label matchers of an expression. Not a full parser: enough to
// find the selectors in the expressions we write (functions, aggregations with `by (...)`,
// binary operators, ranges, Grafana's `$variables`).

#[derive(Debug, Default)]
struct Selectors {
    metrics: BTreeSet<String>,
    /// `(metric, label, value)` for each `label="value"` or `label=~"a|b"` matcher.
    matchers: Vec<(String, String, String)>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

fn selectors(expr: &str) -> Selectors {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Selectors::default();
    let mut last_metric = String::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '}')
                .unwrap_or_else(|| panic!("unclosed {{ in {expr}"));
            let body: String = chars[i + 1..end].iter().collect();
            for (label, value) in label_matchers(&body) {
                out.matchers.push((last_metric.clone(), label, value));
            }
            i = end + 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable or a number (0.99, 1e-9): not a metric.
            i += 1;
            while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            // `sum by (le) (...)`: an aggregation with its grouping before its argument.
            let grouped_aggregation = ["by", "without"].iter().any(|k| {
                rest.strip_prefix(k)
                    .is_some_and(|r| r.trim_start().starts_with('('))
            });
            if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                // `by (le, dependency)` and friends: the list holds labels, not metrics.
                let takes_labels = [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.to_ascii_lowercase().as_str());
                if takes_labels && next == Some('(') {
                    i += chars[i..].iter().position(|&c| c == ')').unwrap_or(0) + 1;
                }
            } else if next != Some('(') && !grouped_aggregation {
                out.metrics.insert(word.clone());
                last_metric = word;
            }
        } else {
            i += 1;
        }
    }
    out
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// `label="value"` pairs of a selector's braces; a regex matcher's alternatives come out one
/// by one.
fn label_matchers(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let op_at = part
            .find(['=', '!'])
            .unwrap_or_else(|| panic!("a label matcher: {part:?}"));
        let label = part[..op_at].trim().to_string();
        let rest = part[op_at..].trim_start_matches(['=', '!', '~']).trim();
        let value = rest.trim_matches(['"', '\'', '`']);
        if part[op_at..].starts_with("=~") {
            out.extend(value.split('|').map(|v| (label.clone(), v.to_string())));
        } else if part[op_at..].starts_with('=') {
            out.push((label, value.to_string()));
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_metrics_and_matchers() {
    let s = selectors(
        r#"histogram_quantile(0.99, sum by (le) (rate(graywatch_dependency_call_duration_seconds_bucket{dependency="$dependency"}[$__rate_interval]))) / on (job) group_left graywatch_build_info > 1e-3"#,
    );
    assert_eq!(
        s.metrics,
        BTreeSet::from([
            "graywatch_dependency_call_duration_seconds_bucket".to_string(),
            "graywatch_build_info".to_string()
        ])
    );
    let s = selectors(r#"sum(x{outcome=~"error|timeout", kind="zone"}) and y"#);
    assert_eq!(s.metrics.len(), 2);
    assert_eq!(
        s.matchers,
        vec![
            ("x".into(), "outcome".into(), "error".into()),
            ("x".into(), "outcome".into(), "timeout".into()),
            ("x".into(), "kind".into(), "zone".into()),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Files parse.

#[test]
fn every_dashboard_and_deploy_file_parses() {
    let mut seen = 0;
    for dir in [
        "dashboards",
        "dashboards/provisioning",
        "deploy",
        "deploy/prometheus",
        K8S,
    ] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(repo())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    serde_json::from_str::<Value>(&read(&rel))
                        .unwrap_or_else(|e| panic!("{rel}: {e}"));
                }
                Some("yaml" | "yml") => {
                    yaml(&rel);
                }
                Some("toml") => {
                    Settings::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                }
                _ => continue,
            }
            seen += 1;
        }
    }
    // 3 dashboards, 2 provisioning files, compose, prometheus.yml, the rules, the example
    // configuration and 5 Kubernetes manifests.
    assert_eq!(seen, 14, "a file was added or removed: update this test");
}

// ---------------------------------------------------------------------------------------
// Dashboards.

#[test]
fn dashboards_have_stable_unique_uids_and_every_panel_uses_the_datasource_variable() {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        let uid = str_at(&d, "/uid");
        assert_eq!(
            format!("{uid}.json"),
            name,
            "the uid is the file name, so links survive a re-import"
        );
        assert!(uids.insert(uid.to_string()), "duplicate uid {uid}");
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{name}");
        let vars = array_at(&d, "/templating/list");
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: a datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let want = json!({"type": "prometheus", "uid": "${datasource}"});
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] == "row" {
                assert!(
                    p.get("targets").is_none(),
                    "{name}: row {title} has queries"
                );
                continue;
            }
            assert_eq!(p["datasource"], want, "{name}: panel {title}");
            let targets = array_at(p, "/targets");
            assert!(!targets.is_empty(), "{name}: panel {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"], want, "{name}: a query of {title}");
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"], want, "{name}: variable {}", v["name"]);
        }
    }
}

#[test]
fn health_and_breaker_states_are_shown_as_words_and_colors() {
    let d = dashboard("graywatch-overview.json");
    let table = panels(&d)
        .into_iter()
        .find(|p| p["type"] == "table")
        .expect("the overview has a table of dependencies");
    let overrides = array_at(table, "/fieldConfig/overrides");
    let column = |display: &str| {
        overrides
            .iter()
            .find(|o| {
                o["properties"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == "displayName" && p["value"] == display)
            })
            .unwrap_or_else(|| panic!("a {display} column"))
    };
    let mapping = |o: &Value| -> Value {
        o["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "mappings")
            .map(|p| p["value"][0]["options"].clone())
            .unwrap_or_else(|| panic!("value mappings in {o}"))
    };
    let health = mapping(column("Health"));
    for (value, text, color) in [
        ("-1", "no data", "text"),
        ("0", "healthy", "green"),
        ("1", "degraded", "orange"),
        ("2", "failing", "red"),
    ] {
        assert_eq!(health[value]["text"], text);
        assert_eq!(health[value]["color"], color);
    }
    let breaker = mapping(column("Breaker"));
    for (value, text) in [("0", "closed"), ("1", "half-open"), ("2", "open")] {
        assert_eq!(breaker[value]["text"], text);
        assert!(breaker[value]["color"].is_string());
    }
    for display in [
        "Calls/s",
        "Errors",
        "Timeouts",
        "p50 (1m)",
        "p99 (1m)",
        "Baseline p99",
        "Firing alerts",
    ] {
        column(display);
    }
}

#[test]
fn the_dependency_dashboard_breaks_down_by_instance_and_zone() {
    let d = dashboard("graywatch-dependency.json");
    let var = array_at(&d, "/templating/list")
        .iter()
        .find(|v| v["name"] == "dependency")
        .expect("a dependency variable");
    assert!(str_at(var, "/definition").contains("dependency"));
    let exprs: Vec<String> = panels(&d)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| str_at(t, "/expr").to_string())
        .collect();
    for expr in exprs.iter().filter(|e| e.contains("graywatch_")) {
        assert!(
            expr.contains(r#"dependency="$dependency""#),
            "every query is about the chosen dependency: {expr}"
        );
    }
    for kind in ["instance", "zone"] {
        for metric in [
            "graywatch_peer_health",
            "graywatch_peer_latency_p99_seconds",
            "graywatch_peer_calls_total",
        ] {
            assert!(
                exprs
                    .iter()
                    .any(|e| e.contains(metric) && e.contains(&format!(r#"kind="{kind}""#))),
                "{metric} by {kind}"
            );
        }
    }
    let heatmap = panels(&d)
        .into_iter()
        .find(|p| p["type"] == "heatmap")
        .expect("a heatmap");
    assert!(str_at(heatmap, "/targets/0/expr").contains("_bucket"));
    assert_eq!(heatmap["targets"][0]["format"], "heatmap");
    let latency = panels(&d)
        .into_iter()
        .find(|p| {
            p["targets"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["expr"].as_str().unwrap().contains("latency_seconds"))
                    && ts
                        .iter()
                        .any(|t| t["expr"].as_str().unwrap().contains("baseline"))
            })
        })
        .expect("latency quantiles drawn with the baseline p99");
    assert_eq!(latency["type"], "timeseries");
}

// ---------------------------------------------------------------------------------------
// Metric names.

#[test]
fn dashboards_and_rules_name_only_metrics_graywatch_exports() {
    let exported = exported_names();
    let mut used = BTreeSet::new();
    for (place, expr) in dashboard_exprs().into_iter().chain(rule_exprs()) {
        let s = selectors(&expr);
        assert!(!s.metrics.is_empty(), "{place}: no metric in {expr}");
        for m in &s.metrics {
            assert!(
                exported.contains(m),
                "{place}: unknown metric {m} in {expr}"
            );
            used.insert(m.clone());
        }
        for (metric, label, value) in &s.matchers {
            if value.starts_with('$') {
                continue;
            }
            if let Some(allowed) = label_values(label, metric) {
                assert!(
                    allowed.contains(&value.as_str()),
                    "{place}: {metric}{{{label}=\"{value}\"}}: {label} is one of {allowed:?}"
                );
            }
        }
    }
    // Every exported family appears somewhere (histograms through any of their series).
    for name in COUNTERS.iter().chain(GAUGES).chain(HISTOGRAMS) {
        assert!(
            used.iter()
                .any(|u| u == name || u.starts_with(&format!("{name}_"))),
            "{name} is on no dashboard and in no rule"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Alerting rules.

#[test]
fn alert_rules_wait_have_a_severity_and_say_what_to_do() {
    let rules = yaml(RULES);
    let mut names = BTreeSet::new();
    for rule in array_at(&rules, "/groups")
        .iter()
        .flat_map(|g| array_at(g, "/rules"))
    {
        let name = str_at(rule, "/alert");
        assert!(names.insert(name.to_string()), "duplicate alert {name}");
        assert!(name.starts_with("Graywatch"), "{name}");
        let wait = str_at(rule, "/for");
        let wait = humantime::parse_duration(wait).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(wait >= Duration::from_secs(60), "{name}: for {wait:?}");
        let severity = str_at(rule, "/labels/severity");
        assert!(["warning", "critical"].contains(&severity), "{name}");
        assert!(!str_at(rule, "/annotations/summary").is_empty(), "{name}");
        assert!(
            str_at(rule, "/annotations/description").len() > 40,
            "{name}"
        );
    }
    for topic in [
        "NotificationsDead",
        "NotificationsFailed",
        "EvaluationLagging",
        "IngestOverloaded",
        "EventsRejected",
        "DatabaseErrors",
        "SeriesNearLimit",
    ] {
        assert!(
            names.contains(&format!("Graywatch{topic}")),
            "Graywatch{topic}"
        );
    }
}

fn promtool() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    })
}

#[test]
fn promtool_accepts_the_rules_and_the_dashboard_queries() {
    let Some(promtool) = promtool() else {
        eprintln!("note: promtool is not on PATH (Debian package prometheus); not run");
        return;
    };
    let check = |path: &Path| {
        let out = std::process::Command::new(&promtool)
            .args(["check", "rules"])
            .arg(path)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool check rules {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    check(&repo().join(RULES));
    // The dashboards' queries as recording rules, with Grafana's variables filled in, so
    // promtool parses them too.
    let rules: Vec<Value> = dashboard_exprs()
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$dependency", "payments-api");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = json!({"groups": [{"name": "dashboards", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboards.yml");
    std::fs::write(&path, serde_yaml_ng::to_string(&file).unwrap()).unwrap();
    check(&path);
}

// ---------------------------------------------------------------------------------------
// Ports, paths and the configuration.

#[test]
fn every_manifest_uses_the_daemons_default_port() {
    let port = Settings::default().listen.port();
    assert_eq!(port, 9797);
    let deployment = k8s("deployment.yaml");
    let container = &array_at(&deployment, "/spec/template/spec/containers")[0];
    assert_eq!(container["ports"][0]["containerPort"], port);
    let service = k8s("service.yaml");
    assert_eq!(service["spec"]["ports"][0]["port"], port);
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"],
        "the Service targets the container's named port"
    );
    assert_eq!(
        str_at(&service, "/metadata/annotations/prometheus.io~1port"),
        port.to_string()
    );
    assert_eq!(
        k8s("servicemonitor.yaml")["spec"]["endpoints"][0]["port"],
        container["ports"][0]["name"]
    );
    let cm = configmap_settings();
    assert_eq!(cm.listen.port(), port);
    assert!(
        cm.listen.ip().is_unspecified(),
        "reachable from outside the pod"
    );

    let compose = yaml(COMPOSE);
    let gw = &compose["services"]["graywatch"];
    assert_eq!(gw["ports"][0], format!("{port}:{port}"));
    assert_eq!(port_of(str_at(gw, "/environment/GRAYWATCH_LISTEN")), port);
    let prom = yaml(PROMETHEUS);
    let target = str_at(&prom, "/scrape_configs/0/static_configs/0/targets/0");
    assert_eq!(target, format!("graywatch:{port}"), "the compose service");
    assert!(read("deploy/Dockerfile").contains(&format!("EXPOSE {port}")));
}

fn configmap_settings() -> Settings {
    let cm = k8s("configmap.yaml");
    let toml = str_at(&cm, "/data/graywatch.toml");
    Settings::from_toml(toml, "configmap.yaml graywatch.toml")
        .unwrap_or_else(|e| panic!("the ConfigMap's configuration is invalid: {e}"))
}

#[test]
fn the_configmap_is_valid_configuration_mounted_where_config_points() {
    let settings = configmap_settings();
    let deployment = k8s("deployment.yaml");
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let args: Vec<&str> = array_at(container, "/args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let config = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| Path::new(args[i + 1]))
        .expect("--config FILE");

    let volumes: BTreeMap<&str, &Value> = array_at(spec, "/volumes")
        .iter()
        .map(|v| (str_at(v, "/name"), v))
        .collect();
    let mount_of = |volume: &str| -> &Path {
        let m = array_at(container, "/volumeMounts")
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("volume {volume} is mounted"));
        Path::new(str_at(m, "/mountPath"))
    };
    // The configuration file is the ConfigMap's key inside the directory it is mounted on.
    let cm = k8s("configmap.yaml");
    let (config_volume, _) = volumes
        .iter()
        .find(|(_, v)| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let key = config.file_name().unwrap().to_str().unwrap();
    assert!(cm["data"].get(key).is_some(), "the ConfigMap has {key}");
    assert_eq!(config.parent().unwrap(), mount_of(config_volume));

    // The database is on the persistent volume.
    let pvc = k8s("pvc.yaml");
    let (data_volume, _) = volumes
        .iter()
        .find(|(_, v)| v["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"])
        .expect("a volume from the PersistentVolumeClaim");
    assert_eq!(
        sqlite_path(&settings.database).parent().unwrap(),
        mount_of(data_volume)
    );
}

/// A compose bind mount `SOURCE:TARGET[:ro]` whose source is a path: (source relative to
/// the repository, target).
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    array_at(service, "/volumes")
        .iter()
        .map(|v| v.as_str().unwrap())
        .filter(|v| v.starts_with('.') || v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            let source = repo().join("deploy").join(parts.next().unwrap());
            (source, parts.next().expect("a target").to_string())
        })
        .collect()
}

#[test]
fn compose_mounts_files_of_the_repository_where_grafana_and_prometheus_look() {
    let compose = yaml(COMPOSE);
    let services = &compose["services"];
    for (name, service) in services.as_object().unwrap() {
        for (source, target) in bind_mounts(service) {
            assert!(
                source.exists(),
                "{name}: {} (mounted at {target}) does not exist",
                source.display()
            );
        }
    }
    let build = &services["graywatch"]["build"];
    let context = repo().join("deploy").join(str_at(build, "/context"));
    assert!(context.join(str_at(build, "/dockerfile")).is_file());
    assert!(
        context.join("Cargo.toml").is_file(),
        "the build context is the repository"
    );

    // The graywatch database is on its volume.
    let gw = &services["graywatch"];
    let database = str_at(gw, "/environment/GRAYWATCH_DATABASE");
    let data_dir = sqlite_path(database).parent().unwrap();
    assert!(
        array_at(gw, "/volumes").iter().any(|v| v
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", data_dir.display()))),
        "a volume at {}",
        data_dir.display()
    );

    // Grafana: the provider's folder is where dashboards/ is mounted; the provisioning files
    // are where Grafana reads them; the data source is the Prometheus service.
    let grafana = bind_mounts(&services["grafana"]);
    let target_of = |rel: &str| {
        let want = repo().join(rel);
        grafana
            .iter()
            .find(|(s, _)| s.canonicalize().unwrap() == want.canonicalize().unwrap())
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{rel} is mounted into grafana"))
    };
    let provider = yaml("dashboards/provisioning/dashboards.yaml");
    assert_eq!(
        str_at(&provider, "/providers/0/options/path"),
        target_of("dashboards")
    );
    assert_eq!(str_at(&provider, "/providers/0/type"), "file");
    assert!(
        target_of("dashboards/provisioning/dashboards.yaml")
            .starts_with("/etc/grafana/provisioning/dashboards/")
    );
    assert!(
        target_of("dashboards/provisioning/datasources.yaml")
            .starts_with("/etc/grafana/provisioning/datasources/")
    );
    let datasources = yaml("dashboards/provisioning/datasources.yaml");
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    let url = str_at(ds, "/url");
    let host = url.trim_start_matches("http://");
    let (service, port) = host.split_once(':').unwrap();
    assert!(services.get(service).is_some(), "{url}: a compose service");
    assert!(
        services[service]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
        "{url}: the service's port"
    );

    // Prometheus loads the rules file from where it is mounted.
    let prometheus = bind_mounts(&services["prometheus"]);
    let config = yaml(PROMETHEUS);
    for rule_file in array_at(&config, "/rule_files") {
        let (source, _) = prometheus
            .iter()
            .find(|(_, t)| t == rule_file.as_str().unwrap())
            .unwrap_or_else(|| panic!("{rule_file} is mounted into prometheus"));
        assert_eq!(
            source.canonicalize().unwrap(),
            repo().join(RULES).canonicalize().unwrap()
        );
    }
    assert!(
        prometheus
            .iter()
            .any(|(s, t)| s.ends_with("prometheus.yml") && t == "/etc/prometheus/prometheus.yml")
    );
}

// ---------------------------------------------------------------------------------------
// Against the real daemon.

/// Every path the manifests give for scraping metrics.
fn metrics_paths() -> Vec<String> {
    let prom = yaml(PROMETHEUS);
    let service = k8s("service.yaml");
    let monitor = k8s("servicemonitor.yaml");
    vec![
        str_at(&prom, "/scrape_configs/0/metrics_path").to_string(),
        str_at(&service, "/metadata/annotations/prometheus.io~1path").to_string(),
        str_at(&monitor, "/spec/endpoints/0/path").to_string(),
    ]
}

#[tokio::test]
async fn the_probe_paths_of_the_manifests_answer_200_on_the_daemon() {
    let deployment = k8s("deployment.yaml");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let live = str_at(container, "/livenessProbe/httpGet/path");
    let ready = str_at(container, "/readinessProbe/httpGet/path");
    assert_eq!((live, ready), ("/healthz", "/readyz"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"], container["ports"][0]["name"],
            "{probe} targets the HTTP port"
        );
    }
    let app = TestApp::spawn().await;
    for path in [live, ready] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
    }
    // The metrics path agrees everywhere; that the daemon serves it is checked by
    // `every_metric_in_dashboards_and_rules_is_exported`.
    let paths = metrics_paths();
    assert!(paths.iter().all(|p| p == "/metrics"), "{paths:?}");
}

/// Names that a Prometheus text (or OpenMetrics) exposition defines: each sample's name, and
/// each family's `# TYPE` name with the series names its type implies (a family with no
/// samples yet, such as a baseline that is not ready, still has its `# TYPE` line).
fn exposition_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_string());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[tokio::test]
async fn every_metric_in_dashboards_and_rules_is_exported() {
    // A notifier, so that the per-notifier families exist (nothing is sent to it).
    let app = TestApp::spawn_with(|s| {
        s.notifiers.push(
            toml::from_str("name = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"")
                .expect("a notifier"),
        );
    })
    .await;
    // Some traffic, so that the families labelled by dependency, instance and zone have
    // series.
    let events: Vec<Value> = (0..50)
        .map(|i| {
            json!({
                "dependency": "payments-api",
                "duration_ms": 10.0 + i as f64,
                "outcome": if i % 10 == 0 { "error" } else { "ok" },
                "instance": format!("10.0.0.{}", i % 3),
                "zone": format!("zone-{}", i % 2),
            })
        })
        .collect();
    app.post_ok(&events).await;
    let path = &metrics_paths()[0];
    // The evaluation lag is known once the detection loop has evaluated once.
    let body = poll_until("an evaluation has run", Duration::from_secs(30), || async {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        let body = resp.text().await.unwrap();
        body.contains("graywatch_evaluation_lag_seconds")
            .then_some(body)
    })
    .await;
    let exposed = exposition_names(&body);
    let mut missing = BTreeSet::new();
    for (place, expr) in dashboard_exprs().into_iter().chain(rule_exprs()) {
        for m in selectors(&expr).metrics {
            if !exposed.contains(&m) {
                missing.insert(format!("{m} ({place})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in GET {path}:\n{}\n--- body:\n{body}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_exposition_reader_knows_families_without_samples() {
    let body = "# HELP a_total Calls.\n# TYPE a counter\na_total{x=\"1\"} 3\n\
                # TYPE h histogram\n# TYPE g gauge\ng 1\n# EOF\n";
    let names = exposition_names(body);
    for n in ["a_total", "h_bucket", "h_count", "h_sum", "g"] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
}
