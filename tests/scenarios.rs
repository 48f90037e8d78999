//! The scenario suite: every gray failure is detected in time (and localized where one
//! instance, zone or caller is the cause) and resolved after recovery; healthy streams raise nothing.
//!
//! The seeds differ from the ones behind the README table, and each seed draws its own fault
//! sizes, onset times and traffic, so passing here is not a matter of tuning to one stream.

use graywatch::config::Settings;
use graywatch::detect::{AlertStatus, DetectorKind};
use graywatch::scenario::{self, ScenarioResult};

fn check(results: &[ScenarioResult]) {
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !scenario::passes(r))
        .map(|r| {
            format!(
                "{} (seed {}, {}): time to detect {:?}, localized {:?}, resolved {}, false alerts {}, alerts for the fault {}; alerts: {:?}",
                r.scenario,
                r.seed,
                r.description,
                r.time_to_detect_s,
                r.localized,
                r.resolved,
                r.false_alerts,
                r.fault_alerts,
                r.alerts
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs missed their targets:\n{}\n\n{}",
        failures.len(),
        results.len(),
        failures.join("\n"),
        scenario::markdown_table(results)
    );
}

#[test]
fn every_gray_scenario_is_caught_in_time_and_every_healthy_one_stays_quiet() {
    let settings = Settings::default();
    let results = scenario::run_suite(&[101, 202], &settings.detection, &settings.dependencies, 2);
    assert_eq!(results.len(), 2 * scenario::suite(0).len());
    // The suite covers what it claims: gray and healthy streams, localized faults included.
    assert!(results.iter().filter(|r| r.gray).count() >= 16);
    assert!(results.iter().filter(|r| r.localized.is_some()).count() >= 8);
    check(&results);
}

#[test]
fn the_scorer_counts_a_detector_that_never_fires_as_a_miss() {
    // Guard against a suite that passes because scoring is lenient: with detection made
    // impossible (alpha of 1e-300, no hard failures), every gray scenario must be a miss.
    let mut settings = Settings::default();
    settings.detection.alpha = 1e-300;
    settings.detection.failing_rate = 1.0;
    settings.detection.min_bad_calls = u64::MAX;
    let gray: Vec<_> = scenario::suite(7)
        .into_iter()
        .filter(|s| s.is_gray())
        .take(2)
        .collect();
    for s in gray {
        let r = scenario::run(&s, 7, &settings.detection, &settings.dependencies);
        assert!(
            !r.detected_in_time && !scenario::passes(&r),
            "{}: {:?}",
            s.name,
            r.alerts
        );
    }
}

#[test]
fn kept_peer_minute_lists_change_no_transition_and_no_breaker() {
    // Detection reads keep a quiet peer's 1-minute durations as a list, updated by each call
    // and each move of the window, instead of reading its slots every second. Every scenario
    // of a seed, replayed with the kept lists and with every sample read from the slots, must
    // give exactly the same alert transitions and breaker changes.
    use graywatch::replay::Replayer;
    use graywatch::window::Limits;
    let settings = Settings::default();
    let seed = 303;
    let (mut transitions, mut reused) = (0, 0);
    for s in scenario::suite(seed) {
        let run = |reuse: bool| {
            let mut r = Replayer::new(
                settings.detection.clone(),
                settings.dependencies.clone(),
                Limits::default(),
            );
            r.store().set_reuse_samples(reuse);
            let mut out = Vec::new();
            s.generate(seed, |e| {
                let _ = r.push(e, &mut out);
            });
            r.advance_to(scenario::EPOCH_MS + s.duration_s * 1000, &mut out);
            (out, r.take_breaker_changes(), r.store().samples_reused())
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(without.2, 0, "{}: nothing reused when reuse is off", s.name);
        assert!(
            with.0 == without.0,
            "{}: transitions differ:\nwith reuse {:#?}\nwithout {:#?}",
            s.name,
            with.0,
            without.0
        );
        assert!(with.1 == without.1, "{}: breaker changes differ", s.name);
        transitions += with.0.len();
        reused += with.2;
    }
    // Not a comparison of nothing: alerts fired and resolved, and kept lists were read.
    assert!(transitions >= 20, "{transitions} transitions");
    assert!(reused > 0, "no sample was reused");
}

#[test]
fn retried_failures_stay_quiet_and_traffic_that_drops_stops_or_surges_is_caught() {
    // Seed 2 draws calls that stop altogether (judged while the dependency has no data),
    // seed 3 a drop of 84%.
    let settings = Settings::default();
    let names = ["retry-burst", "traffic-drop", "retry-storm"];
    let mut results = Vec::new();
    for seed in [2, 3] {
        for s in scenario::suite(seed) {
            if names.contains(&s.name.as_str()) {
                results.push(scenario::run(
                    &s,
                    seed,
                    &settings.detection,
                    &settings.dependencies,
                ));
            }
        }
    }
    assert_eq!(results.len(), 6);
    assert!(results.iter().any(|r| r.description == "calls stop"));
    check(&results);
}

/// One scenario of `seed` replayed with the default settings: its alert transitions and score.
fn transitions_of(name: &str, seed: u64) -> (Vec<graywatch::detect::Transition>, ScenarioResult) {
    let settings = Settings::default();
    let s = scenario::suite(seed)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let (result, transitions) =
        scenario::run_with_transitions(&s, seed, &settings.detection, &settings.dependencies);
    (transitions, result)
}

/// Every detector named by an alert of `transitions` while it fired or changed.
fn detectors_named(transitions: &[graywatch::detect::Transition]) -> Vec<DetectorKind> {
    let mut named: Vec<DetectorKind> = transitions
        .iter()
        .filter(|t| t.status != AlertStatus::Resolved)
        .flat_map(|t| t.detectors.iter().copied())
        .collect();
    named.sort();
    named.dedup();
    named
}

#[test]
fn fast_errors_do_not_hide_slower_successful_calls() {
    // 30-35% of calls fail in 2 ms while the successful ones get 1.25-1.3x slower: timed
    // with them, the errors hid the slowdown and only `error_rate` fired. Counted and not
    // timed, the latency of the successful calls shows it, in the same alert.
    for seed in [1, 2] {
        let (transitions, result) = transitions_of("fast-failure", seed);
        check(std::slice::from_ref(&result));
        let named = detectors_named(&transitions);
        assert!(
            named.contains(&DetectorKind::LatencyTail) && named.contains(&DetectorKind::ErrorRate),
            "seed {seed} ({}): {named:?}",
            result.description
        );
        // Judged on the successful calls, the latency evidence is about them.
        let latency = transitions
            .iter()
            .find(|t| t.detector == DetectorKind::LatencyTail)
            .map(|t| t.summary.clone())
            .unwrap_or_default();
        assert!(
            latency.is_empty() || latency.contains("of successful calls"),
            "{latency}"
        );
    }
}

#[test]
fn a_rise_of_timeouts_is_a_timeout_alert_and_not_a_latency_one() {
    // Timed-out calls last as long as the client's deadline (2 s here): timed, they raised
    // the tail and fired `latency_tail` beside `timeout_rate`.
    for seed in [1, 2] {
        let (transitions, result) = transitions_of("timeouts", seed);
        check(std::slice::from_ref(&result));
        let named = detectors_named(&transitions);
        assert!(
            named.contains(&DetectorKind::TimeoutRate),
            "seed {seed}: {named:?}"
        );
        assert!(
            !named.contains(&DetectorKind::LatencyTail),
            "seed {seed} ({}): {named:?}",
            result.description
        );
    }
}
