//! Scheduled backups: cron expressions per database, the background task that takes due
//! backups, and retention (the newest N scheduled backups of a database are kept).
//!
//! Expected flow: every second the scheduler reads the schedules of active databases from
//! the store. A schedule is due when a slot of its cron expression lies after its stored
//! `last_slot` and not after now; the backup is taken for the latest such slot (slots
//! missed while the server was down collapse into one run), then the oldest scheduled
//! backups beyond the retention are deleted from the store and the records.
//!
//! Guarantees: a slot is backed up at most once: its backup record and the move of
//! `last_slot` are one transaction, and the store refuses a second record for a slot. A
//! crash during a backup leaves the slot due, so it runs once at the next start. Manual
//! and final backups never count towards retention.
//!
//! Caveats: a failed attempt (database stopped, store unreachable) is recorded on the
//! schedule and retried a minute later while its slot is the latest one due. Times are UTC.

use std::sync::Arc;
use std::time::Duration;

use berth_domain::database::DatabaseMode;
use berth_store::{BackupScheduleRecord, DatabaseRecord, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::backups::{BackupError, BackupTrigger};
use crate::engine::{Engine, EngineError};

/// Scheduled backups kept per database when no retention is given.
pub const DEFAULT_BACKUP_RETENTION: u32 = 7;

/// How long a failed scheduled backup waits before it is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// A cron expression that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid backup schedule {expression:?}: {reason}. Use a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 UTC every day) or 6 with seconds first (e.g. \"*/30 * * * * *\"), or \"none\" to remove the schedule")]
pub struct InvalidBackupSchedule {
    expression: String,
    reason: String,
}

/// Parses a backup schedule: 5 cron fields, or 6 with seconds first.
pub fn parse_backup_schedule(expression: &str) -> Result<Cron, InvalidBackupSchedule> {
    let invalid =
        |reason: String| InvalidBackupSchedule { expression: expression.to_owned(), reason };
    let fields = expression.split_whitespace().count();
    if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(invalid(format!("it has {fields} fields")));
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let cron = parser.parse(expression.trim()).map_err(|e| invalid(e.to_string()))?;
    // A pattern that never matches (e.g. 30 February) would never back anything up.
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|_| invalid("it never matches a date".to_owned()))?;
    Ok(cron)
}

