//! Webhook delivery hardening, end to end against real HTTP receivers: Standard Webhooks
//! signatures checked by the receiver itself (and by the README's Python example), redirects
//! not followed, error bodies cut, webhook URLs kept secret, 401/403/404 retried, and manual
//! breaker overrides that the database refuses leaving the board as it was.
//!
//! The daemon evaluates every 100 ms on a manual clock with `fire_after = 1s` for [`DEP`], as
//! in `tests/actions.rs`; retries wait on the same clock (`max_backoff = 1s`), so tests move it
//! while they poll.

#[allow(dead_code)]
mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::receiver::{Receiver, Reply, Request};
use common::*;
use graywatch::actions::notifier::NotifierConfig;
use graywatch::config::Settings;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Connection as _;

const DEADLINE: Duration = Duration::from_secs(30);
const STEP_MS: i64 = 100;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// [`spawn_quick`], with retries about a second apart.
async fn spawn_app(notifiers: Vec<NotifierConfig>) -> TestApp {
    spawn_quick(|s| {
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = notifiers;
    })
    .await
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Moves the clock a step at a time, feeding failures, until `check` sees what it waits for.
async fn drive_until<T>(
    app: &TestApp,
    what: &str,
    check: impl AsyncFn(&TestApp) -> Option<T>,
) -> T {
    let check = &check;
    poll_until(what, DEADLINE, || async move {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        check(app).await
    })
    .await
}

/// Makes [`DEP`] fail until its alert fires; returns the alert id.
async fn fire(app: &TestApp) -> i64 {
    let alert = drive_until(app, "an alert fires", async |app: &TestApp| {
        let body = get_ok(app, &format!("/v1/alerts?state=firing&dependency={DEP}")).await;
        body["alerts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    alert["id"].as_i64().expect("an alert id")
}

/// The firing notification to `notifier`, once it satisfies `pred`.
async fn drive_until_row(
    app: &TestApp,
    what: &str,
    notifier: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let pred = &pred;
    drive_until(app, what, async |app: &TestApp| {
        let body = get_ok(app, &format!("/v1/notifications?notifier={notifier}")).await;
        body["notifications"]
            .as_array()?
            .iter()
            .find(|n| n["kind"] == "firing" && pred(n))
            .cloned()
    })
    .await
}

/// A graywatch webhook notifier; `extra` holds more TOML keys.
fn webhook(name: &str, url: &str, extra: &str) -> NotifierConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}"
    ))
    .expect("a valid webhook notifier")
}

/// A secret in a file; the file lives as long as the returned directory.
fn secret_file(value: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hook.secret");
    std::fs::write(&path, format!("{value}\n")).expect("write the secret");
    let key = format!("secret_file = '{}'", path.display());
    (dir, key)
}

async fn wait_for(receiver: &Receiver, n: usize) -> Vec<Request> {
    eventually(&format!("{n} request(s) received"), DEADLINE, || async {
        receiver.count() >= n
    })
    .await;
    receiver.requests()
}

/// Base64 HMAC-SHA256 of `id.timestamp.body`: the receiver's own computation.
fn v1(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Whether any `v1,` signature in the header matches the recomputed one, in constant time.
fn verifies(key: &[u8], id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| BASE64.decode(s).ok())
        .any(|sig| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        })
}

