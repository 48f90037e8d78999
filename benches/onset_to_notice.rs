//! Live, wall-clock time from a dependency going hard down to the webhook receiver holding
//! its alert, and to a client of the breaker stream seeing its breaker open.
//!
//! `cargo bench --bench onset_to_notice` — starts the daemon in-process on an ephemeral port
//! with a temporary database, the default detection settings (evaluated once a second) and one
//! webhook notifier pointing at a receiver in this process. It subscribes to
//! `GET /v1/breakers/stream`, then, one dependency after another, posts 20 healthy calls a
//! second (in batches of two every 100 ms, stamped with the wall clock) for a few seconds and
//! then the same calls failing. The onset is the first failing batch's send time; the figures
//! are its distance to the webhook request's arrival and to the breaker's `change` event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use graywatch::actions::notifier::NotifierConfig;
use graywatch::config::Settings;
use graywatch::startup::Application;
use graywatch::time::Clock;
use parking_lot::Mutex;
use serde_json::{Value, json};

const DEPENDENCIES: usize = 10;
const HEALTHY_FOR: Duration = Duration::from_secs(5);
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// When the receiver got a firing notification of each dependency.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return;
    };
    if v["status"] == "firing"
        && let Some(dep) = v["dependency"].as_str()
    {
        arrivals.lock().push((dep.to_string(), Instant::now()));
    }
}

fn batch(dep: &str, outcome: &str) -> Vec<Value> {
    let ts = chrono::Utc::now().timestamp_millis();
    (0..2)
        .map(|_| json!({"dependency": dep, "duration_ms": 5.0, "outcome": outcome, "ts": ts}))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = listener.local_addr()?;
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite://{}/bench.db", dir.path().display()),
        ..Settings::default()
    };
    let notifier: NotifierConfig = toml::from_str(&format!(
        "name = \"hook\"\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\n"
    ))?;
    settings.notifiers.push(notifier);
    let app = Application::build(settings, Clock::System).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    // Breaker openings, read from the stream in the background.
    let opened: Arrivals = Arc::default();
    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!("{base}/v1/breakers/stream"))
        .send()
        .await?;
    let opened_ = opened.clone();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let Some(v) = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                if v["after"]["state"] == "open"
                    && v["before"]["state"] != "open"
                    && let Some(dep) = v["after"]["dependency"].as_str()
                {
                    opened_.lock().push((dep.to_string(), at));
                }
            }
        }
    });

    let seen = |list: &Arrivals, dep: &str| {
        list.lock()
            .iter()
            .find(|(d, _)| d == dep)
            .map(|(_, at)| *at)
    };
    let (mut to_hook, mut to_breaker) = (Vec::new(), Vec::new());
    for i in 0..DEPENDENCIES {
        let dep = format!("onset-{i}");
        let post = |outcome: &'static str| {
            client
                .post(format!("{base}/v1/events"))
                .json(&batch(&dep, outcome))
                .send()
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let healthy_until = Instant::now() + HEALTHY_FOR;
        while Instant::now() < healthy_until {
            tick.tick().await;
            post("ok").await?.error_for_status()?;
        }
        let onset = Instant::now();
        while seen(&arrivals, &dep).is_none() || seen(&opened, &dep).is_none() {
            anyhow::ensure!(
                onset.elapsed() < GIVE_UP_AFTER,
                "{dep}: no alert or no open breaker {GIVE_UP_AFTER:?} after the onset"
            );
            tick.tick().await;
            post("error").await?.error_for_status()?;
        }
        let hook_ms = seen(&arrivals, &dep).expect("seen").duration_since(onset);
        let breaker_ms = seen(&opened, &dep).expect("seen").duration_since(onset);
        to_hook.push(hook_ms.as_millis() as u64);
        to_breaker.push(breaker_ms.as_millis() as u64);
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    for (what, mut ms) in [
        ("onset -> webhook received", to_hook),
        ("onset -> breaker open on the stream", to_breaker),
    ] {
        ms.sort_unstable();
        println!(
            "{what}, {} dependencies going hard down at 20 calls/s: min {} ms, median {} ms, max {} ms",
            ms.len(),
            ms[0],
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    Ok(())
}