/// The next slot of `cron` after `after`, for display.
pub fn next_backup_slot(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// The slot to back up now: the latest slot in `(last_slot, now]`, if there is one.
pub fn due_slot(
    cron: &Cron,
    last_slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let next = cron.find_next_occurrence(&last_slot, false).ok()?;
    if next > now {
        return None;
    }
    // Slots missed while the server was down are not replayed one by one: the latest one
    // stands for them all.
    let latest = cron.find_previous_occurrence(&now, true).ok()?;
    Some(latest.max(next))
}

/// A slot as stored: RFC 3339, UTC, whole seconds.
pub fn slot_text(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

impl Engine {
    /// The scheduler task: runs until `shutdown` is cancelled.
    pub(crate) async fn backup_scheduler(self: Arc<Self>, shutdown: CancellationToken) {
        // Staging files left by a backup interrupted by a crash are never completed.
        self.remove_stale_staging_files().await;
        loop {
            if let Err(error) = self.backup_scheduler_pass(&shutdown).await {
                tracing::warn!(%error, "backup scheduler pass failed; retrying soon");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn remove_stale_staging_files(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(self.backup_staging_dir()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    async fn backup_scheduler_pass(&self, shutdown: &CancellationToken) -> Result<(), EngineError> {
        for schedule in self.store.active_backup_schedules().await? {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            // One database's trouble (an unreadable slot, a store error) must not keep the
            // schedules after it in the list from running.
            if let Err(error) = self.run_schedule_if_due(&schedule).await {
                tracing::warn!(database = %schedule.database_id, %error, "backup schedule failed; retrying soon");
            }
        }
        Ok(())
    }

    async fn run_schedule_if_due(
        &self,
        schedule: &BackupScheduleRecord,
    ) -> Result<(), EngineError> {
        let Some(expression) = schedule.cron.as_deref() else { return Ok(()) };
        let now = Utc::now();
        let cron = match parse_backup_schedule(expression) {
            Ok(cron) => cron,
            Err(error) => {
                tracing::warn!(database = %schedule.database_id, %error, "skipping a backup schedule");
                return Ok(());
            }
        };
        let Some(last_slot) = parse_time(&schedule.last_slot) else {
            return Err(EngineError::Internal(format!(
                "the last backup slot of database {} is not a time: {:?}",
                schedule.database_id, schedule.last_slot
            )));
        };
        let Some(slot) = due_slot(&cron, last_slot, now) else { return Ok(()) };
        if schedule.last_error.is_some() {
            let retry_at = schedule
                .last_attempt_at
                .as_deref()
                .and_then(parse_time)
                .map(|at| at + RETRY_AFTER_FAILURE);
            if retry_at.is_some_and(|at| now < at) {
                return Ok(());
            }
        }
        let slot = slot_text(slot);
        let Some(database) = self.store.database(schedule.database_id).await? else {
            return Ok(());
        };
        if database.spec.mode == DatabaseMode::External {
            // Backups of an external database belong to whoever runs it.
            self.store.skip_backup_slot(database.id, &slot).await?;
            return Ok(());
        }
        match self.scheduled_backup(&database, &slot).await {
            Ok(()) => self.apply_backup_retention(&database, schedule.retention).await,
            Err(BackupError::Engine(EngineError::Store(StoreError::Conflict(_)))) => {
                // Another record already holds this slot: it is done.
                Ok(())
            }
            Err(error) => {
                tracing::warn!(database = %database.name, %slot, %error, "scheduled backup failed; retrying in a minute");
                self.store.record_backup_schedule_failure(database.id, &error.to_string()).await?;
                Ok(())
            }
        }
    }

    async fn scheduled_backup(
        &self,
        database: &DatabaseRecord,
        slot: &str,
    ) -> Result<(), BackupError> {
        let environment = self
            .store
            .environment(database.environment_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| BackupError::Store("the database's environment is gone".into()))?;
        let project = self
            .store
            .project(environment.project_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| BackupError::Store("the database's project is gone".into()))?;
        self.backup_database(&project, &environment, database, BackupTrigger::Scheduled { slot })
            .await?;
        Ok(())
    }

    /// Deletes the scheduled backups of `database` beyond the newest `retention`, from the
    /// store first, then their records (an object that cannot be deleted keeps its record,
    /// and is tried again next time).
    pub async fn apply_backup_retention(
        &self,
        database: &DatabaseRecord,
        retention: u32,
    ) -> Result<(), EngineError> {
        let scheduled = self.store.list_scheduled_backups(database.id).await?;
        for backup in scheduled.iter().skip(retention as usize) {
            match self.delete_backup(backup).await {
                Ok(()) => {
                    tracing::info!(database = %database.name, backup = %backup.id, retention, "old scheduled backup deleted")
                }
                Err(error) => {
                    tracing::warn!(database = %database.name, backup = %backup.id, %error, "could not delete an old scheduled backup")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    #[test]
    fn accepts_five_fields_and_six_with_seconds() {
        assert!(parse_backup_schedule("0 3 * * *").is_ok());
        assert!(parse_backup_schedule("*/2 * * * * *").is_ok());
        assert!(parse_backup_schedule("@daily").is_ok());
    }

    #[test]
    fn refuses_bad_expressions_with_a_clear_message() {
        for bad in ["", "every day", "61 * * * *", "0 3 * *", "0 0 3 * * * 2030"] {
            let error = parse_backup_schedule(bad).unwrap_err().to_string();
            assert!(error.contains("invalid backup schedule"), "{error}");
            assert!(error.contains("0 3 * * *"), "the message shows an example: {error}");
        }
    }

    #[test]
    fn a_slot_is_due_once_and_missed_slots_collapse_into_the_latest() {
        let daily = parse_backup_schedule("0 3 * * *").unwrap();
        let last = at("2026-01-01T03:00:00Z");
        assert_eq!(due_slot(&daily, last, at("2026-01-02T02:59:59Z")), None);
        assert_eq!(
            due_slot(&daily, last, at("2026-01-02T03:00:00Z")),
            Some(at("2026-01-02T03:00:00Z"))
        );
        // Down for three days: one run, for the latest slot.
        assert_eq!(
            due_slot(&daily, last, at("2026-01-04T10:00:00Z")),
            Some(at("2026-01-04T03:00:00Z"))
        );
        // Once that slot is stored as done, nothing is due until the next one.
        assert_eq!(due_slot(&daily, at("2026-01-04T03:00:00Z"), at("2026-01-04T10:00:00Z")), None);
    }
}
