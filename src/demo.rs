//! `graywatch demo`: the daemon on a throw-away database, fed over HTTP by a traffic
//! generator that injects a gray failure and heals it, while a watcher reports alerts as
//! `GET /v1/alerts` shows them. The generator is an edge like any client: it only posts
//! events; the watcher only reads the API.
//!
//! The traffic is a fixed set of dependencies with their instances and zones, log-normal
//! latencies and Poisson arrivals, produced in 100 ms slots from a seeded generator, so one
//! seed always gives the same calls whatever the timing of the HTTP posts.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Poisson};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::config::Settings;
use crate::domain::Outcome;
use crate::startup::Application;
use crate::time::Clock;

/// Width of a generator slot.
pub const SLOT: Duration = Duration::from_millis(100);
/// How often the watcher asks for alerts.
const POLL_ALERTS: Duration = Duration::from_secs(1);

/// A dependency the demo's client calls.
struct Dependency {
    name: &'static str,
    calls_per_s: f64,
    median_ms: f64,
    /// Log-normal shape: 0.3 is a tight service, 0.6 a noisy one.
    sigma: f64,
    error_rate: f64,
    timeout_rate: f64,
    /// The client's timeout: a timed-out call is recorded with this duration.
    timeout_ms: f64,
    /// `(instance, zone)` of each instance; empty for a dependency seen as one endpoint.
    instances: Vec<(String, &'static str)>,
}

const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

fn spread(prefix: &str, n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| (format!("{prefix}-{}", i + 1), ZONES[i % ZONES.len()]))
        .collect()
}

/// Five dependencies from a few calls a second to a few hundred.
fn dependencies() -> Vec<Dependency> {
    vec![
        Dependency {
            name: "redis-cache",
            calls_per_s: 220.0,
            median_ms: 0.8,
            sigma: 0.45,
            error_rate: 0.0002,
            timeout_rate: 0.0001,
            timeout_ms: 50.0,
            instances: spread("redis", 3),
        },
        Dependency {
            name: "postgres-orders",
            calls_per_s: 90.0,
            median_ms: 4.0,
            sigma: 0.5,
            error_rate: 0.0005,
            timeout_rate: 0.0002,
            timeout_ms: 1_000.0,
            instances: spread("pg", 2),
        },
        Dependency {
            name: "inventory-service",
            calls_per_s: 60.0,
            median_ms: 24.0,
            sigma: 0.35,
            error_rate: 0.002,
            timeout_rate: 0.0005,
            timeout_ms: 2_000.0,
            instances: spread("inventory", 6),
        },
        Dependency {
            name: "payments-api",
            calls_per_s: 12.0,
            median_ms: 140.0,
            sigma: 0.4,
            error_rate: 0.004,
            timeout_rate: 0.001,
            timeout_ms: 5_000.0,
            instances: spread("payments", 3),
        },
        Dependency {
            name: "email-provider",
            calls_per_s: 2.0,
            median_ms: 320.0,
            sigma: 0.6,
            error_rate: 0.01,
            timeout_rate: 0.002,
            timeout_ms: 10_000.0,
            instances: Vec::new(),
        },
    ]
}

/// The gray failure the demo injects: a share of one instance's calls much slower.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub dependency: &'static str,
    pub instance: String,
    /// From the start of the demo.
    pub starts: Duration,
    pub ends: Duration,
    pub slow_share: f64,
    pub factor: f64,
}

impl Fault {
    /// The demo's fault: a quarter of `inventory-2`'s calls eight times slower, for `lasting`
    /// from `after`.
    pub fn slow_instance(after: Duration, lasting: Duration) -> Self {
        Self {
            dependency: "inventory-service",
            instance: "inventory-2".into(),
            starts: after,
            ends: after + lasting,
            slow_share: 0.25,
            factor: 8.0,
        }
    }

    pub fn active_at(&self, t: Duration) -> bool {
        t >= self.starts && t < self.ends
    }
}

