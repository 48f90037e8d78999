//! The command-line contract of `graywatch replay` (and `check-config`): the real binary,
//! fed with recordings that the binary itself generates (`graywatch scenarios --emit`).
//!
//! Scenario streams are large (a gray one is ~150k lines, ~23 MB; a healthy hour ~360k lines),
//! so they are written to a temporary directory per test.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use graywatch::scenario::{self, EPOCH_MS};
use serde_json::Value;
use tempfile::TempDir;

/// What a run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "exit status; stderr:\n{}", self.stderr);
    }

    /// The alert transitions on stdout, one JSON object per line.
    fn transitions(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"))
            })
            .collect()
    }
}

fn graywatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_graywatch"))
}

fn run(cmd: &mut Command) -> Run {
    // `output` gives the child an empty standard input unless `cmd` sets one.
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `graywatch replay [--config CONFIG] PATH`.
fn replay(path: &Path, config: Option<&Path>) -> Run {
    let mut cmd = graywatch();
    cmd.arg("replay");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    // The environment must not slip a configuration in.
    run(cmd.arg(path).env_remove("GRAYWATCH_CONFIG"))
}

/// Writes scenario `name` (seed 1) as NDJSON to `dir/{name}.ndjson` with
/// `graywatch scenarios --emit`.
fn emit(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ndjson"));
    let file = File::create(&path).expect("create the recording");
    let status = graywatch()
        .args(["scenarios", "--emit", name, "--seeds", "1"])
        .stdout(file)
        .status()
        .expect("run graywatch scenarios --emit");
    assert!(status.success(), "scenarios --emit {name}: {status}");
    path
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write a file");
    path
}

fn line_count(path: &Path) -> usize {
    let bytes = std::fs::read(path).expect("read the recording");
    bytes.iter().filter(|&&b| b == b'\n').count()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is a string: {v}"))
}

fn ms_of(v: &Value, key: &str) -> i64 {
    let s = str_of(v, key);
    assert!(s.ends_with('Z'), "`{key}` is RFC 3339 in UTC: {v}");
    graywatch::time::parse_rfc3339(s).unwrap_or_else(|| panic!("`{key}` is RFC 3339: {v}"))
}

/// What identifies an alert across its firing and resolved lines.
fn identity(t: &Value) -> String {
    [
        "dependency",
        "instance",
        "zone",
        "source",
        "detector",
        "severity",
        "started_at",
    ]
    .iter()
    .map(|k| t[*k].to_string())
    .collect::<Vec<_>>()
    .join("/")
}

#[test]
fn replaying_a_gray_scenario_prints_each_alert_transition_as_a_json_line() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "slow-tail");
    let slow_tail = scenario::suite(1)
        .into_iter()
        .find(|s| s.name == "slow-tail")
        .expect("the suite has slow-tail");
    let onset_ms = EPOCH_MS + slow_tail.onset_s * 1000;

    let r = replay(&path, None);
    r.assert_success();
    let transitions = r.transitions();
    assert!(!transitions.is_empty(), "stderr:\n{}", r.stderr);

    let mut open = std::collections::HashSet::new();
    let mut last_at = i64::MIN;
    for t in &transitions {
        assert!(t.is_object(), "{t}");
        let at = ms_of(t, "at");
        assert!(at >= last_at, "transitions are in event-time order: {t}");
        last_at = at;
        assert_eq!(str_of(t, "dependency"), slow_tail.dependency, "{t}");
        assert!(!str_of(t, "detector").is_empty(), "{t}");
        assert!(
            ["degraded", "failing"].contains(&str_of(t, "severity")),
            "{t}"
        );
        assert!(!str_of(t, "summary").is_empty(), "{t}");
        assert!(t["evidence"].is_object(), "{t}");
        match str_of(t, "status") {
            "firing" => {
                assert_eq!(ms_of(t, "started_at"), at, "{t}");
                assert!(t.get("resolved_at").is_none(), "{t}");
                assert!(
                    open.insert(identity(t)),
                    "fired twice without resolving: {t}"
                );
            }
            "resolved" => {
                assert_eq!(ms_of(t, "resolved_at"), at, "{t}");
                assert!(ms_of(t, "started_at") < at, "{t}");
                assert!(open.remove(&identity(t)), "resolved without firing: {t}");
            }
            other => panic!("status {other:?} is firing or resolved: {t}"),
        }
    }
    assert!(open.is_empty(), "every alert resolves by the end: {open:?}");

    let first_firing = transitions
        .iter()
        .find(|t| t["status"] == "firing")
        .expect("at least one firing");
    assert!(
        transitions.iter().any(|t| t["status"] == "resolved"),
        "at least one resolved"
    );
    let detected_after_s = (ms_of(first_firing, "at") - onset_ms) as f64 / 1000.0;
    assert!(
        (0.0..=30.0).contains(&detected_after_s),
        "first firing {detected_after_s} s after the onset: {first_firing}"
    );

    // The summary on stderr.
    let events = line_count(&path);
    assert!(
        r.stderr.contains(&format!("replayed {events} events")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("0 malformed"), "{}", r.stderr);
}

