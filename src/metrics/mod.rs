//! Prometheus metrics, served by `GET /metrics`: an edge that reads the core.
//!
//! Two kinds: graywatch's own metrics (ingest, evaluation, delivery, database), counted where
//! those things happen into [`Metrics`], which lives in the application state; and the
//! dependencies' metrics, read from the window store, the engine and the breaker board once per
//! scrape ([`Scrape`]) and encoded straight from those reads, so nothing on the ingest path
//! counts per event.

mod process;
mod scrape;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use scrape::{NotificationCount, Scrape};

/// The classic Prometheus text format, which prometheus-client's `prometheus_text` encoder
/// writes and every Prometheus version (and `promtool check metrics`) reads.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Buckets of the request and evaluation durations, in seconds.
const FAST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The `operation` labels of `graywatch_database_errors_total`.
const DATABASE_OPERATIONS: &[&str] = &[
    "rollup_flush",
    "prune",
    "record_transitions",
    "finish_attempt",
    "outbox_read",
    "silences_read",
    "notification_counts",
    "breaker_notices",
    "renotify",
];
/// The `operation` labels of `graywatch_database_write_duration_seconds`.
const DATABASE_WRITES: &[&str] = &["rollup_flush", "record_transitions", "finish_attempt"];

/// Buckets of notification delivery (queued to delivered), in seconds: retries back off up to
/// minutes, a retry horizon is hours.
const DELIVERY_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

