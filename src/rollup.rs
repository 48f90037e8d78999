//! Moving roll-ups between the window store and storage: flushing completed minutes, warming
//! the windows at start-up, and pruning old history.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio_stream::StreamExt;

use crate::detect::Engine;
use crate::detect::baseline::Anchor;
use crate::storage::{RollupRow, Storage};
use crate::window::{
    HistogramEncoder, MinuteRollup, SeriesKey, SeriesKind, Slot, Snapshot, Window, WindowStore,
    decode_stored,
};

pub mod spill;

const MINUTE_MS: i64 = 60_000;

/// Roll-ups written per transaction. A failed write hands back only its own transaction's
/// minutes, a flush cut short at shutdown keeps every transaction committed before it, and the
/// encoder works at most [`CHUNKS_AHEAD`] transactions ahead of the database.
const ROWS_PER_TRANSACTION: usize = 2_000;
const CHUNKS_AHEAD: usize = 2;

/// What a flush wrote and what it did not get to before its deadline (handed back to the
/// store, which keeps it for the next flush).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub written: usize,
    pub unwritten: usize,
}

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

    /// Reserves `n` consecutive part numbers, the ones `n` single reservations in a row would
    /// give (each above the last and at least `now_ms`), and returns the first.
    fn reserve_parts(&self, n: usize, now_ms: i64) -> i64 {
        let Some(more) = n.checked_sub(1) else {
            return 0;
        };
        let more = i64::try_from(more).unwrap_or(i64::MAX);
        let first = |p: i64| p.saturating_add(1).max(now_ms);
        let prev = self
            .last_part
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(first(p).saturating_add(more))
            })
            .expect("the closure always returns Some");
        first(prev)
    }

    /// Reserves the part numbers of the late parts in `taken` (see [`Flusher::reserve_parts`]).
    fn reserve_parts_of(&self, taken: &[(SeriesKey, MinuteRollup)], now_ms: i64) -> i64 {
        let parts = taken.iter().filter(|(_, r)| r.late_part).count();
        self.reserve_parts(parts, now_ms)
    }

    /// Writes the minutes that are ready (all unsaved minutes with `force`, at shutdown), a
    /// transaction of [`ROWS_PER_TRANSACTION`] at a time. Taking the minutes from the store and
    /// encoding them runs on the blocking pool, beside the writes, never on an async worker.
    ///
    /// On a write failure the minutes not written go back to the store and are retried by the
    /// next flush. With a `deadline`, no write starts or continues past it: the minutes not
    /// written then go back to the store as well and are counted in [`Flushed::unwritten`].
    pub async fn flush(
        &self,
        store: &Arc<WindowStore>,
        storage: &Storage,
        now_ms: i64,
        force: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> anyhow::Result<Flushed> {
        let taken = tokio::task::spawn_blocking({
            let store = store.clone();
            move || take_in_write_order(&store, now_ms, force)
        })
        .await?;
        if taken.is_empty() {
            return Ok(Flushed::default());
        }
        let total = taken.len();
        let first_part = self.reserve_parts_of(&taken, now_ms);
        let (sender, mut chunks) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let encoder = tokio::task::spawn_blocking({
            let (store, node) = (store.clone(), self.node.clone());
            move || encode_chunks(taken, first_part, &node, sender, &store)
        });
        let mut written = 0;
        let mut failed = None;
        while let Some(chunk) = chunks.recv().await {
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                store.restore_unsaved(chunk.taken);
                break;
            }
            let write = storage.write_rollups(&chunk.rows);
            let done = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, write).await.ok(),
                None => Some(write.await),
            };
            match done {
                Some(Ok(())) => written += chunk.rows.len(),
                Some(Err(error)) => {
                    store.restore_unsaved(chunk.taken);
                    failed = Some(error);
                    break;
                }
                None => {
                    store.restore_unsaved(chunk.taken);
                    break;
                }
            }
        }
        // Whatever was encoded but not written goes back; the encoder hands back the rest
        // once it finds the channel closed.
        chunks.close();
        while let Some(chunk) = chunks.recv().await {
            store.restore_unsaved(chunk.taken);
        }
        encoder.await?;
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(Flushed {
                written,
                unwritten: total - written,
            }),
        }
    }
}

/// A transaction's worth of roll-ups: as taken from the store (to hand back if the write
/// fails) and as rows to write.
struct Encoded {
    taken: Vec<(SeriesKey, MinuteRollup)>,
    rows: Vec<RollupRow>,
}

