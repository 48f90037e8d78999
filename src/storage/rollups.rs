//! Per-minute roll-ups of series.

use sqlx::{QueryBuilder, Row, Sqlite};
use tokio_stream::{Stream, StreamExt};

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
    /// HdrHistogram V2 encoding (plain or deflated) of the successful calls' durations
    /// (`counts.ok` calls). Rows written by versions that timed every call hold more; readers
    /// take the histogram's own count as the denominator of a latency share, so such a minute
    /// stays consistent, its failures timed, until it ages out.
    pub histogram: Vec<u8>,
}

/// The column list, as a macro so that queries stay `&'static str` (sqlx refuses built SQL).
macro_rules! columns {
    () => {
        "dependency, kind, label, minute_ms, node, part, ok, error, timeout, clamped, histogram"
    };
}

/// Rows per statement. Each binds 11 values (5 in the DELETE), far under SQLite's limit of
/// 32,766; statements of many rows spare the per-statement round trip through the driver,
/// which dominated when every row was two statements of its own.
const ROWS_PER_STATEMENT: usize = 400;

impl Storage {
    /// Writes roll-ups in one transaction. A main row replaces the stored one and supersedes
    /// the node's late parts for that minute (the in-memory minute it came from holds them),
    /// so a late part of a minute must come after that minute's main row in `rows`.
    pub async fn write_rollups(&self, rows: &[RollupRow]) -> sqlx::Result<()> {
        let done = self.write_rollups_unnoted(rows).await;
        self.writes.note(&done);
        done
    }

    async fn write_rollups_unnoted(&self, rows: &[RollupRow]) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        // Statements follow the rows' order, each holding a run of main rows or a run of
        // parts, so that a part is never removed by the main row written before it.
        for run in rows.chunk_by(|a, b| (a.part == 0) == (b.part == 0)) {
            for chunk in run.chunks(ROWS_PER_STATEMENT) {
                if chunk[0].part == 0 {
                    delete_parts_of(chunk).build().execute(&mut *tx).await?;
                }
                upsert(chunk).build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await
    }

    /// This node's roll-ups for minutes in `[from_ms, to_ms)`, in minute order, as the database
    /// reads them: start-up warms the windows from them without holding an hour of rows at
    /// once, asking a minute at a time so that each statement stays short (sqlx times a
    /// streamed statement until its last row is read, and logs a slow one).
    pub fn node_rollups_between<'a>(
        &'a self,
        node: &'a str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Stream<Item = sqlx::Result<RollupRow>> + Send + 'a {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM rollups WHERE node = $1 AND minute_ms >= $2 AND minute_ms < $3 \
             ORDER BY minute_ms"
        ))
        .bind(node)
        .bind(from_ms)
        .bind(to_ms)
        .fetch(&self.pool)
        .map(|row| row.and_then(|row| decode_row(&row)))
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

/// Removes the node's late parts of the minutes of `mains` (main rows). The keys are joined
/// to the table's primary key row by row: SQLite plans `(...) IN (VALUES ...)` as a scan of
/// the whole table, and this join as one index search per key. (`rowid` is SQLite's; a
/// PostgreSQL backend would say `DELETE ... USING (VALUES ...)`.)
fn delete_parts_of(mains: &[RollupRow]) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::new("DELETE FROM rollups WHERE rowid IN (SELECT r.rowid FROM (");
    q.push_values(mains, |mut v, r| {
        v.push_bind(&r.key.dependency)
            .push_bind(r.key.kind.as_str())
            .push_bind(&r.key.label)
            .push_bind(r.minute_ms)
            .push_bind(&r.node);
    });
    q.push(
        ") AS k CROSS JOIN rollups AS r ON r.dependency = k.column1 AND r.kind = k.column2 \
         AND r.label = k.column3 AND r.minute_ms = k.column4 AND r.node = k.column5 \
         AND r.part <> 0)",
    );
    q
}

