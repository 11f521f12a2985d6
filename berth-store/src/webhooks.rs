//! Git automation per project: the webhook secret (ciphertext only), the polling interval
//! and branch-environment settings, the record of webhook deliveries (verdict and what
//! they caused, never the payload), the branch heads the polling fallback last saw, and
//! which environments were created for a pushed branch.

use berth_domain::{BranchName, EnvironmentId, ProjectId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::parse_id;
use crate::{now_rfc3339, Store, StoreError};

/// A project's Git automation settings; the defaults (no row yet) are all off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectGitSettings {
    /// The webhook secret, encrypted with the master key; `None` until first asked for.
    pub webhook_secret_ciphertext: Option<Vec<u8>>,
    /// Seconds between polls of the followed branches; `None`: no polling.
    pub poll_interval_seconds: Option<u64>,
    /// Branch glob whose pushes create environments; `None`: off.
    pub branch_environments_glob: Option<String>,
    /// The environment branch environments are cloned from.
    pub branch_blueprint: Option<String>,
    pub branch_environments_with_data: bool,
}

/// One webhook delivery, as recorded.
#[derive(Debug, Clone)]
pub struct WebhookDeliveryRecord {
    pub id: i64,
    pub project_name: String,
    pub provider: String,
    pub event: String,
    /// `accepted`, `ignored` or `refused`.
    pub verdict: String,
    pub reason: String,
    /// What it caused (deployments queued, environments created or deleted).
    pub triggered: String,
    pub received_at: String,
}

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewWebhookDelivery<'a> {
    pub project_id: Option<ProjectId>,
    pub project_name: &'a str,
    pub provider: &'a str,
    pub event: &'a str,
    pub verdict: &'a str,
    pub reason: &'a str,
    pub triggered: &'a str,
}

