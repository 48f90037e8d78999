//! Persistence bookkeeping of a series: which minutes are dirty, late parts for minutes the
//! minute ring no longer covers, minutes recycled before they were written, and loading stored
//! minutes back at start-up.

use super::super::slot::Slot;
use super::{MINUTE_MS, MINUTE_TIER, Series, coarse_slot, fine_horizon, minute_slot};

/// A minute of one series ready to be persisted.
#[derive(Debug, Clone)]
pub struct MinuteRollup {
    pub minute_ms: i64,
    /// `true` for a late-data part to be stored beside the minute's main row, `false` for the
    /// main row, which replaces the stored one.
    pub late_part: bool,
    pub slot: Slot,
}

/// Unsaved minutes a series keeps once its minute ring has recycled them (see
/// [`Series::bound_unsaved`]): an hour. Per series rather than per store, so that one busy
/// series cannot push out every other's history; at most 60 minute slots (as sparse as they were
/// in the ring; ~780 KiB if all were dense), so a long database outage at most doubles the window
/// store's worst case instead of growing without end, and costs the oldest minutes first.
pub const MAX_UNSAVED_MINUTES: usize = 60;

impl Series {
    /// Loads a persisted minute (at start-up) into the minute and 5-minute rings.
    pub fn load_minute(&mut self, minute_ms: i64, slot: &Slot, now_ms: i64) {
        self.changes = self.changes.wrapping_add(1);
        // Loaded minutes lie in the coarser rings, but a kept minute list is only ever
        // maintained by calls recorded: start it again from the slots.
        self.minute_list = None;
        for tier in MINUTE_TIER..self.tiers.len() {
            let ring = &self.tiers[tier];
            let start = ring.align(minute_ms);
            if start < ring.horizon_start(now_ms) {
                continue;
            }
            let (rings, evicted) = (&mut self.tiers, &mut self.evicted_minutes);
            let dst = if tier == MINUTE_TIER {
                minute_slot(&mut rings[MINUTE_TIER..], evicted, start).0
            } else {
                coarse_slot(&mut rings[tier], tier, evicted, start)
            };
            if let Some(dst) = dst {
                let was_dirty = dst.dirty;
                dst.absorb(&slot.hist, &slot.counts);
                // Loaded data is already stored; only new data makes the minute dirty.
                if tier == MINUTE_TIER {
                    dst.dirty = was_dirty;
                }
                if let Some(s) = self.sums.get_mut(tier).filter(|s| start >= s.from_ms) {
                    s.sum.absorb(&slot.hist, &slot.counts);
                }
                // A minute waiting to go up carries the loaded calls with it.
                if dst.pending {
                    break;
                }
            }
        }
        self.last_event_ms = self.last_event_ms.max(minute_ms);
    }

    /// Minutes to persist, after rolling forward to `now_ms` (with `force`, after folding
    /// everything). Without `force`, only minutes that are complete and fully folded
    /// (ended before the fine ring's horizon) are returned, so each is normally written once.
    /// The returned minutes are marked clean; on a failed write, hand them back through
    /// [`Series::restore_unsaved`].
    pub fn take_rollups(&mut self, now_ms: i64, force: bool) -> Vec<MinuteRollup> {
        if force {
            self.fold_all();
        } else {
            self.advance(now_ms);
            self.pass_on_folded(now_ms);
        }
        let horizon = fine_horizon(now_ms);
        let mut out = Vec::new();
        for slot in self.tiers[MINUTE_TIER].iter_mut() {
            if slot.dirty && (force || slot.start_ms + MINUTE_MS <= horizon) {
                slot.dirty = false;
                out.push(MinuteRollup {
                    minute_ms: slot.start_ms,
                    late_part: false,
                    slot: slot.clone(),
                });
            }
        }
        // Main rows before late parts: writing a main row supersedes the stored parts of its
        // minute, so parts taken now must be written after it.
        for slot in self.evicted_minutes.drain(..) {
            out.push(MinuteRollup {
                minute_ms: slot.start_ms,
                late_part: false,
                slot,
            });
        }
        for (minute_ms, slot) in std::mem::take(&mut self.late_minutes) {
            out.push(MinuteRollup {
                minute_ms,
                late_part: true,
                slot,
            });
        }
        out
    }

    /// Marks as persisted exactly what [`Series::take_rollups`] without `force` would hand
    /// out, without copying any of it: for `replay`, which keeps no history.
    pub fn discard_rollups(&mut self, now_ms: i64) {
        self.advance(now_ms);
        self.pass_on_folded(now_ms);
        let horizon = fine_horizon(now_ms);
        for slot in self.tiers[MINUTE_TIER].iter_mut() {
            if slot.dirty && slot.start_ms + MINUTE_MS <= horizon {
                slot.dirty = false;
            }
        }
        self.evicted_minutes.clear();
        self.late_minutes.clear();
    }

    /// Gives back rollups whose write failed so that the next flush retries them.
    pub fn restore_unsaved(&mut self, rollups: Vec<MinuteRollup>) {
        for r in rollups {
            if r.late_part {
                super::late_minute(&mut self.late_minutes, r.minute_ms)
                    .absorb(&r.slot.hist, &r.slot.counts);
            } else if let Some(slot) = self.tiers[MINUTE_TIER].get_mut(r.minute_ms) {
                // Still in the ring (perhaps with newer data): the next flush writes it whole.
                slot.dirty = true;
            } else {
                self.evicted_minutes.push(r.slot);
            }
        }
    }

    /// Drops the oldest unsaved evicted minutes beyond [`MAX_UNSAVED_MINUTES`] and returns how
    /// many it dropped. They pile up only while roll-ups cannot be written (the database is
    /// down or far behind), and without a bound an outage of hours would hold a 13 KiB
    /// histogram per minute per series until the process runs out of memory.
    pub fn bound_unsaved(&mut self) -> usize {
        let excess = self
            .evicted_minutes
            .len()
            .saturating_sub(MAX_UNSAVED_MINUTES);
        if excess == 0 {
            return 0;
        }
        self.evicted_minutes.sort_by_key(|s| s.start_ms);
        self.evicted_minutes.drain(..excess);
        excess
    }

    /// True when nothing is left to persist.
    pub fn is_clean(&self) -> bool {
        self.late_minutes.is_empty()
            && self.evicted_minutes.is_empty()
            && self.tiers[MINUTE_TIER].iter().all(|s| !s.dirty)
    }
}

#[cfg(test)]
mod eviction_tests {
    use super::*;
    use crate::domain::Outcome;

    #[test]
    fn an_unsaved_minute_recycled_by_a_new_one_is_still_persisted() {
        let t0 = 1_800_000_000_000i64;
        let oldest = t0 - 15 * MINUTE_MS;
        let mut s = Series::new();
        s.record(oldest + 1_000, 1, Outcome::Ok, t0);
        let now = t0 + MINUTE_MS;
        s.record(now, 1, Outcome::Ok, now);
        s.advance(now + 10_000);
        let rollups = s.take_rollups(now + 10_000, true);
        let minutes: Vec<(i64, bool, u64)> = rollups
            .iter()
            .map(|r| (r.minute_ms, r.late_part, r.slot.counts.ok))
            .collect();
        assert!(minutes.contains(&(oldest, false, 1)), "{minutes:?}");
        assert!(minutes.contains(&(now, false, 1)), "{minutes:?}");
    }
}
