//! Storage: sqlx repositories under the window store and (later) the alert log.
//!
//! Queries are plain SQL that SQLite and PostgreSQL both accept (`$n` placeholders,
//! `ON CONFLICT ... DO UPDATE`), bound at run time, so a second backend is a second pool type
//! and a second migrations folder, not a rewrite.

mod alerts;
mod outbox;
mod retention;
mod rollups;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Handle to the database. Cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Storage {
    pool: SqlitePool,
    /// How the last writes went, for `/readyz`: a read-only or locked database still answers
    /// reads, so only the writes show it.
    writes: Arc<WriteHealth>,
}

/// Outcome of the latest writes that matter (roll-ups, alert transitions, the outbox).
#[derive(Debug, Default)]
pub struct WriteHealth {
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
                self.failing.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string());
            }
        }
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
            .busy_timeout(Duration::from_secs(5));
        let in_memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection; more would each see an empty one.
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot open database {url:?}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(Self {
            pool,
            writes: Arc::default(),
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
    }
}
