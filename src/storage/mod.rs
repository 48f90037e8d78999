//! Storage: sqlx repositories under the window store and (later) the alert log.
//!
//! Queries are plain SQL that SQLite and PostgreSQL both accept (`$n` placeholders,
//! `ON CONFLICT ... DO UPDATE`), bound at run time, so a second backend is a second pool type
//! and a second migrations folder, not a rewrite.

mod alerts;
pub mod files;
mod outbox;
mod retention;
mod rollups;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use alerts::{AlertFilter, AlertRecord};
pub use outbox::{AttemptOutcome, NewNotification, NewOverride, NotificationRecord, Silence};
pub use retention::{PRUNE_BATCH, PruneBefore, Pruned};
pub use rollups::RollupRow;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Reader connections (API, dashboard, delivery workers' reads).
const READERS: u32 = 4;

/// How long a write waits for another connection's lock before it fails (SQLite's busy
/// timeout): the longest a refused write can take.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to the database. Cheap to clone (pools inside).
///
/// Writes (alert transitions with their outbox rows, delivery outcomes, roll-ups, silences,
/// overrides, pruning) go through one writer connection of their own; reads (the API, the
/// dashboard, delivery workers looking for due rows) through a pool of readers. SQLite takes
/// one writer at a time anyway, so the single connection costs no throughput, and no number of
/// slow or concurrent reads can take the connection that detection or a breaker override
/// needs. In WAL mode readers never block the writer, nor the writer them.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Readers.
    pool: SqlitePool,
    /// The one writer connection.
    writer: SqlitePool,
    /// How the last writes went, for `/readyz`: a read-only or locked database still answers
    /// reads, so only the writes show it.
    writes: Arc<WriteHealth>,
}

/// Outcome of the latest writes that matter (roll-ups, alert transitions, the outbox).
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// Set by a failed write: the writer connection is closed before its next use and a new
    /// one opened. After a COMMIT the database refused (a read-only file, a full disk), SQLite
    /// has already rolled the transaction back, so the driver's own ROLLBACK fails and leaves
    /// it counting a transaction still open; on that connection the next write only opened a
    /// savepoint, answered success and reached no file (seen with `chattr +i`: no `pwrite` at
    /// all for a "successful" roll-up flush, and the rows never stored). A fresh connection
    /// has no such state.
    discard_writer: AtomicBool,
    /// Writes failed in a row since the last that succeeded.
    failing: AtomicU64,
    /// The latest failure's message, while `failing > 0`.
    last_error: parking_lot::Mutex<Option<String>>,
}

/// What `/readyz` says of database writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteStatus {
    Ok,
    /// `failures` writes in a row failed, the latest with `error`; they are being retried.
    Failing {
        failures: u64,
        error: String,
    },
}

impl WriteHealth {
    fn note<T>(&self, done: &sqlx::Result<T>) {
        match done {
            Ok(_) => {
                if self.failing.swap(0, Ordering::Relaxed) > 0 {
                    *self.last_error.lock() = None;
                    tracing::info!("Database writes succeed again.");
                }
            }
            Err(e) => {
                self.discard_writer();
                self.failing.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string());
            }
        }
    }

    /// Has the writer connection replaced before the next write (see `discard_writer`).
    fn discard_writer(&self) {
        self.discard_writer.store(true, Ordering::Relaxed);
    }

    fn status(&self) -> WriteStatus {
        match self.failing.load(Ordering::Relaxed) {
            0 => WriteStatus::Ok,
            failures => WriteStatus::Failing {
                failures,
                error: self.last_error.lock().clone().unwrap_or_default(),
            },
        }
    }
}