/// Encodes `taken` into rows a transaction at a time and sends them to the writer; late parts
/// are numbered from `first_part` on. If the writer stops taking chunks, everything not sent
/// goes back to the store.
fn encode_chunks(
    taken: Vec<(SeriesKey, MinuteRollup)>,
    first_part: i64,
    node: &str,
    sender: tokio::sync::mpsc::Sender<Encoded>,
    store: &WindowStore,
) {
    let mut next_part = first_part;
    let mut encoder = HistogramEncoder::default();
    let mut rest = taken.into_iter();
    loop {
        let taken: Vec<_> = rest.by_ref().take(ROWS_PER_TRANSACTION).collect();
        if taken.is_empty() {
            return;
        }
        let rows = encode_rows(&taken, &mut next_part, node, &mut encoder);
        if let Err(refused) = sender.blocking_send(Encoded { taken, rows }) {
            store.restore_unsaved(refused.0.taken);
            store.restore_unsaved(rest.collect());
            return;
        }
    }
}

/// The minutes to write (see [`WindowStore::take_rollups`]), main rows first (stable, so each
/// series' order is kept): a late part must follow its minute's main row, and statements of
/// one kind are of one shape.
fn take_in_write_order(
    store: &WindowStore,
    now_ms: i64,
    force: bool,
) -> Vec<(SeriesKey, MinuteRollup)> {
    let mut taken = store.take_rollups(now_ms, force);
    taken.sort_by_key(|(_, r)| r.late_part);
    taken
}

/// `taken` as rows of `node`; late parts numbered from `next_part` on.
fn encode_rows(
    taken: &[(SeriesKey, MinuteRollup)],
    next_part: &mut i64,
    node: &str,
    encoder: &mut HistogramEncoder,
) -> Vec<RollupRow> {
    taken
        .iter()
        .map(|(key, r)| RollupRow {
            key: key.clone(),
            minute_ms: r.minute_ms,
            node: node.to_string(),
            part: if r.late_part {
                *next_part += 1;
                *next_part - 1
            } else {
                0
            },
            counts: r.slot.counts,
            histogram: encoder.encode(&r.slot.histogram()),
        })
        .collect()
}

impl Flusher {
    /// At shutdown, after the last flush could not write everything: every minute the store
    /// still holds unwritten, as rows (main rows first, late parts numbered as a flush would),
    /// kept in the file beside the database for the next start ([`spill`]). Logs what it
    /// kept, and what it lost (an in-memory database, a full or unwritable file).
    pub async fn keep_unwritten(
        self: &Arc<Self>,
        store: &Arc<WindowStore>,
        database: &str,
        now_ms: i64,
    ) {
        let (flusher, store) = (self.clone(), store.clone());
        let Some(path) = spill::path_for(database) else {
            let lost = tokio::task::spawn_blocking(move || store.take_rollups(now_ms, true).len())
                .await
                .unwrap_or_default();
            tracing::error!(
                rollups = lost,
                "Shutting down: an in-memory database has no file to keep the unwritten roll-ups in; they are lost."
            );
            return;
        };
        let file = path.display().to_string();
        let kept = tokio::task::spawn_blocking(move || {
            let taken = take_in_write_order(&store, now_ms, true);
            let mut next_part = flusher.reserve_parts_of(&taken, now_ms);
            let mut encoder = HistogramEncoder::default();
            let rows = encode_rows(&taken, &mut next_part, &flusher.node, &mut encoder);
            spill::keep(&path, &rows)
        })
        .await
        .unwrap_or_else(|joined| Err(std::io::Error::other(joined)));
        match kept {
            Ok(kept) => {
                tracing::warn!(
                    rollups = kept.rows,
                    earlier = kept.earlier,
                    file,
                    "Shutting down: kept the roll-ups the database did not take in a file; the next start writes them."
                );
                if kept.dropped > 0 {
                    tracing::error!(
                        dropped = kept.dropped,
                        bound = spill::MAX_BYTES,
                        file,
                        "Shutting down: the file of unwritten roll-ups is full; the rest are lost."
                    );
                }
            }
            Err(error) => tracing::error!(
                %error,
                file,
                "Shutting down: cannot keep the unwritten roll-ups in a file; they are lost."
            ),
        }
    }
}

