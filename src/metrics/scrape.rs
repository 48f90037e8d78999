//! The metrics read once per scrape: the dependencies (window store, engine, breaker board),
//! the series against their limits, the outbox, the process. Gathered in [`Scrape::collect`]
//! (each source locked briefly, one after the other) and encoded by the [`Collector`] impl.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::actions::breaker::{BreakerBoard, BreakerState};
use crate::detect::{DetectionSummary, EngineView, Health};
use crate::window::{BUCKET_BOUNDS_US, Counts, DependencyTotals, Limits, WindowStore};

/// One row of `SELECT notifier, status, count(*) FROM notifications GROUP BY 1, 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationCount {
    pub notifier: String,
    pub status: String,
    pub count: i64,
}

/// Quantiles of the 1-minute window exported per dependency.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

#[derive(Debug)]
struct Dependency {
    name: String,
    counts: Counts,
    /// `(upper bound in seconds, calls in that bucket)`, the last bound infinite.
    buckets: Vec<(f64, u64)>,
    sum_s: f64,
    count: u64,
    /// Seconds, when the minute had calls.
    quantiles: Option<[f64; 4]>,
    detection: Option<DetectionSummary>,
    breaker: BreakerState,
    peers: Vec<Peer>,
}

#[derive(Debug)]
struct Peer {
    kind: &'static str,
    name: String,
    counts: Counts,
    /// Seconds, when the minute had calls.
    p99_s: Option<f64>,
    health: Health,
}

/// Everything one scrape exports besides graywatch's own counters.
#[derive(Debug)]
pub struct Scrape {
    dependencies: Vec<Dependency>,
    /// Breakers of single instances: (dependency, instance, state).
    instance_breakers: Vec<(String, String, BreakerState)>,
    limits: Limits,
    in_flight: usize,
    receiving: usize,
    rollups_dropped: u64,
    evaluation_lag_s: Option<f64>,
    notifications: Vec<NotificationCount>,
    resident_memory_bytes: Option<u64>,
}

impl Scrape {
    /// Reads the store, then the engine's last published view, then the board (never two
    /// locks at once, and never the engine's own lock: a scrape does not wait for an
    /// evaluation).
    pub fn collect(
        store: &WindowStore,
        engine: &EngineView,
        board: &parking_lot::Mutex<BreakerBoard>,
        now_ms: i64,
        in_flight: usize,
        evaluation_lag_s: Option<f64>,
        notifications: Vec<NotificationCount>,
    ) -> Self {
        let totals = store.exposition(now_ms);
        let mut detection = engine.summaries.clone();
        let mut breakers = BTreeMap::new();
        let mut instance_breakers = Vec::new();
        for b in board.lock().snapshot() {
            match b.instance {
                None => {
                    breakers.insert(b.dependency, b.state);
                }
                Some(i) => instance_breakers.push((b.dependency, i, b.state)),
            }
        }
        let dependencies = totals
            .into_iter()
            .map(|d| {
                let summary = detection.remove(&d.name);
                let breaker = breakers.remove(&d.name).unwrap_or(BreakerState::Closed);
                Dependency::new(d, summary, breaker)
            })
            .collect();
        Self {
            dependencies,
            instance_breakers,
            limits: store.limits(),
            in_flight,
            receiving: 0,
            rollups_dropped: store.rollups_dropped(),
            evaluation_lag_s,
            notifications,
            resident_memory_bytes: super::process::resident_memory_bytes(),
        }
    }

