//! Alert lifecycle with hysteresis: one machine per (subject, detector).
//!
//! ```text
//! Inactive --condition--> Pending --sequential evidence, or held for fire_after--> Firing
//!    ^                      |                                |
//!    +--false beyond grace--+     +--clear for resolve_after-+--> (Resolved) Inactive
//! ```
//!
//! A pending condition fires as soon as its sequential evidence (see
//! [`super::sequential`]) crosses its threshold, found at two evaluations at least, or
//! after it has held for `fire_after`, whichever comes first: `fire_after` is the longest
//! hold, for conditions without sequential evidence (peers, specs) or whose evidence builds
//! slowly. Short gaps in the condition (`grace`) do not reset a pending alert, because at low
//! traffic a real problem flickers in and out of significance; but at least half of the
//! evaluations while pending must find it, so a condition true one second in five never
//! fires. An alert that fired recently needs longer to resolve each time it re-fires (flap
//! damping), so a wobbling dependency yields one long alert instead of a stream of short
//! ones.

use std::collections::VecDeque;
use std::time::Duration;

/// Least share of evaluations, while pending, that must find the condition before it fires.
const MIN_TRUE_SHARE: f64 = 0.5;
/// Least evaluations finding the condition before sequential evidence may fire it: one
/// evaluation alone never fires.
const MIN_TRUE_STEPS_SEQUENTIAL: u32 = 2;

/// Timing of the lifecycle. All values in milliseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    pub fire_after_ms: i64,
    pub resolve_after_ms: i64,
    pub grace_ms: i64,
    /// Firings within this span count as flapping.
    pub flap_window_ms: i64,
    /// Longest resolve delay flap damping may impose.
    pub max_resolve_after_ms: i64,
}

impl Hysteresis {
    pub fn new(fire_after: Duration, resolve_after: Duration) -> Self {
        Self {
            fire_after_ms: fire_after.as_millis() as i64,
            resolve_after_ms: resolve_after.as_millis() as i64,
            grace_ms: 5_000,
            flap_window_ms: 30 * 60_000,
            max_resolve_after_ms: 10 * 60_000,
        }
    }
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self::new(Duration::from_secs(15), Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Inactive,
    Pending {
        since_ms: i64,
        last_true_ms: i64,
        /// Evaluations while pending, and how many of them found the condition.
        steps: u32,
        true_steps: u32,
    },
    Firing {
        started_ms: i64,
        clear_since_ms: Option<i64>,
    },
}

/// What one step of the machine produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Unchanged,
    Fired { started_ms: i64 },
    Resolved { started_ms: i64, resolved_ms: i64 },
}

#[derive(Debug, Clone)]
pub struct AlertMachine {
    phase: Phase,
    /// Start times of recent firings, for flap damping.
    recent_fires: VecDeque<i64>,
}

impl Default for AlertMachine {
    fn default() -> Self {
        Self {
            phase: Phase::Inactive,
            recent_fires: VecDeque::new(),
        }
    }
}

impl AlertMachine {
    /// A machine already firing since `started_ms` (state restored after a restart).
    pub fn firing_since(started_ms: i64) -> Self {
        Self {
            phase: Phase::Firing {
                started_ms,
                clear_since_ms: None,
            },
            recent_fires: VecDeque::from([started_ms]),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// True while pending or firing: the subject is under suspicion (baselines skip it).
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Inactive)
    }

    /// Whether the machine must be kept although inactive: it fired within the flap window,
    /// and forgetting that would undo flap damping the next time it fires.
    pub fn worth_keeping(&self) -> bool {
        self.is_active() || !self.recent_fires.is_empty()
    }

    /// The resolve delay in force: doubled for each other firing in the flap window.
    pub fn resolve_after_ms(&self, h: &Hysteresis) -> i64 {
        let flaps = self.recent_fires.len().saturating_sub(1).min(8) as u32;
        (h.resolve_after_ms << flaps).min(h.max_resolve_after_ms.max(h.resolve_after_ms))
    }

