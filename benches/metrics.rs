//! `GET /metrics` on a full store: 4,000 series (100 dependencies, each with 30 instances and
//! 9 zones), every one with calls in its last minute.
//!
//! `cargo bench --bench metrics` — the figure is in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use graywatch::actions::breaker::{BreakerBoard, BreakerSettings};
use graywatch::detect::{DetectionSettings, Engine, Specs};
use graywatch::domain::{DependencyName, Event, Label, Outcome};
use graywatch::metrics::{Metrics, NotificationCount, Scrape};
use graywatch::window::{Limits, WindowStore};

const NOW: i64 = 1_800_000_000_000;
const DEPENDENCIES: usize = 100;
const INSTANCES: usize = 30;
const ZONES: usize = 9;

fn full_store() -> WindowStore {
    let store = WindowStore::new(Limits::default());
    let deps: Vec<String> = (0..DEPENDENCIES).map(|d| format!("service-{d}")).collect();
    let instances: Vec<String> = (0..INSTANCES).map(|i| format!("10.0.0.{i}")).collect();
    let zones: Vec<String> = (0..ZONES).map(|z| format!("zone-{z}")).collect();
    // A minute of traffic, 4 calls a second per instance (120 a second per dependency).
    for second in 0..60 {
        let now = NOW - 60_000 + second * 1_000;
        let mut events = Vec::new();
        for dep in &deps {
            for (i, instance) in instances.iter().enumerate() {
                for k in 0..4u64 {
                    events.push(Event {
                        dependency: DependencyName::parse(dep).unwrap(),
                        duration_us: 1_000 + (i as u64 * 977 + k * 7_919 + second as u64) % 90_000,
                        outcome: if k == 3 && i % 7 == 0 {
                            Outcome::Error
                        } else {
                            Outcome::Ok
                        },
                        ts_ms: now,
                        instance: Some(Label::parse(instance).unwrap()),
                        zone: Some(Label::parse(&zones[i % ZONES]).unwrap()),
                        source: None,
                    });
                }
            }
        }
        assert!(store.record_batch(&events, now).is_empty());
        store.advance_all(now);
    }
    assert_eq!(store.stats().series, DEPENDENCIES * (1 + INSTANCES + ZONES));
    store
}

fn render(c: &mut Criterion) {
    let store = full_store();
    let mut engine = Engine::new(DetectionSettings::default(), Specs::default());
    engine.evaluate(&store, NOW);
    let engine = engine.view();
    let board = parking_lot::Mutex::new(BreakerBoard::new(BreakerSettings::default()));
    let metrics = Metrics::new();
    let notifications = vec![NotificationCount {
        notifier: "hook".into(),
        status: "delivered".into(),
        count: 12,
    }];
    let mut g = c.benchmark_group("metrics");
    g.sample_size(20);
    g.bench_function("scrape_4000_series", |b| {
        b.iter(|| {
            let scrape = Scrape::collect(
                &store,
                &engine,
                &board,
                NOW,
                0,
                Some(0.5),
                notifications.clone(),
            );
            let text = metrics.render(scrape);
            assert!(text.len() > 1_000_000);
            black_box(text)
        })
    });
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
