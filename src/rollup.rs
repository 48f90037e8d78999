//! Moving roll-ups between the window store and storage: flushing completed minutes, warming
//! the windows at start-up, and pruning old history.

use crate::storage::{RollupRow, Storage};
use crate::window::{Slot, Window, WindowStore, decode_histogram, encode_histogram};

/// Writes the minutes that are ready (all dirty minutes with `force`, at shutdown). On a write
/// failure the minutes go back to the store and are retried by the next flush.
pub async fn flush(
    store: &WindowStore,
    storage: &Storage,
    node: &str,
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
            node: node.to_string(),
            part: if r.late_part { now_ms.max(1) } else { 0 },
            counts: r.slot.counts,
            histogram: encode_histogram(&r.slot.hist),
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
        let slot = Slot {
            start_ms: row.minute_ms,
            hist,
            counts: row.counts,
            dirty: false,
        };
        match store.load_minute(&row.key, &slot, now_ms) {
            Ok(()) => loaded += 1,
            Err(error) => {
                tracing::warn!(dependency = %row.key.dependency, %error, "Roll-up not loaded.")
            }
        }
    }
    Ok(loaded)
}
