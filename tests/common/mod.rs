//! Shared harness for the API tests: a real server on an ephemeral port, a fresh SQLite file
//! per test, a manual clock the test moves, and a graceful stop the test can await.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use graywatch::config::Settings;
use graywatch::startup::Application;
use graywatch::time::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// Only the tests that need the real binary use it.
#[allow(dead_code)]
pub mod daemon;
// Only the delivery tests use it.
#[allow(dead_code)]
pub mod receiver;
// Only the peer fault tests use it.
#[allow(dead_code)]
pub mod smtp;

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;

/// The manual clock's starting point: 23.456 s into a minute (and into a 5-minute slot), so
/// that tests exercise slot alignment instead of sitting on a boundary.
pub const START_MS: i64 = 1_800_000_000_000 + 23_456;

/// Start of the minute holding `ms`.
pub fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE)
}

/// A running server plus everything needed to stop it and start it again on the same data.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<AtomicI64>,
    pub settings: Settings,
    /// The running server's state, for tests that must hold what requests would hold.
    pub state: graywatch::api::AppState,
    dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), String>>>,
}

impl TestApp {
    /// A server with default settings (but an ephemeral port and a fresh database).
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose settings `configure` adjusts.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        init_logging();
        let dir = Arc::new(tempfile::tempdir().expect("create a temporary directory"));
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            database: format!("sqlite://{}", dir.path().join("gw.db").display()),
            ..Settings::default()
        };
        configure(&mut settings);
        let settings = settings
            .validated("test")
            .expect("test settings must be valid");
        let clock = Arc::new(AtomicI64::new(START_MS));
        Self::resume(settings, clock, dir).await
    }

    /// A server on the database, clock and directory of one that was stopped.
    pub async fn resume(settings: Settings, clock: Arc<AtomicI64>, dir: Arc<TempDir>) -> Self {
        let app = Application::build(settings.clone(), Clock::Manual(clock.clone()))
            .await
            .expect("the application builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let base = format!("http://{addr}");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = rx.await;
            })
            .await
            .map_err(|e| format!("{e:#}"))
        });
        Self {
            addr,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("build the HTTP client"),
            clock,
            settings,
            state,
            dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and waits until it has flushed and closed the database.
    pub async fn stop(mut self) -> (Settings, Arc<AtomicI64>, Arc<TempDir>) {
        self.stop_in_place().await;
        (self.settings.clone(), self.clock.clone(), self.dir.clone())
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub fn begin_shutdown(&mut self) {
        // Idle keep-alive connections of the old client must not hold the shutdown up.
        self.client = reqwest::Client::new();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    async fn stop_in_place(&mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the server stops within 30 s of the shutdown signal")
                .expect("the server task does not panic");
            outcome.expect("the server stops without an error");
        }
    }

    /// Stops the server and builds a new one on the same database file and clock.
    pub async fn restart(self) -> Self {
        let (settings, clock, dir) = self.stop().await;
        Self::resume(settings, clock, dir).await
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a JSON value to `/v1/events`.
    pub async fn post_events(&self, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/events");
        read(resp).await
    }

    /// POSTs raw bytes to `/v1/events` with the given headers.
    pub async fn post_raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url("/v1/events")).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send().await.expect("POST /v1/events")).await
    }

    /// POSTs events that must all be accepted.
    pub async fn post_ok(&self, events: &[Value]) {
        for chunk in events.chunks(1000) {
            let (status, body) = self.post_events(&Value::Array(chunk.to_vec())).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["accepted"], json!(chunk.len()), "{body}");
            assert_eq!(body["rejected"], json!(0), "{body}");
        }
    }

    /// `method path` with a JSON body: the status and the JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method.clone(), self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("a response body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} ({status}): not JSON ({e}): {text:?}"));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        read(resp).await
    }

    /// The value of an unlabelled metric in `GET /metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        self.try_metric(name)
            .await
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    }

    /// The value of one series in `GET /metrics`, named as exposed (with its labels, e.g.
    /// `name{dependency="x"}`), or `None` while it is not there.
    pub async fn try_metric(&self, series: &str) -> Option<f64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("read /metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
    }

    /// `GET /v1/dependencies/{name}?window=...`, which must succeed.
    pub async fn detail(&self, name: &str, window: &str) -> Value {
        let path = format!("/v1/dependencies/{name}?window={window}");
        let (status, body) = self.get(&path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The dependency's total stats over `window`.
    pub async fn stats(&self, name: &str, window: &str) -> Value {
        self.detail(name, window).await["stats"].clone()
    }

    /// `stats.total` of the dependency over `window`.
    pub async fn total(&self, name: &str, window: &str) -> u64 {
        let stats = self.stats(name, window).await;
        stats["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("stats.total is a number: {stats}"))
    }

    /// `GET /v1/dependencies/{name}/series?{query}`, which must succeed.
    pub async fn series(&self, name: &str, query: &str) -> Value {
        let path = format!("/v1/dependencies/{name}/series?{query}");
        let (status, body) = self.get(&path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Starts `POST /v1/events` over a raw connection, sending the headers and the first
    /// `sent` bytes of `body` only: the request stays in flight until [`PartialPost::finish`].
    pub async fn start_partial_post(&self, body: Vec<u8>, sent: usize) -> PartialPost {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        stream.write_all(&body[..sent]).await.expect("send");
        stream.flush().await.expect("send");
        PartialPost {
            stream,
            rest: body[sent..].to_vec(),
        }
    }
}

/// Polls `check` until it returns true, failing after `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, deadline, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it returns a value, failing after `deadline`.
pub async fn poll_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An ingest request whose body has not been sent in full.
pub struct PartialPost {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl PartialPost {
    /// Sends the rest of the body and reads the response.
    pub async fn finish(mut self) -> (StatusCode, Value) {
        self.stream.write_all(&self.rest).await.expect("send");
        let mut raw = Vec::new();
        self.stream
            .read_to_end(&mut raw)
            .await
            .expect("read the response");
        let text = String::from_utf8(raw).expect("the response is UTF-8");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an HTTP response: {text:?}"));
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let code: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        let body =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body:?}"));
        (StatusCode::from_u16(code).unwrap(), body)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that panicked still stops its server rather than leaking it.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("read the response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response ({status}) is not JSON ({e}): {text:?}"));
    (status, body)
}

/// One event with the given fields; `ts` is omitted unless given.
/// The dependency the alerting tests (actions, delivery, faults) break.
#[allow(dead_code)] // Not every test binary breaks a dependency.
pub const DEP: &str = "payments-api";

/// A server that evaluates every 100 ms with `fire_after = resolve_after = 1s` for [`DEP`], so
/// that an alert fires and resolves within a second or two of manual clock; `configure` sets
/// the rest.
#[allow(dead_code)]
pub async fn spawn_quick(configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(|s| {
        s.detection.evaluate_every = Duration::from_millis(100);
        s.dependencies.insert(
            DEP.to_string(),
            graywatch::detect::DependencySpec {
                fire_after: Some(Duration::from_secs(1)),
                resolve_after: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        );
        configure(s);
    })
    .await
}

/// `n` calls of [`DEP`] taking 20 ms, with `outcome`, at `ts`.
#[allow(dead_code)]
pub fn calls(n: usize, outcome: &str, ts: i64) -> Vec<Value> {
    (0..n)
        .map(|_| event(DEP, 20.0, outcome, Some(ts)))
        .collect()
}

/// 20 failed calls of [`DEP`] at `now`: a hard failure.
#[allow(dead_code)]
pub fn failing(now: i64) -> Vec<Value> {
    calls(20, "error", now)
}

pub fn event(dependency: &str, duration_ms: f64, outcome: &str, ts: Option<i64>) -> Value {
    let mut e = json!({
        "dependency": dependency,
        "duration_ms": duration_ms,
        "outcome": outcome,
    });
    if let Some(ts) = ts {
        e["ts"] = json!(ts);
    }
    e
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("compress in memory");
    enc.finish().expect("compress in memory")
}

/// Microseconds as the server stores a duration given in milliseconds.
pub fn stored_us(duration_ms: f64) -> u64 {
    (duration_ms * 1000.0).round() as u64
}

/// The nearest-rank quantile of sorted values: `sorted[ceil(q * n) - 1]`, as HdrHistogram
/// ranks them.
pub fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    assert!(!sorted.is_empty());
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn relative_error(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// The `error` message of an error response.
pub fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error response has an `error` string: {body}"))
}

fn init_logging() {
    // Server logs go to stderr, which the test harness does not capture: only on request.
    if std::env::var_os("RUST_LOG").is_some() {
        graywatch::telemetry::init(graywatch::telemetry::LogFormat::Text);
    }
}
