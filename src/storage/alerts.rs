//! The alert log: one row per alert occurrence.

use serde::Serialize;
use sqlx::Row;

use super::{NewNotification, Storage};
use crate::detect::{AlertStatus, Transition};

/// An alert as stored and served by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub fingerprint: String,
    pub dependency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The caller the alert is localized to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The detector that names the alert (its most severe condition).
    pub detector: String,
    /// Every detector that saw the incident while it was open, `detector` first.
    pub detectors: Vec<String>,
    pub severity: String,
    pub state: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub updated_at: String,
    #[serde(skip)]
    pub started_at_ms: i64,
    #[serde(skip)]
    pub resolved_at_ms: Option<i64>,
}

impl AlertRecord {
    /// Every detector of the alert, the naming one first (rows written before `detectors`
    /// existed may lack it).
    pub fn all_detectors(&self) -> Vec<String> {
        let mut detectors = self.detectors.clone();
        if !detectors.contains(&self.detector) {
            detectors.insert(0, self.detector.clone());
        }
        detectors
    }
}

/// Filters of `GET /v1/alerts`.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub state: Option<AlertStatus>,
    pub dependency: Option<String>,
    pub limit: i64,
}

macro_rules! alert_columns {
    () => {
        "id, fingerprint, dependency, instance, zone, source, detector, detectors, severity, state, \
         started_at_ms, resolved_at_ms, summary, evidence, updated_at_ms"
    };
}

/// `GET /v1/alerts`: newest first, read in that order from `alerts_by_start`.
pub(super) const LIST_ALERTS: &str = concat!(
    "SELECT ",
    alert_columns!(),
    " FROM alerts WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR dependency = $2) \
     ORDER BY started_at_ms DESC, id DESC LIMIT $3"
);

impl Storage {
    /// Records transitions in one transaction: a firing creates the alert, an update changes
    /// its detectors, severity and evidence in place, a resolve closes it. Returns the alert ids, in the order of `transitions`.
    /// `plan` names the notifications each transition causes (given its alert id); they are
    /// written in the same transaction, so a crash can lose neither without the other.
    /// Returns the notifiers that got a notification.
    pub async fn record_transitions(
        &self,
        transitions: &[Transition],
        now_ms: i64,
        plan: &(dyn Fn(&Transition, i64) -> Vec<NewNotification> + Sync),
    ) -> sqlx::Result<Vec<String>> {
        let done = self
            .record_transitions_unnoted(transitions, now_ms, plan)
            .await;
        self.writes.note(&done);
        done
    }

    async fn record_transitions_unnoted(
        &self,
        transitions: &[Transition],
        now_ms: i64,
        plan: &(dyn Fn(&Transition, i64) -> Vec<NewNotification> + Sync),
    ) -> sqlx::Result<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        let mut ids = Vec::with_capacity(transitions.len());
        for t in transitions {
            let fingerprint = t.fingerprint();
            let detectors =
                serde_json::to_string(&t.detectors.iter().map(|d| d.as_str()).collect::<Vec<_>>())
                    .unwrap_or_else(|_| "[]".into());
            match t.status {
                AlertStatus::Firing => {
                    sqlx::query(
                        "INSERT INTO alerts (fingerprint, dependency, instance, zone, source, detector, \
                         detectors, severity, state, started_at_ms, summary, evidence, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'firing', $9, $10, $11, $12) \
                         ON CONFLICT (fingerprint, started_at_ms) DO NOTHING",
                    )
                    .bind(&fingerprint)
                    .bind(&t.dependency)
                    .bind(&t.instance)
                    .bind(&t.zone)
                    .bind(&t.source)
                    .bind(t.detector.as_str())
                    .bind(&detectors)
                    .bind(t.severity.as_str())
                    .bind(t.started_ms)
                    .bind(&t.summary)
                    .bind(t.evidence.to_string())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                AlertStatus::Updated => {
                    sqlx::query(
                        "UPDATE alerts SET detector = $1, detectors = $2, severity = $3, summary = $4, \
                         evidence = $5, updated_at_ms = $6 \
                         WHERE fingerprint = $7 AND started_at_ms = $8 AND state = 'firing'",
                    )
                    .bind(t.detector.as_str())
                    .bind(&detectors)
                    .bind(t.severity.as_str())
                    .bind(&t.summary)
                    .bind(t.evidence.to_string())
                    .bind(now_ms)
                    .bind(&fingerprint)
                    .bind(t.started_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                AlertStatus::Resolved => {
                    sqlx::query(
                        "UPDATE alerts SET state = 'resolved', resolved_at_ms = $1, updated_at_ms = $2 \
                         WHERE fingerprint = $3 AND started_at_ms = $4",
                    )
                    .bind(t.resolved_ms.unwrap_or(t.at_ms))
                    .bind(now_ms)
                    .bind(&fingerprint)
                    .bind(t.started_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM alerts WHERE fingerprint = $1 AND started_at_ms = $2",
            )
            .bind(&fingerprint)
            .bind(t.started_ms)
            .fetch_optional(&mut *tx)
            .await?;
            // A resolve whose firing row never made it (dropped after a long database outage)
            // has nothing to update; it must not block the transitions behind it.
            let Some(id) = id else {
                tracing::warn!(%fingerprint, status = t.status.as_str(), "Alert not found; skipping its transition.");
                continue;
            };
            for n in plan(t, id) {
                super::outbox::insert_notification(&mut tx, Some(id), &n, now_ms).await?;
                ids.push(n.notifier);
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn list_alerts(&self, f: &AlertFilter) -> sqlx::Result<Vec<AlertRecord>> {
        let rows = sqlx::query(LIST_ALERTS)
            .bind(f.state.map(|s| s.as_str()))
            .bind(&f.dependency)
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_alert).collect()
    }

    pub async fn get_alert(&self, id: i64) -> sqlx::Result<Option<AlertRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_alert).transpose()
    }

    /// Alerts resolved at or after `since_ms` (to restore the detection state at start-up).
    pub async fn resolved_alerts_since(&self, since_ms: i64) -> sqlx::Result<Vec<AlertRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE state = 'resolved' AND resolved_at_ms >= $1 \
             ORDER BY resolved_at_ms"
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_alert).collect()
    }

    /// Alerts still firing (to restore the detection state at start-up).
    pub async fn firing_alerts(&self) -> sqlx::Result<Vec<AlertRecord>> {
        self.list_alerts(&AlertFilter {
            state: Some(AlertStatus::Firing),
            dependency: None,
            limit: i64::MAX,
        })
        .await
    }
}

fn decode_alert(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<AlertRecord> {
    let t = |ms: i64| crate::time::to_rfc3339(ms);
    let evidence: String = row.try_get("evidence")?;
    let started_at_ms: i64 = row.try_get("started_at_ms")?;
    Ok(AlertRecord {
        id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        dependency: row.try_get("dependency")?,
        instance: row.try_get("instance")?,
        zone: row.try_get("zone")?,
        source: row.try_get("source")?,
        detector: row.try_get("detector")?,
        detectors: serde_json::from_str(&row.try_get::<String, _>("detectors")?)
            .unwrap_or_default(),
        severity: row.try_get("severity")?,
        state: row.try_get("state")?,
        started_at: t(started_at_ms),
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at_ms")?.map(t),
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        summary: row.try_get("summary")?,
        evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::String(evidence)),
        updated_at: t(row.try_get("updated_at_ms")?),
        started_at_ms,
    })
}