/// The README's Python `verify` run on a request, or `None` without python3.
fn python_verify(secret: &str, request: &Request, timestamp: &str, now: i64) -> Option<bool> {
    static SCRIPT: OnceLock<Option<String>> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| {
        let found = Command::new("python3").arg("--version").output();
        if !found.is_ok_and(|o| o.status.success()) {
            eprintln!("python3 not found: the README's Python example is not run");
            return None;
        }
        let readme = include_str!("../README.md");
        let example = readme
            .split("```python\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("def verify("))
            .expect("README.md has a Python `verify` example");
        Some(format!(
            "{example}\nimport json, sys\nreq = json.load(sys.stdin)\n\
             ok = verify(req['secret'], req['headers'], base64.b64decode(req['body']), req['now'])\n\
             print('valid' if ok else 'invalid')\n"
        ))
    });
    let script = script.as_ref()?;
    let headers = json!({
        "webhook-id": request.header("webhook-id").unwrap(),
        "webhook-timestamp": timestamp,
        "webhook-signature": request.header("webhook-signature").unwrap(),
    });
    let input = json!({
        "secret": secret, "headers": headers, "body": BASE64.encode(&request.body), "now": now,
    });
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python3 finishes");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout == "valid")
}

/// Every log line of this test process (a global subscriber, installed once).
fn captured_logs() -> Arc<parking_lot::Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<parking_lot::Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        logs
    })
    .clone()
}

