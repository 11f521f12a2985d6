//! Records of database backups (the files themselves live in the backup store) and the
//! backup schedules of databases.
//!
//! Backup records outlive their database: they carry its environment, name and engine,
//! and are listed by (environment, name) so that a database deleted and created again
//! under the same name sees its earlier backups.

use berth_domain::database::DatabaseEngine;
use berth_domain::{BackupId, DatabaseId, EnvironmentId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::databases::database_from_row;
use crate::records::{parse_id, parse_name};
use crate::{now_rfc3339, BackupRecord, BackupScheduleRecord, DatabaseRecord, Store, StoreError};

fn backup_from_row(row: &SqliteRow) -> Result<BackupRecord, StoreError> {
    let size: i64 = row.try_get("size_bytes")?;
    let engine: &str = row.try_get("engine")?;
    Ok(BackupRecord {
        id: parse_id("backup id", row.try_get("id")?)?,
        database_id: parse_id("database id", row.try_get("database_id")?)?,
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        database_name: parse_name(row.try_get("database_name")?)?,
        engine: DatabaseEngine::parse(engine)
            .map_err(|e| StoreError::corrupt("backup engine", e))?,
        file_name: row.try_get("file_name")?,
        store: row.try_get("store")?,
        size_bytes: u64::try_from(size).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        reason: row.try_get("reason")?,
        scheduled_slot: row.try_get("scheduled_slot")?,
        created_at: row.try_get("created_at")?,
    })
}

fn schedule_from_row(row: &SqliteRow) -> Result<BackupScheduleRecord, StoreError> {
    let retention: i64 = row.try_get("retention")?;
    Ok(BackupScheduleRecord {
        database_id: parse_id("database id", row.try_get("database_id")?)?,
        cron: row.try_get("cron")?,
        retention: u32::try_from(retention).unwrap_or(u32::MAX),
        last_slot: row.try_get("last_slot")?,
        last_error: row.try_get("last_error")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
    })
}

/// What a completed backup is recorded with (its file is already in the store).
#[derive(Debug, Clone)]
pub struct NewBackup<'a> {
    pub id: BackupId,
    pub database: &'a DatabaseRecord,
    pub file_name: &'a str,
    /// `local` or `s3`.
    pub store: &'a str,
    pub size_bytes: u64,
    pub sha256: &'a str,
    /// `manual`, `scheduled` or `final`.
    pub reason: &'a str,
    /// Scheduled backups: the slot; recording it also marks the slot handled.
    pub scheduled_slot: Option<&'a str>,
}

