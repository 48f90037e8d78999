//! The recent history of breaker changes, per dependency (its own breaker and its instances'),
//! for the dashboard and `GET /v1/breakers/{dependency}/history`.
//!
//! Kept in memory only and bounded: the last [`MAX_CHANGES_PER_DEPENDENCY`] changes of each of
//! the [`MAX_DEPENDENCIES`] dependencies changed most recently, reasons cut to
//! [`MAX_REASON_BYTES`]. It starts empty when the daemon starts: the current state of every
//! breaker (and any override) is on the board and in the database, the way it got there is not.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::breaker::{BreakerChange, BreakerState};

/// Changes kept per dependency (its breaker and its instances' together); older ones go.
pub const MAX_CHANGES_PER_DEPENDENCY: usize = 100;
/// Dependencies with a history; a new one beyond this drops the one changed least recently.
pub const MAX_DEPENDENCIES: usize = 500;
/// A reason longer than this is cut (at a character boundary) and ends with `…`.
pub const MAX_REASON_BYTES: usize = 256;

/// One change of one breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// When graywatch published the change, epoch ms.
    pub at_ms: i64,
    /// The instance, for an instance's breaker; `None` for the dependency's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The effective state before (`closed` for a breaker that was not on the board yet).
    pub before: BreakerState,
    /// The effective state after.
    pub after: BreakerState,
    /// Why the breaker is in the state after.
    pub reason: String,
    /// True while an operator override decides the state after.
    pub forced: bool,
}

impl HistoryEntry {
    /// The entry as JSON, with the time also as RFC 3339 (`at`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["at"] = crate::time::to_rfc3339(self.at_ms).into();
        v
    }
}

#[derive(Debug, Default)]
struct Changes {
    entries: VecDeque<HistoryEntry>,
    /// Value of [`BreakerHistory::counter`] at the last change: the least recently changed
    /// dependency has the smallest.
    touched: u64,
}

/// Breaker changes per dependency, oldest first in each.
#[derive(Debug, Default)]
pub struct BreakerHistory {
    deps: HashMap<String, Changes>,
    counter: u64,
}

impl BreakerHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the changes published at `now_ms`.
    pub fn record(&mut self, changes: &[BreakerChange], now_ms: i64) {
        for c in changes {
            self.counter += 1;
            let dependency = c.after.dependency.as_str();
            if !self.deps.contains_key(dependency) && self.deps.len() >= MAX_DEPENDENCIES {
                let oldest = self
                    .deps
                    .iter()
                    .min_by_key(|(_, ch)| ch.touched)
                    .map(|(name, _)| name.clone());
                if let Some(name) = oldest {
                    self.deps.remove(&name);
                }
            }
            let ch = self.deps.entry(dependency.to_string()).or_default();
            ch.touched = self.counter;
            if ch.entries.len() >= MAX_CHANGES_PER_DEPENDENCY {
                ch.entries.pop_front();
            }
            ch.entries.push_back(HistoryEntry {
                at_ms: now_ms,
                instance: c.after.instance.clone(),
                before: c.before.as_ref().map_or(BreakerState::Closed, |b| b.state),
                after: c.after.state,
                reason: cut(&c.after.reason),
                forced: c.after.forced,
            });
        }
    }

    /// Whether the dependency has a history.
    pub fn knows(&self, dependency: &str) -> bool {
        self.deps.contains_key(dependency)
    }

    /// The dependency's last `limit` changes, newest first.
    pub fn recent(&self, dependency: &str, limit: usize) -> Vec<HistoryEntry> {
        self.deps
            .get(dependency)
            .map(|ch| ch.entries.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// How many dependencies have a history.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether no dependency has a history.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }
}

fn cut(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_REASON_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::breaker::BreakerView;

    fn view(dep: &str, instance: Option<&str>, state: BreakerState, reason: &str) -> BreakerView {
        BreakerView {
            dependency: dep.into(),
            instance: instance.map(Into::into),
            state,
            automatic: state,
            reason: reason.into(),
            since_ms: 0,
            next_probe_ms: None,
            trips: 0,
            forced: false,
            override_expires_ms: None,
        }
    }

    fn change(dep: &str, before: Option<BreakerState>, after: BreakerState) -> BreakerChange {
        BreakerChange {
            before: before.map(|s| view(dep, None, s, "before")),
            after: view(dep, None, after, "after"),
        }
    }

    #[test]
    fn lists_newest_first_and_keeps_the_last_hundred_of_a_dependency() {
        let mut h = BreakerHistory::new();
        h.record(&[change("db", None, BreakerState::Open)], 1);
        let mut c = change("db", Some(BreakerState::Open), BreakerState::HalfOpen);
        c.after.instance = Some("db-1".into());
        c.after.forced = true;
        h.record(&[c], 2);
        let r = h.recent("db", 10);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].at_ms, 2);
        assert_eq!(r[0].instance.as_deref(), Some("db-1"));
        assert_eq!(
            (r[0].before, r[0].after, r[0].forced),
            (BreakerState::Open, BreakerState::HalfOpen, true)
        );
        assert_eq!(
            (r[1].before, r[1].after, r[1].forced),
            (BreakerState::Closed, BreakerState::Open, false)
        );
        assert_eq!(h.recent("db", 1), r[..1]);
        assert!(h.recent("other", 10).is_empty());

        for t in 0..250 {
            h.record(&[change("db", None, BreakerState::Open)], 10 + t);
        }
        let r = h.recent("db", 1000);
        assert_eq!(r.len(), MAX_CHANGES_PER_DEPENDENCY);
        assert_eq!(r[0].at_ms, 259);
        assert_eq!(r[99].at_ms, 160);
        let j = r[0].to_json();
        assert_eq!(j["before"], "closed");
        assert_eq!(j["after"], "open");
        assert_eq!(j["at"], crate::time::to_rfc3339(259));
        assert!(j.get("instance").is_none(), "{j}");
    }

    #[test]
    fn a_new_dependency_beyond_the_cap_drops_the_one_changed_least_recently() {
        let mut h = BreakerHistory::new();
        for i in 0..MAX_DEPENDENCIES {
            h.record(
                &[change(&format!("d{i}"), None, BreakerState::Open)],
                i as i64,
            );
        }
        // d0 changes again: d1 is now the least recently changed.
        h.record(&[change("d0", None, BreakerState::Closed)], 1_000);
        h.record(&[change("new", None, BreakerState::Open)], 1_001);
        assert_eq!(h.len(), MAX_DEPENDENCIES);
        assert!(h.knows("d0") && h.knows("new") && h.knows("d2"));
        assert!(!h.knows("d1"));
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let mut h = BreakerHistory::new();
        let mut c = change("db", None, BreakerState::Open);
        c.after.reason = "é".repeat(400);
        h.record(&[c], 1);
        let reason = &h.recent("db", 1)[0].reason;
        assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
        assert!(reason.ends_with("é…"), "{reason}");
    }
}
