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

#[path = "common/batch.rs"]
mod batch;
use batch::{NOW, batch};

fn main() {
    // `cargo bench` passes `--bench`; the first number is the batch count.
    let batches: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let body = batch(1_000, false);
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
