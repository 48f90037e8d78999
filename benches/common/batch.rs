//! The event batch both ingest benchmarks post.

pub const NOW: i64 = 1_800_000_000_000;

/// A realistic batch: 8 dependencies, 10 instances and 3 zones each, lognormal-ish durations,
/// 1% errors, explicit timestamps spread over the last 2 seconds.
pub fn batch(n: usize, ndjson: bool) -> Vec<u8> {
    let mut out = String::with_capacity(n * 160);
    if !ndjson {
        out.push('[');
    }
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let dur = 1.0 + (x % 10_000) as f64 / 100.0 * if x.is_multiple_of(97) { 40.0 } else { 1.0 };
        let outcome = if x.is_multiple_of(100) { "error" } else { "ok" };
        if i > 0 && !ndjson {
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
        if ndjson {
            out.push('\n');
        }
    }
    if !ndjson {
        out.push(']');
    }
    out.into_bytes()
}