    /// Advances the machine with the condition observed at `now_ms`, without sequential
    /// evidence: a condition fires after holding for `fire_after`.
    pub fn step(&mut self, condition: bool, now_ms: i64, h: &Hysteresis) -> Step {
        self.step_with(condition, false, now_ms, h)
    }

    /// Advances the machine with the condition observed at `now_ms`; `crossed` says that the
    /// condition's sequential evidence reached its threshold, which fires a pending condition
    /// without waiting for `fire_after`.
    pub fn step_with(
        &mut self,
        condition: bool,
        crossed: bool,
        now_ms: i64,
        h: &Hysteresis,
    ) -> Step {
        while self
            .recent_fires
            .front()
            .is_some_and(|&t| t < now_ms - h.flap_window_ms)
        {
            self.recent_fires.pop_front();
        }
        match (self.phase, condition) {
            (Phase::Inactive, false) => Step::Unchanged,
            (Phase::Inactive, true) => {
                self.phase = Phase::Pending {
                    since_ms: now_ms,
                    last_true_ms: now_ms,
                    steps: 1,
                    true_steps: 1,
                };
                self.fire_if_held(crossed, now_ms, h)
            }
            (
                Phase::Pending {
                    since_ms,
                    steps,
                    true_steps,
                    ..
                },
                true,
            ) => {
                self.phase = Phase::Pending {
                    since_ms,
                    last_true_ms: now_ms,
                    steps: steps.saturating_add(1),
                    true_steps: true_steps.saturating_add(1),
                };
                self.fire_if_held(crossed, now_ms, h)
            }
            (
                Phase::Pending {
                    since_ms,
                    last_true_ms,
                    steps,
                    true_steps,
                },
                false,
            ) => {
                self.phase = if now_ms - last_true_ms > h.grace_ms {
                    Phase::Inactive
                } else {
                    Phase::Pending {
                        since_ms,
                        last_true_ms,
                        steps: steps.saturating_add(1),
                        true_steps,
                    }
                };
                Step::Unchanged
            }
            (Phase::Firing { started_ms, .. }, true) => {
                self.phase = Phase::Firing {
                    started_ms,
                    clear_since_ms: None,
                };
                Step::Unchanged
            }
            (
                Phase::Firing {
                    started_ms,
                    clear_since_ms,
                },
                false,
            ) => {
                let clear_since = clear_since_ms.unwrap_or(now_ms);
                if now_ms - clear_since >= self.resolve_after_ms(h) {
                    self.phase = Phase::Inactive;
                    Step::Resolved {
                        started_ms,
                        resolved_ms: now_ms,
                    }
                } else {
                    self.phase = Phase::Firing {
                        started_ms,
                        clear_since_ms: Some(clear_since),
                    };
                    Step::Unchanged
                }
            }
        }
    }

    fn fire_if_held(&mut self, crossed: bool, now_ms: i64, h: &Hysteresis) -> Step {
        let Phase::Pending {
            since_ms,
            steps,
            true_steps,
            ..
        } = self.phase
        else {
            return Step::Unchanged;
        };
        // Held for long enough, and found at most evaluations meanwhile: grace bridges short
        // gaps, but a condition true one second in five is noise, not a held condition.
        let evidence = crossed && true_steps >= MIN_TRUE_STEPS_SEQUENTIAL;
        if now_ms - since_ms < h.fire_after_ms && !evidence {
            return Step::Unchanged;
        }
        if f64::from(true_steps) < MIN_TRUE_SHARE * f64::from(steps) {
            // Held long enough but mostly absent: judge afresh from now, so that a condition
            // that turns solid after a noisy spell fires `fire_after` later.
            self.phase = Phase::Pending {
                since_ms: now_ms,
                last_true_ms: now_ms,
                steps: 1,
                true_steps: 1,
            };
            return Step::Unchanged;
        }
        self.phase = Phase::Firing {
            started_ms: now_ms,
            clear_since_ms: None,
        };
        self.recent_fires.push_back(now_ms);
        Step::Fired { started_ms: now_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut AlertMachine, h: &Hysteresis, from_s: i64, to_s: i64, cond: bool) -> Vec<Step> {
        (from_s..to_s)
            .map(|s| m.step(cond, s * 1000, h))
            .filter(|s| *s != Step::Unchanged)
            .collect()
    }

    #[test]
    fn a_condition_must_hold_for_fire_after_before_firing() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        assert!(run(&mut m, &h, 0, 15, true).is_empty());
        assert_eq!(
            run(&mut m, &h, 15, 16, true),
            vec![Step::Fired { started_ms: 15_000 }]
        );
    }

