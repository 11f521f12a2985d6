//! Environment state beyond its lifecycle (stopped or running) and preview environments:
//! the preview settings of a blueprint environment, the live previews cloned from it (one
//! per pull request) and the pull requests that were refused a preview, with the reason.

use berth_domain::{BranchName, EnvironmentId, OrganizationId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::parse_id;
use crate::{now_rfc3339, Store, StoreError};

/// How long a preview may stay idle when its blueprint no longer has settings (48 h).
pub(crate) const DEFAULT_EXPIRY_SECONDS: u64 = 48 * 3600;

/// Previews enabled on a blueprint environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewSettingsRecord {
    pub environment_id: EnvironmentId,
    /// Copy the blueprint's databases and volumes into each preview.
    pub with_data: bool,
    pub max_previews: u32,
    /// A preview with no pull-request activity for longer than this is deleted.
    pub expire_after_seconds: u64,
    /// Whether pull requests from forks get a preview (they would receive secrets and data).
    pub allow_forks: bool,
    pub updated_at: String,
}

/// A live preview environment of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRecord {
    pub environment_id: EnvironmentId,
    pub blueprint_id: EnvironmentId,
    pub number: u64,
    pub head_branch: BranchName,
    pub head_commit: String,
    pub head_repository_url: String,
    pub from_fork: bool,
    pub created_at: String,
    pub last_activity_unix: i64,
}

/// A pull request that got no preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRefusalRecord {
    pub blueprint_id: EnvironmentId,
    pub number: u64,
    pub head_branch: String,
    pub reason: String,
    pub created_at: String,
}

