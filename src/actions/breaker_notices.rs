//! Breaker notifications on their way to the outbox, at most one per breaker and notifier.
//!
//! Detection announces breaker changes without waiting for the database; the writer task then
//! puts their notifications in the outbox. While the database refuses writes they wait here.
//! A queue of every change would have to be cut during a long outage, and a cut loses a
//! change some receiver never hears of (the `open` of a breaker that stays open). Instead each
//! breaker keeps only its latest change per notifier: a newer change replaces the waiting one
//! and counts it in `superseded`. Memory is then bounded by breakers x notifiers however long
//! the outage lasts, and once the database is back every receiver hears the state each breaker
//! is in now.
//!
//! No I/O and no clock here: the hub pushes changes, takes them to write, and gives back
//! those the database refused.

use super::breaker::BreakerState;
use std::collections::HashMap;

/// Which breaker, for which notifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    dependency: String,
    instance: Option<String>,
    notifier: String,
}

/// A breaker's latest change, waiting for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub notifier: String,
    pub dependency: String,
    pub instance: Option<String>,
    /// The breaker's state after the change.
    pub state: BreakerState,
    pub reason: String,
    /// When the change happened (event time, ms).
    pub at_ms: i64,
    /// Earlier changes of this breaker, for this notifier, that this one replaced before any
    /// of them reached the outbox.
    pub superseded: u32,
    /// Arrival order of the latest change: the outbox gets them oldest first.
    seq: u64,
}

impl Waiting {
    pub fn new(
        notifier: &str,
        dependency: &str,
        instance: Option<&str>,
        state: BreakerState,
        reason: &str,
        at_ms: i64,
    ) -> Self {
        Self {
            notifier: notifier.to_string(),
            dependency: dependency.to_string(),
            instance: instance.map(str::to_string),
            state,
            reason: reason.to_string(),
            at_ms,
            superseded: 0,
            seq: 0,
        }
    }

    fn key(&self) -> Key {
        Key {
            dependency: self.dependency.clone(),
            instance: self.instance.clone(),
            notifier: self.notifier.clone(),
        }
    }
}

/// The waiting set.
#[derive(Debug)]
pub struct BreakerNotices {
    waiting: HashMap<Key, Waiting>,
    next_seq: u64,
    /// Breakers x notifiers at most. The board holds at most `limits.max_dependencies` x
    /// (1 + `limits.max_instances_per_dependency`) breakers at a time, so this is reached only
    /// if more distinct breakers change during one outage than the board can hold at once
    /// (idle dependencies forgotten and replaced by new ones).
    capacity: usize,
    /// Changes of a new breaker refused at `capacity`, not yet reported.
    dropped: u64,
}

impl BreakerNotices {
    pub fn new(capacity: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            next_seq: 0,
            capacity,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Adds a change. One already waiting for the same breaker and notifier is replaced and
    /// counted in `superseded`. A change of a breaker not yet waiting is refused (and
    /// counted) when `capacity` are waiting; returns whether it was kept.
    pub fn push(&mut self, mut change: Waiting) -> bool {
        change.seq = self.next_seq;
        self.next_seq += 1;
        let key = change.key();
        if let Some(older) = self.waiting.get(&key) {
            change.superseded = change
                .superseded
                .saturating_add(older.superseded)
                .saturating_add(1);
        } else if self.waiting.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        self.waiting.insert(key, change);
        true
    }

    /// Every waiting change, oldest first, leaving none.
    pub fn take(&mut self) -> Vec<Waiting> {
        let mut all: Vec<Waiting> = self.waiting.drain().map(|(_, w)| w).collect();
        all.sort_by_key(|w| w.seq);
        all
    }

    /// Gives back changes taken by [`Self::take`] that could not be written. A change that
    /// came meanwhile for the same breaker and notifier is newer: it stays and counts the
    /// returned one (and what that one had replaced) as superseded. The others wait again in
    /// their original order. They are not refused at `capacity`: they were within it when
    /// taken, so the set holds at most twice `capacity` until the next take.
    pub fn restore(&mut self, failed: Vec<Waiting>) {
        for w in failed {
            let key = w.key();
            match self.waiting.get_mut(&key) {
                Some(newer) => {
                    newer.superseded = newer
                        .superseded
                        .saturating_add(w.superseded)
                        .saturating_add(1);
                }
                None => {
                    self.waiting.insert(key, w);
                }
            }
        }
    }

    /// Changes refused at `capacity` since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        notifier: &str,
        dep: &str,
        instance: Option<&str>,
        state: &'static str,
        at: i64,
    ) -> Waiting {
        let state = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .into_iter()
        .find(|s| s.as_str() == state)
        .expect("a breaker state");
        Waiting::new(notifier, dep, instance, state, "why", at)
    }

