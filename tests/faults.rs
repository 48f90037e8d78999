//! Fault injection with real components: the real server on an ephemeral port over a real
//! SQLite file, real HTTP receivers, and the real binary where a process must die.
//!
//! Each test injects one fault the way it happens in production and checks what graywatch
//! promises about it in RELIABILITY.md:
//! - the database file turns read-only (`chattr +i`, which binds root too and reaches files
//!   already open) and then writable again;
//! - another process holds the database's write lock (`BEGIN EXCLUSIVE` on a second
//!   connection) for longer than the busy timeout;
//! - the silences table cannot be read (renamed away under the running daemon);
//! - ingest at more than twice the rate the daemon can take, probing `/healthz` meanwhile;
//! - `kill -9` of the real binary while events are being posted.
//!
//! The in-process daemon evaluates every 100 ms on a manual clock with `fire_after = 1s` for
//! [`DEP`] and flushes roll-ups every second, as in `tests/actions.rs`.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::receiver::Receiver;
use common::*;
use graywatch::actions::notifier::NotifierConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

const DEADLINE: Duration = Duration::from_secs(30);
const STEP_MS: i64 = 100;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// [`spawn_quick`], with retries about a second apart.
async fn spawn_app(notifiers: Vec<NotifierConfig>) -> TestApp {
    spawn_quick(|s| {
        s.storage.flush_interval = Duration::from_secs(1);
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = notifiers;
    })
    .await
}

fn webhook(name: &str, url: &str) -> NotifierConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n"
    ))
    .expect("a valid webhook notifier")
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

fn db_path(app: &TestApp) -> PathBuf {
    PathBuf::from(
        app.settings
            .database
            .strip_prefix("sqlite://")
            .expect("a sqlite:// URL"),
    )
}

/// A second connection to the daemon's database, as another process would open it.
async fn side_connection(app: &TestApp) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&app.settings.database)
        .await
        .expect("open a second connection")
}

/// Calls of [`DEP`] stored in roll-ups, read from the file by another connection.
async fn stored_calls(app: &TestApp) -> i64 {
    let mut conn = side_connection(app).await;
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT SUM(ok + error + timeout) FROM rollups WHERE dependency = $1 AND kind = 'dependency'",
    )
    .bind(DEP)
    .fetch_one(&mut conn)
    .await
    .expect("read the roll-ups");
    n.unwrap_or(0)
}

/// Posts `events`, which must all be accepted, and fails if that took longer than `bound`.
async fn post_promptly(app: &TestApp, events: &[Value], bound: Duration) {
    let started = Instant::now();
    app.post_ok(events).await;
    assert!(
        started.elapsed() < bound,
        "ingest took {:?} during a database fault",
        started.elapsed()
    );
}

async fn readiness(app: &TestApp) -> Value {
    get_ok(app, "/readyz").await
}

/// How a database fault is injected and lifted.
enum DbFault {
    /// The database file, its WAL and their directory made immutable (`chattr +i`): every
    /// write fails, even through descriptors opened before (`pwrite` answers `EPERM`), and
    /// even for root. Not the `-shm`: SQLite maps it, and a store into a mapping of an
    /// immutable file kills the process with `SIGBUS`, which is no database fault.
    ReadOnly(Vec<PathBuf>),
    /// Another connection holds the write lock (`BEGIN EXCLUSIVE`).
    Locked(sqlx::SqliteConnection),
}

impl DbFault {
    async fn read_only(app: &TestApp) -> Self {
        let db = db_path(app);
        let mut files: Vec<PathBuf> = ["", "-wal"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", db.display())))
            .filter(|p| p.exists())
            .collect();
        // The directory too, so that SQLite cannot start a new WAL or journal beside them.
        files.push(db.parent().expect("the database's directory").to_path_buf());
        for f in &files {
            chattr("+i", f);
        }
        Self::ReadOnly(files)
    }

    async fn locked(app: &TestApp) -> Self {
        let mut conn = side_connection(app).await;
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        Self::Locked(conn)
    }

    async fn lift(mut self) {
        match &mut self {
            Self::ReadOnly(files) => files.iter().for_each(|f| chattr("-i", f)),
            Self::Locked(conn) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .expect("release the write lock");
            }
        }
    }
}

impl Drop for DbFault {
    fn drop(&mut self) {
        // A failed test must not leave immutable files the temporary directory cannot remove.
        if let Self::ReadOnly(files) = self {
            for f in files.iter() {
                let _ = Command::new("chattr").arg("-i").arg(f).status();
            }
        }
    }
}

