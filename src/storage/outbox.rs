//! The notification outbox and silences.

use serde::Serialize;
use sqlx::Row;

use super::Storage;
use crate::metrics::NotificationCount;

/// A notification to insert with an alert transition (or on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub id: String,
    pub notifier: String,
    pub kind: &'static str,
    pub payload: serde_json::Value,
}

/// A row of the outbox, as the API and the workers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<i64>,
    pub notifier: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(skip)]
    pub payload: serde_json::Value,
    #[serde(skip)]
    pub created_ms: i64,
    /// Start of the retry horizon (`None` until the first real attempt).
    #[serde(skip)]
    pub horizon_start_ms: Option<i64>,
}

/// How a delivery attempt ended, for [`Storage::finish_attempt`].
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Retry at the given time.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Not sent now, not an attempt (silenced): look again at the given time.
    Postpone {
        at_ms: i64,
        reason: String,
    },
    /// Permanent failure (not retried).
    Failed {
        error: String,
    },
    /// Past the retry horizon.
    Dead {
        error: String,
    },
    /// Not to be sent at all (silenced alert that resolved meanwhile).
    Suppressed {
        reason: String,
    },
}

/// A manual breaker override as recorded: who set it (a token's name) and until when.
pub struct NewOverride<'a> {
    pub dependency: &'a str,
    pub instance: Option<&'a str>,
    /// `open` or `closed`.
    pub state: &'a str,
    pub reason: &'a str,
    pub expires_ms: i64,
    pub created_by: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_ms: i64,
}

impl Silence {
    /// Whether the silence mutes an alert with these labels at `now_ms`. A matcher that is
    /// not set matches anything.
    pub fn mutes(
        &self,
        dependency: &str,
        (instance, zone, source): (Option<&str>, Option<&str>, Option<&str>),
        detector: &str,
        now_ms: i64,
    ) -> bool {
        let eq = |m: &Option<String>, v: Option<&str>| m.as_deref().is_none_or(|m| Some(m) == v);
        now_ms >= self.starts_ms
            && now_ms < self.ends_ms
            && eq(&self.dependency, Some(dependency))
            && eq(&self.instance, instance)
            && eq(&self.zone, zone)
            && eq(&self.source, source)
            && eq(&self.detector, Some(detector))
    }
}

macro_rules! notification_columns {
    () => {
        "id, alert_id, notifier, kind, payload, status, attempts, next_attempt_ms, last_error, \
         created_ms, delivered_ms, horizon_start_ms"
    };
}

/// A delivery worker's next rows, from `notifications_due`.
pub(super) const DUE_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE notifier = $1 AND status = 'pending' AND next_attempt_ms <= $2 \
     ORDER BY next_attempt_ms, created_ms LIMIT $3"
);

/// `GET /v1/notifications`: newest first, read in that order from `notifications_by_creation`.
pub(super) const LIST_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE ($1 IS NULL OR alert_id = $1) AND ($2 IS NULL OR status = $2) \
     AND ($3 IS NULL OR notifier = $3) ORDER BY created_ms DESC, id LIMIT $4"
);

/// `GET /v1/silences` and the delivery workers: in start order, from `silences_by_start`.
pub(super) const LIST_SILENCES: &str = "SELECT id, dependency, instance, zone, source, detector, starts_ms, \
     ends_ms, comment, created_by, created_ms FROM silences \
     WHERE deleted_ms IS NULL AND ends_ms > $1 ORDER BY starts_ms, id";

/// Overrides in force, oldest first, from `overrides_by_creation`.
pub(super) const ACTIVE_OVERRIDES: &str = "SELECT dependency, instance, state, reason, expires_ms \
     FROM breaker_overrides WHERE removed_ms IS NULL AND expires_ms > $1 ORDER BY created_ms";

impl Storage {
    /// Inserts notifications (outside an alert transition: breaker changes, re-notifications).
    pub async fn enqueue(
        &self,
        alert_id: Option<i64>,
        rows: &[NewNotification],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let done = self.enqueue_unnoted(alert_id, rows, now_ms).await;
        self.writes.note(&done);
        done
    }

    async fn enqueue_unnoted(
        &self,
        alert_id: Option<i64>,
        rows: &[NewNotification],
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        for n in rows {
            insert_notification(&mut tx, alert_id, n, now_ms).await?;
        }
        tx.commit().await
    }

    /// Pending notifications of `notifier` due at `now_ms`, oldest first.
    pub async fn due_notifications(
        &self,
        notifier: &str,
        now_ms: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<NotificationRecord>> {
        let rows = sqlx::query(DUE_NOTIFICATIONS)
            .bind(notifier)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_notification).collect()
    }

