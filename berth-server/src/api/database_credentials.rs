//! Changing a database's credentials over the API: `POST .../rotate-credentials` gives a
//! container database a new generated password, and the `external_url` field of
//! `PATCH .../databases/{database}` (handled in `database_backups.rs`, which calls
//! [`change_external_url`]) points an external one at a new URL. Both answer with the
//! database and the deployment queued to hand the new values to the applications
//! (`queued_deployment`). The engine does the work (`berth_engine::database_credentials`);
//! no password appears in an answer or an error.

use axum::extract::{Path, State};
use axum::Json;
use berth_api as wire;
use berth_domain::database::{DatabaseCredentials, DatabaseMode};
use berth_engine::database_credentials::{CredentialsChanged, CredentialsError};
use berth_store::{DatabaseRecord, EnvironmentRecord, ProjectRecord};

use super::databases::{find, view};
use super::lookup;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// The API's answer for each way a change of credentials can fail.
fn credentials_error(error: CredentialsError) -> AppError {
    match error {
        CredentialsError::External(_)
        | CredentialsError::NotExternal(_)
        | CredentialsError::Unverified(_) => AppError::Invalid(error.to_string()),
        CredentialsError::NotRunning(_)
        | CredentialsError::OutOfDate(_)
        | CredentialsError::Refused { .. }
        | CredentialsError::Restart(_) => AppError::Conflict(error.to_string()),
        CredentialsError::NotStored(_) | CredentialsError::Engine(_) => AppError::internal(error),
    }
}

/// The database's view after a change, naming the deployment that was queued.
async fn changed_view(
    state: &AppState,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    changed: CredentialsChanged,
) -> ApiResult<wire::Database> {
    let mut database = view(state, project, environment, &changed.database).await?;
    database.queued_deployment = changed.deployment.map(|deployment| deployment.id.to_string());
    Ok(database)
}

/// Gives a container database a new generated password: set in the running server,
/// stored encrypted, the container recreated with it; then the environment's applications
/// are redeployed (`queued_deployment`). Until their new instances serve, the old
/// instances cannot open new connections.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/databases/{database}/rotate-credentials", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = wire::Database), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn rotate_database_credentials(
    State(state): State<AppState>,
    Path((project, environment, database)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Database>> {
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    let changed = state
        .engine
        .rotate_database_credentials(&project, &environment, &record)
        .await
        .map_err(credentials_error)?;
    Ok(Json(changed_view(&state, &project, &environment, changed).await?))
}

/// The parsed new URL of an external database, checked against its engine; refused for a
/// container database before anything else of the request is applied.
pub(super) fn parse_external_url(
    record: &DatabaseRecord,
    url: &str,
) -> ApiResult<DatabaseCredentials> {
    if record.spec.mode != DatabaseMode::External {
        return Err(AppError::Invalid(format!(
            "--external-url is for external databases; database {} runs in a container and Berth generates its credentials: use `berth database rotate-credentials`",
            record.name
        )));
    }
    Ok(DatabaseCredentials::parse_url(record.spec.engine, url)?)
}

/// Verifies and stores an external database's new credentials, then redeploys the
/// environment's applications; returns the database's new view.
pub(super) async fn change_external_url(
    state: &AppState,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    record: &DatabaseRecord,
    credentials: &DatabaseCredentials,
) -> ApiResult<(DatabaseRecord, Option<String>)> {
    let changed = state
        .engine
        .change_external_database_url(project, environment, record, credentials)
        .await
        .map_err(credentials_error)?;
    let deployment = changed.deployment.map(|deployment| deployment.id.to_string());
    Ok((changed.database, deployment))
}
