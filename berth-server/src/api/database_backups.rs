//! Backup settings of databases (schedule and retention: set at creation or with
//! `PATCH .../databases/{database}`) and the deletion of one backup. The other backup
//! endpoints (take, list, restore) are in `databases.rs`.

use axum::extract::{Path, State};
use axum::Json;
use berth_api as wire;
use berth_domain::database::DatabaseMode;
use berth_engine::backup_schedule::{
    next_backup_slot, parse_backup_schedule, slot_text, DEFAULT_BACKUP_RETENTION,
};
use berth_store::{BackupScheduleRecord, DatabaseRecord};

use super::databases::{backup_error, backup_view, find, view};
use super::{lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// The most scheduled backups a database may keep.
const MAX_RETENTION: u32 = 10_000;

/// Validated backup settings of a request; `None` fields are left as they are.
#[derive(Debug, Clone)]
pub(super) struct BackupSettings {
    /// `Some(None)`: remove the schedule.
    schedule: Option<Option<String>>,
    retention: Option<u32>,
}

impl BackupSettings {
    /// Checks a schedule (`none` removes it) and a retention; `None` when neither is given.
    pub(super) fn validate(
        schedule: Option<&str>,
        retention: Option<u32>,
        external: bool,
    ) -> ApiResult<Option<Self>> {
        let schedule = match schedule.map(str::trim) {
            None => None,
            Some("none") => Some(None),
            Some(expression) => {
                parse_backup_schedule(expression).map_err(|e| AppError::Invalid(e.to_string()))?;
                if external {
                    return Err(AppError::Invalid(
                        "an external database is backed up by whoever runs it: --backup-schedule applies to container databases only".into(),
                    ));
                }
                Some(Some(expression.to_owned()))
            }
        };
        if let Some(retention) = retention {
            if !(1..=MAX_RETENTION).contains(&retention) {
                return Err(AppError::Invalid(format!(
                    "--backup-retention must be between 1 and {MAX_RETENTION} (the number of scheduled backups kept); got {retention}"
                )));
            }
        }
        if schedule.is_none() && retention.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { schedule, retention }))
    }

    /// Stores the settings, merged with the database's current ones, and applies a
    /// lowered retention at once.
    pub(super) async fn apply(&self, state: &AppState, database: &DatabaseRecord) -> ApiResult<()> {
        let current = state.store.backup_schedule(database.id).await?;
        let cron = match &self.schedule {
            Some(schedule) => schedule.clone(),
            None => current.as_ref().and_then(|c| c.cron.clone()),
        };
        let retention = self
            .retention
            .or(current.as_ref().map(|c| c.retention))
            .unwrap_or(DEFAULT_BACKUP_RETENTION);
        state.store.set_backup_schedule(database.id, cron.as_deref(), retention).await?;
        state
            .engine
            .apply_backup_retention(database, retention)
            .await
            .map_err(AppError::internal)?;
        Ok(())
    }
}

/// Fills a database's view with its backup schedule.
pub(super) fn with_schedule(
    mut database: wire::Database,
    schedule: Option<&BackupScheduleRecord>,
) -> wire::Database {
    let Some(schedule) = schedule else {
        if database.mode == "container" {
            database.backup_retention = Some(DEFAULT_BACKUP_RETENTION);
        }
        return database;
    };
    database.backup_retention = Some(schedule.retention);
    database.backup_schedule = schedule.cron.clone();
    database.last_backup_error = schedule.last_error.clone();
    database.next_backup_at = schedule.cron.as_deref().and_then(|expression| {
        let cron = parse_backup_schedule(expression).ok()?;
        let last = chrono::DateTime::parse_from_rfc3339(&schedule.last_slot).ok()?;
        next_backup_slot(&cron, last.with_timezone(&chrono::Utc)).map(slot_text)
    });
    database
}

/// Changes a database's backup schedule (`none` removes it) and retention (older
/// scheduled backups beyond it are deleted now), and an external database's URL (checked
/// first, then the environment's applications are redeployed: `queued_deployment`).
#[utoipa::path(patch, path = "/projects/{project}/environments/{environment}/databases/{database}", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    request_body = wire::UpdateDatabase,
    responses((status = 200, body = wire::Database), (status = 404, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn update_database(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::UpdateDatabase>,
) -> ApiResult<Json<wire::Database>> {
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    let settings = BackupSettings::validate(
        body.backup_schedule.as_deref(),
        body.backup_retention,
        record.spec.mode == DatabaseMode::External,
    )?;
    // Everything is validated before anything changes.
    let new_credentials = body
        .external_url
        .as_deref()
        .map(|url| super::database_credentials::parse_external_url(&record, url))
        .transpose()?;
    if settings.is_none() && new_credentials.is_none() {
        return Err(AppError::Invalid(
            "nothing to change: give --backup-schedule CRON|none, --backup-retention N or (external databases) --external-url URL"
                .into(),
        ));
    }
    // The URL first: it is the part that can be refused (the server checks it).
    let (record, queued_deployment) = match &new_credentials {
        Some(credentials) => {
            super::database_credentials::change_external_url(
                &state,
                &project,
                &environment,
                &record,
                credentials,
            )
            .await?
        }
        None => (record, None),
    };
    if let Some(settings) = settings {
        settings.apply(&state, &record).await?;
    }
    let mut updated = view(&state, &project, &environment, &record).await?;
    updated.queued_deployment = queued_deployment;
    Ok(Json(updated))
}

/// Deletes one backup (its file from the backup store, then its record), also one of a
/// database that was deleted since.
#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/databases/{database}/backups/{backup}", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path), ("backup" = String, Path)),
    responses((status = 200, body = wire::Backup), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn delete_backup(
    State(state): State<AppState>,
    Path((project, environment, database, backup)): Path<(String, String, String, String)>,
) -> ApiResult<Json<wire::Backup>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let record = state
        .store
        .list_backups(environment.id, &database)
        .await?
        .into_iter()
        .find(|b| b.id.to_string() == backup)
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "backup {backup:?} of database {database:?} does not exist; list them with `berth database backups --project {} --environment {} {database}`",
                project.name, environment.name
            ))
        })?;
    state.engine.delete_backup(&record).await.map_err(backup_error)?;
    Ok(Json(backup_view(&state, &record)))
}