/// Inserts `rows`, replacing stored rows of the same key.
fn upsert(rows: &[RollupRow]) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::new(concat!("INSERT INTO rollups (", columns!(), ") "));
    q.push_values(rows, |mut v, r| {
        v.push_bind(&r.key.dependency)
            .push_bind(r.key.kind.as_str())
            .push_bind(&r.key.label)
            .push_bind(r.minute_ms)
            .push_bind(&r.node)
            .push_bind(r.part)
            .push_bind(r.counts.ok as i64)
            .push_bind(r.counts.error as i64)
            .push_bind(r.counts.timeout as i64)
            .push_bind(r.counts.clamped as i64)
            .push_bind(&r.histogram);
    });
    q.push(
        " ON CONFLICT (dependency, kind, label, minute_ms, node, part) DO UPDATE SET \
         ok = excluded.ok, error = excluded.error, timeout = excluded.timeout, \
         clamped = excluded.clamped, histogram = excluded.histogram",
    );
    q
}

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<RollupRow> {
    // By position, in the order of `columns!()`: a name is looked up for every column of every
    // row otherwise, which took a good part of start-up's hour of rows.
    let kind: &str = row.try_get(1)?;
    let kind = SeriesKind::parse(kind).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "kind".into(),
        source: format!("unknown series kind {kind:?}").into(),
    })?;
    let n = |c: usize| row.try_get::<i64, _>(c).map(|v| v.max(0) as u64);
    Ok(RollupRow {
        key: SeriesKey {
            dependency: row.try_get(0)?,
            kind,
            label: row.try_get(2)?,
        },
        minute_ms: row.try_get(3)?,
        node: row.try_get(4)?,
        part: row.try_get(5)?,
        counts: Counts {
            ok: n(6)?,
            error: n(7)?,
            timeout: n(8)?,
            clamped: n(9)?,
        },
        histogram: row.try_get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{open, query_plan};

    fn row(dependency: &str, label: &str, minute_ms: i64, node: &str, part: i64) -> RollupRow {
        RollupRow {
            key: SeriesKey {
                dependency: dependency.into(),
                kind: if label.is_empty() {
                    SeriesKind::Dependency
                } else {
                    SeriesKind::Instance
                },
                label: label.into(),
            },
            minute_ms,
            node: node.into(),
            part,
            counts: Counts {
                ok: part as u64 + 1,
                ..Counts::default()
            },
            histogram: vec![part as u8],
        }
    }

    async fn stored(storage: &Storage) -> Vec<(String, String, i64, String, i64, i64)> {
        sqlx::query_as(
            "SELECT dependency, label, minute_ms, node, part, ok FROM rollups \
             ORDER BY dependency, label, minute_ms, node, part",
        )
        .fetch_all(&storage.pool)
        .await
        .unwrap()
    }

    /// A main row supersedes exactly its own minute's parts of its own node, in statements of
    /// many rows as with one row each; a part written after the main row in the same call
    /// stays.
    #[tokio::test]
    async fn a_main_row_removes_only_its_own_minutes_parts_across_many_statements() {
        let (_dir, storage) = open().await;
        let m = 60_000;
        storage
            .write_rollups(&[
                row("db", "h1", m, "a", 7),
                row("db", "h1", m, "a", 8),
                row("db", "h1", m, "b", 9),
                row("db", "h1", 2 * m, "a", 10),
                row("db", "h2", m, "a", 11),
                row("cache", "h1", m, "a", 12),
            ])
            .await
            .unwrap();
        // Enough main rows for several statements, the one that matters in the middle, then
        // a part of that minute, which must survive.
        let mut rows: Vec<RollupRow> = (0..ROWS_PER_STATEMENT as i64 * 2 + 17)
            .map(|i| row("other", "h", i * m, "a", 0))
            .collect();
        rows.insert(ROWS_PER_STATEMENT + 3, row("db", "h1", m, "a", 0));
        rows.push(row("db", "h1", m, "a", 13));
        storage.write_rollups(&rows).await.unwrap();

        let all = stored(&storage).await;
        let db: Vec<_> = all.iter().filter(|r| r.0 != "other").cloned().collect();
        let r = |d: &str, l: &str, minute: i64, n: &str, part: i64| {
            (d.into(), l.into(), minute, n.into(), part, part + 1)
        };
        assert_eq!(
            db,
            vec![
                r("cache", "h1", m, "a", 12),
                r("db", "h1", m, "a", 0),
                r("db", "h1", m, "a", 13),
                r("db", "h1", m, "b", 9),
                r("db", "h1", 2 * m, "a", 10),
                r("db", "h2", m, "a", 11),
            ]
        );
        assert_eq!(all.len() - db.len(), ROWS_PER_STATEMENT * 2 + 17);

        // Writing a main row again replaces it.
        let mut again = row("db", "h1", m, "a", 0);
        again.counts.ok = 40;
        storage.write_rollups(&[again]).await.unwrap();
        let ok: i64 = sqlx::query_scalar(
            "SELECT ok FROM rollups WHERE dependency = 'db' AND label = 'h1' AND part = 0",
        )
        .fetch_one(&storage.pool)
        .await
        .unwrap();
        assert_eq!(ok, 40);
    }

    /// Removing parts searches the primary key once per main row: with a day of minutes
    /// stored per series, a scan of the table for every flush would not keep up.
    #[tokio::test]
    async fn removing_parts_searches_the_key_instead_of_scanning_the_table() {
        let (_dir, storage) = open().await;
        let rows = [row("db", "h1", 0, "a", 0), row("db", "h2", 0, "a", 0)];
        let delete = delete_parts_of(&rows).into_string();
        let plan = query_plan(&storage, &delete, rows.len() * 5).await;
        assert!(!plan.contains("SCAN r"), "{plan}");
        assert!(!plan.contains("SCAN rollups"), "{plan}");
        assert!(
            plan.contains("SEARCH r USING COVERING INDEX sqlite_autoindex_rollups_1 (dependency=? AND kind=? AND label=? AND minute_ms=? AND node=?)"),
            "{plan}"
        );
    }
}
