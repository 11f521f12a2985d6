//! Records of database backups (the files themselves live in the backup store).

use berth_domain::{BackupId, DatabaseId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::parse_id;
use crate::{now_rfc3339, BackupRecord, Store, StoreError};

fn backup_from_row(row: &SqliteRow) -> Result<BackupRecord, StoreError> {
    let size: i64 = row.try_get("size_bytes")?;
    Ok(BackupRecord {
        id: parse_id("backup id", row.try_get("id")?)?,
        database_id: parse_id("database id", row.try_get("database_id")?)?,
        file_name: row.try_get("file_name")?,
        size_bytes: u64::try_from(size).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Records a completed backup (its file is already in place).
    pub async fn record_backup(
        &self,
        id: BackupId,
        database: DatabaseId,
        file_name: &str,
        size_bytes: u64,
        sha256: &str,
        reason: &str,
    ) -> Result<BackupRecord, StoreError> {
        let record = BackupRecord {
            id,
            database_id: database,
            file_name: file_name.to_owned(),
            size_bytes,
            sha256: sha256.to_owned(),
            reason: reason.to_owned(),
            created_at: now_rfc3339(),
        };
        sqlx::query("INSERT INTO backups (id, database_id, file_name, size_bytes, sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(database.to_string())
            .bind(file_name)
            .bind(i64::try_from(size_bytes).unwrap_or(i64::MAX))
            .bind(sha256)
            .bind(reason)
            .bind(&record.created_at)
            .execute(self.pool())
            .await?;
        Ok(record)
    }

    /// Backups of a database, newest first.
    pub async fn list_backups(
        &self,
        database: DatabaseId,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM backups WHERE database_id = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(database.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(backup_from_row).collect()
    }

    pub async fn delete_backup(&self, id: BackupId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM backups WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