type Label = [(&'static str, &'static str); 1];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// graywatch's own metrics. Cheap to update from any thread (atomics, and a family's map
/// behind a read lock once its label set exists).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_accepted: Counter,
    events_rejected: Family<Label, Counter>,
    bodies_rejected: Family<Label, Counter>,
    ingest_duration: Histogram,
    ingest_overloaded: Counter,
    evaluation_duration: Histogram,
    evaluation_cpu: Histogram,
    /// Event time of the last completed evaluation, `i64::MIN` before the first.
    last_evaluation_ms: AtomicI64,
    delivery: HistogramFamily<[(&'static str, String); 1]>,
    database_errors: Family<Label, Counter>,
    database_writes: HistogramFamily<Label>,
    transitions_dropped: Family<Label, Counter>,
    transitions_waiting: Gauge,
    breaker_notices_dropped: Counter,
    breaker_notices_waiting: Gauge,
}

fn fast_histogram() -> Histogram {
    Histogram::new(FAST_BUCKETS)
}

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            bodies_rejected: Family::default(),
            ingest_duration: fast_histogram(),
            ingest_overloaded: Counter::default(),
            evaluation_duration: fast_histogram(),
            evaluation_cpu: fast_histogram(),
            last_evaluation_ms: AtomicI64::new(i64::MIN),
            delivery: Family::new_with_constructor(delivery_histogram),
            database_errors: Family::default(),
            database_writes: Family::new_with_constructor(fast_histogram),
            transitions_dropped: Family::default(),
            transitions_waiting: Gauge::default(),
            breaker_notices_dropped: Counter::default(),
            breaker_notices_waiting: Gauge::default(),
            registry: Registry::default(),
        };
        // The encoder appends `_total` to counters.
        registry.register(
            "graywatch_events_accepted",
            "Events recorded by POST /v1/events",
            m.events_accepted.clone(),
        );
        registry.register(
            "graywatch_alert_transitions_dropped",
            "Alert transitions lost before they were written, by reason: queue_full (the writer's queue was full), unsaved_limit (too many waited while the database refused them)",
            m.transitions_dropped.clone(),
        );
        registry.register(
            "graywatch_alert_transitions_waiting",
            "Alert transitions found by detection and not yet written to the database",
            m.transitions_waiting.clone(),
        );
        registry.register(
            "graywatch_breaker_notifications_waiting",
            "Breaker notifications not yet written to the outbox (the database refused them): the latest change of each breaker per notifier",
            m.breaker_notices_waiting.clone(),
        );
        registry.register(
            "graywatch_breaker_notifications_dropped",
            "Breaker notifications lost because more breakers x notifiers waited for the database than the board can hold",
            m.breaker_notices_dropped.clone(),
        );
        registry.register(
            "graywatch_events_rejected",
            "Events refused one by one, by reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "graywatch_ingest_bodies_rejected",
            "Request bodies refused whole (their events are not counted), by reason",
            m.bodies_rejected.clone(),
        );
        registry.register(
            "graywatch_ingest_request_duration_seconds",
            "Time to answer POST /v1/events",
            m.ingest_duration.clone(),
        );
        registry.register(
            "graywatch_ingest_overloaded",
            "POST /v1/events answered 503 because ingest.max_in_flight requests were running",
            m.ingest_overloaded.clone(),
        );
        registry.register(
            "graywatch_evaluation_duration_seconds",
            "Time of one evaluation of every dependency",
            m.evaluation_duration.clone(),
        );
        registry.register(
            "graywatch_evaluation_cpu_seconds",
            "CPU time of one evaluation of every dependency, on the thread that ran it",
            m.evaluation_cpu.clone(),
        );
        registry.register(
            "graywatch_notification_delivery_seconds",
            "Time from queueing a notification to its delivery, by notifier",
            m.delivery.clone(),
        );
        registry.register(
            "graywatch_database_errors",
            "Database operations that failed, by operation",
            m.database_errors.clone(),
        );
        registry.register(
            "graywatch_database_write_duration_seconds",
            "Time of database writes, by operation",
            m.database_writes.clone(),
        );
        let info = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register(
            "graywatch_build_info",
            "Always 1; the version as a label",
            info,
        );
        // Every label value known in advance starts at zero, so that each family is in the
        // exposition from the first scrape: `rate()` and alert rules need a series before the
        // first error, not only after it.
        for reason in crate::ingest::EVENT_REJECTION_REASONS {
            let _ = m.events_rejected.get_or_create(&[("reason", *reason)]);
        }
        for reason in ["queue_full", "unsaved_limit"] {
            let _ = m.transitions_dropped.get_or_create(&[("reason", reason)]);
        }
        for operation in DATABASE_OPERATIONS {
            let _ = m
                .database_errors
                .get_or_create(&[("operation", *operation)]);
        }
        for operation in DATABASE_WRITES {
            let _ = m
                .database_writes
                .get_or_create(&[("operation", *operation)]);
        }
        Self { registry, ..m }
    }

    /// Starts the delivery histogram of each configured notifier at zero.
    pub fn with_notifiers<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Self {
        for name in names {
            let _ = self
                .delivery
                .get_or_create(&[("notifier", name.to_string())]);
        }
        self
    }

    /// After a body was recorded: its accepted events and its refusals by reason.
    pub fn ingested(&self, accepted: usize, rejected_by: &[(&'static str, u64)]) {
        self.events_accepted.inc_by(accepted as u64);
        for &(reason, n) in rejected_by {
            self.events_rejected
                .get_or_create(&[("reason", reason)])
                .inc_by(n);
        }
    }

    pub fn body_rejected(&self, reason: &'static str) {
        self.bodies_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub fn ingest_request(&self, took: Duration) {
        self.ingest_duration.observe(took.as_secs_f64());
    }

    pub fn ingest_overloaded(&self) {
        self.ingest_overloaded.inc();
    }

    /// One evaluation at event time `at_ms` that took `took`.
    /// One evaluation at event time `at_ms` that took `took` of wall-clock time and `cpu` of
    /// its thread's CPU time (`None` where the platform cannot tell).
    pub fn evaluated(&self, at_ms: i64, took: Duration, cpu: Option<Duration>) {
        self.evaluation_duration.observe(took.as_secs_f64());
        if let Some(cpu) = cpu {
            self.evaluation_cpu.observe(cpu.as_secs_f64());
        }
        // The latest evaluation, not the greatest time: after the clock steps back the lag is
        // measured from the evaluations at the new time.
        self.last_evaluation_ms.store(at_ms, Ordering::Relaxed);
    }

    /// `now_ms` minus the event time of the last completed evaluation, never below zero.
    pub fn evaluation_lag_s(&self, now_ms: i64) -> Option<f64> {
        let last = self.last_evaluation_ms.load(Ordering::Relaxed);
        (last != i64::MIN).then(|| now_ms.saturating_sub(last).max(0) as f64 / 1000.0)
    }

    /// `n` alert transitions lost for `reason` (`queue_full`, `unsaved_limit`).
    pub fn transitions_dropped(&self, reason: &'static str, n: usize) {
        self.transitions_dropped
            .get_or_create(&[("reason", reason)])
            .inc_by(n as u64);
    }

    /// Alert transitions waiting to be written.
    pub fn transitions_waiting(&self, n: usize) {
        self.transitions_waiting.set(n as i64);
    }

    /// Breaker notifications waiting for the outbox, and how many were dropped since the
    /// last report.
    pub fn breaker_notices(&self, waiting: usize, dropped: u64) {
        self.breaker_notices_waiting.set(waiting as i64);
        self.breaker_notices_dropped.inc_by(dropped);
    }

    pub fn delivered(&self, notifier: &str, queued_for: Duration) {
        self.delivery
            .get_or_create(&[("notifier", notifier.to_string())])
            .observe(queued_for.as_secs_f64());
    }

    pub fn database_error(&self, operation: &'static str) {
        self.database_errors
            .get_or_create(&[("operation", operation)])
            .inc();
    }

    pub fn database_write(&self, operation: &'static str, took: Duration) {
        self.database_writes
            .get_or_create(&[("operation", operation)])
            .observe(took.as_secs_f64());
    }

    /// The whole exposition: these metrics, then the scrape's.
    pub fn render(&self, scrape: Scrape) -> String {
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(scrape));
        let mut out = String::with_capacity(64 * 1024);
        // The text format has no end marker, so two registries are written one after the
        // other. Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_text::encode(&mut out, &scraped));
        out
    }
}

/// CPU time the calling thread has used so far, or `None` where the platform cannot tell.
/// An evaluation is timed by it as well as by the wall clock: on a busy machine the wall time
/// also counts the time the thread waited for a core, the CPU time does not.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU time the calling thread has used since it read `before` from [`thread_cpu_time`].
pub fn thread_cpu_since(before: Option<Duration>) -> Option<Duration> {
    before
        .zip(thread_cpu_time())
        .map(|(before, now)| now.saturating_sub(before))
}

#[cfg(test)]
mod cpu_tests {
    use super::thread_cpu_time;

    #[test]
    fn a_thread_busy_for_a_while_has_used_cpu_time() {
        let Some(before) = thread_cpu_time() else {
            return;
        };
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = thread_cpu_time().expect("the clock worked once") - before;
        // Spinning for 30 ms of wall time uses CPU time, however busy the machine (at least a
        // little of it), and never more than the wall time plus the clock's granularity.
        assert!(used > std::time::Duration::ZERO, "{used:?}");
        assert!(
            used <= started.elapsed() + std::time::Duration::from_millis(5),
            "{used:?}"
        );
    }
}
