//! Moving roll-ups between the window store and storage: flushing completed minutes, warming
//! the windows at start-up, and pruning old history.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::storage::{RollupRow, Storage};
use crate::window::{Slot, Window, WindowStore, decode_histogram, encode_histogram};

/// Writes roll-ups of one node. Late-data parts need ids that never repeat for a minute, even
/// if the clock stands still or steps back, so the flusher hands out increasing part numbers
/// seeded from what the database already holds.
pub struct Flusher {
    node: String,
    last_part: AtomicI64,
}

impl Flusher {
    pub async fn new(storage: &Storage, node: &str) -> anyhow::Result<Self> {
        let last = storage.max_part(node).await?;
        Ok(Self {
            node: node.to_string(),
            last_part: AtomicI64::new(last),
        })
    }

    fn next_part(&self, now_ms: i64) -> i64 {
        let prev = self
            .last_part
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_add(1).max(now_ms))
            })
            .expect("the closure always returns Some");
        prev.saturating_add(1).max(now_ms)
    }

    /// Writes the minutes that are ready (all unsaved minutes with `force`, at shutdown). On a
    /// write failure the minutes go back to the store and are retried by the next flush.
    pub async fn flush(
        &self,
        store: &WindowStore,
        storage: &Storage,
        now_ms: i64,
        force: bool,
    ) -> anyhow::Result<usize> {
        let taken = store.take_rollups(now_ms, force);
        if taken.is_empty() {
            return Ok(0);
        }
        let rows: Vec<RollupRow> = taken
            .iter()
            .map(|(key, r)| RollupRow {
                key: key.clone(),
                minute_ms: r.minute_ms,
                node: self.node.clone(),
                part: if r.late_part {
                    self.next_part(now_ms)
                } else {
                    0
                },
                counts: r.slot.counts,
                histogram: encode_histogram(&r.slot.hist.to_dense()),
            })
            .collect();
        match storage.write_rollups(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                store.restore_unsaved(taken);
                Err(e.into())
            }
        }
    }
}

/// Loads this node's roll-ups of the last hour into the store, so the 15-minute and 1-hour
/// windows are warm right after a restart. Returns the number of rows loaded.
pub async fn warm(
    store: &WindowStore,
    storage: &Storage,
    node: &str,
    now_ms: i64,
) -> anyhow::Result<usize> {
    let rows = storage
        .node_rollups_since(node, now_ms - Window::LONGEST_MS)
        .await?;
    let mut loaded = 0;
    for row in rows {
        let hist = match decode_histogram(&row.histogram) {
            Ok(h) => h,
            Err(error) => {
                tracing::warn!(dependency = %row.key.dependency, minute_ms = row.minute_ms, %error, "Skipping an unreadable roll-up.");
                continue;
            }
        };
        let slot = Slot::from_parts(row.minute_ms, hist, row.counts);
        match store.load_minute(&row.key, &slot, now_ms) {
            Ok(()) => loaded += 1,
            Err(error) => {
                tracing::warn!(dependency = %row.key.dependency, %error, "Roll-up not loaded.")
            }
        }
    }
    Ok(loaded)
}
