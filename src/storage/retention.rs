//! Retention of every table: old rows go in small batches, each its own short transaction,
//! so the write lock is never held for long and detection, deliveries and roll-up flushes
//! get their turn between two batches.
//!
//! What goes, each by its own setting (`[storage]`):
//! - roll-ups of minutes older than `retention`;
//! - notifications in a final state (`delivered`, `failed`, `dead`, `suppressed`) last
//!   touched before `notification_retention`; a `pending` one is never deleted here (the
//!   retry horizon ends it first);
//! - resolved alerts resolved before `alert_retention`, with their remaining notifications,
//!   unless one of those is still pending; a firing alert is never deleted;
//! - silences that ended or were deleted, and breaker overrides that expired or were removed,
//!   before `silence_retention`.

use std::time::Duration;

use super::Storage;

/// Rows deleted per transaction.
pub const PRUNE_BATCH: i64 = 500;
/// Pause between two batches, so other writers can take the lock.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// The cut-off times of one pruning round, in event-time milliseconds (rows older go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBefore {
    pub rollups_ms: i64,
    pub notifications_ms: i64,
    pub alerts_ms: i64,
    pub silences_ms: i64,
}

/// How many rows of each table one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rollups: u64,
    pub notifications: u64,
    pub alerts: u64,
    pub silences: u64,
    pub overrides: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.rollups + self.notifications + self.alerts + self.silences + self.overrides
    }
}

const ROLLUPS: &str = "DELETE FROM rollups WHERE (dependency, kind, label, minute_ms, node, part) IN \
     (SELECT dependency, kind, label, minute_ms, node, part FROM rollups \
      WHERE minute_ms < $1 LIMIT $2)";
const NOTIFICATIONS: &str = "DELETE FROM notifications WHERE id IN \
     (SELECT id FROM notifications WHERE status <> 'pending' AND updated_ms < $1 LIMIT $2)";
/// Resolved alerts old enough, none of whose notifications is pending (a macro, so that the
/// two statements using it stay `'static` strings).
macro_rules! old_alerts {
    () => {
        "SELECT id FROM alerts a WHERE a.state = 'resolved' \
         AND a.resolved_at_ms < $1 AND NOT EXISTS \
         (SELECT 1 FROM notifications n WHERE n.alert_id = a.id AND n.status = 'pending') \
         ORDER BY a.id LIMIT $2"
    };
}
const ALERT_NOTIFICATIONS: &str = concat!(
    "DELETE FROM notifications WHERE alert_id IN (",
    old_alerts!(),
    ")"
);
const ALERTS: &str = concat!("DELETE FROM alerts WHERE id IN (", old_alerts!(), ")");
const SILENCES: &str = "DELETE FROM silences WHERE id IN (SELECT id FROM silences \
     WHERE ends_ms < $1 OR deleted_ms < $1 LIMIT $2)";
const OVERRIDES: &str = "DELETE FROM breaker_overrides WHERE id IN (SELECT id FROM breaker_overrides \
     WHERE expires_ms < $1 OR removed_ms < $1 LIMIT $2)";

impl Storage {
    /// Deletes what is older than `before`, batch by batch; stops at the first error (the
    /// rows deleted so far stay deleted, the next round goes on from there).
    pub async fn prune(&self, before: PruneBefore) -> sqlx::Result<Pruned> {
        let mut pruned = Pruned {
            rollups: self.prune_batches(ROLLUPS, before.rollups_ms).await?,
            notifications: self
                .prune_batches(NOTIFICATIONS, before.notifications_ms)
                .await?,
            ..Pruned::default()
        };
        loop {
            let n = self.prune_alert_batch(before.alerts_ms).await?;
            pruned.alerts += n.0;
            pruned.notifications += n.1;
            if n.0 < PRUNE_BATCH as u64 {
                break;
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        pruned.silences = self.prune_batches(SILENCES, before.silences_ms).await?;
        pruned.overrides = self.prune_batches(OVERRIDES, before.silences_ms).await?;
        Ok(pruned)
    }

    async fn prune_batches(&self, sql: &'static str, before_ms: i64) -> sqlx::Result<u64> {
        let mut total = 0;
        loop {
            let done = sqlx::query(sql)
                .bind(before_ms)
                .bind(PRUNE_BATCH)
                .execute(&self.writer)
                .await?
                .rows_affected();
            total += done;
            if done < PRUNE_BATCH as u64 {
                return Ok(total);
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
    }

    /// One batch of old alerts and their notifications, in one transaction (a notification
    /// refers to its alert). Returns (alerts, notifications) deleted.
    async fn prune_alert_batch(&self, before_ms: i64) -> sqlx::Result<(u64, u64)> {
        let done = self.prune_alert_batch_in_one(before_ms).await;
        if done.is_err() {
            self.writes.discard_writer();
        }
        done
    }

    async fn prune_alert_batch_in_one(&self, before_ms: i64) -> sqlx::Result<(u64, u64)> {
        let mut tx = self.writer.begin().await?;
        let notifications = sqlx::query(ALERT_NOTIFICATIONS)
            .bind(before_ms)
            .bind(PRUNE_BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let alerts = sqlx::query(ALERTS)
            .bind(before_ms)
            .bind(PRUNE_BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((alerts, notifications))
    }
}