/// One call as posted to `/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub dependency: &'static str,
    pub duration_ms: f64,
    pub outcome: &'static str,
    pub ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<&'static str>,
    pub source: &'static str,
}

/// The seeded traffic generator.
pub struct Generator {
    rng: StdRng,
    dependencies: Vec<(Dependency, LogNormal<f64>, Poisson<f64>)>,
    fault: Option<Fault>,
    /// The next slot to generate.
    slot: u64,
}

impl Generator {
    pub fn new(seed: u64, fault: Option<Fault>) -> Self {
        let per_slot = SLOT.as_secs_f64();
        let dependencies = dependencies()
            .into_iter()
            .map(|d| {
                let latency = LogNormal::new(d.median_ms.ln(), d.sigma).expect("valid log-normal");
                let arrivals = Poisson::new(d.calls_per_s * per_slot).expect("positive rate");
                (d, latency, arrivals)
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            dependencies,
            fault,
            slot: 0,
        }
    }

    /// The calls of every slot that ends at or before `elapsed` (time since the demo
    /// started) and has not been returned yet, stamped from `start_ms` (epoch ms).
    pub fn calls_until(&mut self, elapsed: Duration, start_ms: i64) -> Vec<Call> {
        let slot_ms = SLOT.as_millis() as u64;
        let mut out = Vec::new();
        while (self.slot + 1) * slot_ms <= elapsed.as_millis() as u64 {
            let from_ms = self.slot * slot_ms;
            self.slot += 1;
            let in_fault = self
                .fault
                .as_ref()
                .filter(|f| f.active_at(Duration::from_millis(from_ms)));
            for (d, latency, arrivals) in &self.dependencies {
                let n = arrivals.sample(&mut self.rng) as u64;
                for _ in 0..n {
                    let at_ms = from_ms + self.rng.random_range(0..slot_ms);
                    let which = (!d.instances.is_empty())
                        .then(|| self.rng.random_range(0..d.instances.len()));
                    let mut ms = latency.sample(&mut self.rng);
                    // Now and then a call waits on a pause or a retransmit.
                    if self.rng.random_bool(0.002) {
                        ms *= self.rng.random_range(3.0..6.0);
                    }
                    if let (Some(f), Some(i)) = (in_fault, which)
                        && f.dependency == d.name
                        && d.instances[i].0 == f.instance
                        && self.rng.random_bool(f.slow_share)
                    {
                        ms *= f.factor;
                    }
                    let draw: f64 = self.rng.random();
                    let outcome = if draw < d.error_rate {
                        ms *= 0.3;
                        Outcome::Error
                    } else if draw < d.error_rate + d.timeout_rate || ms >= d.timeout_ms {
                        ms = d.timeout_ms;
                        Outcome::Timeout
                    } else {
                        Outcome::Ok
                    };
                    out.push(Call {
                        dependency: d.name,
                        duration_ms: (ms * 1000.0).round() / 1000.0,
                        outcome: outcome.as_str(),
                        ts: start_ms + at_ms as i64,
                        instance: which.map(|i| d.instances[i].0.clone()),
                        zone: which.map(|i| d.instances[i].1),
                        source: "demo-shop",
                    });
                }
            }
        }
        out
    }
}

/// How `graywatch demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// When the gray failure starts, from the start of the demo.
    pub fault_after: Duration,
    /// How long it lasts.
    pub fault_for: Duration,
    /// Generate traffic (false: the daemon only, for your own events).
    pub traffic: bool,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9797),
            fault_after: Duration::from_secs(60),
            fault_for: Duration::from_secs(120),
            traffic: true,
            seed: 1,
        }
    }
}

/// What the demo reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoEvent {
    /// The daemon is up at `base` (`http://ADDR`).
    Listening {
        base: String,
    },
    FaultStarted(Fault),
    FaultHealed(Fault),
    AlertFired(AlertSeen),
    AlertResolved(AlertSeen),
}

