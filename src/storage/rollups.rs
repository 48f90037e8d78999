//! Per-minute roll-ups of series.

use sqlx::Row;

use super::Storage;
use crate::window::{Counts, SeriesKey, SeriesKind};

/// One stored roll-up row.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub key: SeriesKey,
    pub minute_ms: i64,
    pub node: String,
    /// 0 for the node's main row of the minute; otherwise a late-data part.
    pub part: i64,
    pub counts: Counts,
    /// HdrHistogram V2 compressed encoding of the successful calls' durations (`counts.ok`
    /// calls). Rows written by versions that timed every call hold more; readers take the
    /// histogram's own count as the denominator of a latency share, so such a minute stays
    /// consistent, its failures timed, until it ages out.
    pub histogram: Vec<u8>,
}

/// The column list, as a macro so that queries stay `&'static str` (sqlx refuses built SQL).
macro_rules! columns {
    () => {
        "dependency, kind, label, minute_ms, node, part, ok, error, timeout, clamped, histogram"
    };
}

impl Storage {
    /// Writes roll-ups in one transaction. A main row replaces the stored one and supersedes
    /// the node's late parts for that minute (the in-memory minute it came from holds them).
    pub async fn write_rollups(&self, rows: &[RollupRow]) -> sqlx::Result<()> {
        let done = self.write_rollups_unnoted(rows).await;
        self.writes.note(&done);
        done
    }

    async fn write_rollups_unnoted(&self, rows: &[RollupRow]) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        for r in rows {
            if r.part == 0 {
                sqlx::query(
                    "DELETE FROM rollups WHERE dependency = $1 AND kind = $2 AND label = $3 \
                     AND minute_ms = $4 AND node = $5 AND part <> 0",
                )
                .bind(&r.key.dependency)
                .bind(r.key.kind.as_str())
                .bind(&r.key.label)
                .bind(r.minute_ms)
                .bind(&r.node)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(concat!(
                "INSERT INTO rollups (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (dependency, kind, label, minute_ms, node, part) DO UPDATE SET \
                 ok = excluded.ok, error = excluded.error, timeout = excluded.timeout, \
                 clamped = excluded.clamped, histogram = excluded.histogram"
            ))
            .bind(&r.key.dependency)
            .bind(r.key.kind.as_str())
            .bind(&r.key.label)
            .bind(r.minute_ms)
            .bind(&r.node)
            .bind(r.part)
            .bind(r.counts.ok as i64)
            .bind(r.counts.error as i64)
            .bind(r.counts.timeout as i64)
            .bind(r.counts.clamped as i64)
            .bind(&r.histogram)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// This node's roll-ups from `since_ms` on (to warm the windows at start-up).
    pub async fn node_rollups_since(
        &self,
        node: &str,
        since_ms: i64,
    ) -> sqlx::Result<Vec<RollupRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM rollups WHERE node = $1 AND minute_ms >= $2 ORDER BY minute_ms"
        ))
        .bind(node)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    /// Roll-ups of one series for minutes in `[from_ms, to_ms)`, all nodes and parts.
    pub async fn series_rollups(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> sqlx::Result<Vec<RollupRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM rollups WHERE dependency = $1 AND kind = $2 AND label = $3 \
             AND minute_ms >= $4 AND minute_ms < $5 ORDER BY minute_ms"
        ))
        .bind(&key.dependency)
        .bind(key.kind.as_str())
        .bind(&key.label)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_row).collect()
    }

    /// Whether any roll-up of the dependency exists (for 404s on history queries).
    pub async fn has_dependency(&self, dependency: &str) -> sqlx::Result<bool> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM rollups WHERE dependency = $1 LIMIT 1")
                .bind(dependency)
                .fetch_optional(&self.pool)
                .await?;
        Ok(n.is_some())
    }

    /// Highest late-part number this node has stored (0 when none).
    pub async fn max_part(&self, node: &str) -> sqlx::Result<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(part) FROM rollups WHERE node = $1")
            .bind(node)
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }
}

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<RollupRow> {
    let kind: String = row.try_get("kind")?;
    let kind = SeriesKind::parse(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "kind".into(),
        source: format!("unknown series kind {kind:?}").into(),
    })?;
    let n = |c: &str| row.try_get::<i64, _>(c).map(|v| v.max(0) as u64);
    Ok(RollupRow {
        key: SeriesKey {
            dependency: row.try_get("dependency")?,
            kind,
            label: row.try_get("label")?,
        },
        minute_ms: row.try_get("minute_ms")?,
        node: row.try_get("node")?,
        part: row.try_get("part")?,
        counts: Counts {
            ok: n("ok")?,
            error: n("error")?,
            timeout: n("timeout")?,
            clamped: n("clamped")?,
        },
        histogram: row.try_get("histogram")?,
    })
}