/// Seconds since the Unix epoch (the clock of preview expiry).
pub fn now_unix_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn settings_from_row(row: &SqliteRow) -> Result<PreviewSettingsRecord, StoreError> {
    let max: i64 = row.try_get("max_previews")?;
    let expire: i64 = row.try_get("expire_after_seconds")?;
    Ok(PreviewSettingsRecord {
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        with_data: row.try_get("with_data")?,
        max_previews: u32::try_from(max).map_err(|e| StoreError::corrupt("max previews", e))?,
        expire_after_seconds: u64::try_from(expire)
            .map_err(|e| StoreError::corrupt("preview expiry", e))?,
        allow_forks: row.try_get("allow_forks")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn preview_from_row(row: &SqliteRow) -> Result<PreviewRecord, StoreError> {
    let number: i64 = row.try_get("number")?;
    let branch: &str = row.try_get("head_branch")?;
    Ok(PreviewRecord {
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        blueprint_id: parse_id("environment id", row.try_get("blueprint_id")?)?,
        number: u64::try_from(number).map_err(|e| StoreError::corrupt("pull request number", e))?,
        head_branch: BranchName::parse(branch).map_err(|e| StoreError::corrupt("branch", e))?,
        head_commit: row.try_get("head_commit")?,
        head_repository_url: row.try_get("head_repository_url")?,
        from_fork: row.try_get("from_fork")?,
        created_at: row.try_get("created_at")?,
        last_activity_unix: row.try_get("last_activity_unix")?,
    })
}

fn refusal_from_row(row: &SqliteRow) -> Result<PreviewRefusalRecord, StoreError> {
    let number: i64 = row.try_get("number")?;
    Ok(PreviewRefusalRecord {
        blueprint_id: parse_id("environment id", row.try_get("blueprint_id")?)?,
        number: u64::try_from(number).map_err(|e| StoreError::corrupt("pull request number", e))?,
        head_branch: row.try_get("head_branch")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|e| StoreError::corrupt(what, e))
}

impl Store {
    // ---- stopped environments ----

    /// Records that an environment is stopped (or running again).
    pub async fn set_environment_stopped(
        &self,
        id: EnvironmentId,
        stopped: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET stopped = ? WHERE id = ?")
            .bind(stopped)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    // ---- preview settings ----

    /// Enables previews on `settings.environment_id`, or replaces its settings.
    pub async fn set_preview_settings(
        &self,
        settings: &PreviewSettingsRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO preview_settings (environment_id, with_data, max_previews, expire_after_seconds, allow_forks, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (environment_id) DO UPDATE SET with_data = excluded.with_data, max_previews = excluded.max_previews,
               expire_after_seconds = excluded.expire_after_seconds, allow_forks = excluded.allow_forks, updated_at = excluded.updated_at",
        )
        .bind(settings.environment_id.to_string())
        .bind(settings.with_data)
        .bind(i64::from(settings.max_previews))
        .bind(to_i64(settings.expire_after_seconds, "preview expiry")?)
        .bind(settings.allow_forks)
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Disables previews; `Ok(false)` when they were not enabled.
    pub async fn delete_preview_settings(&self, id: EnvironmentId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM preview_settings WHERE environment_id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn preview_settings(
        &self,
        id: EnvironmentId,
    ) -> Result<Option<PreviewSettingsRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM preview_settings WHERE environment_id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(settings_from_row).transpose()
    }

    // ---- previews ----

    pub async fn record_preview(&self, preview: &PreviewRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO previews (environment_id, blueprint_id, number, head_branch, head_commit, head_repository_url, from_fork, created_at, last_activity_unix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(preview.environment_id.to_string())
        .bind(preview.blueprint_id.to_string())
        .bind(to_i64(preview.number, "pull request number")?)
        .bind(preview.head_branch.as_str())
        .bind(&preview.head_commit)
        .bind(&preview.head_repository_url)
        .bind(preview.from_fork)
        .bind(&preview.created_at)
        .bind(preview.last_activity_unix)
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::unique_as_conflict(e, || {
                format!("pull request #{} already has a preview", preview.number)
            })
        })?;
        Ok(())
    }

    /// Records new activity on a preview (a new head commit).
    pub async fn touch_preview(
        &self,
        environment: EnvironmentId,
        head_commit: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE previews SET head_commit = ?, last_activity_unix = ? WHERE environment_id = ?",
        )
        .bind(head_commit)
        .bind(now_unix_seconds())
        .bind(environment.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn preview_by_number(
        &self,
        blueprint: EnvironmentId,
        number: u64,
    ) -> Result<Option<PreviewRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM previews WHERE blueprint_id = ? AND number = ?")
            .bind(blueprint.to_string())
            .bind(to_i64(number, "pull request number")?)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(preview_from_row).transpose()
    }

    /// The previews of a blueprint whose environment is not being deleted.
    pub async fn list_previews(
        &self,
        blueprint: EnvironmentId,
    ) -> Result<Vec<PreviewRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.* FROM previews p JOIN environments e ON e.id = p.environment_id WHERE p.blueprint_id = ? AND e.status = 'active' ORDER BY p.number",
        )
        .bind(blueprint.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(preview_from_row).collect()
    }

    /// Every live preview of the organization whose last activity is older than its
    /// blueprint's expiry, or the default expiry once previews were disabled (the expiry
    /// task's view).
    pub async fn expired_previews(
        &self,
        organization: OrganizationId,
        now_unix: i64,
    ) -> Result<Vec<PreviewRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.* FROM previews p
               JOIN environments e ON e.id = p.environment_id
               JOIN projects pr ON pr.id = e.project_id
               LEFT JOIN preview_settings s ON s.environment_id = p.blueprint_id
             WHERE pr.organization_id = ? AND e.status = 'active'
               AND p.last_activity_unix + COALESCE(s.expire_after_seconds, ?) < ?",
        )
        .bind(organization.to_string())
        .bind(to_i64(DEFAULT_EXPIRY_SECONDS, "preview expiry")?)
        .bind(now_unix)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(preview_from_row).collect()
    }

    // ---- refusals ----

    pub async fn record_preview_refusal(
        &self,
        blueprint: EnvironmentId,
        number: u64,
        head_branch: &str,
        reason: &str,
    ) -> Result<PreviewRefusalRecord, StoreError> {
        let record = PreviewRefusalRecord {
            blueprint_id: blueprint,
            number,
            head_branch: head_branch.to_owned(),
            reason: reason.to_owned(),
            created_at: now_rfc3339(),
        };
        sqlx::query(
            "INSERT INTO preview_refusals (blueprint_id, number, head_branch, reason, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(blueprint.to_string())
        .bind(to_i64(number, "pull request number")?)
        .bind(head_branch)
        .bind(reason)
        .bind(&record.created_at)
        .execute(self.pool())
        .await?;
        Ok(record)
    }

    /// The latest refusals of a blueprint, newest first.
    pub async fn list_preview_refusals(
        &self,
        blueprint: EnvironmentId,
        limit: u32,
    ) -> Result<Vec<PreviewRefusalRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM preview_refusals WHERE blueprint_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(blueprint.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(refusal_from_row).collect()
    }
}
