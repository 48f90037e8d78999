//! The scenario suite: every gray failure is detected in time (and localized where one
//! instance, zone or caller is the cause) and resolved after recovery; healthy streams raise nothing.
//!
//! The seeds differ from the ones behind the README table, and each seed draws its own fault
//! sizes, onset times and traffic, so passing here is not a matter of tuning to one stream.

use graywatch::config::Settings;
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
fn reusing_unchanged_peer_samples_changes_no_transition_and_no_breaker() {
    // Detection reads reuse a peer's 1-minute sample while the peer records nothing and its
    // window keeps its start. Every scenario of a seed, replayed with that reuse and with every
    // sample built afresh, must give exactly the same alert transitions and breaker changes.
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
    // Not a comparison of nothing: alerts fired and resolved, and samples were reused.
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