    #[test]
    fn crossed_sequential_evidence_fires_at_the_second_finding_and_not_the_first() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        assert_eq!(m.step_with(true, true, 0, &h), Step::Unchanged);
        assert_eq!(
            m.step_with(true, true, 1_000, &h),
            Step::Fired { started_ms: 1_000 }
        );
        // Without it, the condition waits for `fire_after`.
        let mut m = AlertMachine::default();
        for s in 0..15 {
            assert_eq!(m.step_with(true, false, s * 1000, &h), Step::Unchanged);
        }
        assert!(matches!(
            m.step_with(true, false, 15_000, &h),
            Step::Fired { .. }
        ));
    }

    #[test]
    fn crossed_evidence_does_not_fire_a_condition_mostly_absent() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        m.step_with(true, true, 0, &h);
        for s in 1..4 {
            assert_eq!(m.step_with(false, true, s * 1000, &h), Step::Unchanged);
        }
        // Two findings out of five evaluations: below the least share.
        assert_eq!(m.step_with(true, true, 4_000, &h), Step::Unchanged);
        assert!(!m.is_firing());
    }

    #[test]
    fn a_twelve_second_blip_does_not_fire() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        assert!(run(&mut m, &h, 0, 12, true).is_empty());
        assert!(run(&mut m, &h, 12, 100, false).is_empty());
        assert_eq!(m.phase(), Phase::Inactive);
    }

    #[test]
    fn short_gaps_do_not_reset_a_pending_alert() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        let mut fired = vec![];
        for s in 0..20 {
            // True two seconds out of three.
            fired.extend(run(&mut m, &h, s, s + 1, s % 3 != 2));
        }
        assert_eq!(fired, vec![Step::Fired { started_ms: 15_000 }]);
    }

    #[test]
    fn a_condition_true_a_quarter_of_the_time_does_not_fire() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        let mut fired = vec![];
        for s in 0..120 {
            // True at 0, 4, 8, ... s: within the 5 s grace, so the machine stays pending.
            fired.extend(run(&mut m, &h, s, s + 1, s % 4 == 0));
        }
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn an_inactive_machine_that_fired_recently_is_worth_keeping() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        assert!(!m.worth_keeping());
        run(&mut m, &h, 0, 16, true);
        run(&mut m, &h, 16, 50, false);
        assert!(!m.is_active());
        assert!(m.worth_keeping());
        // Past the flap window the memory goes.
        run(&mut m, &h, 50 + 30 * 60, 50 + 30 * 60 + 1, false);
        assert!(!m.worth_keeping());
    }

    #[test]
    fn resolving_needs_a_clear_spell_and_flapping_lengthens_it() {
        let h = Hysteresis::default();
        let mut m = AlertMachine::default();
        run(&mut m, &h, 0, 16, true);
        assert!(m.is_firing());
        assert!(run(&mut m, &h, 16, 45, false).is_empty());
        assert_eq!(
            run(&mut m, &h, 45, 47, false),
            vec![Step::Resolved {
                started_ms: 15_000,
                resolved_ms: 46_000
            }]
        );
        // Fires again soon after: the next resolve takes twice as long.
        run(&mut m, &h, 100, 116, true);
        assert!(m.is_firing());
        assert_eq!(m.resolve_after_ms(&h), 60_000);
        assert!(run(&mut m, &h, 116, 175, false).is_empty());
        assert_eq!(run(&mut m, &h, 175, 177, false).len(), 1);
    }
}