impl Store {
    /// Records a completed backup. For a scheduled one, the schedule's last slot moves to
    /// this slot in the same transaction, so a crash never leaves a slot backed up twice or
    /// marked done without its backup; a second record for the same slot is refused.
    pub async fn record_backup(&self, backup: NewBackup<'_>) -> Result<BackupRecord, StoreError> {
        let record = BackupRecord {
            id: backup.id,
            database_id: backup.database.id,
            environment_id: backup.database.environment_id,
            database_name: backup.database.name.clone(),
            engine: backup.database.spec.engine,
            file_name: backup.file_name.to_owned(),
            store: backup.store.to_owned(),
            size_bytes: backup.size_bytes,
            sha256: backup.sha256.to_owned(),
            reason: backup.reason.to_owned(),
            scheduled_slot: backup.scheduled_slot.map(str::to_owned),
            created_at: now_rfc3339(),
        };
        let mut transaction = self.write_transaction().await?;
        sqlx::query("INSERT INTO backups (id, database_id, environment_id, database_name, engine, file_name, store, size_bytes, sha256, reason, scheduled_slot, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(record.id.to_string())
            .bind(record.database_id.to_string())
            .bind(record.environment_id.to_string())
            .bind(record.database_name.as_str())
            .bind(record.engine.as_str())
            .bind(&record.file_name)
            .bind(&record.store)
            .bind(i64::try_from(record.size_bytes).unwrap_or(i64::MAX))
            .bind(&record.sha256)
            .bind(&record.reason)
            .bind(&record.scheduled_slot)
            .bind(&record.created_at)
            .execute(&mut *transaction)
            .await
            .map_err(|e| {
                StoreError::unique_as_conflict(e, || {
                    "this schedule slot was already backed up".to_owned()
                })
            })?;
        if let Some(slot) = &record.scheduled_slot {
            sqlx::query("UPDATE backup_schedules SET last_slot = ?, last_error = NULL, last_attempt_at = ? WHERE database_id = ?")
                .bind(slot)
                .bind(&record.created_at)
                .bind(record.database_id.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(record)
    }

    /// Backups taken of the database named `name` in an environment (including earlier
    /// databases of that name that were deleted), newest first.
    pub async fn list_backups(
        &self,
        environment: EnvironmentId,
        name: &str,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM backups WHERE environment_id = ? AND database_name = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(environment.to_string())
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(backup_from_row).collect()
    }

    /// Scheduled backups of one database, newest first (what retention counts).
    pub async fn list_scheduled_backups(
        &self,
        database: DatabaseId,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM backups WHERE database_id = ? AND reason = 'scheduled' ORDER BY created_at DESC, rowid DESC",
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

    /// Sets (or replaces) a database's schedule and retention. A new or changed cron
    /// expression counts from `now`: no slot before it is run.
    pub async fn set_backup_schedule(
        &self,
        database: DatabaseId,
        cron: Option<&str>,
        retention: u32,
    ) -> Result<BackupScheduleRecord, StoreError> {
        let now = now_rfc3339();
        let previous = self.backup_schedule(database).await?;
        let last_slot = match &previous {
            Some(previous) if previous.cron.as_deref() == cron => previous.last_slot.clone(),
            _ => now.clone(),
        };
        sqlx::query(
            "INSERT INTO backup_schedules (database_id, cron, retention, last_slot, last_error, last_attempt_at, updated_at) VALUES (?, ?, ?, ?, NULL, NULL, ?)
             ON CONFLICT (database_id) DO UPDATE SET cron = excluded.cron, retention = excluded.retention, last_slot = excluded.last_slot, updated_at = excluded.updated_at",
        )
        .bind(database.to_string())
        .bind(cron)
        .bind(i64::from(retention))
        .bind(&last_slot)
        .bind(&now)
        .execute(self.pool())
        .await?;
        self.backup_schedule(database).await?.ok_or_else(|| {
            StoreError::Conflict("the database was deleted while its schedule was set".into())
        })
    }

    pub async fn backup_schedule(
        &self,
        database: DatabaseId,
    ) -> Result<Option<BackupScheduleRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM backup_schedules WHERE database_id = ?")
            .bind(database.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// Schedules with a cron expression, of active databases (the scheduler's view).
    pub async fn active_backup_schedules(&self) -> Result<Vec<BackupScheduleRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.* FROM backup_schedules s JOIN databases d ON d.id = s.database_id WHERE s.cron IS NOT NULL AND d.status = 'active'",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Records a failed scheduled attempt; the slot stays due and is retried later.
    pub async fn record_backup_schedule_failure(
        &self,
        database: DatabaseId,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE backup_schedules SET last_error = ?, last_attempt_at = ? WHERE database_id = ?",
        )
        .bind(error)
        .bind(now_rfc3339())
        .bind(database.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a slot handled without a backup (e.g. the database is external).
    pub async fn skip_backup_slot(
        &self,
        database: DatabaseId,
        slot: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE backup_schedules SET last_slot = ? WHERE database_id = ?")
            .bind(slot)
            .bind(database.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A database by id, any lifecycle.
    pub async fn database(&self, id: DatabaseId) -> Result<Option<DatabaseRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM databases WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(database_from_row).transpose()
    }
}