    /// Earliest next attempt among `notifier`'s pending notifications.
    pub async fn next_due_ms(&self, notifier: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM notifications WHERE notifier = $1 AND status = 'pending'",
        )
        .bind(notifier)
        .fetch_one(&self.pool)
        .await
    }

    /// Records how an attempt ended.
    pub async fn finish_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let done = self.finish_attempt_unnoted(id, outcome, now_ms).await;
        self.writes.note(&done);
        done
    }

    async fn finish_attempt_unnoted(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        // `counts`: a request was made. `clear`: forget the last error (delivered). A postponement
        // (silence) restarts the retry horizon, so time spent silenced never dead-letters.
        type Update<'e> = (
            &'static str,
            Option<i64>,
            Option<&'e str>,
            bool,
            Option<i64>,
            bool,
        );
        let (status, next, error, counts, delivered, clear): Update = match outcome {
            AttemptOutcome::Delivered => ("delivered", None, None, true, Some(now_ms), true),
            AttemptOutcome::Retry { at_ms, error } => {
                ("pending", Some(*at_ms), Some(error), true, None, false)
            }
            AttemptOutcome::Postpone { at_ms, reason } => {
                ("pending", Some(*at_ms), Some(reason), false, None, false)
            }
            AttemptOutcome::Failed { error } => ("failed", None, Some(error), true, None, false),
            AttemptOutcome::Dead { error } => ("dead", None, Some(error), false, None, false),
            AttemptOutcome::Suppressed { reason } => {
                ("suppressed", None, Some(reason), false, None, false)
            }
        };
        let postponed = matches!(outcome, AttemptOutcome::Postpone { .. });
        sqlx::query(
            "UPDATE notifications SET status = $1, next_attempt_ms = COALESCE($2, next_attempt_ms), \
             last_error = CASE WHEN $8 THEN NULL ELSE COALESCE($3, last_error) END, \
             attempts = attempts + $4, delivered_ms = COALESCE($5, delivered_ms), updated_ms = $6, \
             horizon_start_ms = CASE WHEN $9 THEN NULL WHEN $4 = 1 THEN COALESCE(horizon_start_ms, $6) \
             ELSE horizon_start_ms END WHERE id = $7",
        )
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(i64::from(counts))
        .bind(delivered)
        .bind(now_ms)
        .bind(id)
        .bind(clear)
        .bind(postponed)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Outbox rows by notifier and status (for `GET /metrics`): one pass over the table's
    /// `(notifier, status, ...)` index.
    pub async fn notification_counts(&self) -> sqlx::Result<Vec<NotificationCount>> {
        let rows = sqlx::query(
            "SELECT notifier, status, COUNT(*) AS n FROM notifications GROUP BY notifier, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NotificationCount {
                    notifier: r.try_get("notifier")?,
                    status: r.try_get("status")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    pub async fn list_notifications(
        &self,
        alert_id: Option<i64>,
        status: Option<&str>,
        notifier: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<NotificationRecord>> {
        let rows = sqlx::query(LIST_NOTIFICATIONS)
            .bind(alert_id)
            .bind(status)
            .bind(notifier)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_notification).collect()
    }

    /// The status of the latest firing-type notification of an alert to a notifier.
    pub async fn firing_notice_status(
        &self,
        alert_id: i64,
        notifier: &str,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT status FROM notifications WHERE alert_id = $1 AND notifier = $2 \
             AND kind IN ('firing', 'updated', 'renotify') ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(alert_id)
        .bind(notifier)
        .fetch_optional(&self.pool)
        .await
    }

    /// The latest firing-type notification of an alert to a notifier: status and next attempt.
    pub async fn firing_notice(
        &self,
        alert_id: i64,
        notifier: &str,
    ) -> sqlx::Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT status, next_attempt_ms FROM notifications WHERE alert_id = $1 AND notifier = $2 \
             AND kind IN ('firing', 'updated', 'renotify') ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(alert_id)
        .bind(notifier)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("status")?, r.try_get("next_attempt_ms")?)))
            .transpose()
    }

    /// Makes notifications postponed by silence `id` due now (the silence was deleted).
    pub async fn release_silenced(&self, id: i64, now_ms: i64) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "UPDATE notifications SET next_attempt_ms = $1, updated_ms = $1 WHERE status = 'pending' \
             AND last_error LIKE $2",
        )
        .bind(now_ms)
        .bind(format!("silenced by silence {id} %"))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// When the alert last had a firing-type notification created for `notifier`.
    pub async fn last_firing_notice_ms(
        &self,
        alert_id: i64,
        notifier: &str,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT MAX(created_ms) FROM notifications WHERE alert_id = $1 AND notifier = $2 \
             AND kind IN ('firing', 'updated', 'renotify')",
        )
        .bind(alert_id)
        .bind(notifier)
        .fetch_one(&self.pool)
        .await
    }

    pub async fn alert_state(&self, alert_id: i64) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT state FROM alerts WHERE id = $1")
            .bind(alert_id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn create_silence(&self, s: &Silence) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO silences (dependency, instance, zone, source, detector, starts_ms, ends_ms, \
             comment, created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             RETURNING id",
        )
        .bind(&s.dependency)
        .bind(&s.instance)
        .bind(&s.zone)
        .bind(&s.source)
        .bind(&s.detector)
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(s.created_ms)
        .fetch_one(&self.writer)
        .await
    }

    /// Silences not deleted and not yet ended at `now_ms` (including future ones).
    pub async fn silences(&self, now_ms: i64) -> sqlx::Result<Vec<Silence>> {
        let rows = sqlx::query(LIST_SILENCES)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    id: r.try_get("id")?,
                    dependency: r.try_get("dependency")?,
                    instance: r.try_get("instance")?,
                    zone: r.try_get("zone")?,
                    source: r.try_get("source")?,
                    detector: r.try_get("detector")?,
                    starts_ms: r.try_get("starts_ms")?,
                    ends_ms: r.try_get("ends_ms")?,
                    comment: r.try_get("comment")?,
                    created_by: r.try_get("created_by")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// Ends a silence; false when there is no such active silence.
    pub async fn delete_silence(&self, id: i64, now_ms: i64) -> sqlx::Result<bool> {
        let done =
            sqlx::query("UPDATE silences SET deleted_ms = $1 WHERE id = $2 AND deleted_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn record_override(&self, o: &NewOverride<'_>, now_ms: i64) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO breaker_overrides (dependency, instance, state, reason, created_ms, expires_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(o.dependency)
        .bind(o.instance)
        .bind(o.state)
        .bind(o.reason)
        .bind(now_ms)
        .bind(o.expires_ms)
        .bind(o.created_by)
        .fetch_one(&self.writer)
        .await
    }

    pub async fn remove_overrides(
        &self,
        dependency: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "UPDATE breaker_overrides SET removed_ms = $1 WHERE dependency = $2 \
             AND (instance IS $3) AND removed_ms IS NULL AND expires_ms > $1",
        )
        .bind(now_ms)
        .bind(dependency)
        .bind(instance)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Overrides still in force (to restore the breaker board at start-up).
    pub async fn active_overrides(
        &self,
        now_ms: i64,
    ) -> sqlx::Result<Vec<(String, Option<String>, String, String, i64)>> {
        let rows = sqlx::query(ACTIVE_OVERRIDES)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("dependency")?,
                    r.try_get("instance")?,
                    r.try_get("state")?,
                    r.try_get("reason")?,
                    r.try_get("expires_ms")?,
                ))
            })
            .collect()
    }
}