/// An alert as `GET /v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AlertSeen {
    pub id: i64,
    pub dependency: String,
    pub instance: Option<String>,
    pub zone: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    pub detector: String,
    pub severity: String,
    pub state: String,
    pub summary: String,
}

impl std::fmt::Display for DemoEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = |a: &AlertSeen| match (&a.instance, &a.zone, &a.source) {
            (Some(i), _, _) => format!("{} instance {i}", a.dependency),
            (None, Some(z), _) => format!("{} zone {z}", a.dependency),
            (None, None, Some(c)) => format!("{} called by {c}", a.dependency),
            (None, None, None) => a.dependency.clone(),
        };
        match self {
            DemoEvent::Listening { base } => write!(
                f,
                "graywatch is running: dashboard {base}/ (API: {base}/v1/dependencies)"
            ),
            DemoEvent::FaultStarted(fault) => write!(
                f,
                "Injecting a gray failure: {:.0}% of {} calls on {} are {}x slower for {}.",
                fault.slow_share * 100.0,
                fault.dependency,
                fault.instance,
                fault.factor,
                humantime::format_duration(fault.ends - fault.starts)
            ),
            DemoEvent::FaultHealed(fault) => write!(
                f,
                "The gray failure on {} {} is healed.",
                fault.dependency, fault.instance
            ),
            DemoEvent::AlertFired(a) => write!(
                f,
                "Alert {} fired: {} on {} ({}): {}",
                a.id,
                a.detector,
                place(a),
                a.severity,
                a.summary
            ),
            DemoEvent::AlertResolved(a) => write!(
                f,
                "Alert {} resolved: {} on {}.",
                a.id,
                a.detector,
                place(a)
            ),
        }
    }
}

/// A directory removed when dropped: the demo's database.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("graywatch-demo-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo until `shutdown` resolves, sending what happens to `report` (bounded:
/// a slow reader slows the reports, never the daemon).
pub async fn run(
    options: DemoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    report: mpsc::Sender<DemoEvent>,
) -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let settings = Settings {
        listen: options.listen,
        database: format!("sqlite://{}", scratch.0.join("graywatch.db").display()),
        node_id: "demo".into(),
        ..Settings::default()
    }
    .validated("demo")?;
    let app = Application::build(settings, Clock::System).await?;
    let mut addr = app.local_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let _ = report
        .send(DemoEvent::Listening { base: base.clone() })
        .await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut tasks = vec![tokio::spawn(watch_alerts(
        client.clone(),
        base.clone(),
        report.clone(),
        stop_rx.clone(),
    ))];
    if options.traffic {
        let fault = Fault::slow_instance(options.fault_after, options.fault_for);
        tasks.push(tokio::spawn(send_traffic(
            client,
            base,
            Generator::new(options.seed, Some(fault.clone())),
            fault,
            report,
            stop_rx,
        )));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    server.await.context("the server task failed")??;
    drop(scratch);
    Ok(())
}

/// Posts the generator's calls every slot, as NDJSON, and reports the fault's start and end.
async fn send_traffic(
    client: reqwest::Client,
    base: String,
    mut generator: Generator,
    fault: Fault,
    report: mpsc::Sender<DemoEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    let start_ms = chrono::Utc::now().timestamp_millis();
    let url = format!("{base}/v1/events");
    let mut tick = tokio::time::interval(SLOT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut fault_reported, mut heal_reported) = (false, false);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let elapsed = started.elapsed();
        let calls = generator.calls_until(elapsed, start_ms);
        if !fault_reported && fault.active_at(elapsed) {
            fault_reported = true;
            let _ = report.send(DemoEvent::FaultStarted(fault.clone())).await;
        }
        if fault_reported && !heal_reported && elapsed >= fault.ends {
            heal_reported = true;
            let _ = report.send(DemoEvent::FaultHealed(fault.clone())).await;
        }
        if calls.is_empty() {
            continue;
        }
        let mut body = Vec::with_capacity(calls.len() * 160);
        for c in &calls {
            serde_json::to_writer(&mut body, c).expect("a call serializes");
            body.push(b'\n');
        }
        let sent = client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "Demo traffic refused."),
            Err(error) => tracing::warn!(%error, "Cannot send demo traffic."),
        }
    }
}