#[test]
fn a_failing_caller_is_named_by_the_source_field_of_its_one_alert() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "bad-caller");
    let bad_caller = scenario::suite(1)
        .into_iter()
        .find(|s| s.name == "bad-caller")
        .expect("the suite has bad-caller");
    let Some(graywatch::detect::Scope::Source(caller)) = bad_caller.expected_location() else {
        panic!("bad-caller is localized to a source");
    };

    let r = replay(&path, None);
    r.assert_success();
    let transitions = r.transitions();
    let firing: Vec<&Value> = transitions
        .iter()
        .filter(|t| t["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "one alert: {transitions:#?}");
    // Every line of the alert (firing, any update, resolved) names the caller, and neither
    // an instance nor a zone.
    for t in &transitions {
        assert_eq!(str_of(t, "source"), caller, "{t}");
        assert!(
            t.get("instance").is_none() && t.get("zone").is_none(),
            "{t}"
        );
    }
    assert!(
        transitions.iter().any(|t| t["status"] == "resolved"),
        "{transitions:#?}"
    );
}

#[test]
fn a_gzip_file_and_standard_input_replay_exactly_like_the_plain_file() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "slow-tail");
    let plain = replay(&path, None);
    plain.assert_success();
    assert!(!plain.stdout.is_empty());

    let gz_path = dir.path().join("slow-tail.ndjson.gz");
    let mut gz =
        flate2::write::GzEncoder::new(File::create(&gz_path).unwrap(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&path).unwrap()).unwrap();
    gz.finish().unwrap();
    let gzipped = replay(&gz_path, None);
    gzipped.assert_success();
    assert!(gzipped.stdout == plain.stdout, "gzip: stdout differs");

    let stdin = run(graywatch()
        .args(["replay", "-"])
        .env_remove("GRAYWATCH_CONFIG")
        .stdin(File::open(&path).unwrap()));
    stdin.assert_success();
    assert!(stdin.stdout == plain.stdout, "stdin: stdout differs");
}

#[test]
fn malformed_lines_are_reported_with_their_line_number_and_skipped() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "slow-tail");
    let clean = replay(&path, None);
    clean.assert_success();

    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let clean_lines = lines.len();
    // Line 3: not JSON. Line 6: no `ts`, which a recording must have. Line 8: not an object.
    lines.insert(2, "{not json");
    lines.insert(
        5,
        r#"{"dependency":"payments-api","duration_ms":12.5,"outcome":"ok"}"#,
    );
    lines.insert(7, "[1, 2]");
    let broken = write(dir.path(), "broken.ndjson", &(lines.join("\n") + "\n"));

    let r = replay(&broken, None);
    r.assert_success();
    let diagnostics: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(diagnostics.len(), 3, "{}", r.stderr);
    assert!(diagnostics[0].starts_with("line 3:"), "{}", r.stderr);
    assert!(diagnostics[1].starts_with("line 6:"), "{}", r.stderr);
    assert!(diagnostics[1].contains("ts"), "{}", r.stderr);
    assert!(diagnostics[2].starts_with("line 8:"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("replayed {clean_lines} events (3 malformed")),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout == clean.stdout,
        "the output equals the output without the malformed lines"
    );
}

#[test]
fn a_healthy_scenario_replays_without_any_transition() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "gc-pauses");
    let r = replay(&path, None);
    r.assert_success();
    assert_eq!(r.stdout, "", "stderr:\n{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("replayed {} events", line_count(&path))),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("0 alerts fired"), "{}", r.stderr);
}

#[test]
fn replay_judges_by_the_dependency_spec_of_its_config_file() {
    let dir = TempDir::new().unwrap();
    let path = emit(dir.path(), "gc-pauses");
    // An impossible normal envelope: every healthy call is beyond it.
    let config = write(
        dir.path(),
        "spec.toml",
        "[dependencies.payments-api]\nnormal = { p99_ms = 1 }\n",
    );
    let r = replay(&path, Some(&config));
    r.assert_success();
    let transitions = r.transitions();
    let slo = transitions
        .iter()
        .find(|t| t["status"] == "firing" && t["detector"] == "slo_latency")
        .unwrap_or_else(|| panic!("an slo_latency alert fires:\n{}", r.stdout));
    assert_eq!(slo["dependency"], "payments-api", "{slo}");
    assert_eq!(slo["severity"], "degraded", "{slo}");
    assert_eq!(slo["evidence"]["bound_p99_ms"], 1.0, "{slo}");
}