    fn summary(ws: &[Waiting]) -> Vec<(String, String, Option<String>, &'static str, u32)> {
        ws.iter()
            .map(|w| {
                (
                    w.notifier.clone(),
                    w.dependency.clone(),
                    w.instance.clone(),
                    w.state.as_str(),
                    w.superseded,
                )
            })
            .collect()
    }

    #[test]
    fn a_breaker_keeps_only_its_latest_change_per_notifier_and_counts_the_rest() {
        let mut n = BreakerNotices::new(100);
        for (state, at) in [("open", 1), ("half_open", 2), ("closed", 3), ("open", 4)] {
            assert!(n.push(change("hook", "db", None, state, at)));
            assert!(n.push(change("mail", "db", None, state, at)));
        }
        assert!(n.push(change("hook", "db", Some("i-1"), "open", 5)));
        assert_eq!(n.len(), 3);
        let taken = n.take();
        assert!(n.is_empty());
        assert_eq!(
            summary(&taken),
            [
                ("hook".into(), "db".into(), None, "open", 3),
                ("mail".into(), "db".into(), None, "open", 3),
                ("hook".into(), "db".into(), Some("i-1".into()), "open", 0),
            ]
        );
        assert_eq!(taken[0].at_ms, 4);
    }

    #[test]
    fn changes_come_out_in_the_order_of_their_latest_arrival() {
        let mut n = BreakerNotices::new(100);
        n.push(change("hook", "a", None, "open", 1));
        n.push(change("hook", "b", None, "open", 2));
        n.push(change("hook", "a", None, "half_open", 3));
        let order: Vec<(String, &str)> = n
            .take()
            .iter()
            .map(|w| (w.dependency.clone(), w.state.as_str()))
            .collect();
        assert_eq!(order, [("b".into(), "open"), ("a".into(), "half_open")]);
    }

    #[test]
    fn a_failed_write_waits_again_unless_a_newer_change_came_meanwhile() {
        let mut n = BreakerNotices::new(100);
        n.push(change("hook", "a", None, "open", 1));
        n.push(change("hook", "b", None, "open", 2));
        n.push(change("hook", "b", None, "half_open", 3));
        let taken = n.take();
        // While the write was failing, `a` changed again and `c` opened.
        n.push(change("hook", "a", None, "half_open", 4));
        n.push(change("hook", "c", None, "open", 5));
        n.restore(taken);
        let again = n.take();
        assert_eq!(
            summary(&again),
            [
                ("hook".into(), "b".into(), None, "half_open", 1),
                ("hook".into(), "a".into(), None, "half_open", 1),
                ("hook".into(), "c".into(), None, "open", 0),
            ]
        );
    }

    #[test]
    fn the_set_is_bounded_by_breakers_and_notifiers_not_by_time() {
        // Two breakers and one notifier: a thousand flaps of each still hold two entries.
        let mut n = BreakerNotices::new(2);
        for at in 0..1_000 {
            let state = if at % 2 == 0 { "open" } else { "closed" };
            assert!(n.push(change("hook", "a", None, state, at)));
            assert!(n.push(change("hook", "b", None, state, at)));
        }
        assert_eq!(n.len(), 2);
        // A third breaker is refused and counted, the two waiting keep changing.
        assert!(!n.push(change("hook", "c", None, "open", 1_000)));
        assert!(n.push(change("hook", "a", None, "open", 1_001)));
        assert_eq!(n.take_dropped(), 1);
        assert_eq!(n.take_dropped(), 0);
        let taken = n.take();
        assert_eq!(
            summary(&taken)[0],
            ("hook".into(), "b".into(), None, "closed", 999)
        );
        assert_eq!(
            summary(&taken)[1],
            ("hook".into(), "a".into(), None, "open", 1_000)
        );
    }
}