#[derive(serde::Deserialize)]
struct AlertList {
    alerts: Vec<AlertSeen>,
}

/// Polls `GET /v1/alerts` and reports each alert when it is first seen firing and when it
/// is seen resolved.
async fn watch_alerts(
    client: reqwest::Client,
    base: String,
    report: mpsc::Sender<DemoEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let url = format!("{base}/v1/alerts?limit=1000");
    let mut firing = std::collections::BTreeSet::new();
    let mut tick = tokio::time::interval(POLL_ALERTS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let list: AlertList = match client.get(&url).send().await {
            Ok(r) => match r.json().await {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(%error, "Cannot read the alerts.");
                    continue;
                }
            },
            Err(error) => {
                tracing::warn!(%error, "Cannot ask for the alerts.");
                continue;
            }
        };
        // Oldest first, so that reports come in the order things happened.
        for a in list.alerts.into_iter().rev() {
            let event = match a.state.as_str() {
                "firing" if firing.insert(a.id) => DemoEvent::AlertFired(a),
                "resolved" if firing.remove(&a.id) => DemoEvent::AlertResolved(a),
                _ => continue,
            };
            let _ = report.send(event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(seed: u64, fault: Option<Fault>) -> Vec<Call> {
        Generator::new(seed, fault).calls_until(Duration::from_secs(60), 0)
    }

    #[test]
    fn one_seed_gives_the_same_calls_however_they_are_asked_for() {
        let whole = minute(7, None);
        let mut g = Generator::new(7, None);
        let mut pieces = Vec::new();
        for ms in [250, 251, 1_999, 30_000, 59_950, 60_000] {
            pieces.extend(g.calls_until(Duration::from_millis(ms), 0));
        }
        assert_eq!(whole, pieces);
        assert_ne!(whole, minute(8, None));
    }

    #[test]
    fn traffic_spans_a_few_calls_a_second_to_a_few_hundred() {
        let calls = minute(1, None);
        let per_s =
            |name: &str| calls.iter().filter(|c| c.dependency == name).count() as f64 / 60.0;
        assert!((180.0..260.0).contains(&per_s("redis-cache")));
        assert!((1.0..4.0).contains(&per_s("email-provider")));
        assert!(calls.iter().all(|c| (0..60_000).contains(&c.ts)));
        let zones: std::collections::BTreeSet<_> = calls.iter().filter_map(|c| c.zone).collect();
        assert_eq!(zones.len(), 3);
    }

    #[test]
    fn the_fault_slows_one_instance_only_and_only_while_it_lasts() {
        let fault = Fault::slow_instance(Duration::from_secs(20), Duration::from_secs(20));
        let calls = minute(3, Some(fault.clone()));
        let slow_share = |from_s: i64, to_s: i64, instance: &str| {
            let of: Vec<&Call> = calls
                .iter()
                .filter(|c| {
                    c.dependency == "inventory-service"
                        && c.instance.as_deref() == Some(instance)
                        && (from_s * 1000..to_s * 1000).contains(&c.ts)
                })
                .collect();
            of.iter().filter(|c| c.duration_ms > 100.0).count() as f64 / of.len() as f64
        };
        assert!(slow_share(20, 40, "inventory-2") > 0.15);
        assert!(slow_share(0, 20, "inventory-2") < 0.02);
        assert!(slow_share(40, 60, "inventory-2") < 0.02);
        assert!(slow_share(20, 40, "inventory-1") < 0.02);
    }
}