/// At start, before the windows are warmed: writes the roll-ups the last shutdown kept in
/// the file beside the database ([`spill`]) and removes it. If the database refuses them,
/// the file stays for the next start (and the next shutdown keeps its lines ahead of its
/// own). Returns the rows written.
pub async fn write_kept(storage: &Storage, database: &str) -> usize {
    let Some(path) = spill::path_for(database) else {
        return 0;
    };
    let file = path.display().to_string();
    let read_from = path.clone();
    let (rows, unreadable) = match tokio::task::spawn_blocking(move || spill::read(&read_from))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from))
    {
        Ok(Some(read)) => read,
        Ok(None) => return 0,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                file,
                "Cannot read the roll-ups kept at the last shutdown; the file is left in place."
            );
            return 0;
        }
    };
    if unreadable > 0 {
        tracing::error!(
            lines = unreadable,
            file,
            "Lines of the file of unwritten roll-ups cannot be read; they are skipped."
        );
    }
    // Main rows and the parts after them in the order kept, a transaction at a time.
    for chunk in rows.chunks(ROWS_PER_TRANSACTION) {
        if let Err(error) = storage.write_rollups(chunk).await {
            tracing::warn!(%error, rollups = rows.len(), file, "Cannot write the roll-ups kept at the last shutdown; they stay in the file.");
            return 0;
        }
    }
    let removed = tokio::task::spawn_blocking(move || crate::storage::files::remove(&path)).await;
    if !matches!(removed, Ok(Ok(()))) {
        tracing::error!(
            file,
            "Cannot remove the file of roll-ups kept at the last shutdown; the next start writes them again (the same rows, so nothing is counted twice)."
        );
    }
    tracing::info!(
        rollups = rows.len(),
        file,
        "Wrote the roll-ups kept at the last shutdown."
    );
    rows.len()
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
    match decode_stored(&row.histogram) {
        Ok(hist) => Some(Slot::from_stored(row.minute_ms, hist, row.counts)),
        Err(error) => {
            tracing::warn!(dependency = %row.key.dependency, minute_ms = row.minute_ms, %error, "Skipping an unreadable roll-up.");
            None
        }
    }
}

/// Stored rows decoded and loaded per task at start-up.
const WARM_BATCH: usize = 4_096;

/// Loads this node's roll-ups of the last hour into the store, so the 15-minute and 1-hour
/// windows are warm right after a restart. Returns the number of rows loaded. Rows are read
/// as a stream and decoded and loaded a batch at a time on the blocking pool, while the
/// database reads the next batch: at 100,000 series an hour is six million rows, which
/// neither fit in memory at once nor should hold an async worker.
pub async fn warm(
    store: &Arc<WindowStore>,
    storage: &Storage,
    node: &str,
    now_ms: i64,
) -> anyhow::Result<usize> {
    // A minute per statement. The last reaches an hour past `now_ms`: minutes stored before
    // the clock stepped back wait in the store until the clock reaches them; further ahead
    // they would wait longer than any window keeps a minute.
    let mut ranges = (now_ms - Window::LONGEST_MS..=now_ms)
        .step_by(MINUTE_MS as usize)
        .map(|from| match from + MINUTE_MS {
            to if to > now_ms => (from, now_ms + Window::LONGEST_MS),
            to => (from, to),
        });
    let open = |(from, to)| Box::pin(storage.node_rollups_between(node, from, to));
    let Some(first) = ranges.next() else {
        return Ok(0);
    };
    let mut rows = open(first);
    let mut loaded = 0;
    let mut loading: Option<tokio::task::JoinHandle<usize>> = None;
    let mut batch = Vec::with_capacity(WARM_BATCH);
    loop {
        let row = rows.next().await.transpose()?;
        if row.is_none()
            && let Some(range) = ranges.next()
        {
            rows = open(range);
            continue;
        }
        let end = row.is_none();
        batch.extend(row);
        if batch.len() == WARM_BATCH || (end && !batch.is_empty()) {
            // One batch at a time, in minute order.
            if let Some(previous) = loading.take() {
                loaded += previous.await?;
            }
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(WARM_BATCH));
            let store = store.clone();
            loading = Some(tokio::task::spawn_blocking(move || {
                load_rows(&store, &rows, now_ms)
            }));
        }
        if end {
            break;
        }
    }
    if let Some(last) = loading {
        loaded += last.await?;
    }
    Ok(loaded)
}