struct LogWriter(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_verifies_the_standard_webhooks_signature_and_a_replay_with_a_new_timestamp_fails()
 {
    let key = b"0123456789abcdef0123456789abcdef";
    let whsec = format!("whsec_{}", BASE64.encode(key));
    let (_d1, modern_secret) = secret_file(&whsec);
    let (_d2, legacy_secret) = secret_file("plain-legacy-key");
    let modern = Receiver::start(vec![]).await;
    let legacy = Receiver::start(vec![]).await;
    let app = spawn_app(vec![
        webhook("modern", &modern.url("/hook"), &modern_secret),
        webhook(
            "legacy",
            &legacy.url("/hook"),
            &format!("{legacy_secret}\nlegacy_signature = true"),
        ),
    ])
    .await;
    fire(&app).await;

    let got = wait_for(&modern, 1).await;
    let r = &got[0];
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let sigs = r.header("webhook-signature").expect("webhook-signature");
    assert_eq!(r.header("x-graywatch-delivery"), Some(id));
    assert_eq!(r.header("x-graywatch-timestamp"), Some(ts));
    assert!(
        r.header("x-graywatch-signature").is_none(),
        "no legacy header without the option"
    );
    let now = chrono::Utc::now().timestamp();
    let ts_n: i64 = ts.parse().expect("Unix seconds");
    assert!(
        (now - 60..=now).contains(&ts_n),
        "timestamp {ts}, now {now}"
    );
    assert_eq!(sigs, v1(key, id, ts, &r.body));
    assert!(verifies(key, id, ts, sigs, &r.body));
    // The captured body and signature replayed with a fresh timestamp do not verify, nor with
    // a changed body.
    let fresh = (ts_n + 60).to_string();
    assert!(!verifies(key, id, &fresh, sigs, &r.body));
    let mut tampered = r.body.clone();
    tampered.extend_from_slice(b" ");
    assert!(!verifies(key, id, ts, sigs, &tampered));
    let row = drive_until_row(&app, "modern is delivered", "modern", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(row["id"], json!(id), "webhook-id is the delivery id");

    // The README's Python example, on the request graywatch sent.
    if let Some(valid) = python_verify(&whsec, r, ts, ts_n + 1) {
        assert!(valid, "the Python example verifies a genuine request");
        assert_eq!(python_verify(&whsec, r, &fresh, ts_n + 60), Some(false));
        assert_eq!(
            python_verify(&whsec, r, ts, ts_n + 301),
            Some(false),
            "too old"
        );
        assert_eq!(python_verify("whsec_AAAA", r, ts, ts_n), Some(false));
    }

    // The legacy option adds the body-only header, keyed with the plain secret's bytes.
    let got = wait_for(&legacy, 1).await;
    let l = &got[0];
    let mut mac = Hmac::<Sha256>::new_from_slice(b"plain-legacy-key").unwrap();
    mac.update(&l.body);
    assert_eq!(
        l.header("x-graywatch-signature"),
        Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())).as_str())
    );
    let (lid, lts) = (
        l.header("webhook-id").unwrap(),
        l.header("webhook-timestamp").unwrap(),
    );
    assert!(verifies(
        b"plain-legacy-key",
        lid,
        lts,
        l.header("webhook-signature").unwrap(),
        &l.body
    ));
    if python_verify("plain-legacy-key", l, lts, lts.parse().unwrap()).is_some() {
        assert_eq!(
            python_verify("plain-legacy-key", l, lts, lts.parse().unwrap()),
            Some(true)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Redirects, error bodies, retried statuses
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_last_error_says_so() {
    let target = Receiver::start(vec![]).await;
    let redirects = (0..100)
        .map(|_| Reply::Redirect(target.url("/elsewhere/t0ken")))
        .collect();
    let hook = Receiver::start(redirects).await;
    let app = spawn_app(vec![webhook("hook", &hook.url("/hook"), "")]).await;
    fire(&app).await;

    let row = drive_until_row(&app, "two redirected attempts", "hook", |n| {
        n["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    let error = row["last_error"].as_str().expect("a last_error");
    assert!(error.contains("HTTP 302"), "{row}");
    assert!(error.contains("redirect"), "{row}");
    assert!(error.contains("not followed"), "{row}");
    assert!(
        !error.contains("t0ken"),
        "the target is redacted too: {row}"
    );
    assert_eq!(row["status"], "pending", "retried like a redeploy: {row}");
    assert!(hook.count() >= 2);
    assert_eq!(target.count(), 0, "the redirect target receives nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_body_is_cut_and_the_attempt_ends_at_once() {
    let hook = Receiver::start(vec![Reply::Endless(500)]).await;
    let app = spawn_app(vec![webhook(
        "hook",
        &hook.url("/hook"),
        "timeout = \"60s\"",
    )])
    .await;
    fire(&app).await;

    let started = Instant::now();
    let row = drive_until_row(&app, "the 500 is recorded", "hook", |n| {
        n["attempts"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    let error = row["last_error"].as_str().expect("a last_error");
    assert!(error.starts_with("HTTP 500"), "{row}");
    assert!(
        error.contains("xxxx"),
        "the start of the body is kept: {row}"
    );
    assert!(error.ends_with('…'), "and marked as cut: {row}");
    assert!(
        error.chars().count() < 300,
        "{} chars",
        error.chars().count()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not read to the 60 s timeout: {:?}",
        started.elapsed()
    );
    drive_until_row(&app, "delivered on retry", "hook", |n| {
        n["status"] == "delivered"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_401_403_and_404_are_retried_and_the_notification_is_delivered() {
    let hook = Receiver::start(vec![
        Reply::Status(401),
        Reply::Status(403),
        Reply::Status(404),
    ])
    .await;
    let app = spawn_app(vec![webhook("hook", &hook.url("/hook"), "")]).await;
    fire(&app).await;

    let row = drive_until_row(&app, "delivered after 401, 403, 404", "hook", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(row["attempts"], json!(4), "{row}");
    let got = hook.requests();
    assert_eq!(got.len(), 4);
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one delivery id: {ids:?}");
}

// ---------------------------------------------------------------------------------------------
// The URL is a secret
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_secret_path_never_shows_in_the_api_or_the_logs() {
    let logs = captured_logs();
    const TOKEN: &str = "s3cr3tT0ken";
    // A receiver that echoes the path in its error bodies, and one that is not listening.
    let echo = Receiver::start(vec![Reply::Status(404), Reply::Status(500)]).await;
    let refused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret_path = format!("/services/T0001/B0002/{TOKEN}?token=q{TOKEN}");
    let app = spawn_app(vec![
        webhook("echo", &echo.url(&secret_path), ""),
        webhook(
            "refused",
            &format!("http://127.0.0.1:{refused_port}{secret_path}"),
            "",
        ),
    ])
    .await;
    fire(&app).await;

    let echo_row = drive_until_row(&app, "echo delivered after 404 and 500", "echo", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(echo_row["attempts"], json!(3), "{echo_row}");
    assert!(echo.requests()[0].path.contains(TOKEN), "the test is real");
    let refused = drive_until_row(&app, "two refused attempts", "refused", |n| {
        n["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    let error = refused["last_error"].as_str().unwrap();
    assert!(error.contains("request failed"), "{refused}");
    assert!(
        error.contains(&format!("http://127.0.0.1:{refused_port}/…")),
        "{refused}"
    );

    let (status, listing) = app.get("/v1/notifications?limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let listing = listing.to_string();
    assert!(listing.contains("Delivery") || listing.contains("notifications"));
    assert!(!listing.contains(TOKEN), "{listing}");
    let (_, metrics) = (
        (),
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(!metrics.contains(TOKEN));

    let text = String::from_utf8_lossy(&logs.lock()).to_string();
    assert!(
        text.contains("Delivery failed; will retry."),
        "logs are captured"
    );
    assert!(text.contains("HTTP 404"), "the 404 is logged");
    assert!(!text.contains(TOKEN), "the URL's secret is not logged");

    // Nor in configuration errors.
    for url in [
        format!("ftp://hooks.example.com{secret_path}"),
        format!("not a url {TOKEN}"),
    ] {
        let toml = format!("[[notifiers]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"{url}\"\n");
        let err = Settings::from_toml(&toml, "t.toml")
            .expect_err("a bad URL is refused")
            .to_string();
        assert!(err.contains("notifiers[0].url"), "{err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Overrides: the database first
// ---------------------------------------------------------------------------------------------

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("a response");
    (resp.status(), resp.text().await.unwrap_or_default())
}

async fn breaker(app: &TestApp) -> Value {
    get_ok(app, &format!("/v1/breakers/{DEP}")).await["breakers"][0].clone()
}

/// Holds the database's write lock (another connection in `BEGIN EXCLUSIVE`) until dropped.
async fn lock_database(app: &TestApp) -> sqlx::SqliteConnection {
    let mut conn = sqlx::SqliteConnection::connect(&app.settings.database)
        .await
        .expect("a second connection to the database");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_the_database_refuses_leaves_the_board_unchanged_and_answers_503() {
    let app = spawn_app(vec![]).await;
    app.post_ok(
        &(0..40)
            .map(|_| event(DEP, 20.0, "ok", Some(app.now())))
            .collect::<Vec<_>>(),
    )
    .await;
    let path = format!("/v1/breakers/{DEP}");
    let open = json!({"state": "open", "reason": "maintenance", "ttl": "10m"});
    let before = poll_until("the breaker shows", DEADLINE, || async {
        app.advance(STEP_MS);
        let (status, body) = app.get(&path).await;
        (status == StatusCode::OK).then(|| body["breakers"][0].clone())
    })
    .await;
    assert_eq!(before["forced"], json!(false), "{before}");

    // Forcing it while the database is locked: 503 (after the busy timeout), nothing forced.
    let lock = lock_database(&app).await;
    let (status, body) = send(&app, reqwest::Method::PUT, &path, Some(open.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("nothing changed"), "{body}");
    let after = breaker(&app).await;
    assert_eq!(after["forced"], json!(false), "{after}");
    assert_eq!(after["state"], before["state"], "{after}");
    lock.close().await.expect("release the lock");

    // With the database back, the same request forces it.
    let (status, body) = send(&app, reqwest::Method::PUT, &path, Some(open)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(breaker(&app).await["forced"], json!(true));

    // Removing it while the database is locked: 503, still forced (in memory and on disk).
    let lock = lock_database(&app).await;
    let (status, body) = send(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(breaker(&app).await["forced"], json!(true));
    lock.close().await.expect("release the lock");
    let app = app.restart().await;
    assert_eq!(
        breaker(&app).await["forced"],
        json!(true),
        "the board and the database agree"
    );
    let (status, body) = send(&app, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(breaker(&app).await["forced"], json!(false));
}