impl Storage {
    /// Opens (creating if missing) the database at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {url:?}"))?
            .create_if_missing(true)
            // WAL lets readers (API queries) proceed while the flusher writes.
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit returns only once the WAL is on disk, so an alert transition, its
            // outbox rows, a delivery outcome or an override survive power loss, not only a
            // crash of the process (NORMAL may lose the last commits then). It costs one
            // fsync per commit, about 3 ms on our CI disk; every write here is a batched
            // transaction (a roll-up flush, a tick's transitions, one delivery), so that is
            // per flush or per delivery, never per event. See README "Persistence".
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:");
        // An in-memory database lives in one connection; more would each see an empty one,
        // so there the writer is the only connection and reads share it.
        let pool_of = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
                .max_lifetime((!in_memory).then_some(Duration::from_secs(3600)))
        };
        let writes: Arc<WriteHealth> = Arc::default();
        let health = writes.clone();
        let writer = pool_of(1)
            // A connection whose last write failed is closed, not reused (see
            // `WriteHealth::discard_writer`); the pool opens a new one. Not in memory: there
            // the connection is the database.
            .before_acquire(move |_, _| {
                let discard = health.discard_writer.swap(false, Ordering::Relaxed);
                let keep = in_memory || !discard;
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(opts.clone())
            .await
            .with_context(|| format!("cannot open database {url:?}"))?;
        MIGRATOR
            .run(&writer)
            .await
            .context("cannot apply database migrations")?;
        let pool = if in_memory {
            writer.clone()
        } else {
            pool_of(READERS)
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open database {url:?}"))?
        };
        Ok(Self {
            pool,
            writer,
            writes,
        })
    }

    /// Readiness: the database answers and every migration this binary knows is applied.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .context("database unreachable")?;
        let known = MIGRATOR.iter().count() as i64;
        anyhow::ensure!(applied >= known, "{applied} of {known} migrations applied");
        Ok(())
    }

    /// Whether the latest writes succeeded (a database can answer reads and refuse writes:
    /// a read-only file, a full disk, another process holding the write lock).
    pub fn write_status(&self) -> WriteStatus {
        self.writes.status()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) async fn open() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gw.db").display());
        let storage = Storage::connect(&url).await.unwrap();
        (dir, storage)
    }

    /// SQLite's plan for `sql` with `params` parameters, its steps joined by "; ".
    pub(super) async fn query_plan(storage: &Storage, sql: &str, params: usize) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..params {
            q = q.bind(None::<i64>);
        }
        let plan: Vec<String> = q
            .fetch_all(&storage.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
            .collect();
        plan.join("; ")
    }

    #[tokio::test]
    async fn writes_go_on_while_every_reader_connection_is_taken() {
        let (_dir, storage) = open().await;
        let mut held = Vec::new();
        for _ in 0..READERS {
            held.push(storage.pool.acquire().await.unwrap());
        }
        // The readers are really all taken: a read waits.
        let read = tokio::time::timeout(Duration::from_millis(300), storage.silences(0)).await;
        assert!(read.is_err(), "a read found a free reader");
        let o = NewOverride {
            dependency: "db",
            instance: None,
            state: "open",
            reason: "test",
            expires_ms: 10_000,
            created_by: "test",
        };
        let written =
            tokio::time::timeout(Duration::from_secs(2), storage.record_override(&o, 1_000))
                .await
                .expect("the write does not wait for a reader")
                .unwrap();
        assert!(written > 0);
        drop(held);
        assert_eq!(storage.active_overrides(2_000).await.unwrap().len(), 1);
    }

    /// Every list query reads its rows in order from an index: no full-table scan and no
    /// sort of the result in a temporary B-tree.
    #[tokio::test]
    async fn list_queries_read_in_index_order() {
        let (_dir, storage) = open().await;
        for (name, sql, params) in [
            ("list_alerts", alerts::LIST_ALERTS, 3),
            ("list_notifications", outbox::LIST_NOTIFICATIONS, 4),
            ("due_notifications", outbox::DUE_NOTIFICATIONS, 3),
            ("silences", outbox::LIST_SILENCES, 1),
            ("active_overrides", outbox::ACTIVE_OVERRIDES, 1),
        ] {
            let plan = query_plan(&storage, sql, params).await;
            assert!(!plan.contains("TEMP B-TREE"), "{name} sorts: {plan}");
            assert!(
                plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"),
                "{name} scans the table: {plan}"
            );
        }
    }
}