    /// Ingest requests still receiving their body (before they take a permit).
    pub fn receiving_bodies(mut self, n: usize) -> Self {
        self.receiving = n;
        self
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Dependency {
    fn new(
        d: DependencyTotals,
        detection: Option<DetectionSummary>,
        breaker: BreakerState,
    ) -> Self {
        let latency = d.totals.latency.unwrap_or_default();
        let mut buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_US
            .iter()
            .map(|&b| seconds(b))
            .chain([f64::INFINITY])
            .zip(latency.counts)
            .collect();
        buckets.shrink_to_fit();
        let quantiles = (!d.m1.hist.is_empty())
            .then(|| QUANTILES.map(|(q, _)| seconds(crate::window::quantile_us(&d.m1.hist, q))));
        let health_of = |kind: &str, name: &str| {
            let map = detection.as_ref().map(|s| match kind {
                "instance" => &s.health.instances,
                "zone" => &s.health.zones,
                _ => &s.health.sources,
            });
            // The engine lists only the instances, zones and sources that are not healthy.
            map.and_then(|m| m.get(name).copied())
                .unwrap_or(Health::Healthy)
        };
        let mut peers = Vec::with_capacity(d.instances.len() + d.zones.len() + d.sources.len());
        for (kind, list) in [
            ("instance", d.instances),
            ("zone", d.zones),
            ("source", d.sources),
        ] {
            for p in list {
                let health = health_of(kind, &p.name);
                peers.push(Peer {
                    kind,
                    p99_s: (p.m1.successful() > 0).then(|| seconds(p.m1.quantile_us(0.99))),
                    counts: p.totals.counts,
                    name: p.name,
                    health,
                });
            }
        }
        Self {
            // The duration histogram's count: the calls it times, the successful ones.
            count: d.totals.counts.ok,
            counts: d.totals.counts,
            buckets,
            sum_s: latency.sum_us / 1e6,
            quantiles,
            detection,
            breaker,
            peers,
            name: d.name,
        }
    }
}

fn health_value(h: Health) -> i64 {
    match h {
        Health::NoData => -1,
        Health::Healthy => 0,
        Health::Degraded => 1,
        Health::Failing => 2,
    }
}

fn breaker_value(s: BreakerState) -> i64 {
    match s {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

fn outcomes(c: &Counts) -> [(&'static str, u64); 3] {
    [("ok", c.ok), ("error", c.error), ("timeout", c.timeout)]
}

fn counter(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: u64) -> std::fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    v: V,
) -> std::fmt::Result {
    m.encode_family(labels)?.encode_gauge(&v)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let deps = &self.dependencies;
        let mut m = e.encode_descriptor(
            "graywatch_dependency_calls",
            "Calls recorded per dependency since the series was created, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for d in deps {
            for (outcome, n) in outcomes(&d.counts) {
                counter(&mut m, &[("dependency", &*d.name), ("outcome", outcome)], n)?;
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_call_duration_seconds",
            "Durations of successful calls per dependency (errors and timeouts are counted, not timed; two significant digits: a call within 0.8% above a bound may count below it).",
            None,
            MetricType::Histogram,
        )?;
        for d in deps {
            m.encode_family(&[("dependency", &*d.name)])?
                .encode_histogram::<NoLabelSet>(d.sum_s, d.count, &d.buckets, None)?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_latency_seconds",
            "Latency quantiles of the successful calls of the last minute per dependency (within 0.4%).",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            if let Some(values) = d.quantiles {
                for ((_, q), v) in QUANTILES.iter().zip(values) {
                    gauge(&mut m, &[("dependency", &*d.name), ("quantile", q)], v)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_health",
            "Health per dependency: 0 healthy, 1 degraded, 2 failing, -1 no calls in the last minute.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            if let Some(s) = &d.detection {
                gauge(
                    &mut m,
                    &[("dependency", &*d.name)],
                    health_value(s.health.state),
                )?;
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_breaker_state",
            "Breaker of each dependency: 0 closed, 1 half-open, 2 open.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            gauge(
                &mut m,
                &[("dependency", &*d.name)],
                breaker_value(d.breaker),
            )?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_instance_breaker_state",
            "Breakers of single instances: 0 closed, 1 half-open, 2 open.",
            None,
            MetricType::Gauge,
        )?;
        for (dep, instance, state) in &self.instance_breakers {
            let labels = [
                ("dependency", dep.as_str()),
                ("instance", instance.as_str()),
            ];
            gauge(&mut m, &labels, breaker_value(*state))?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_alerts_firing",
            "Alerts firing per dependency (the dependency's own and its instances', zones' and sources').",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            let n = d.detection.as_ref().map_or(0, |s| s.firing);
            gauge(&mut m, &[("dependency", &*d.name)], n as i64)?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_baseline_p99_seconds",
            "The learned baseline's tail latency (detection.tail_quantile, p99 by default), once the baseline is ready.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            if let Some(us) = d.detection.as_ref().and_then(|s| s.baseline_tail_us) {
                gauge(&mut m, &[("dependency", &*d.name)], seconds(us))?;
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_dependency_anchor_start_timestamp_seconds",
            "Start of the oldest healthy minute in the dependency's day-long anchor (Unix time); the slow-creep guard judges once the anchor spans most of detection.baseline_max_age.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            if let Some(ms) = d.detection.as_ref().and_then(|s| s.anchor_since_ms) {
                gauge(&mut m, &[("dependency", &*d.name)], ms as f64 / 1e3)?;
            }
        }
        let peer_labels = |d: &Dependency, p: &Peer| {
            [
                ("dependency", d.name.clone()),
                ("kind", p.kind.into()),
                ("peer", p.name.clone()),
            ]
        };
        let mut m = e.encode_descriptor(
            "graywatch_peer_latency_p99_seconds",
            "p99 latency of the successful calls of the last minute per instance, zone and source.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            for p in &d.peers {
                if let Some(v) = p.p99_s {
                    gauge(&mut m, &peer_labels(d, p), v)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_peer_calls",
            "Calls recorded per instance, zone and source since the series was created, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for d in deps {
            for p in &d.peers {
                for (outcome, n) in outcomes(&p.counts) {
                    let labels = [
                        ("dependency", &*d.name),
                        ("kind", p.kind),
                        ("peer", &*p.name),
                        ("outcome", outcome),
                    ];
                    counter(&mut m, &labels, n)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_peer_health",
            "Health per instance, zone and source: 0 healthy, 1 degraded, 2 failing.",
            None,
            MetricType::Gauge,
        )?;
        for d in deps {
            for p in &d.peers {
                gauge(&mut m, &peer_labels(d, p), health_value(p.health).max(0))?;
            }
        }
        let (mut instances, mut zones, mut sources) = (0, 0, 0);
        for d in deps {
            for p in &d.peers {
                match p.kind {
                    "instance" => instances += 1,
                    "zone" => zones += 1,
                    _ => sources += 1,
                }
            }
        }
        let mut m = e.encode_descriptor(
            "graywatch_series",
            "Series held in memory, by kind.",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [
            ("dependency", deps.len()),
            ("instance", instances),
            ("zone", zones),
            ("source", sources),
        ] {
            gauge(&mut m, &[("kind", kind)], n as i64)?;
        }
        let l = &self.limits;
        let mut m = e.encode_descriptor(
            "graywatch_series_limit",
            "Cardinality limits by kind: dependencies in total, instances, zones and sources per dependency (limits.*).",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [
            ("dependency", l.max_dependencies),
            ("instance", l.max_instances_per_dependency),
            ("zone", l.max_zones_per_dependency),
            ("source", l.max_sources_per_dependency),
        ] {
            gauge(&mut m, &[("kind", kind)], n as i64)?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_series_total_limit",
            "Series of all kinds together that may be held (limits.max_series).",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(l.max_series as i64))?;
        let mut m = e.encode_descriptor(
            "graywatch_ingest_requests_in_flight",
            "POST /v1/events requests being processed.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(self.in_flight as i64))?;
        let mut m = e.encode_descriptor(
            "graywatch_rollups_dropped",
            "Unsaved minutes dropped because too many piled up in a series while roll-ups could not be written.",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&self.rollups_dropped, None)?;
        let mut m = e.encode_descriptor(
            "graywatch_ingest_bodies_receiving",
            "POST /v1/events requests still receiving their body (before taking a permit).",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(self.receiving as i64))?;
        if let Some(lag) = self.evaluation_lag_s {
            let mut m = e.encode_descriptor(
                "graywatch_evaluation_lag_seconds",
                "Now minus the event time of the last completed evaluation.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&lag)?;
        }
        let mut m = e.encode_descriptor(
            "graywatch_notifications",
            "Outbox rows by notifier and status.",
            None,
            MetricType::Gauge,
        )?;
        for n in &self.notifications {
            let labels = [
                ("notifier", n.notifier.as_str()),
                ("status", n.status.as_str()),
            ];
            gauge(&mut m, &labels, n.count)?;
        }
        if let Some(rss) = self.resident_memory_bytes {
            let mut m = e.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&rss)?;
        }
        Ok(())
    }
}
