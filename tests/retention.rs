//! Retention of every table on a real SQLite file: rows past their retention go, recent ones
//! and those still in use (a firing alert, a pending notification, an active silence or
//! override) stay, and a table with more old rows than one batch is emptied batch by batch.
//!
//! The daemon runs with the default retentions and `prune_interval = 1s`; rows are written
//! straight into its database, with times relative to its (manual) clock.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::*;
use graywatch::storage::PRUNE_BATCH;
use sqlx::{Connection as _, SqliteConnection};

const DAY: i64 = 24 * HOUR;
const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(app: &TestApp) -> SqliteConnection {
    SqliteConnection::connect(&app.settings.database)
        .await
        .expect("a second connection to the database")
}

async fn strings(conn: &mut SqliteConnection, sql: &'static str) -> Vec<String> {
    let mut got: Vec<String> = sqlx::query_scalar(sql)
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    got.sort();
    got
}

async fn count(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn exec(conn: &mut SqliteConnection, sql: &str, binds: &[i64]) {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn alert(
    conn: &mut SqliteConnection,
    name: &str,
    state: &str,
    started: i64,
    resolved: Option<i64>,
) {
    let sql = format!(
        "INSERT INTO alerts (fingerprint, dependency, detector, severity, state, started_at_ms, \
         resolved_at_ms, summary, evidence, updated_at_ms) \
         VALUES ('{name}', 'dep', 'hard_failure', 'failing', '{state}', $1, $2, '{name}', '{{}}', $1)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(started)
        .bind(resolved)
        .execute(conn)
        .await
        .expect("insert an alert");
}

async fn notification(
    conn: &mut SqliteConnection,
    id: &str,
    alert: Option<&str>,
    status: &str,
    updated: i64,
) {
    let alert_id = match alert {
        Some(a) => format!("(SELECT id FROM alerts WHERE summary = '{a}')"),
        None => "NULL".into(),
    };
    let kind = if alert.is_some() { "firing" } else { "breaker" };
    exec(
        conn,
        &format!(
            "INSERT INTO notifications (id, alert_id, notifier, kind, payload, status, \
             next_attempt_ms, created_ms, updated_ms) \
             VALUES ('{id}', {alert_id}, 'gone', '{kind}', '{{}}', '{status}', $1, $1, $1)"
        ),
        &[updated],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_their_retention_go_in_batches_and_recent_or_live_ones_stay() {
    let app = spawn_quick(|s| {
        s.storage.flush_interval = Duration::from_secs(1);
        s.storage.prune_interval = Duration::from_secs(1);
    })
    .await;
    let now = app.now();
    let settings = &app.settings.storage;
    assert_eq!(settings.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(settings.alert_retention, Duration::from_secs(90 * 86_400));
    assert_eq!(
        settings.notification_retention,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(settings.silence_retention, Duration::from_secs(30 * 86_400));

    // A real roll-up row, written by the daemon, copied 8 days back (past the 7 d retention)
    // and 2 days back (within it).
    app.post_ok(&calls(50, "ok", now)).await;
    let mut conn = connect(&app).await;
    let conn = &mut conn;
    poll_until("a roll-up is written", DEADLINE, || async {
        app.advance(10 * SECOND);
        let n = count(&mut connect(&app).await, "SELECT COUNT(*) FROM rollups").await;
        (n > 0).then_some(())
    })
    .await;
    let now = app.now();
    let minute = count(conn, "SELECT MIN(minute_ms) FROM rollups").await;
    for (days, part) in [(8, 1001), (2, 1002)] {
        exec(
            conn,
            "INSERT INTO rollups SELECT dependency, kind, label, $1, node, $2, ok, error, \
             timeout, clamped, histogram FROM rollups WHERE minute_ms = $3 AND part = 0",
            &[minute - days * DAY, part, minute],
        )
        .await;
    }

    alert(
        conn,
        "resolved-long-ago",
        "resolved",
        now - 120 * DAY,
        Some(now - 100 * DAY),
    )
    .await;
    alert(
        conn,
        "resolved-lately",
        "resolved",
        now - 11 * DAY,
        Some(now - 10 * DAY),
    )
    .await;
    alert(conn, "firing-for-long", "firing", now - 200 * DAY, None).await;
    alert(
        conn,
        "old-with-pending",
        "resolved",
        now - 120 * DAY,
        Some(now - 100 * DAY),
    )
    .await;
    notification(
        conn,
        "n-of-old-alert",
        Some("resolved-long-ago"),
        "delivered",
        now - 100 * DAY,
    )
    .await;
    notification(
        conn,
        "n-pending-of-old-alert",
        Some("old-with-pending"),
        "pending",
        now - 100 * DAY,
    )
    .await;
    notification(conn, "n-recent-delivered", None, "delivered", now - 5 * DAY).await;
    notification(conn, "n-old-dead", None, "dead", now - 40 * DAY).await;
    notification(conn, "n-old-pending", None, "pending", now - 40 * DAY).await;
    // More old rows than one batch.
    let many = 2 * PRUNE_BATCH + 7;
    for i in 0..many {
        notification(
            conn,
            &format!("bulk-{i}"),
            None,
            "delivered",
            now - 31 * DAY,
        )
        .await;
    }

    let silence = |comment: &str, ends: i64, deleted: Option<i64>| {
        format!(
            "INSERT INTO silences (dependency, starts_ms, ends_ms, comment, created_by, \
             created_ms, deleted_ms) VALUES ('dep', {s}, {ends}, '{comment}', 't', {s}, {d})",
            s = now - 60 * DAY,
            d = deleted.map_or("NULL".into(), |d| d.to_string())
        )
    };
    for sql in [
        silence("ended-long-ago", now - 40 * DAY, None),
        silence("deleted-long-ago", now + DAY, Some(now - 40 * DAY)),
        silence("ended-lately", now - 5 * DAY, None),
        silence("active", now + DAY, None),
    ] {
        exec(conn, &sql, &[]).await;
    }
    let over = |reason: &str, expires: i64, removed: Option<i64>| {
        format!(
            "INSERT INTO breaker_overrides (dependency, state, reason, created_ms, expires_ms, \
             removed_ms) VALUES ('dep', 'open', '{reason}', {c}, {expires}, {r})",
            c = now - 60 * DAY,
            r = removed.map_or("NULL".into(), |r| r.to_string())
        )
    };
    for sql in [
        over("expired-long-ago", now - 40 * DAY, None),
        over("removed-long-ago", now + HOUR, Some(now - 40 * DAY)),
        over("expired-lately", now - 5 * DAY, None),
        over("active", now + HOUR, None),
    ] {
        exec(conn, &sql, &[]).await;
    }

    eventually("the old rows are pruned", DEADLINE, || async {
        count(
            &mut connect(&app).await,
            "SELECT COUNT(*) FROM notifications WHERE id LIKE 'bulk-%' OR id = 'n-old-dead'",
        )
        .await
            == 0
            && count(
                &mut connect(&app).await,
                "SELECT COUNT(*) FROM breaker_overrides",
            )
            .await
                == 2
    })
    .await;

    assert_eq!(
        strings(conn, "SELECT summary FROM alerts").await,
        ["firing-for-long", "old-with-pending", "resolved-lately"]
    );
    assert_eq!(
        strings(conn, "SELECT id FROM notifications").await,
        [
            "n-old-pending",
            "n-pending-of-old-alert",
            "n-recent-delivered"
        ]
    );
    assert_eq!(
        strings(conn, "SELECT comment FROM silences").await,
        ["active", "ended-lately"]
    );
    assert_eq!(
        strings(conn, "SELECT reason FROM breaker_overrides").await,
        ["active", "expired-lately"]
    );
    assert_eq!(
        count(conn, "SELECT COUNT(*) FROM rollups WHERE part = 1001").await,
        0,
        "the roll-up 8 days old is pruned"
    );
    assert!(
        count(conn, "SELECT COUNT(*) FROM rollups WHERE part = 1002").await > 0,
        "the roll-up 2 days old stays"
    );
    assert!(
        count(conn, "SELECT COUNT(*) FROM rollups WHERE part = 0").await > 0,
        "the current roll-ups stay"
    );
    assert_eq!(
        app.metric("graywatch_database_errors_total{operation=\"prune\"}")
            .await,
        0.0
    );
}
