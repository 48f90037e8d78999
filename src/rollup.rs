//! Moving roll-ups between the window store and storage: flushing completed minutes, warming
//! the windows at start-up, and pruning old history.

use std::sync::atomic::{AtomicI64, Ordering};

use std::collections::HashMap;

use crate::detect::Engine;
use crate::detect::baseline::Anchor;
use crate::storage::{RollupRow, Storage};
use crate::window::{
    SeriesKey, SeriesKind, Slot, Snapshot, Window, WindowStore, decode_histogram, encode_histogram,
};

const MINUTE_MS: i64 = 60_000;

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
                histogram: encode_histogram(&r.slot.to_dense()),
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

/// Reads back, for every dependency the windows hold, its stored minutes from the last
/// `detection.baseline_max_age` up to the hour the windows were warmed with, and puts them
/// in the dependency's anchor ([`Engine::prime_anchor`]): after a restart the slow-creep
/// guard judges again at once instead of after most of a new day. Minutes of incidents that
/// keep minutes out of the baseline ([`Engine::keeps_minutes_out`]), resolved or still
/// firing, are left out, as they were live. Runs in the background after start-up, one
/// dependency at a time (decoding off the async workers, the engine locked only to put the
/// result in place); returns the number of minutes read back.
pub async fn prime_anchors(
    engine: &parking_lot::Mutex<Engine>,
    store: &WindowStore,
    storage: &Storage,
    max_age_ms: i64,
    now_ms: i64,
) -> anyhow::Result<usize> {
    let from = now_ms.saturating_sub(max_age_ms);
    let to = now_ms - Window::LONGEST_MS;
    if to <= from {
        return Ok(0);
    }
    // Incidents of the period, by dependency: [start of the minute it started in, end).
    let mut incidents: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let alerts = storage
        .resolved_alerts_since(from)
        .await?
        .into_iter()
        .chain(storage.firing_alerts().await?);
    for a in alerts {
        if Engine::keeps_minutes_out(
            a.instance.as_deref(),
            a.zone.as_deref(),
            a.source.as_deref(),
            &a.all_detectors(),
        ) {
            let start = a.started_at_ms - a.started_at_ms.rem_euclid(MINUTE_MS);
            let end = a.resolved_at_ms.unwrap_or(i64::MAX);
            incidents
                .entry(a.dependency)
                .or_default()
                .push((start, end));
        }
    }
    let mut read = 0;
    for dependency in store.names() {
        let key = SeriesKey {
            dependency: dependency.clone(),
            kind: SeriesKind::Dependency,
            label: String::new(),
        };
        let rows = storage.series_rollups(&key, from, to).await?;
        if rows.is_empty() {
            continue;
        }
        read += rows.len();
        let excluded = incidents.remove(&dependency).unwrap_or_default();
        let (mut anchor, q) = {
            let engine = engine.lock();
            (engine.new_anchor(), engine.tail_quantile())
        };
        let anchor = tokio::task::spawn_blocking(move || {
            absorb_rows(&mut anchor, &rows, &excluded, q);
            anchor
        })
        .await?;
        engine.lock().prime_anchor(&dependency, anchor, now_ms);
    }
    Ok(read)
}

/// Adds stored rows (in minute order; several per minute for late parts and other nodes)
/// to `anchor` a minute at a time, leaving out minutes that overlap `excluded` intervals.
fn absorb_rows(anchor: &mut Anchor, rows: &[RollupRow], excluded: &[(i64, i64)], q: f64) {
    for minute_rows in rows.chunk_by(|a, b| a.minute_ms == b.minute_ms) {
        let minute = minute_rows[0].minute_ms;
        if excluded
            .iter()
            .any(|&(start, end)| minute + MINUTE_MS > start && minute < end)
        {
            continue;
        }
        let mut snap = Snapshot::empty(minute, minute + MINUTE_MS);
        for slot in minute_rows.iter().filter_map(stored_slot) {
            snap.add_slot(&slot);
        }
        if snap.total() > 0 {
            anchor.absorb(&snap, q);
        }
    }
}

/// A stored roll-up as the minute slot it was written from; `None` (logged) when its
/// histogram cannot be read.
fn stored_slot(row: &RollupRow) -> Option<Slot> {
    match decode_histogram(&row.histogram) {
        Ok(hist) => Some(Slot::from_parts(row.minute_ms, hist, row.counts)),
        Err(error) => {
            tracing::warn!(dependency = %row.key.dependency, minute_ms = row.minute_ms, %error, "Skipping an unreadable roll-up.");
            None
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
        let Some(slot) = stored_slot(&row) else {
            continue;
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
