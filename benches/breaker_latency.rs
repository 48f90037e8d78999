//! Latency from a detector's verdict to a connected SSE client seeing the breaker change.
//!
//! `cargo bench --bench breaker_latency` — starts the daemon in-process on an ephemeral port
//! with a temporary database, subscribes to `GET /v1/breakers/stream`, then makes 20
//! dependencies fail one after another. Each `change` event carries `verdict_at_ms` (the
//! evaluation instant that opened the breaker); the client notes when the event arrived.

use std::time::{Duration, Instant};

use graywatch::config::Settings;
use graywatch::detect::DependencySpec;
use graywatch::startup::Application;
use graywatch::time::Clock;

const TRIPS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite://{}/bench.db", dir.path().display()),
        ..Settings::default()
    };
    settings.detection.evaluate_every = Duration::from_millis(200);
    for i in 0..TRIPS {
        settings.dependencies.insert(
            format!("dep-{i}"),
            DependencySpec {
                fire_after: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        );
    }
    let app = Application::build(settings, Clock::System).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!("{base}/v1/breakers/stream"))
        .send()
        .await?;
    // Opened breakers by dependency, with the latency their change event showed.
    let mut opened: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut buf = String::new();
    for i in 0..TRIPS {
        let dep = format!("dep-{i}");
        let body: Vec<serde_json::Value> = (0..100)
            .map(|_| serde_json::json!({"dependency": dep, "duration_ms": 5.0, "outcome": "error"}))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !opened.contains_key(&dep) && Instant::now() < deadline {
            client
                .post(format!("{base}/v1/events"))
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            let Ok(chunk) = tokio::time::timeout(Duration::from_millis(300), stream.chunk()).await
            else {
                continue;
            };
            let Some(chunk) = chunk? else {
                anyhow::bail!("stream ended")
            };
            let arrived_ms = chrono::Utc::now().timestamp_millis();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    continue;
                };
                if v["after"]["state"] == "open" && v["before"]["state"] != "open" {
                    let name = v["after"]["dependency"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let verdict = v["verdict_at_ms"].as_i64().unwrap_or(arrived_ms);
                    opened.entry(name).or_insert(arrived_ms - verdict);
                }
            }
        }
        anyhow::ensure!(
            opened.contains_key(&dep),
            "breaker of {dep} did not open within 20 s"
        );
    }
    let mut latencies: Vec<i64> = opened.into_values().collect();
    let _ = stop_tx.send(());
    let _ = server.await;
    latencies.sort_unstable();
    let mean = latencies.iter().sum::<i64>() as f64 / latencies.len() as f64;
    println!(
        "verdict -> SSE client, {} breaker openings: min {} ms, median {} ms, max {} ms, mean {:.1} ms",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        mean
    );
    Ok(())
}
