//! The store: Berth's desired state and history (organizations, tokens, projects,
//! environments, applications, variables, deployments with their steps and logs) in
//! SQLite through sqlx, with migrations. It maps rows to domain types and back; it knows
//! nothing of Docker, Git or HTTP, and holds secrets only as ciphertext.

mod backups;
mod databases;
mod deployments;
mod error;
mod previews;
mod records;
mod resources;
mod time_format;
mod variables;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use backups::NewBackup;
pub use error::StoreError;
pub use previews::{now_unix_seconds, PreviewRecord, PreviewRefusalRecord, PreviewSettingsRecord};
pub use records::*;
pub use time_format::{millis_between, now_rfc3339};
pub use webhooks::{NewWebhookDelivery, ProjectGitSettings, WebhookDeliveryRecord};

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a deployment recorded as started must survive a power cut.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options, 4).await
    }

    /// A private in-memory store, for tests.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(StoreError::from)?
            .foreign_keys(true);
        // One connection: every connection to `:memory:` is a separate database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self { pool })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that holds SQLite's write lock from its first statement. A deferred
    /// one that reads and then writes fails at once with "database is locked" when
    /// another connection wrote in between; this one waits (busy timeout) instead.
    pub(crate) async fn write_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}
