//! Incidents: what one alert is about.
//!
//! Each detector runs its own hysteresis machine (see `state`), so a condition must hold
//! before it counts and stay clear before it stops counting. An incident gathers the firing
//! conditions of one subject (a dependency, or one of its instances, zones or sources): it
//! fires when the first condition fires, is updated when the set of conditions or their worst
//! severity changes, and resolves when the last one has resolved. One incident is one alert
//! and one notification per change, however many detectors see it.

use std::collections::BTreeMap;

use serde_json::json;

use super::detectors::{DetectorKind, Finding, Severity};

/// What changed about an incident at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Fired,
    /// The set of firing conditions or the severity changed.
    Updated {
        previous_severity: Severity,
    },
    Resolved,
}

/// An open incident of one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub started_ms: i64,
    /// Firing conditions with their latest finding.
    pub conditions: BTreeMap<(DetectorKind, Severity), Finding>,
}

impl Incident {
    /// The worst severity among the firing conditions.
    pub fn severity(&self) -> Severity {
        self.conditions
            .keys()
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(Severity::Degraded)
    }

    /// The condition that names the incident: the most severe, then the first detector in
    /// [`DetectorKind`] order (latency before errors, baseline before spec and peers).
    pub fn primary(&self) -> Option<&Finding> {
        self.conditions
            .iter()
            .max_by(|((da, sa), _), ((db, sb), _)| sa.cmp(sb).then(db.cmp(da)))
            .map(|(_, f)| f)
    }

    /// Detectors of the firing conditions, primary first, each once.
    pub fn detectors(&self) -> Vec<DetectorKind> {
        let mut out: Vec<DetectorKind> = self.primary().map(|f| f.detector).into_iter().collect();
        for (d, _) in self.conditions.keys() {
            if !out.contains(d) {
                out.push(*d);
            }
        }
        out
    }

    /// One line for people: the primary finding, then the other detectors by name.
    pub fn summary(&self) -> String {
        let Some(primary) = self.primary() else {
            return String::new();
        };
        let others: Vec<&str> = self
            .detectors()
            .into_iter()
            .skip(1)
            .map(DetectorKind::as_str)
            .collect();
        if others.is_empty() {
            primary.summary.clone()
        } else {
            format!("{} (also: {})", primary.summary, others.join(", "))
        }
    }

    /// The primary finding's evidence, with every condition's finding under `findings`.
    pub fn evidence(&self) -> serde_json::Value {
        let mut evidence = self
            .primary()
            .map(|f| f.evidence.clone())
            .unwrap_or_else(|| json!({}));
        if !evidence.is_object() {
            evidence = json!({ "value": evidence });
        }
        let findings: Vec<serde_json::Value> = self
            .conditions
            .values()
            .map(|f| {
                json!({
                    "detector": f.detector.as_str(),
                    "severity": f.severity.as_str(),
                    "summary": f.summary,
                    "evidence": f.evidence,
                })
            })
            .collect();
        evidence["findings"] = json!(findings);
        evidence
    }
}

/// Moves an incident to the conditions now firing for its subject and says what changed.
/// `slot` is the subject's open incident (if any); `firing` its firing conditions.
pub fn step(
    slot: &mut Option<Incident>,
    firing: BTreeMap<(DetectorKind, Severity), Finding>,
    now_ms: i64,
) -> Option<Change> {
    match (slot.as_mut(), firing.is_empty()) {
        (None, true) => None,
        (None, false) => {
            *slot = Some(Incident {
                started_ms: now_ms,
                conditions: firing,
            });
            Some(Change::Fired)
        }
        (Some(_), true) => Some(Change::Resolved),
        (Some(open), false) => {
            let previous_severity = open.severity();
            let same =
                open.conditions.len() == firing.len() && open.conditions.keys().eq(firing.keys());
            open.conditions = firing;
            (!same).then_some(Change::Updated { previous_severity })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(detector: DetectorKind, severity: Severity) -> Finding {
        Finding {
            detector,
            severity,
            summary: format!("{} says so", detector.as_str()),
            evidence: json!({ "window": "1m" }),
        }
    }

    fn set(items: &[(DetectorKind, Severity)]) -> BTreeMap<(DetectorKind, Severity), Finding> {
        items
            .iter()
            .map(|&(d, s)| ((d, s), finding(d, s)))
            .collect()
    }

    #[test]
    fn several_detectors_are_one_incident_and_changes_are_updates() {
        let mut slot = None;
        let latency = (DetectorKind::LatencyTail, Severity::Degraded);
        let errors = (DetectorKind::ErrorRate, Severity::Degraded);
        let down = (DetectorKind::HardFailure, Severity::Failing);
        assert_eq!(step(&mut slot, set(&[latency]), 0), Some(Change::Fired));
        // The same set again: nothing to say.
        assert_eq!(step(&mut slot, set(&[latency]), 1_000), None);
        assert_eq!(
            step(&mut slot, set(&[latency, errors]), 2_000),
            Some(Change::Updated {
                previous_severity: Severity::Degraded
            })
        );
        assert_eq!(
            step(&mut slot, set(&[latency, errors, down]), 3_000),
            Some(Change::Updated {
                previous_severity: Severity::Degraded
            })
        );
        let open = slot.as_ref().unwrap();
        assert_eq!(open.severity(), Severity::Failing);
        assert_eq!(open.started_ms, 0);
        assert_eq!(
            open.detectors(),
            vec![
                DetectorKind::HardFailure,
                DetectorKind::LatencyTail,
                DetectorKind::ErrorRate
            ]
        );
        assert!(open.summary().starts_with("hard_failure says so (also: "));
        assert_eq!(open.evidence()["findings"].as_array().unwrap().len(), 3);
        assert_eq!(step(&mut slot, set(&[]), 4_000), Some(Change::Resolved));
    }

    #[test]
    fn the_primary_is_the_most_severe_condition() {
        let slot = Incident {
            started_ms: 0,
            conditions: set(&[
                (DetectorKind::LatencyTail, Severity::Degraded),
                (DetectorKind::SloLatency, Severity::Failing),
                (DetectorKind::SloLatency, Severity::Degraded),
            ]),
        };
        let p = slot.primary().unwrap();
        assert_eq!(
            (p.detector, p.severity),
            (DetectorKind::SloLatency, Severity::Failing)
        );
        assert_eq!(
            slot.detectors(),
            vec![DetectorKind::SloLatency, DetectorKind::LatencyTail]
        );
    }
}
