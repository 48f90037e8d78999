//! Full-event ingest as a plain loop, for instruction counts.
//!
//! The shared machine's speed moves by up to a factor of two between sessions, so comparing
//! two versions of the hot path by time needs both in the same session. Instructions do not
//! move: run this under callgrind (the command is in BENCHMARKS.md) and compare totals.
//!
//! `cargo bench --bench ingest_count -- 2000` prints the time per 1000-event batch.

use graywatch::api::ingest_body;
use graywatch::ingest::Format;
use graywatch::window::{Limits, WindowStore};

const NOW: i64 = 1_800_000_000_000;

/// The same batch as `ingest/json_batch_1000` in the criterion benchmark.
fn batch(n: usize) -> Vec<u8> {
    let mut out = String::from("[");
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let dur = 1.0 + (x % 10_000) as f64 / 100.0 * if x.is_multiple_of(97) { 40.0 } else { 1.0 };
        let outcome = if x.is_multiple_of(100) { "error" } else { "ok" };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"dependency":"svc-{}.internal","duration_ms":{:.3},"outcome":"{}","ts":{},"instance":"10.0.{}.{}","zone":"eu-west-1{}","source":"checkout"}}"#,
            x % 8,
            dur,
            outcome,
            NOW - (x % 2_000) as i64,
            x % 8,
            (x >> 8) % 10,
            ["a", "b", "c"][((x >> 16) % 3) as usize],
        ));
    }
    out.push(']');
    out.into_bytes()
}

fn main() {
    // `cargo bench` passes `--bench`; the first number is the batch count.
    let batches: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let body = batch(1_000);
    let store = WindowStore::new(Limits::default());
    let start = std::time::Instant::now();
    for _ in 0..batches {
        let r = ingest_body(
            &store,
            std::hint::black_box(&body),
            None,
            Format::Json,
            10 << 20,
            NOW,
            100,
        )
        .expect("valid batch");
        assert_eq!(r.accepted, 1_000);
    }
    let per_batch = start.elapsed().as_secs_f64() / batches as f64;
    println!(
        "{batches} batches of 1000 full events: {:.1} us per batch, {:.2} M events/s",
        per_batch * 1e6,
        1e-3 / per_batch
    );
}
