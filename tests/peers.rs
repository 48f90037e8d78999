//! Receivers that fail the way they do in production, against real components: a real SMTP
//! server (Debian's `aiosmtpd`) stopped and started again, a TCP listener that accepts and never
//! answers, an SMTP server behind a link that delays every packet, and a webhook receiver that
//! answers late.
//!
//! Each test checks that a notification is delivered once the peer is back (at least once,
//! under one delivery id), that the other notifier, the breaker and `/healthz` are not delayed,
//! that retries reuse the outbox row instead of adding rows, and that an attempt ends at the
//! notifier's documented `timeout`.
//!
//! The daemon evaluates every 100 ms on a manual clock (`spawn_quick`); retries wait on that
//! clock (`max_backoff = 1s`), so tests move it while they poll. Notifier timeouts run on the
//! real clock.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Reply};
use common::smtp::{Smtp, free_port, header};
use common::*;
use graywatch::actions::notifier::NotifierConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(30);
const STEP_MS: i64 = 100;

async fn spawn_app(notifiers: Vec<NotifierConfig>) -> TestApp {
    spawn_quick(|s| {
        s.routing.max_backoff = Duration::from_secs(1);
        s.notifiers = notifiers;
    })
    .await
}

fn mail(port: u16, timeout: &str) -> NotifierConfig {
    toml::from_str(&format!(
        "name = \"mail\"\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         tls = \"none\"\nfrom = \"graywatch@example.com\"\nto = [\"oncall@example.com\"]\n\
         timeout = \"{timeout}\"\n"
    ))
    .expect("a valid email notifier")
}

