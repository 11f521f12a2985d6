//! Database endpoints: create (container or external mode), list, show, delete. Deleting
//! a database removes its container and its volume — its data — through the reconciler;
//! the CLI asks for confirmation first.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::database::{
    builtin_variables, redact_url, DatabaseCredentials, DatabaseEngine, DatabaseMode, DatabaseSpec,
    DatabaseVersion,
};
use berth_domain::source::ImageReference;
use berth_domain::ResourceName;
use berth_engine::backups::{BackupError, BackupTrigger};
use berth_engine::environments::generated_database_credentials;
use berth_engine::physical_clone::CloneMethod;
use berth_store::{BackupRecord, DatabaseRecord, EnvironmentRecord, Lifecycle, ProjectRecord};

use super::{lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// How long creating a database may wait for its image to be pulled.
const IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn view(
    state: &AppState,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    record: &DatabaseRecord,
) -> ApiResult<wire::Database> {
    let credentials = state.engine.database_credentials(record)?;
    let engine = record.spec.engine;
    let (mode, storage_gb) = match record.spec.mode {
        DatabaseMode::Container { storage_gb } => ("container", Some(storage_gb)),
        DatabaseMode::External => ("external", None),
    };
    let runtime_status = match record.spec.mode {
        DatabaseMode::External => "external".to_owned(),
        DatabaseMode::Container { .. } => {
            let name = berth_engine::naming::database_container(
                &project.name,
                &environment.name,
                &record.name,
            );
            match state
                .engine
                .runtime()
                .inspect_container(&name)
                .await
                .map_err(AppError::internal)?
            {
                Some(container) if container.running => "running".to_owned(),
                Some(_) => "stopped".to_owned(),
                None => "not_deployed".to_owned(),
            }
        }
    };
    let schedule = state.store.backup_schedule(record.id).await?;
    Ok(super::database_backups::with_schedule(
        wire::Database {
            id: record.id.to_string(),
            project: project.name.to_string(),
            environment: environment.name.to_string(),
            name: record.name.to_string(),
            engine: engine.as_str().to_owned(),
            version: record.spec.version.to_string(),
            mode: mode.to_owned(),
            storage_gb,
            host: credentials.host.clone(),
            port: credentials.port,
            user: credentials.user.clone(),
            database: credentials.database.clone(),
            url: redact_url(&credentials.url(engine)),
            variables: builtin_variables(&record.name, engine, &credentials)
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            status: record.lifecycle.as_str().to_owned(),
            runtime_status,
            created_at: record.created_at.clone(),
            final_backup: None,
            backup_schedule: None,
            backup_retention: None,
            next_backup_at: None,
            last_backup_error: None,
            queued_deployment: None,
        },
        schedule.as_ref(),
    ))
}

pub(super) fn backup_view(state: &AppState, backup: &BackupRecord) -> wire::Backup {
    wire::Backup {
        id: backup.id.to_string(),
        database: backup.database_name.to_string(),
        engine: backup.engine.as_str().to_owned(),
        path: state.engine.backup_location(backup),
        store: backup.store.clone(),
        size_bytes: backup.size_bytes,
        sha256: backup.sha256.clone(),
        reason: backup.reason.clone(),
        scheduled_slot: backup.scheduled_slot.clone(),
        created_at: backup.created_at.clone(),
    }
}

/// Backups and restores of an external database belong to whoever runs it.
fn refuse_external(record: &DatabaseRecord, action: &str) -> ApiResult<()> {
    if record.spec.mode == DatabaseMode::External {
        return Err(AppError::Invalid(format!(
            "database {} is external: Berth does not {action} it; use the tools of the provider that runs it",
            record.name
        )));
    }
    Ok(())
}

pub(super) fn backup_error(error: BackupError) -> AppError {
    match error {
        BackupError::NotRunning(_)
        | BackupError::ToolFailed { .. }
        | BackupError::ChecksumMismatch { .. }
        | BackupError::BackupStore(_) => AppError::Conflict(error.to_string()),
        BackupError::EngineMismatch { .. } => AppError::Invalid(error.to_string()),
        BackupError::Store(_) | BackupError::Engine(_) => AppError::internal(error),
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct DeleteQuery {
    /// Take a backup first; the deletion happens only if it succeeds.
    #[serde(default)]
    final_backup: bool,
}

/// Takes a logical backup (pg_dump, mariadb-dump) into the server's backup store.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/databases/{database}/backups", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    responses((status = 201, body = wire::Backup), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn create_backup(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<wire::Backup>)> {
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    refuse_external(&record, "back up")?;
    let backup = state
        .engine
        .backup_database(&project, &environment, &record, BackupTrigger::Manual)
        .await
        .map_err(backup_error)?;
    Ok((StatusCode::CREATED, Json(backup_view(&state, &backup))))
}

/// Backups of the database of this name, newest first; those of a deleted database of
/// this name too (backup records outlive their database).
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/databases/{database}/backups", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = Vec<wire::Backup>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_backups(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<wire::Backup>>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let backups = state.store.list_backups(environment.id, &database).await?;
    if backups.is_empty()
        && state.store.database_by_name(environment.id, &database).await?.is_none()
    {
        return Err(AppError::NotFound(format!(
            "database {database:?} does not exist in {}/{} and has no backups; list them with `berth database list`",
            project.name, environment.name
        )));
    }
    Ok(Json(backups.iter().map(|b| backup_view(&state, b)).collect()))
}

/// Replaces the database's data with a backup's (PostgreSQL: in one transaction). The
/// applications keep running; the CLI asks for confirmation first.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/databases/{database}/restore", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    request_body = wire::RestoreRequest,
    responses((status = 200, body = wire::Backup), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn restore_backup(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::RestoreRequest>,
) -> ApiResult<Json<wire::Backup>> {
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    refuse_external(&record, "restore")?;
    let backup = state
        .store
        .list_backups(environment.id, record.name.as_str())
        .await?
        .into_iter()
        .find(|b| b.id.to_string() == body.backup)
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "backup {:?} of database {} does not exist; list them with `berth database backups`",
                body.backup, record.name
            ))
        })?;
    tracing::warn!(database = %record.name, backup = %backup.id, "restoring a database from a backup");
    state
        .engine
        .restore_database(&project, &environment, &record, &backup)
        .await
        .map_err(backup_error)?;
    Ok(Json(backup_view(&state, &backup)))
}