fn chattr(flag: &str, file: &Path) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(file)
        .output()
        .expect("run chattr (e2fsprogs): the read-only fault needs it");
    assert!(
        out.status.success(),
        "chattr {flag} {} (needs root and a file system with the immutable flag): {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The database refuses writes
// ---------------------------------------------------------------------------------------------

/// Under `fault`: ingest answers promptly, the alert fires and the breaker opens from memory,
/// `/readyz` says the writes fail and nothing crashes. Once it is lifted: every accepted call
/// is in the roll-ups, the alert is stored, its notification delivered, `/readyz` is ready.
async fn survives(inject: impl AsyncFnOnce(&TestApp) -> DbFault) {
    let hook = Receiver::start(vec![]).await;
    let app = spawn_app(vec![webhook("hook", &hook.url("/hook"))]).await;
    // A first minute stored before the fault, so the WAL file exists and is in use.
    let mut posted = 0i64;
    let healthy: Vec<Value> = (0..50)
        .map(|_| event(DEP, 20.0, "ok", Some(app.now())))
        .collect();
    app.post_ok(&healthy).await;
    posted += 50;
    app.advance(MINUTE);
    eventually("the first minute is stored", DEADLINE, || async {
        stored_calls(&app).await == posted
    })
    .await;
    assert_eq!(readiness(&app).await["status"], "ready");

    let fault = inject(&app).await;
    // Fail for a while (in event time), past a minute boundary, so that an alert fires and a
    // whole minute waits to be written.
    let fault_start = app.now();
    while app.now() < fault_start + 2 * MINUTE + 5 * common::SECOND {
        app.advance(STEP_MS * 10);
        let batch = failing(app.now());
        post_promptly(&app, &batch, Duration::from_secs(2)).await;
        posted += batch.len() as i64;
    }
    // Detection and breakers work from memory: the breaker opens promptly (real time).
    let extra = &std::sync::atomic::AtomicI64::new(0);
    poll_until("the breaker opens", Duration::from_secs(5), || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        extra.fetch_add(20, std::sync::atomic::Ordering::SeqCst);
        let (_, body) = app.get(&format!("/v1/breakers/{DEP}")).await;
        (body["breakers"][0]["state"] == "open").then_some(())
    })
    .await;
    // A flush took finished minutes and could not write them: they must wait in memory.
    // (Required under both faults: with the immutable files, a writer connection reused after
    // its refused COMMIT once answered later writes with success without writing anything.)
    let flush_errors = "graywatch_database_errors_total{operation=\"rollup_flush\"}";
    eventually("a roll-up flush fails", DEADLINE, || async {
        metric_or_zero(&app, flush_errors).await >= 1.0
    })
    .await;
    let ready = poll_until("/readyz says the writes fail", DEADLINE, || async {
        let r = readiness(&app).await;
        (r["status"] == "degraded").then_some(r)
    })
    .await;
    assert!(ready["failed_writes"].as_u64().unwrap() >= 1, "{ready}");
    assert!(!ready["error"].as_str().unwrap().is_empty(), "{ready}");
    assert_eq!(get_ok(&app, "/healthz").await["status"], "ok");
    posted += extra.load(std::sync::atomic::Ordering::SeqCst);

    fault.lift().await;
    // One more minute boundary so that the last failing minute is complete too.
    app.advance(MINUTE);
    let stored = &std::sync::atomic::AtomicI64::new(0);
    let all_stored = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = stored_calls(&app).await;
            stored.store(n, std::sync::atomic::Ordering::SeqCst);
            if n == posted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        all_stored.is_ok(),
        "every accepted call is stored: {} of {posted} after {DEADLINE:?}",
        stored.load(std::sync::atomic::Ordering::SeqCst)
    );
    let alerts = get_ok(&app, &format!("/v1/alerts?dependency={DEP}")).await;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    eventually(
        "the alert's notification is delivered",
        DEADLINE,
        || async { hook.count() >= 1 },
    )
    .await;
    eventually("/readyz is ready again", DEADLINE, || async {
        readiness(&app).await["status"] == "ready"
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_loses_no_accepted_call_and_no_alert_once_writable() {
    survives(async |app: &TestApp| DbFault::read_only(app).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_loses_no_accepted_call_and_no_alert() {
    survives(async |app: &TestApp| DbFault::locked(app).await).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Silences that cannot be read hold notifications (fail closed)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wait_while_the_silences_cannot_be_read() {
    let hook = Receiver::start(vec![]).await;
    let app = spawn_app(vec![webhook("hook", &hook.url("/hook"))]).await;
    let (status, silence) = app
        .send_json(
            reqwest::Method::POST,
            "/v1/silences",
            &json!({"dependency": DEP, "duration": "1h", "comment": "maintenance"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{silence}");
    let mut side = side_connection(&app).await;
    sqlx::query("ALTER TABLE silences RENAME TO silences_away")
        .execute(&mut side)
        .await
        .expect("take the silences away");

    // Until a worker has failed twice to read them (or, without the protection, sent it).
    let errors = "graywatch_database_errors_total{operation=\"silences_read\"}";
    poll_until("a worker fails to read the silences", DEADLINE, || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        (hook.count() > 0 || app.metric(errors).await >= 2.0).then_some(())
    })
    .await;
    let rows = get_ok(&app, "/v1/notifications?notifier=hook").await;
    let row = rows["notifications"][0].clone();
    assert_eq!(row["status"], "pending", "held, not sent: {row}");
    assert_eq!(row["attempts"], json!(0), "{row}");
    assert_eq!(hook.count(), 0, "a silenced alert was sent: {row}");

    sqlx::query("ALTER TABLE silences_away RENAME TO silences")
        .execute(&mut side)
        .await
        .expect("bring the silences back");
    let row = poll_until(
        "the silence postpones the notification",
        DEADLINE,
        || async {
            let rows = get_ok(&app, "/v1/notifications?notifier=hook").await;
            let row = rows["notifications"][0].clone();
            row["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("silenced"))
                .then_some(row)
        },
    )
    .await;
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(hook.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Overload
// ---------------------------------------------------------------------------------------------

/// Calls of `dependency` the daemon holds over the last 15 minutes.
async fn total(d: &Daemon, dependency: &str) -> u64 {
    let body = d
        .get_json(&format!("/v1/dependencies/{dependency}?window=15m"))
        .await;
    body["stats"]["total"].as_u64().expect("stats.total")
}

/// A batch of `n` calls of `dependency` at `ts` (ms), as one JSON body.
fn batch(dependency: &str, n: usize, ts: Option<i64>) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| event(dependency, 1.0 + (i % 50) as f64, "ok", ts))
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// What `senders` clients posting `body` back to back for `run` got: (accepted events,
/// refusals with 503/429 and Retry-After, anything else).
async fn flood(d: &Daemon, senders: usize, body: &[u8], per_body: u64, run: Duration) -> Flood {
    let until = Instant::now() + run;
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (client, url, body) = (d.client.clone(), d.url("/v1/events"), body.to_vec());
            tokio::spawn(async move {
                let mut f = Flood::default();
                while Instant::now() < until {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == StatusCode::OK => f.accepted += per_body,
                        Ok(r)
                            if matches!(r.status().as_u16(), 503 | 429)
                                && r.headers().contains_key("retry-after") =>
                        {
                            f.refused += 1
                        }
                        Ok(r) => f.other.push(format!("{}", r.status())),
                        Err(e) => f.other.push(format!("{e}")),
                    }
                }
                f
            })
        })
        .collect();
    let mut total = Flood::default();
    for t in tasks {
        let f = t.await.expect("a sender");
        total.accepted += f.accepted;
        total.refused += f.refused;
        total.other.extend(f.other);
    }
    total.offered = total.accepted as f64 / run.as_secs_f64();
    total
}

#[derive(Default, Debug)]
struct Flood {
    accepted: u64,
    refused: u64,
    other: Vec<String>,
    /// Accepted events per second.
    offered: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_at_twice_its_capacity_is_refused_with_retry_after_and_healthz_stays_fast() {
    let dir = tempfile::tempdir().unwrap();
    // Few ingest places so that the daemon's capacity, not the test's, sets the maximum.
    let config = "[ingest]\nmax_in_flight = 2\nmax_receiving = 64\n";
    let d = Daemon::start_with(dir.path(), config, "overload").await;
    // Large bodies (~250 KB): sending one costs the client a copy, reading it costs the
    // daemon a parse, so the test can offer more than the daemon can take on the same cores.
    const PER_BODY: u64 = 5_000;
    let body = batch("load", PER_BODY as usize, None);
    let run = Duration::from_secs(3);

    // The maximum: twice as many senders as places, each posting as soon as it is answered.
    let max = flood(&d, 4, &body, PER_BODY, run).await;
    assert!(max.other.is_empty(), "{:?}", max.other);
    let capacity = max.accepted as f64 / run.as_secs_f64();
    let rss_warm = d.rss_kib();

    // Overload: many more senders, while /healthz is probed.
    let probes = {
        let (client, url) = (d.client.clone(), d.url("/healthz"));
        tokio::spawn(async move {
            let mut took = Vec::new();
            for _ in 0..200 {
                let started = Instant::now();
                let r = client.get(&url).send().await.expect("GET /healthz");
                assert_eq!(r.status(), StatusCode::OK);
                took.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            took
        })
    };
    let over = flood(&d, 32, &body, PER_BODY, run).await;
    let mut took = probes.await.expect("the probes");
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];
    let rss_after = d.rss_kib();
    // Offered: accepted events plus those of every refused body.
    let offered = (over.accepted + over.refused * PER_BODY) as f64 / run.as_secs_f64();
    eprintln!(
        "capacity {capacity:.0} events/s; overload offered {offered:.0}/s, accepted {:.0}/s, \
         {} bodies refused; /healthz p99 {p99:?} over {} probes; RSS {rss_warm} -> {rss_after} KiB",
        over.offered,
        over.refused,
        took.len()
    );

    assert!(
        over.other.is_empty(),
        "only 200 or 503/429: {:?}",
        over.other
    );
    assert!(
        offered >= 2.0 * capacity,
        "offered {offered:.0}/s against a capacity of {capacity:.0}/s"
    );
    assert!(over.refused > 0, "overload is refused with Retry-After");
    assert!(p99 < Duration::from_millis(100), "/healthz p99 {p99:?}");
    // Bodies in transit are bounded by max_receiving x max_body_bytes, and nothing queues:
    // memory stays within a few tens of MiB of the warm daemon.
    assert!(
        rss_after < rss_warm + 64 * 1024,
        "RSS grew from {rss_warm} to {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. kill -9 under ingest load
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_keeps_every_call_older_than_the_loss_window() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[storage]\nflush_interval = \"1s\"\n";
    let d = Daemon::start_with(dir.path(), config, "before").await;

    // Calls of a finished minute (90 s ago): outside the loss window once a flush has run
    // after they were accepted.
    let now = chrono::Utc::now().timestamp_millis();
    let kept_ts = now - 90_000;
    let kept = 3_000usize;
    for _ in 0..3 {
        let r = d
            .client
            .post(d.url("/v1/events"))
            .header("content-type", "application/json")
            .body(batch("kept", kept / 3, Some(kept_ts)))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Load on another dependency while the flushes run and at the kill.
    let load = {
        let (client, url) = (d.client.clone(), d.url("/v1/events"));
        let body = batch("load", 1_000, None);
        tokio::spawn(async move {
            loop {
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
            }
        })
    };
    // Two flushes after the calls were accepted: the documented bound (`flush_interval`).
    let flushes = "graywatch_database_write_duration_seconds_count{operation=\"rollup_flush\"}";
    let count = async |d: &Daemon| -> f64 {
        let text = d
            .client
            .get(d.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(flushes)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = count(&d).await;
    eventually("two roll-up flushes", DEADLINE, || async {
        count(&d).await >= before + 2.0
    })
    .await;
    d.kill_9();
    load.abort();

    let d = Daemon::start_with(dir.path(), config, "after").await;
    assert_eq!(
        total(&d, "kept").await,
        kept as u64,
        "calls accepted before the last flush survive a kill -9"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Event time jumping forward and back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_jumping_two_hours_forward_and_back_stops_neither_ingest_nor_detection() {
    let app = spawn_app(vec![]).await;
    let healthy =
        |now: i64| -> Vec<Value> { (0..40).map(|_| event(DEP, 20.0, "ok", Some(now))).collect() };
    app.post_ok(&healthy(app.now())).await;
    let evaluations = "graywatch_evaluation_duration_seconds_count";

    for jump in [2 * HOUR, -2 * HOUR] {
        app.advance(jump);
        // Ingest takes events at the new time, and detection keeps evaluating.
        app.post_ok(&healthy(app.now())).await;
        let before = app.metric(evaluations).await;
        eventually("detection evaluates after the jump", DEADLINE, || async {
            app.metric(evaluations).await >= before + 5.0
        })
        .await;
        assert_eq!(get_ok(&app, "/healthz").await["status"], "ok");
        // The lag is measured from the evaluations at the new time: never negative.
        let lag = app.metric("graywatch_evaluation_lag_seconds").await;
        assert!(
            (0.0..60.0).contains(&lag),
            "lag {lag} s after a jump of {jump} ms"
        );
    }
    // After stepping back, a failure on the new event time still opens the breaker.
    poll_until(
        "the breaker opens after the clock stepped back",
        DEADLINE,
        || async {
            app.advance(STEP_MS);
            app.post_ok(&failing(app.now())).await;
            let (_, body) = app.get(&format!("/v1/breakers/{DEP}")).await;
            (body["breakers"][0]["state"] == "open").then_some(())
        },
    )
    .await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Detection does not wait for a locked database
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_keeps_its_pace_while_the_database_is_locked_and_writes_the_alert_after() {
    let hook = Receiver::start(vec![]).await;
    let app = spawn_app(vec![webhook("hook", &hook.url("/hook"))]).await;
    app.post_ok(&calls(40, "ok", app.now())).await;
    let mut lock = side_connection(&app).await;
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("take the write lock");

    // Detection finds the failure (the breaker opens) and its alert transition waits.
    poll_until("the breaker opens", Duration::from_secs(5), || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        let (_, body) = app.get(&format!("/v1/breakers/{DEP}")).await;
        (body["breakers"][0]["state"] == "open").then_some(())
    })
    .await;
    let evaluations = "graywatch_evaluation_duration_seconds_count";
    let failures = "graywatch_database_errors_total{operation=\"record_transitions\"}";
    let before = app.metric(evaluations).await;
    let started = Instant::now();
    // Each write attempt waits the 5 s busy timeout; evaluations (every 100 ms) go on.
    eventually("a write of the transition fails", DEADLINE, || async {
        app.metric(failures).await >= 1.0
    })
    .await;
    let done = app.metric(evaluations).await - before;
    let secs = started.elapsed().as_secs_f64();
    assert!(secs >= 3.0, "the write failed after {secs} s only");
    assert!(
        done / secs >= 3.0,
        "{done} evaluations in {secs:.1} s while the transition waited"
    );
    assert!(app.metric("graywatch_alert_transitions_waiting").await >= 1.0);
    assert_eq!(
        app.metric("graywatch_alert_transitions_dropped_total{reason=\"queue_full\"}")
            .await,
        0.0
    );

    sqlx::query("COMMIT")
        .execute(&mut lock)
        .await
        .expect("release the lock");
    eventually("the alert is stored", DEADLINE, || async {
        let alerts = get_ok(&app, &format!("/v1/alerts?dependency={DEP}")).await;
        alerts["alerts"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    eventually("its notification is delivered", DEADLINE, || async {
        hook.count() >= 1
    })
    .await;
    assert_eq!(app.metric("graywatch_alert_transitions_waiting").await, 0.0);
    app.stop().await;
}

/// The value of `name` in `/metrics`, 0 while it is not there.
async fn metric_or_zero(app: &TestApp, name: &str) -> f64 {
    app.try_metric(name).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_notification_waiting_on_a_locked_database_does_not_hold_up_detection() {
    let hook = Receiver::start(vec![]).await;
    let app = spawn_quick(|s| {
        s.storage.flush_interval = Duration::from_secs(1);
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = vec![webhook("hook", &hook.url("/hook"))];
        // Checked every 500 ms: a reminder is due 2 s of event time after the last notice.
        s.routing.renotify_every = Duration::from_secs(2);
    })
    .await;
    poll_until("the alert fires and is notified", DEADLINE, || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        (hook.count() >= 1).then_some(())
    })
    .await;
    let fault = DbFault::locked(&app).await;
    // A reminder is now due: queueing it waits for the write lock (the 5 s busy timeout).
    app.advance(3 * common::SECOND);
    app.post_ok(&failing(app.now())).await;

    let evaluations = "graywatch_evaluation_duration_seconds_count";
    let waits = "graywatch_database_errors_total{operation=\"renotify\"}";
    let before = app.metric(evaluations).await;
    let started = Instant::now();
    // Until a reminder's write has failed for the lock, measured over 8 s at most: when the
    // check ran on the evaluation tick, evaluations stopped for each 5 s wait.
    eventually(
        "a reminder's write waited for the lock",
        DEADLINE,
        || async {
            metric_or_zero(&app, waits).await >= 1.0 || started.elapsed() >= Duration::from_secs(8)
        },
    )
    .await;
    let done = app.metric(evaluations).await - before;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        done / secs >= 3.0,
        "{done} evaluations in {secs:.1} s while a reminder waited for the database"
    );
    assert!(
        metric_or_zero(&app, waits).await >= 1.0,
        "no reminder waited for the lock in {secs:.1} s"
    );
    assert!(
        secs >= 3.0,
        "the reminder's write failed after {secs} s only"
    );
    // Detection still judges from memory: the health of the dependency is current.
    let detail = app.detail(DEP, "1m").await;
    assert_eq!(detail["health"]["state"], "failing", "{detail}");

    fault.lift().await;
    eventually("the reminder is delivered", DEADLINE, || async {
        let rows = get_ok(&app, "/v1/notifications?notifier=hook").await;
        rows["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "renotify" && n["status"] == "delivered")
    })
    .await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Breaker notifications outlast a long database outage
// ---------------------------------------------------------------------------------------------

/// `GET /v1/breakers`: the state of each dependency's own breaker.
async fn breaker_states(app: &TestApp) -> std::collections::HashMap<String, String> {
    let body = get_ok(app, "/v1/breakers").await;
    body["breakers"]
        .as_array()
        .expect("a breakers array")
        .iter()
        .filter(|b| b.get("instance").is_none())
        .map(|b| {
            (
                b["dependency"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_notifications_outlast_a_long_database_outage_with_each_breakers_latest_state() {
    // 16 breaker notifiers x 260 breakers: more changes wait than any fixed queue of a few
    // thousand would hold, as in a long outage with many dependencies or a flapping breaker.
    const NOTIFIERS: usize = 16;
    let names: Vec<String> = (0..NOTIFIERS).map(|i| format!("hook-{i:02}")).collect();
    let others: Vec<String> = (0..259).map(|i| format!("dep-{i:03}")).collect();
    let hook = Receiver::start(vec![]).await;
    let app = spawn_quick(|s| {
        s.storage.flush_interval = Duration::from_secs(1);
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = names
            .iter()
            .map(|n| webhook(n, &hook.url(&format!("/{n}"))))
            .collect();
        s.routing.breaker_notifiers = names.clone();
        // Alerts go nowhere: only breaker notifications are sent.
        s.routing.default_notifiers = Some(vec![]);
        // A breaker stays open 60 s, then closes after 1 s of healthy probes.
        s.breakers.base_cooldown = Duration::from_secs(60);
        s.breakers.jitter = 0.0;
        s.breakers.probe_healthy_for = Duration::from_secs(1);
        for d in &others {
            s.dependencies.insert(
                d.clone(),
                graywatch::detect::DependencySpec {
                    fire_after: Some(Duration::from_secs(1)),
                    resolve_after: Some(Duration::from_secs(1)),
                    ..Default::default()
                },
            );
        }
    })
    .await;
    let all_failing = |now: i64| -> Vec<Value> {
        others
            .iter()
            .flat_map(|d| (0..20).map(move |_| event(d, 20.0, "error", Some(now))))
            .collect()
    };
    let fault = DbFault::locked(&app).await;

    // DEP's breaker opens first...
    poll_until("DEP's breaker opens", DEADLINE, || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        (breaker_states(&app).await.get(DEP).map(String::as_str) == Some("open")).then_some(())
    })
    .await;
    // ... then, 45 s later (within its cool-down), every other dependency's.
    app.advance(45 * common::SECOND);
    poll_until("every other breaker opens", DEADLINE, || async {
        app.advance(STEP_MS);
        app.post_ok(&all_failing(app.now())).await;
        let states = breaker_states(&app).await;
        others
            .iter()
            .all(|d| states.get(d).map(String::as_str) == Some("open"))
            .then_some(())
    })
    .await;
    // DEP recovers: its cool-down ends, it probes and closes, all before the database is back.
    poll_until("DEP's breaker closes", DEADLINE, || async {
        app.advance(5 * STEP_MS);
        app.post_ok(&calls(200, "ok", app.now())).await;
        (breaker_states(&app).await.get(DEP).map(String::as_str) == Some("closed")).then_some(())
    })
    .await;
    let states = breaker_states(&app).await;
    for d in &others {
        assert_eq!(states[d], "open", "{d} is still within its cool-down");
    }
    // One notification waits per breaker and notifier, however many changes there were.
    let breakers = (others.len() + 1) as f64;
    eventually(
        "one notification per breaker and notifier waits",
        DEADLINE,
        || async {
            metric_or_zero(&app, "graywatch_breaker_notifications_waiting").await
                == breakers * NOTIFIERS as f64
        },
    )
    .await;
    assert_eq!(
        metric_or_zero(&app, "graywatch_breaker_notifications_dropped_total").await,
        0.0
    );
    assert!(
        metric_or_zero(
            &app,
            "graywatch_database_errors_total{operation=\"breaker_notices\"}"
        )
        .await
            >= 1.0
    );

    // The database is back. The clock stands still from here, so no breaker changes again.
    fault.lift().await;
    let rows: Vec<(String, Value)> = poll_until(
        "every breaker notification is in the outbox",
        DEADLINE,
        || async {
            let mut side = side_connection(&app).await;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT notifier, payload FROM notifications WHERE kind = 'breaker'",
            )
            .fetch_all(&mut side)
            .await
            .expect("read the outbox");
            (rows.len() as f64 >= breakers * NOTIFIERS as f64).then(|| {
                rows.into_iter()
                    .map(|(n, p)| (n, serde_json::from_str(&p).expect("a JSON payload")))
                    .collect()
            })
        },
    )
    .await;
    // Exactly one per breaker and notifier, with the breaker's state now.
    let mut seen = std::collections::HashMap::new();
    for (notifier, payload) in &rows {
        let dep = payload["dependency"].as_str().unwrap().to_string();
        let before = seen.insert((notifier.clone(), dep.clone()), payload.clone());
        assert!(
            before.is_none(),
            "two notifications of {dep} for {notifier}"
        );
    }
    assert_eq!(rows.len(), (others.len() + 1) * NOTIFIERS);
    for n in &names {
        for d in &others {
            let p = &seen[&(n.clone(), d.clone())];
            assert_eq!(p["state"], "open", "{p}");
            assert!(p.get("superseded").is_none(), "{p}");
        }
        // DEP opened, went half-open and closed: the closed state, the two others folded in.
        let p = &seen[&(n.clone(), DEP.to_string())];
        assert_eq!(p["state"], "closed", "{p}");
        assert_eq!(p["superseded"], json!(2), "{p}");
    }
    // And the receivers get them: DEP's closed breaker reaches every notifier.
    eventually(
        "every notifier receives DEP's closed breaker",
        Duration::from_secs(120),
        || async {
            let got: std::collections::HashSet<String> = hook
                .requests()
                .iter()
                .filter(|r| {
                    let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    body["type"] == "breaker"
                        && body["dependency"] == DEP
                        && body["state"] == "closed"
                })
                .map(|r| r.path.clone())
                .collect();
            got.len() == NOTIFIERS
        },
    )
    .await;
    assert_eq!(
        metric_or_zero(&app, "graywatch_breaker_notifications_waiting").await,
        0.0
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 8. What the database still refuses at shutdown is written by the next start
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_locked_database_refuses_until_shutdown_is_written_and_delivered_after_a_restart() {
    let hook = Receiver::start(vec![]).await;
    let app = spawn_quick(|s| {
        s.storage.flush_interval = Duration::from_secs(1);
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = vec![webhook("hook", &hook.url("/hook"))];
        s.routing.breaker_notifiers = vec!["hook".into()];
    })
    .await;
    let spill = PathBuf::from(format!("{}-unsaved.jsonl", db_path(&app).display()));
    app.post_ok(&calls(40, "ok", app.now())).await;
    let fault = DbFault::locked(&app).await;

    // The alert fires and the breaker opens; the writer's attempts are refused, so both the
    // alert transition and the breaker notification wait in memory.
    poll_until("the breaker opens", Duration::from_secs(5), || async {
        app.advance(STEP_MS);
        app.post_ok(&failing(app.now())).await;
        let (_, body) = app.get(&format!("/v1/breakers/{DEP}")).await;
        (body["breakers"][0]["state"] == "open").then_some(())
    })
    .await;
    let opened_by = app.now();
    eventually(
        "the transition and the breaker notification wait for the database",
        DEADLINE,
        || async {
            metric_or_zero(&app, "graywatch_alert_transitions_waiting").await >= 1.0
                && metric_or_zero(&app, "graywatch_breaker_notifications_waiting").await >= 1.0
        },
    )
    .await;

    // Stopped while the lock is still held: shutdown retries within its budget, then keeps
    // them beside the database.
    let (settings, clock, dir) = app.stop().await;
    assert!(
        spill.exists(),
        "shutdown kept what the database refused in {}",
        spill.display()
    );
    assert_eq!(
        hook.count(),
        0,
        "nothing was in the outbox before the restart"
    );
    fault.lift().await;

    // The next start writes them into the database and removes the file.
    let app = TestApp::resume(settings, clock, dir).await;
    assert!(!spill.exists(), "the start removed {}", spill.display());
    let alerts = get_ok(&app, &format!("/v1/alerts?dependency={DEP}")).await;
    let alerts = alerts["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "firing", "{alerts:?}");
    let rows = get_ok(&app, "/v1/notifications?notifier=hook").await;
    let kinds: Vec<&str> = rows["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"firing") && kinds.contains(&"breaker"),
        "{rows}"
    );

    // And the receiver gets both: the alert as it fired, and the breaker's change as it was
    // made before the shutdown.
    let received = poll_until("the receiver gets both", DEADLINE, || async {
        let bodies: Vec<Value> = hook
            .requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
            .collect();
        let alert = bodies
            .iter()
            .find(|b| b["status"] == "firing" && b["dependency"] == DEP)
            .cloned();
        let breaker = bodies
            .iter()
            .find(|b| b["type"] == "breaker" && b["state"] == "open")
            .cloned();
        alert.zip(breaker)
    })
    .await;
    let (alert, breaker) = received;
    assert_eq!(alert["dependency"], DEP, "{alert}");
    assert_eq!(alert["id"], alerts[0]["id"], "{alert}");
    assert_eq!(breaker["dependency"], DEP, "{breaker}");
    let at = chrono::DateTime::parse_from_rfc3339(breaker["at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        at <= opened_by,
        "the change kept is the one made before the stop: {breaker}"
    );
    app.stop().await;
}

/// The same for roll-ups: minutes the locked database does not take by the end of the
/// shutdown's flush are kept beside it, and the next start writes them before it warms the
/// windows from the database, which then holds every call taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minutes_a_locked_database_refuses_at_shutdown_are_written_by_the_next_start() {
    let app = spawn_app(vec![]).await;
    let spill = PathBuf::from(format!("{}-unsaved-rollups.jsonl", db_path(&app).display()));
    let calls = |n: usize, at: i64| -> Vec<Value> {
        (0..n).map(|_| event(DEP, 20.0, "ok", Some(at))).collect()
    };
    app.post_ok(&calls(50, app.now())).await;
    app.advance(MINUTE);
    eventually("the first minute is stored", DEADLINE, || async {
        stored_calls(&app).await == 50
    })
    .await;

    let fault = DbFault::locked(&app).await;
    // A minute that finishes under the fault and the one still running at the stop.
    app.post_ok(&calls(70, app.now())).await;
    app.advance(MINUTE);
    app.post_ok(&calls(30, app.now())).await;
    let (settings, clock, dir) = app.stop().await;
    assert!(
        spill.exists(),
        "shutdown kept the unwritten minutes in {}",
        spill.display()
    );
    fault.lift().await;

    let app = TestApp::resume(settings, clock, dir).await;
    assert!(!spill.exists(), "the start removed {}", spill.display());
    assert_eq!(stored_calls(&app).await, 150);
    let window = get_ok(&app, &format!("/v1/dependencies/{DEP}?window=15m")).await;
    assert_eq!(window["stats"]["total"], 150, "{window}");
    // Written once: a second restart neither finds a file nor counts a call twice.
    let app = app.restart().await;
    assert_eq!(stored_calls(&app).await, 150);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. A stop right after the start
// ---------------------------------------------------------------------------------------------

/// SIGTERM as soon as the daemon is ready, while its start-up reads (the anchors' day of
/// stored minutes) may still run: it exits 0, writes the calls it took, and logs neither a
/// warning nor an error (a reading cut short by the closing database once logged one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_the_start_is_clean_and_keeps_the_calls_taken() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[storage]\nflush_interval = \"60s\"\n";
    let d = Daemon::start_with(dir.path(), config, "first").await;
    let now = chrono::Utc::now().timestamp_millis();
    let r = d
        .client
        .post(d.url("/v1/events"))
        .header("content-type", "application/json")
        .body(batch("quick-stop", 50, Some(now - 1_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (exit, log) = d.terminate();
    assert!(exit.success(), "exit {exit}:\n{log}");
    assert!(log.contains("Flushed roll-ups."), "{log}");
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    // The next start finds the calls.
    let d = Daemon::start_with(dir.path(), config, "second").await;
    assert_eq!(total(&d, "quick-stop").await, 50);
}
