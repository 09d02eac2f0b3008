//! The coordinator's durable job store: one SQLite file in `--data-dir` (write-ahead log,
//! synchronous commits), a row per job holding its record as JSON. Every change of a job is
//! written before the API answers, so a coordinator restarted at any moment knows every job.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::Row;

use super::job::JobRecord;

/// The job store.
#[derive(Clone, Debug)]
pub struct JobStore {
    pool: SqlitePool,
}

impl JobStore {
    /// Opens (or creates) `<dir>/jobs.db`.
    pub async fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--data-dir {}: cannot create it: {e}", dir.display()))?;
        let path = dir.join("jobs.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| format!("job store {}: {e}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("job store {}: {e}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY,
                seq INTEGER NOT NULL,
                idempotency_key TEXT UNIQUE,
                record TEXT NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(|e| format!("job store {}: {e}", path.display()))?;
        Ok(JobStore { pool })
    }

    /// Every job, in submission order.
    pub async fn load(&self) -> Result<Vec<JobRecord>, String> {
        let rows = sqlx::query("SELECT id, record FROM jobs ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| format!("job store: {e}"))?;
        rows.iter()
            .map(|row| {
                let id: String = row.get(0);
                let record: String = row.get(1);
                serde_json::from_str(&record)
                    .map_err(|e| format!("job store: the record of job {id} is damaged: {e}"))
            })
            .collect()
    }

    /// Writes `job` (insert or replace).
    pub async fn save(&self, job: &JobRecord) -> Result<(), String> {
        let record = serde_json::to_string(job).expect("a job record serialises");
        sqlx::query(
            "INSERT INTO jobs (id, seq, idempotency_key, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
        )
        .bind(&job.id)
        .bind(job.seq as i64)
        .bind(&job.idempotency_key)
        .bind(record)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| format!("job store: cannot save job {}: {e}", job.id))
    }
}
