//! In-process ingest and query benchmarks.
//!
//! `cargo bench --bench ingest` — figures and targets are in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graywatch::api::ingest_body;
use graywatch::domain::{DependencyName, Event, Label, Outcome};
use graywatch::ingest::Format;
use graywatch::window::{Limits, Window, WindowStore};

#[path = "common/batch.rs"]
mod batch;
use batch::{NOW, batch};

fn parse_and_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    for (name, ndjson) in [("json_batch_1000", false), ("ndjson_batch_1000", true)] {
        let body = batch(1_000, ndjson);
        let format = if ndjson { Format::Ndjson } else { Format::Json };
        let store = WindowStore::new(Limits::default());
        g.throughput(Throughput::Elements(1_000));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = ingest_body(&store, black_box(&body), None, format, 10 << 20, NOW, 100)
                    .expect("valid batch");
                assert_eq!(r.accepted, 1_000);
            })
        });
    }
    // The smallest useful event: dependency, duration and outcome only.
    let mut lean = String::from("[");
    for i in 0..1_000 {
        if i > 0 {
            lean.push(',');
        }
        lean.push_str(&format!(
            r#"{{"dependency":"svc-{}","duration_ms":{}.{},"outcome":"{}"}}"#,
            i % 8,
            i % 97,
            i % 10,
            if i % 100 == 0 { "error" } else { "ok" }
        ));
    }
    lean.push(']');
    let lean = lean.into_bytes();
    let store = WindowStore::new(Limits::default());
    g.bench_function("json_batch_1000_lean_events", |b| {
        b.iter(|| {
            let r = ingest_body(
                &store,
                black_box(&lean),
                None,
                Format::Json,
                10 << 20,
                NOW,
                100,
            )
            .expect("valid");
            assert_eq!(r.accepted, 1_000);
        })
    });
    // The two halves of the path, to see where time goes.
    let body = batch(1_000, false);
    g.bench_function("parse_only_json_1000", |b| {
        b.iter(|| {
            let p = graywatch::ingest::parse(
                black_box(&body),
                Format::Json,
                &graywatch::ingest::Validation::live(NOW),
            )
            .unwrap();
            assert_eq!(p.events.len(), 1_000);
        })
    });
    let parsed = graywatch::ingest::parse(
        &body,
        Format::Json,
        &graywatch::ingest::Validation::live(NOW),
    )
    .unwrap();
    let store = WindowStore::new(Limits::default());
    g.bench_function("record_only_1000", |b| {
        b.iter(|| {
            assert!(
                store
                    .record_batch(black_box(&parsed.events), NOW)
                    .is_empty()
            )
        })
    });
    g.finish();
}

fn stats_over_an_hour(c: &mut Criterion) {
    let store = WindowStore::new(Limits::default());
    let dep = DependencyName::parse("payments").unwrap();
    // One event every 100 ms for an hour, across 20 instances and 3 zones: every slot of
    // every ring of all 24 series holds data.
    let instances: Vec<_> = (0..20)
        .map(|i| Label::parse(format!("i-{i}")).unwrap())
        .collect();
    let zones: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|z| Label::parse(*z).unwrap())
        .collect();
    let start = NOW - 3_600_000;
    let mut t = start;
    let mut i = 0u64;
    while t < NOW {
        let e = Event {
            dependency: dep.clone(),
            duration_us: 1_000 + (i * 7919) % 500_000,
            outcome: if i.is_multiple_of(50) {
                Outcome::Error
            } else {
                Outcome::Ok
            },
            ts_ms: t,
            instance: Some(instances[(i % 20) as usize].clone()),
            zone: Some(zones[(i % 3) as usize].clone()),
            source: None,
        };
        store.record(&e, t).unwrap();
        t += 100;
        i += 1;
    }
    c.bench_function("query/dependency_1h_24_series", |b| {
        b.iter(|| black_box(store.dependency("payments", Window::H1, NOW).unwrap()))
    });
    c.bench_function("query/dependency_1h_stats_json", |b| {
        b.iter(|| {
            let v = store.dependency("payments", Window::H1, NOW).unwrap();
            black_box(serde_json::to_vec(&v.total.stats()).unwrap())
        })
    });
}

criterion_group!(benches, parse_and_record, stats_over_an_hour);
criterion_main!(benches);