pub(super) async fn find(
    state: &AppState,
    project: &str,
    environment: &str,
    name: &str,
) -> ApiResult<(ProjectRecord, EnvironmentRecord, DatabaseRecord)> {
    let (project, environment) = lookup::environment(state, project, environment).await?;
    let record = state.store.database_by_name(environment.id, name).await?.ok_or_else(|| {
        AppError::NotFound(format!(
            "database {name:?} does not exist in {}/{}; list them with `berth database list`",
            project.name, environment.name
        ))
    })?;
    Ok((project, environment, record))
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/databases", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = Vec<wire::Database>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_databases(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<Vec<wire::Database>>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let mut views = Vec::new();
    for record in state.store.list_databases(environment.id).await? {
        views.push(view(&state, &project, &environment, &record).await?);
    }
    Ok(Json(views))
}

/// Creates a database; it starts with the environment's next deployment, before the
/// applications, which receive its `BERTH_DATABASE_<NAME>_*` variables.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/databases", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::CreateDatabase,
    responses((status = 201, body = wire::Database), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn create_database(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::CreateDatabase>,
) -> ApiResult<(StatusCode, Json<wire::Database>)> {
    let name = ResourceName::parse(&body.name)?;
    let engine = DatabaseEngine::parse(&body.engine)?;
    let backup_settings = super::database_backups::BackupSettings::validate(
        body.backup_schedule.as_deref(),
        body.backup_retention,
        body.mode.as_deref() == Some("external"),
    )?;
    let version =
        DatabaseVersion::parse(body.version.as_deref().unwrap_or(engine.default_version()))?;
    let (mode, credentials) = match body.mode.as_deref().unwrap_or("container") {
        "container" => {
            if body.url.is_some() {
                return Err(AppError::Invalid("--external-url is for external databases; add --mode external or leave out the URL".into()));
            }
            let storage_gb = body.storage_gb.unwrap_or(1);
            if !(1..=16_384).contains(&storage_gb) {
                return Err(AppError::Invalid("--storage must be between 1 and 16384 GB".into()));
            }
            (DatabaseMode::Container { storage_gb }, generated_database_credentials(&name, engine))
        }
        "external" => {
            let url = body.url.as_deref().ok_or_else(|| {
                AppError::Invalid(match engine {
                    DatabaseEngine::Redis => "an external database needs its URL, e.g. --external-url redis://:password@host:6379/0".to_owned(),
                    _ => format!(
                        "an external database needs its URL, e.g. --external-url {}://user:password@host:{}/name",
                        engine.scheme(),
                        engine.port()
                    ),
                })
            })?;
            if body.storage_gb.is_some() {
                return Err(AppError::Invalid("--storage applies to container databases only".into()));
            }
            (DatabaseMode::External, DatabaseCredentials::parse_url(engine, url)?)
        }
        "managed" => {
            return Err(AppError::Invalid(
                "managed databases need a cloud provider, and none is configured on this server; use --mode container or --mode external".into(),
            ))
        }
        other => return Err(AppError::Invalid(format!("unknown database mode {other:?}: use container or external"))),
    };
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    if matches!(mode, DatabaseMode::Container { .. }) {
        // Refuse a version that cannot be had now rather than fail at deploy time.
        let image = engine.image(&version);
        let reference = ImageReference::parse(&image)?;
        let available = tokio::time::timeout(
            IMAGE_PULL_TIMEOUT,
            state.engine.ensure_image_available(&reference),
        )
        .await;
        match available {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(AppError::Invalid(format!(
                    "{engine} {version} is not available: {message}. Offline, scripts/build-base-images.sh --with-databases provides {engine} {}",
                    engine.default_version()
                )))
            }
            Err(_) => {
                return Err(AppError::Invalid(format!(
                    "{engine} {version} is not available: pulling {image} took longer than {} s",
                    IMAGE_PULL_TIMEOUT.as_secs()
                )))
            }
        }
    }
    if mode == DatabaseMode::External {
        // Connect and authenticate now: wrong credentials are refused before anything is
        // stored, not discovered by the applications at deploy time.
        state.engine.verify_external_database(engine, &credentials).await.map_err(|error| {
            AppError::Invalid(format!("the external database was not created: {error}"))
        })?;
    }
    let sealed = state
        .key
        .encrypt(&serde_json::to_vec(&credentials).map_err(AppError::internal)?)
        .map_err(AppError::internal)?;
    let spec = DatabaseSpec { engine, version, mode };
    let record = state.store.create_database(environment.id, &name, &spec, &sealed).await?;
    if let Some(settings) = backup_settings {
        settings.apply(&state, &record).await?;
    }
    Ok((StatusCode::CREATED, Json(view(&state, &project, &environment, &record).await?)))
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/databases/{database}", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = wire::Database), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_database(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Database>> {
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    Ok(Json(view(&state, &project, &environment, &record).await?))
}

