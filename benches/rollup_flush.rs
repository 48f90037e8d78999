//! Writing the roll-ups of a large store: the regular flush after a minute completes and the
//! forced flush at shutdown, into a SQLite file, as the daemon does them.
//!
//! `cargo bench --bench rollup_flush -- [DEPENDENCIES] [INSTANCES] [ZONES]` (default 1000 100
//! 3: the 104,000-series live case). Every dependency gets 10 calls a second for 130 seconds,
//! spread over its instances and zones, with durations over some hundred latency buckets.
//! Then, on a runtime with one async worker (so that anything blocking it shows):
//!
//! - the regular flush at the end of those seconds, which writes the completed minutes;
//! - the forced flush of everything still unsaved (the minute in progress), as at shutdown.
//!
//! For each it prints the rows written, the time taken and the longest delay of a 10 ms timer
//! on the async worker while the flush ran: how long the flush held the runtime. Then a
//! restart: a new store loads what was written (as `serve` does before it listens), timed the
//! same way. Last, the size of the database files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graywatch::domain::{DependencyName, Event, Label, Outcome};
use graywatch::rollup::Flusher;
use graywatch::storage::Storage;
use graywatch::window::{Limits, WindowStore};

const START_MS: i64 = 1_800_000_000_000;
const SECONDS: i64 = 130;
const CALLS_PER_SECOND: u64 = 10;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dependencies = args.first().copied().unwrap_or(1000);
    let instances = args.get(1).copied().unwrap_or(100);
    let zones = args.get(2).copied().unwrap_or(3);

    let limits = Limits {
        max_series: usize::MAX,
        max_dependencies: usize::MAX,
        max_instances_per_dependency: usize::MAX,
        max_zones_per_dependency: usize::MAX,
        max_sources_per_dependency: usize::MAX,
    };
    let store = Arc::new(WindowStore::new(limits));
    let recorded = Instant::now();
    let names: Vec<String> = (0..dependencies).map(|d| format!("dep-{d:04}")).collect();
    let instance_names: Vec<String> = (0..instances).map(|i| format!("host-{i:03}")).collect();
    let zone_names: Vec<String> = (0..zones).map(|z| format!("zone-{z}")).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut events = 0u64;
    for second in 0..SECONDS {
        let now = START_MS + second * 1_000;
        let mut batch = Vec::new();
        for name in &names {
            for call in 0..CALLS_PER_SECOND {
                let r = next();
                batch.push(Event {
                    dependency: DependencyName::parse(name.as_str()).expect("valid name"),
                    // 2-50 ms, over some hundred buckets.
                    duration_us: 2_000 + r % 48_000,
                    outcome: if r % 100 == 0 {
                        Outcome::Error
                    } else {
                        Outcome::Ok
                    },
                    ts_ms: now + (call * 1_000 / CALLS_PER_SECOND) as i64,
                    instance: (instances > 0).then(|| {
                        Label::parse(instance_names[(r >> 20) as usize % instances].as_str())
                            .expect("valid label")
                    }),
                    zone: (zones > 0).then(|| {
                        Label::parse(zone_names[(r >> 40) as usize % zones].as_str())
                            .expect("valid label")
                    }),
                    source: None,
                });
            }
        }
        events += batch.len() as u64;
        let refused = store.record_batch(&batch, now + 999);
        assert!(
            refused.is_empty(),
            "the store refused {} calls",
            refused.len()
        );
        store.advance_all(now + 999);
    }
    let end_ms = START_MS + SECONDS * 1_000;
    println!(
        "recorded {events} calls into {} series in {:.1} s",
        store.series_count(),
        recorded.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("flush.db").display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let storage = Storage::connect(&url).await.expect("database");
        let flusher = Arc::new(Flusher::new(&storage, "bench").await.expect("flusher"));
        for (what, force) in [("regular flush", false), ("forced flush", true)] {
            let (store, storage, flusher) = (store.clone(), storage.clone(), flusher.clone());
            on_worker(what, async move {
                let flushed = flusher.flush(&store, &storage, end_ms, force, None).await;
                flushed.expect("flush").written
            })
            .await;
        }
        // A restart: a new store loads what the flushes wrote.
        let warmed = Arc::new(WindowStore::new(limits));
        on_worker("start-up load", {
            let (warmed, storage) = (warmed.clone(), storage.clone());
            async move {
                let loaded = graywatch::rollup::warm(&warmed, &storage, "bench", end_ms).await;
                loaded.expect("warm")
            }
        })
        .await;
        assert_eq!(warmed.series_count(), store.series_count());
        storage.close().await;
    });
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("database directory")
        .filter_map(|f| f.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("database files: {:.1} MiB", bytes as f64 / (1 << 20) as f64);
}

/// Runs `task` (which returns a number of rows) on the runtime's worker, as the daemon does
/// (`block_on` runs its own future elsewhere), and prints what it did, how long it took and
/// the longest it held the worker.
async fn on_worker(what: &str, task: impl Future<Output = usize> + Send + 'static) {
    let stall = StallProbe::start();
    let started = Instant::now();
    let rows = tokio::spawn(task).await.expect("task");
    let took = started.elapsed();
    let longest = stall.stop().await;
    println!(
        "{what}: {rows} rows in {:.2} s ({:.0} rows/s); async worker held up to {:.0} ms",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        longest.as_secs_f64() * 1e3
    );
}

/// A task that wakes every 10 ms and keeps the longest lateness it saw.
struct StallProbe {
    stop: Arc<AtomicBool>,
    longest_us: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProbe {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let longest_us = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, longest_us) = (stop.clone(), longest_us.clone());
            async move {
                const PERIOD: Duration = Duration::from_millis(10);
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    tokio::time::sleep(PERIOD).await;
                    let late = asked.elapsed().saturating_sub(PERIOD);
                    longest_us.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                }
            }
        });
        Self {
            stop,
            longest_us,
            task,
        }
    }

    async fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        Duration::from_micros(self.longest_us.load(Ordering::Relaxed))
    }
}