pub(super) async fn insert_notification(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    alert_id: Option<i64>,
    n: &NewNotification,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, alert_id, notifier, kind, payload, status, next_attempt_ms, \
         created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&n.id)
    .bind(alert_id)
    .bind(&n.notifier)
    .bind(n.kind)
    .bind(n.payload.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn decode_notification(r: &sqlx::sqlite::SqliteRow) -> sqlx::Result<NotificationRecord> {
    let t = crate::time::to_rfc3339;
    let payload: String = r.try_get("payload")?;
    let created_ms: i64 = r.try_get("created_ms")?;
    Ok(NotificationRecord {
        id: r.try_get("id")?,
        alert_id: r.try_get("alert_id")?,
        notifier: r.try_get("notifier")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: t(r.try_get("next_attempt_ms")?),
        last_error: r.try_get("last_error")?,
        created_at: t(created_ms),
        delivered_at: r.try_get::<Option<i64>, _>("delivered_ms")?.map(t),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        created_ms,
        horizon_start_ms: r.try_get("horizon_start_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::Silence;

    fn silence(source: Option<&str>, instance: Option<&str>) -> Silence {
        Silence {
            id: 1,
            dependency: Some("ledger".into()),
            instance: instance.map(String::from),
            zone: None,
            source: source.map(String::from),
            detector: None,
            starts_ms: 0,
            ends_ms: 10,
            comment: "c".into(),
            created_by: "t".into(),
            created_ms: 0,
        }
    }

    #[test]
    fn a_silence_of_one_caller_mutes_that_caller_s_alerts_only() {
        let caller = |c: &'static str| (None, None, Some(c));
        let s = silence(Some("billing-batch"), None);
        assert!(s.mutes("ledger", caller("billing-batch"), "peer_errors", 5));
        assert!(!s.mutes("ledger", caller("checkout"), "peer_errors", 5));
        assert!(!s.mutes("ledger", (None, None, None), "error_rate", 5));
        // Without a source matcher, a dependency's silence mutes its callers' alerts too;
        // an instance's does not.
        assert!(silence(None, None).mutes("ledger", caller("checkout"), "peer_errors", 5));
        assert!(!silence(None, Some("i-1")).mutes("ledger", caller("checkout"), "peer_errors", 5));
    }
}