/// Marks the database for deletion: the reconciler stops its container gracefully and
/// removes its volume (its data), then its record. Poll until 404.
#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/databases/{database}", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path), DeleteQuery),
    responses((status = 202, body = wire::Database), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn delete_database(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<(StatusCode, Json<wire::Database>)> {
    let (project, environment, mut record) =
        find(&state, &project, &environment, &database).await?;
    let final_backup = if query.final_backup {
        refuse_external(&record, "back up")?;
        let backup = state
            .engine
            .backup_database(&project, &environment, &record, BackupTrigger::Final)
            .await
            .map_err(|error| {
                AppError::Conflict(format!(
                    "the final backup failed, so nothing was deleted: {error}"
                ))
            })?;
        Some(backup_view(&state, &backup))
    } else {
        None
    };
    state.store.mark_database_deleting(record.id).await?;
    state.engine.notify();
    record.lifecycle = Lifecycle::Deleting;
    let mut deleted = view(&state, &project, &environment, &record).await?;
    deleted.final_backup = final_backup;
    Ok((StatusCode::ACCEPTED, Json(deleted)))
}

/// Creates a new database (new credentials) holding a consistent copy of this one's data,
/// streamed from the source's dump into the new database's restore. The source keeps
/// serving; the copy is isolated from it.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/databases/{database}/clone", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    request_body = wire::CloneDatabase,
    responses((status = 201, body = wire::ClonedDatabase), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn clone_database(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::CloneDatabase>,
) -> ApiResult<(StatusCode, Json<wire::ClonedDatabase>)> {
    let name = ResourceName::parse(&body.name)?;
    let (project, source_environment, source) =
        find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(source.lifecycle, "the database")?;
    if source.spec.mode == DatabaseMode::External {
        return Err(AppError::Invalid(format!(
            "database {} is external; clone it with the tools of the provider that runs it",
            source.name
        )));
    }
    // Refused before anything is created.
    let method = match body.method.as_deref() {
        Some(method) => {
            let method = CloneMethod::parse(method).map_err(AppError::Invalid)?;
            method.supported_by(&source).map_err(AppError::Invalid)?;
            method
        }
        None => CloneMethod::default_for(&source),
    };
    let target_environment = match body.environment.as_deref() {
        Some(other) => lookup::environment(&state, project.name.as_str(), other).await?.1,
        None => source_environment.clone(),
    };
    lookup::ensure_active(target_environment.lifecycle, "the target environment")?;
    let credentials = generated_database_credentials(&name, source.spec.engine);
    let sealed = state
        .key
        .encrypt(&serde_json::to_vec(&credentials).map_err(AppError::internal)?)
        .map_err(AppError::internal)?;
    let target =
        state.store.create_database(target_environment.id, &name, &source.spec, &sealed).await?;
    let copied = state
        .engine
        .clone_database_with_method(
            &project,
            &source_environment,
            &source,
            &target_environment,
            &target,
            Some(method),
        )
        .await;
    let cloned = match copied {
        Ok(cloned) => cloned,
        Err(error) => {
            // Leave nothing half-made: the reconciler removes the new container and volume.
            state.store.mark_database_deleting(target.id).await?;
            state.engine.notify();
            return Err(match error {
                BackupError::NotRunning(_) | BackupError::ToolFailed { .. } => {
                    AppError::Conflict(format!("the clone failed and was removed: {error}"))
                }
                other => AppError::internal(other),
            });
        }
    };
    let database = view(&state, &project, &target_environment, &target).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::ClonedDatabase {
            database,
            clone_method: Some(cloned.method.as_str().to_owned()),
            copied_bytes: cloned.bytes,
        }),
    ))
}