/// Loads stored rows into the store; returns how many it loaded.
fn load_rows(store: &WindowStore, rows: &[RollupRow], now_ms: i64) -> usize {
    let mut loaded = 0;
    for row in rows {
        let Some(slot) = stored_slot(row) else {
            continue;
        };
        match store.load_minute(&row.key, &slot, now_ms) {
            Ok(()) => loaded += 1,
            Err(error) => {
                tracing::warn!(dependency = %row.key.dependency, %error, "Roll-up not loaded.")
            }
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DependencyName, Event, Label, Outcome};
    use crate::window::Limits;

    const T: i64 = 1_800_000_000_000;

    async fn open() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gw.db").display());
        (dir, Storage::connect(&url).await.unwrap())
    }

    /// A store of `n` instances of one dependency, each with a call in the minute of `T` and a
    /// late call 40 minutes before it (beyond the minute ring: a late part).
    fn store_of(n: usize) -> Arc<WindowStore> {
        let store = Arc::new(WindowStore::new(Limits {
            max_series: n + 1,
            max_instances_per_dependency: n,
            ..Limits::default()
        }));
        let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
        for (ts, now) in [(T, T), (T - 40 * MINUTE_MS, T + 1_000)] {
            let events: Vec<Event> = names
                .iter()
                .map(|name| Event {
                    dependency: DependencyName::parse("db").unwrap(),
                    duration_us: 1_000,
                    outcome: Outcome::Ok,
                    ts_ms: ts,
                    instance: Some(Label::parse(name.as_str()).unwrap()),
                    zone: None,
                    source: None,
                })
                .collect();
            assert!(store.record_batch(&events, now).is_empty());
        }
        store
    }

    /// The instances' stored rows for minutes in `[from_ms, to_ms)`.
    async fn stored(storage: &Storage, from_ms: i64, to_ms: i64, n: usize) -> Vec<RollupRow> {
        let mut rows = Vec::new();
        for i in 0..n {
            let key = SeriesKey {
                dependency: "db".into(),
                kind: SeriesKind::Instance,
                label: format!("h{i}"),
            };
            rows.extend(storage.series_rollups(&key, from_ms, to_ms).await.unwrap());
        }
        rows
    }

    fn calls(rows: &[RollupRow]) -> u64 {
        rows.iter().map(|r| r.counts.total()).sum()
    }

    #[test]
    fn reserved_parts_are_those_single_reservations_in_a_row_would_give() {
        let one_by_one = AtomicI64::new(5);
        let single = |now: i64| {
            let prev = one_by_one
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                    Some(p.saturating_add(1).max(now))
                })
                .unwrap();
            prev.saturating_add(1).max(now)
        };
        let flusher = Flusher {
            node: "n".into(),
            last_part: AtomicI64::new(5),
        };
        for (n, now) in [(3, 0), (0, 100), (2, 100), (1, 50), (4, 1_000)] {
            let expected: Vec<i64> = (0..n).map(|_| single(now)).collect();
            let first = flusher.reserve_parts(n, now);
            let got: Vec<i64> = (0..n as i64).map(|i| first + i).collect();
            assert_eq!(got, expected, "{n} parts at {now}");
            assert_eq!(
                flusher.last_part.load(Ordering::Acquire),
                one_by_one.load(Ordering::Acquire)
            );
        }
    }

    /// More minutes than one transaction holds: every main row and late part is written once,
    /// the parts under distinct numbers.
    #[tokio::test]
    async fn a_flush_of_several_transactions_writes_every_minute_once() {
        let n = ROWS_PER_TRANSACTION + ROWS_PER_TRANSACTION / 2;
        let (_dir, storage) = open().await;
        let store = store_of(n);
        let flusher = Flusher::new(&storage, "n1").await.unwrap();
        let now = T + 2 * MINUTE_MS;
        let flushed = flusher
            .flush(&store, &storage, now, false, None)
            .await
            .unwrap();
        // Per instance: its minute, and the late part; the dependency's total has both too.
        assert_eq!(
            flushed,
            Flushed {
                written: 2 * n + 2,
                unwritten: 0
            }
        );
        let recent = stored(&storage, T - MINUTE_MS, now, n).await;
        assert_eq!((recent.len(), calls(&recent)), (n, n as u64));
        assert!(recent.iter().all(|r| r.part == 0));
        let late = T - 40 * MINUTE_MS;
        let parts = stored(&storage, late, late + MINUTE_MS, n).await;
        assert_eq!((parts.len(), calls(&parts)), (n, n as u64));
        let distinct: std::collections::BTreeSet<i64> = parts.iter().map(|r| r.part).collect();
        assert_eq!(distinct.len(), n);
        assert!(!distinct.contains(&0));
        // Nothing is left to write.
        let again = flusher
            .flush(&store, &storage, now, true, None)
            .await
            .unwrap();
        assert_eq!(again.written, 0);
    }

    /// Start-up reads the hour a minute at a time: every stored minute of the last hour is
    /// loaded, main rows and late parts, and so is one stored ahead of the clock (which
    /// stepped back), joining the windows when the clock reaches it; nothing older than the
    /// hour is, nor anything more than an hour ahead.
    #[tokio::test]
    async fn warming_loads_each_minute_of_the_hour_and_nothing_older() {
        let (_dir, storage) = open().await;
        let now = T + 30_000;
        let minute = |m: i64| T - T.rem_euclid(MINUTE_MS) + m * MINUTE_MS;
        let row = |minute_ms: i64, part: i64, calls: u64| {
            let mut hist = crate::window::new_histogram::<u32>();
            hist.record_n(2_000, calls as u32).unwrap();
            RollupRow {
                key: SeriesKey {
                    dependency: "db".into(),
                    kind: SeriesKind::Dependency,
                    label: String::new(),
                },
                minute_ms,
                node: "n1".into(),
                part,
                counts: crate::window::Counts {
                    ok: calls,
                    ..crate::window::Counts::default()
                },
                histogram: crate::window::encode_histogram(&hist),
            }
        };
        // Minutes -59..=0 with m + 60 calls each, a late part of minute -30, one minute
        // ahead of the clock, and minute -61, older than any window.
        let mut rows: Vec<RollupRow> = (-59..=0)
            .map(|m| row(minute(m), 0, (m + 60) as u64))
            .collect();
        rows.push(row(minute(-30), 7, 1_000));
        rows.push(row(minute(2), 0, 5));
        rows.push(row(minute(-61), 0, 100_000));
        rows.push(row(minute(61), 0, 100_000));
        storage.write_rollups(&rows).await.unwrap();
        let store = Arc::new(WindowStore::new(Limits::default()));
        let loaded = warm(&store, &storage, "n1", now).await.unwrap();
        assert_eq!(loaded, 62);
        // The hour's window starts at a 5-minute boundary: it holds the rows from there on.
        let view = store.dependency("db", Window::H1, now).unwrap();
        let from = view.total.from_ms;
        assert!(from <= minute(-55) && from > minute(-61), "{from}");
        let hour: u64 = rows
            .iter()
            .filter(|r| r.minute_ms >= from && r.minute_ms <= now)
            .map(|r| r.counts.total())
            .sum();
        assert!(hour > 1_000 + 1_500, "{hour}");
        assert_eq!(view.total.total(), hour);
        assert_eq!(store.minutes_ahead(), 1);
        let reached = minute(2) + 1_000;
        store.advance_all(reached);
        let m5 = store.dependency("db", Window::M5, reached).unwrap().total;
        let in_m5: u64 = rows
            .iter()
            .filter(|r| r.minute_ms >= m5.from_ms && r.minute_ms <= reached)
            .map(|r| r.counts.total())
            .sum();
        assert!(m5.from_ms < minute(2), "{}", m5.from_ms);
        assert_eq!(m5.total(), in_m5);
        // Another node's rows are not this node's to load.
        let fresh = Arc::new(WindowStore::new(Limits::default()));
        assert_eq!(warm(&fresh, &storage, "n2", now).await.unwrap(), 0);
    }

    /// A flush that meets its deadline before writing hands every minute back: the next flush
    /// writes them all.
    #[tokio::test]
    async fn minutes_a_flush_had_no_time_for_are_kept_for_the_next() {
        let n = ROWS_PER_TRANSACTION * 3;
        let (_dir, storage) = open().await;
        let store = store_of(n);
        let flusher = Flusher::new(&storage, "n1").await.unwrap();
        let now = T + 2 * MINUTE_MS;
        let past = tokio::time::Instant::now();
        let flushed = flusher
            .flush(&store, &storage, now, true, Some(past))
            .await
            .unwrap();
        assert_eq!(
            flushed,
            Flushed {
                written: 0,
                unwritten: 2 * n + 2
            }
        );
        assert!(
            stored(&storage, T - 60 * MINUTE_MS, now, n)
                .await
                .is_empty()
        );
        let flushed = flusher
            .flush(&store, &storage, now, true, None)
            .await
            .unwrap();
        assert_eq!(flushed.written, 2 * n + 2);
        assert_eq!(
            calls(&stored(&storage, T - 60 * MINUTE_MS, now, n).await),
            2 * n as u64
        );
    }
}