fn webhook(url: &str, timeout: &str) -> NotifierConfig {
    toml::from_str(&format!(
        "name = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"
    ))
    .expect("a valid webhook notifier")
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Every outbox row of `notifier`.
async fn rows(app: &TestApp, notifier: &str) -> Vec<Value> {
    get_ok(app, &format!("/v1/notifications?notifier={notifier}")).await["notifications"]
        .as_array()
        .expect("a `notifications` array")
        .clone()
}

/// The firing notification to `notifier`, if listed.
async fn firing_row(app: &TestApp, notifier: &str) -> Option<Value> {
    rows(app, notifier)
        .await
        .into_iter()
        .find(|n| n["kind"] == "firing")
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

/// Makes [`DEP`] fail until its alert fires.
async fn fire(app: &TestApp) {
    drive_until(app, "an alert fires", async |app: &TestApp| {
        let body = get_ok(app, &format!("/v1/alerts?state=firing&dependency={DEP}")).await;
        body["alerts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
}

/// Drives the clock until the firing notification to `notifier` satisfies `pred`.
async fn drive_until_row(
    app: &TestApp,
    what: &str,
    notifier: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let pred = &pred;
    drive_until(app, what, async |app: &TestApp| {
        firing_row(app, notifier).await.filter(|n| pred(n))
    })
    .await
}

/// The healthy webhook got the firing notice, the breaker is open and `/healthz` answers
/// quickly, all within a few seconds while the mail peer misbehaves.
async fn others_are_not_delayed(app: &TestApp, hook: &Receiver) {
    let prompt = Duration::from_secs(5);
    let started = Instant::now();
    let row = poll_until("the webhook notification is delivered", prompt, || async {
        firing_row(app, "hook")
            .await
            .filter(|n| n["status"] == "delivered")
    })
    .await;
    assert_eq!(row["attempts"], json!(1), "{row}");
    assert!(hook.count() >= 1);
    let breaker = get_ok(app, &format!("/v1/breakers/{DEP}")).await["breakers"][0].clone();
    assert_eq!(breaker["state"], "open", "{breaker}");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let resp = app
            .client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("/healthz answers");
        assert_eq!(resp.status(), StatusCode::OK);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
    assert!(started.elapsed() < prompt, "took {:?}", started.elapsed());
}

/// Every message in the mailbox is one of `mail`'s outbox rows, and the firing row is there.
async fn mailbox_matches_outbox(app: &TestApp, smtp: &Smtp, firing_id: &str) {
    let ids: Vec<String> = rows(app, "mail")
        .await
        .iter()
        .map(|n| n["id"].as_str().expect("a delivery id").to_string())
        .collect();
    let messages = smtp.messages();
    let got: Vec<String> = messages
        .iter()
        .map(|m| header(m, "Message-ID").unwrap_or_else(|| panic!("a Message-ID in {m}")))
        .collect();
    assert!(
        got.contains(&format!("<{firing_id}@graywatch>")),
        "{got:?} holds the firing notification {firing_id}"
    );
    for id in &got {
        let bare = id.trim_matches(['<', '>']).trim_end_matches("@graywatch");
        assert!(
            ids.iter().any(|i| i == bare),
            "{id} is an outbox row: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_gets_the_mail_once_it_is_back_under_the_same_message_id() {
    let mut smtp = Smtp::stopped_on(free_port());
    let hook = Receiver::start(vec![]).await;
    let app = spawn_app(vec![mail(smtp.port, "2s"), webhook(&hook.url("/"), "2s")]).await;
    fire(&app).await;
    others_are_not_delayed(&app, &hook).await;

    let tried = drive_until_row(&app, "the mail is retried three times", "mail", |n| {
        n["attempts"].as_i64() >= Some(3)
    })
    .await;
    assert_eq!(tried["status"], "pending", "{tried}");
    let error = tried["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("SMTP"), "{tried}");
    // Retries reuse the row: the outbox does not grow with attempts.
    let firing: Vec<Value> = rows(&app, "mail")
        .await
        .into_iter()
        .filter(|n| n["kind"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{firing:?}");
    let id = tried["id"].as_str().unwrap().to_string();
    assert_eq!(firing[0]["id"], json!(id));

    smtp.start().await;
    let done = drive_until_row(&app, "the mail is delivered", "mail", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(done["id"], json!(id), "one delivery id over every attempt");
    assert!(
        done["attempts"].as_i64() > tried["attempts"].as_i64(),
        "{done}"
    );
    mailbox_matches_outbox(&app, &smtp, &id).await;
}

/// A listener that accepts connections and never writes a byte; it records how long each
/// connection stayed open before the client gave up.
struct Hanging {
    port: u16,
    held: Arc<parking_lot::Mutex<Vec<Duration>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hanging {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, a) = (held.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let h = h.clone();
                tokio::spawn(async move {
                    let opened = Instant::now();
                    let mut buf = [0u8; 1024];
                    // Reads until the client closes; answers nothing.
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                    h.lock().push(opened.elapsed());
                });
            }
        });
        Self {
            port,
            held,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_smtp_server_costs_each_attempt_its_timeout_and_delays_no_one() {
    let hanging = Hanging::start().await;
    let hook = Receiver::start(vec![]).await;
    let app = spawn_app(vec![
        mail(hanging.port, "1s"),
        webhook(&hook.url("/"), "2s"),
    ])
    .await;
    fire(&app).await;
    eventually("the mail server holds a connection", DEADLINE, || async {
        hanging.accepted() >= 1
    })
    .await;
    others_are_not_delayed(&app, &hook).await;

    let tried = drive_until_row(&app, "the mail is retried twice", "mail", |n| {
        n["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(tried["status"], "pending", "{tried}");
    let error = tried["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{tried}");
    // Each attempt ended at the notifier's timeout (1 s), not before and not much later
    // (scheduling on a loaded machine).
    eventually("the attempts' connections are closed", DEADLINE, || async {
        hanging.held.lock().len() >= 2
    })
    .await;
    for held in hanging.held.lock().iter() {
        assert!(
            *held >= Duration::from_millis(900) && *held < Duration::from_millis(1_800),
            "an attempt held its connection {held:?}"
        );
    }

    // The server comes back where the hanging one was.
    let port = hanging.port;
    drop(hanging);
    let mut smtp = Smtp::stopped_on(port);
    smtp.start().await;
    let done = drive_until_row(&app, "the mail is delivered", "mail", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(
        done["id"], tried["id"],
        "one delivery id over every attempt"
    );
    mailbox_matches_outbox(&app, &smtp, done["id"].as_str().unwrap()).await;
}

/// A TCP proxy to `target` that holds every chunk `delay` before passing it on, both ways.
async fn slow_link(target: u16, delay: Duration) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let chunks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = chunks.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ),
                (Box::new(sr) as _, Box::new(cw) as _),
            ] {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (port, chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peers_within_their_timeout_are_delivered_at_once_and_beyond_it_retried() {
    let mut smtp = Smtp::stopped_on(free_port());
    smtp.start().await;
    let (link, chunks) = slow_link(smtp.port, Duration::from_millis(150)).await;
    // The first answer comes after the webhook's timeout, the second in time.
    let hook = Receiver::start(vec![
        Reply::Slow(Duration::from_secs(3), 200),
        Reply::Slow(Duration::from_millis(300), 200),
    ])
    .await;
    let app = spawn_app(vec![mail(link, "10s"), webhook(&hook.url("/"), "1s")]).await;
    fire(&app).await;

    let started = Instant::now();
    let mailed = poll_until("the slow mail is delivered", DEADLINE, || async {
        firing_row(&app, "mail")
            .await
            .filter(|n| n["status"] == "delivered")
    })
    .await;
    assert_eq!(mailed["attempts"], json!(1), "slow but in time: {mailed}");
    assert!(
        chunks.load(std::sync::atomic::Ordering::SeqCst) >= 8,
        "the SMTP dialogue went through the slow link"
    );
    assert!(started.elapsed() < DEADLINE);
    mailbox_matches_outbox(&app, &smtp, mailed["id"].as_str().unwrap()).await;

    let hooked = drive_until_row(&app, "the webhook is delivered", "hook", |n| {
        n["status"] == "delivered"
    })
    .await;
    assert_eq!(
        hooked["attempts"],
        json!(2),
        "one late answer, one in time: {hooked}"
    );
    let requests = hook.requests();
    let firing: Vec<_> = requests
        .iter()
        .filter(|r| r.header("webhook-id") == hooked["id"].as_str())
        .collect();
    assert_eq!(
        firing.len(),
        2,
        "the late attempt and the retry, under one id"
    );
}