#[test]
fn replay_refuses_an_invalid_config_naming_the_key() {
    let dir = TempDir::new().unwrap();
    let events = write(
        dir.path(),
        "one.ndjson",
        &format!("{{\"dependency\":\"payments-api\",\"duration_ms\":5,\"ts\":{EPOCH_MS}}}\n"),
    );
    let config = write(dir.path(), "bad.toml", "[detection]\nalpha = 2\n");
    let r = replay(&events, Some(&config));
    assert_ne!(r.code, Some(0), "stderr:\n{}", r.stderr);
    assert!(r.stderr.contains("detection.alpha"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn check_config_exits_1_naming_an_unknown_key_and_0_on_a_valid_file() {
    let dir = TempDir::new().unwrap();
    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[detection]\nfire_after = \"10s\"\nalpah = 1e-6\n",
    );
    let r = run(graywatch().arg("check-config").arg(&unknown));
    assert_eq!(
        r.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("alpah"), "{}", r.stderr);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);

    let invalid = write(dir.path(), "invalid.toml", "[detection]\nalpha = 2\n");
    let r = run(graywatch().arg("check-config").arg(&invalid));
    assert_eq!(r.code, Some(1), "stderr:\n{}", r.stderr);
    assert!(r.stderr.contains("detection.alpha = 2"), "{}", r.stderr);

    let valid = write(
        dir.path(),
        "valid.toml",
        "[detection]\nfire_after = \"10s\"\nalpha = 1e-7\n\n\
         [dependencies.payments-api]\n\
         normal = { p99_ms = 300, error_rate = 0.005 }\n\
         acceptable = { p99_ms = 400, error_rate = 0.02 }\n\
         slow_call = { duration_ms = 1000, max_rate = 0.05 }\n\
         on_breach = { breaker = \"degraded\" }\n",
    );
    let r = run(graywatch().arg("check-config").arg(&valid));
    assert_eq!(r.code, Some(0), "stderr:\n{}", r.stderr);
    assert!(r.stdout.contains("ok"), "{}", r.stdout);
}

#[test]
fn with_breakers_replay_prints_the_breaker_opening_on_a_hard_failure_and_closing_after() {
    // Two minutes of healthy calls, a minute of every call failing, three healthy minutes.
    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("down.ndjson");
    let mut f = File::create(&path).expect("create the recording");
    for s in 0..360i64 {
        let failing = (120..180).contains(&s);
        for i in 0..20 {
            let ts = EPOCH_MS + s * 1000 + i * 50;
            let outcome = if failing { "error" } else { "ok" };
            writeln!(
                f,
                r#"{{"dependency":"orders-db","duration_ms":12.5,"outcome":"{outcome}","ts":{ts}}}"#
            )
            .expect("write");
        }
    }
    drop(f);

    let mut cmd = graywatch();
    let r = run(cmd.arg("replay").arg("--breakers").arg(&path));
    r.assert_success();
    let lines = r.transitions();
    let breakers: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("breaker").is_some())
        .collect();
    let states: Vec<&str> = breakers
        .iter()
        .filter_map(|b| b["breaker"]["state"].as_str())
        .collect();
    let opened = states
        .iter()
        .position(|s| *s == "open")
        .unwrap_or_else(|| panic!("the breaker opens: {breakers:?}"));
    assert_eq!(
        states.last(),
        Some(&"closed"),
        "and closes again: {states:?}"
    );
    assert!(opened < states.len() - 1);
    // It opens within three seconds of the onset (two whole failing seconds).
    let at = breakers[opened]["at"].as_str().expect("at");
    assert!(
        ("2027-01-15T08:02:01".."2027-01-15T08:02:04").contains(&at),
        "opened at {at}"
    );
    // The alert lines are still there, and without --breakers only they are printed.
    assert!(lines.iter().any(|l| l["status"] == "firing"));
    let mut cmd = graywatch();
    let plain = run(cmd.arg("replay").arg(&path));
    plain.assert_success();
    assert!(
        plain
            .transitions()
            .iter()
            .all(|l| l.get("breaker").is_none()),
        "{}",
        plain.stdout
    );
}