fn settings_from_row(row: &SqliteRow) -> Result<ProjectGitSettings, StoreError> {
    let interval: Option<i64> = row.try_get("poll_interval_seconds")?;
    let with_data: i64 = row.try_get("branch_environments_with_data")?;
    Ok(ProjectGitSettings {
        webhook_secret_ciphertext: row.try_get("webhook_secret_ciphertext")?,
        poll_interval_seconds: interval.and_then(|i| u64::try_from(i).ok()),
        branch_environments_glob: row.try_get("branch_environments_glob")?,
        branch_blueprint: row.try_get("branch_blueprint")?,
        branch_environments_with_data: with_data != 0,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<WebhookDeliveryRecord, StoreError> {
    Ok(WebhookDeliveryRecord {
        id: row.try_get("id")?,
        project_name: row.try_get("project_name")?,
        provider: row.try_get("provider")?,
        event: row.try_get("event")?,
        verdict: row.try_get("verdict")?,
        reason: row.try_get("reason")?,
        triggered: row.try_get("triggered")?,
        received_at: row.try_get("received_at")?,
    })
}

impl Store {
    /// The project's Git automation settings (all off when never set).
    pub async fn project_git_settings(
        &self,
        project: ProjectId,
    ) -> Result<ProjectGitSettings, StoreError> {
        let row = sqlx::query("SELECT * FROM project_git_settings WHERE project_id = ?")
            .bind(project.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(settings_from_row).transpose()?.unwrap_or_default())
    }

    /// Stores a webhook secret (already encrypted) unless one exists, and returns the one
    /// in effect: two first requests racing agree on one secret.
    pub async fn ensure_webhook_secret(
        &self,
        project: ProjectId,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO project_git_settings (project_id, webhook_secret_ciphertext, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (project_id) DO UPDATE SET webhook_secret_ciphertext = excluded.webhook_secret_ciphertext, updated_at = excluded.updated_at
             WHERE project_git_settings.webhook_secret_ciphertext IS NULL",
        )
        .bind(project.to_string())
        .bind(ciphertext)
        .bind(&now)
        .execute(self.pool())
        .await?;
        self.project_git_settings(project)
            .await?
            .webhook_secret_ciphertext
            .ok_or_else(|| StoreError::corrupt("webhook secret", "missing after it was stored"))
    }

    /// Replaces the webhook secret (rotation): deliveries signed with the old one are
    /// refused from now on.
    pub async fn replace_webhook_secret(
        &self,
        project: ProjectId,
        ciphertext: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO project_git_settings (project_id, webhook_secret_ciphertext, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (project_id) DO UPDATE SET webhook_secret_ciphertext = excluded.webhook_secret_ciphertext, updated_at = excluded.updated_at",
        )
        .bind(project.to_string())
        .bind(ciphertext)
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Saves the polling and branch-environment settings (the secret is left alone).
    pub async fn save_project_git_settings(
        &self,
        project: ProjectId,
        settings: &ProjectGitSettings,
    ) -> Result<(), StoreError> {
        let interval = settings.poll_interval_seconds.and_then(|i| i64::try_from(i).ok());
        sqlx::query(
            "INSERT INTO project_git_settings (project_id, poll_interval_seconds, branch_environments_glob, branch_blueprint, branch_environments_with_data, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (project_id) DO UPDATE SET poll_interval_seconds = excluded.poll_interval_seconds,
                 branch_environments_glob = excluded.branch_environments_glob, branch_blueprint = excluded.branch_blueprint,
                 branch_environments_with_data = excluded.branch_environments_with_data, updated_at = excluded.updated_at",
        )
        .bind(project.to_string())
        .bind(interval)
        .bind(settings.branch_environments_glob.as_deref())
        .bind(settings.branch_blueprint.as_deref())
        .bind(i64::from(settings.branch_environments_with_data))
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Projects that poll their followed branches, with their interval in seconds.
    pub async fn projects_with_polling(&self) -> Result<Vec<(ProjectId, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.project_id, s.poll_interval_seconds FROM project_git_settings s JOIN projects p ON p.id = s.project_id
             WHERE s.poll_interval_seconds IS NOT NULL AND p.status = 'active'",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let interval: i64 = row.try_get("poll_interval_seconds")?;
                Ok((
                    parse_id("project id", row.try_get("project_id")?)?,
                    u64::try_from(interval).unwrap_or(60),
                ))
            })
            .collect()
    }

    pub async fn record_webhook_delivery(
        &self,
        delivery: &NewWebhookDelivery<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (project_id, project_name, provider, event, verdict, reason, triggered, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(delivery.project_id.map(|p| p.to_string()))
        .bind(delivery.project_name)
        .bind(delivery.provider)
        .bind(delivery.event)
        .bind(delivery.verdict)
        .bind(delivery.reason)
        .bind(delivery.triggered)
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        // Keep the record bounded: the newest 500 deliveries per project name.
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE project_name = ? AND id NOT IN (SELECT id FROM webhook_deliveries WHERE project_name = ? ORDER BY id DESC LIMIT 500)",
        )
        .bind(delivery.project_name)
        .bind(delivery.project_name)
        .execute(self.pool())
        .await?;
        // And at most 10 000 in all: unknown project names must not grow it without end.
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE id <= (SELECT MAX(id) FROM webhook_deliveries) - 10000",
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deliveries addressed to a project name (known or not), newest first.
    pub async fn list_webhook_deliveries(
        &self,
        project_name: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE project_name = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(project_name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// The head the polling fallback last saw for a repository's branch.
    pub async fn polled_head(
        &self,
        project: ProjectId,
        repository_key: &str,
        branch: &BranchName,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT commit_id FROM polled_heads WHERE project_id = ? AND repository_key = ? AND branch = ?",
        )
        .bind(project.to_string())
        .bind(repository_key)
        .bind(branch.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| row.try_get("commit_id")).transpose().map_err(StoreError::from)
    }

    pub async fn set_polled_head(
        &self,
        project: ProjectId,
        repository_key: &str,
        branch: &BranchName,
        commit: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO polled_heads (project_id, repository_key, branch, commit_id, checked_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (project_id, repository_key, branch) DO UPDATE SET commit_id = excluded.commit_id, checked_at = excluded.checked_at",
        )
        .bind(project.to_string())
        .bind(repository_key)
        .bind(branch.as_str())
        .bind(commit)
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that `environment` was created for `branch` (so deleting the branch
    /// deletes it, and only it).
    pub async fn record_branch_environment(
        &self,
        project: ProjectId,
        environment: EnvironmentId,
        branch: &BranchName,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO branch_environments (environment_id, project_id, branch, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(environment.to_string())
        .bind(project.to_string())
        .bind(branch.as_str())
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The environments created for `branch` in the project.
    pub async fn branch_environments(
        &self,
        project: ProjectId,
        branch: &BranchName,
    ) -> Result<Vec<EnvironmentId>, StoreError> {
        let rows = sqlx::query(
            "SELECT environment_id FROM branch_environments WHERE project_id = ? AND branch = ?",
        )
        .bind(project.to_string())
        .bind(branch.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| parse_id("environment id", row.try_get("environment_id")?)).collect()
    }
}
