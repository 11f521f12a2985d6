//! Deployments: the queue, their lifecycle, the services they put in place, their steps
//! and logs; and the reconciler's view of what must exist.

use std::collections::BTreeSet;

use berth_domain::deployment::{DeploymentStatus, FailureReason, StepName, StepStatus};
use berth_domain::plan::DesiredState;
use berth_domain::{ApplicationId, DeploymentId, EnvironmentId, OrganizationId, ProjectId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::{parse_id, parse_opt_id};
use crate::time_format::millis_between;
use crate::{
    now_rfc3339, DeploymentRecord, DeploymentServiceRecord, LogRecord, StepRecord, Store,
    StoreError,
};

fn deployment_from_row(row: &SqliteRow) -> Result<DeploymentRecord, StoreError> {
    let status: &str = row.try_get("status")?;
    let failure: Option<String> = row.try_get("failure_json")?;
    Ok(DeploymentRecord {
        id: parse_id("deployment id", row.try_get("id")?)?,
        project_id: parse_id("project id", row.try_get("project_id")?)?,
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        application_id: parse_opt_id("application id", row.try_get("application_id")?)?,
        status: status.parse().map_err(|e| StoreError::corrupt("deployment status", e))?,
        trigger: row.try_get("trigger")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        failure: failure
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::corrupt("deployment failure", e))?,
        rollback_of: parse_opt_id("deployment id", row.try_get("rollback_of")?)?,
    })
}

fn step_from_row(row: &SqliteRow) -> Result<StepRecord, StoreError> {
    let name: &str = row.try_get("name")?;
    let status: &str = row.try_get("status")?;
    let duration: Option<i64> = row.try_get("duration_ms")?;
    Ok(StepRecord {
        id: row.try_get("id")?,
        deployment_id: parse_id("deployment id", row.try_get("deployment_id")?)?,
        application_name: row.try_get("application_name")?,
        name: name.parse().map_err(|e| StoreError::corrupt("step name", e))?,
        status: status.parse().map_err(|e| StoreError::corrupt("step status", e))?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        duration_ms: duration.and_then(|d| u64::try_from(d).ok()),
        message: row.try_get("message")?,
    })
}

impl Store {
    /// Queues a deployment request. Queued requests it covers (the same application, or
    /// any when it deploys the whole environment) are marked superseded: only the newest
    /// request matters.
    pub async fn create_deployment(
        &self,
        project: ProjectId,
        environment: EnvironmentId,
        application: Option<ApplicationId>,
        trigger: &str,
        rollback_of: Option<DeploymentId>,
    ) -> Result<DeploymentRecord, StoreError> {
        let record = DeploymentRecord {
            id: DeploymentId::new_random(),
            project_id: project,
            environment_id: environment,
            application_id: application,
            status: DeploymentStatus::Queued,
            trigger: trigger.to_owned(),
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            failure: None,
            rollback_of,
        };
        let mut tx = self.write_transaction().await?;
        // A stopped environment runs nothing until `berth environment start` (every way
        // of deploying goes through here: the API, webhooks, redeploys, rollbacks).
        let stopped: Option<(String, bool)> =
            sqlx::query_as("SELECT name, stopped FROM environments WHERE id = ?")
                .bind(environment.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((name, true)) = stopped {
            return Err(StoreError::Conflict(format!(
                "environment {name} is stopped; start it with `berth environment start {name}` before deploying"
            )));
        }
        sqlx::query(
            "UPDATE deployments SET status = 'superseded', finished_at = ? WHERE environment_id = ? AND status = 'queued' AND (? IS NULL OR application_id = ?)",
        )
        .bind(&record.created_at)
        .bind(environment.to_string())
        .bind(application.map(|a| a.to_string()))
        .bind(application.map(|a| a.to_string()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO deployments (id, project_id, environment_id, application_id, status, trigger, created_at, rollback_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(project.to_string())
        .bind(environment.to_string())
        .bind(application.map(|a| a.to_string()))
        .bind(record.status.as_str())
        .bind(trigger)
        .bind(&record.created_at)
        .bind(rollback_of.map(|d| d.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn deployment(
        &self,
        id: DeploymentId,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM deployments WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// Deployments of an environment, newest first.
    pub async fn list_deployments(
        &self,
        environment: EnvironmentId,
        limit: u32,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE environment_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(environment.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    pub async fn deployments_with_status(
        &self,
        status: DeploymentStatus,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM deployments WHERE status = ? ORDER BY created_at, rowid")
                .bind(status.as_str())
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Atomically moves the oldest queued deployment of an environment with nothing running
    /// to `running`, and returns it. One deployment at a time per environment.
    pub async fn claim_next_deployment(&self) -> Result<Option<DeploymentRecord>, StoreError> {
        // One statement, so SQLite takes the write lock at once and waits for it (a read
        // transaction upgraded to a write fails at once with "database is locked" when
        // another connection writes meanwhile).
        let row = sqlx::query(
            "UPDATE deployments SET status = 'running', started_at = ? WHERE id = (SELECT d.id FROM deployments d WHERE d.status = 'queued' AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.environment_id = d.environment_id AND r.status = 'running') ORDER BY d.created_at, d.rowid LIMIT 1) RETURNING *",
        )
        .bind(now_rfc3339())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// Cancels queued deployments of an environment (it is being deleted); returns how many.
    pub async fn cancel_queued_deployments(
        &self,
        environment: EnvironmentId,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE deployments SET status = 'cancelled', finished_at = ? WHERE environment_id = ? AND status = 'queued'",
        )
        .bind(now_rfc3339())
        .bind(environment.to_string())
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Cancels a deployment that is still queued; `Ok(false)` when it is not queued.
    pub async fn cancel_queued_deployment(&self, id: DeploymentId) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE deployments SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'")
            .bind(now_rfc3339())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deployments of one application (those covering it alone or its whole
    /// environment), newest first.
    pub async fn list_application_deployments(
        &self,
        environment: EnvironmentId,
        application: ApplicationId,
        limit: u32,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE environment_id = ? AND (application_id IS NULL OR application_id = ?) ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(environment.to_string())
        .bind(application.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Records a terminal state.
    pub async fn finish_deployment(
        &self,
        id: DeploymentId,
        status: DeploymentStatus,
        failure: Option<&FailureReason>,
    ) -> Result<(), StoreError> {
        let failure_json = failure
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::corrupt("deployment failure", e))?;
        sqlx::query(
            "UPDATE deployments SET status = ?, finished_at = ?, failure_json = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(now_rfc3339())
        .bind(failure_json)
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn record_service(
        &self,
        service: &DeploymentServiceRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deployment_services (deployment_id, application_id, application_name, git_commit, image, container_name, instances, config_snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (deployment_id, application_id) DO UPDATE SET git_commit = excluded.git_commit, image = excluded.image, container_name = excluded.container_name, instances = excluded.instances, config_snapshot = excluded.config_snapshot",
        )
        .bind(service.deployment_id.to_string())
        .bind(service.application_id.to_string())
        .bind(&service.application_name)
        .bind(&service.git_commit)
        .bind(&service.image)
        .bind(&service.container_name)
        .bind(i64::from(service.instances))
        .bind(&service.config_snapshot)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn deployment_services(
        &self,
        deployment: DeploymentId,
    ) -> Result<Vec<DeploymentServiceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM deployment_services WHERE deployment_id = ? ORDER BY application_name",
        )
        .bind(deployment.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeploymentServiceRecord {
                    deployment_id: parse_id("deployment id", row.try_get("deployment_id")?)?,
                    application_id: parse_id("application id", row.try_get("application_id")?)?,
                    application_name: row.try_get("application_name")?,
                    git_commit: row.try_get("git_commit")?,
                    image: row.try_get("image")?,
                    container_name: row.try_get("container_name")?,
                    instances: u16::try_from(row.try_get::<i64, _>("instances")?).unwrap_or(1),
                    config_snapshot: row.try_get("config_snapshot")?,
                })
            })
            .collect()
    }

    /// Opens a step in `running` state and returns its id.
    pub async fn start_step(
        &self,
        deployment: DeploymentId,
        application: Option<&str>,
        name: StepName,
    ) -> Result<i64, StoreError> {
        let result = sqlx::query(
            "INSERT INTO deployment_steps (deployment_id, application_name, name, status, started_at) VALUES (?, ?, ?, 'running', ?)",
        )
        .bind(deployment.to_string())
        .bind(application)
        .bind(name.as_str())
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(result.last_insert_rowid())
    }

    pub async fn finish_step(
        &self,
        step: i64,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = now_rfc3339();
        let started: Option<String> =
            sqlx::query_scalar("SELECT started_at FROM deployment_steps WHERE id = ?")
                .bind(step)
                .fetch_optional(self.pool())
                .await?;
        let duration = started.as_deref().and_then(|s| millis_between(s, &finished));
        sqlx::query("UPDATE deployment_steps SET status = ?, finished_at = ?, duration_ms = ?, message = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(&finished)
            .bind(duration.and_then(|d| i64::try_from(d).ok()))
            .bind(message)
            .bind(step)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Closes every step still `running` for a deployment (after a crash or a failure).
    pub async fn fail_open_steps(
        &self,
        deployment: DeploymentId,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployment_steps SET status = 'failed', finished_at = ?, message = ? WHERE deployment_id = ? AND status = 'running'")
            .bind(now_rfc3339())
            .bind(message)
            .bind(deployment.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn deployment_steps(
        &self,
        deployment: DeploymentId,
    ) -> Result<Vec<StepRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM deployment_steps WHERE deployment_id = ? ORDER BY id")
                .bind(deployment.to_string())
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(step_from_row).collect()
    }

    pub async fn append_logs(
        &self,
        deployment: DeploymentId,
        application: Option<&str>,
        step: Option<&str>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = now_rfc3339();
        let mut tx = self.write_transaction().await?;
        for line in lines {
            sqlx::query("INSERT INTO deployment_logs (deployment_id, application_name, step, ts, line) VALUES (?, ?, ?, ?, ?)")
                .bind(deployment.to_string())
                .bind(application)
                .bind(step)
                .bind(&now)
                .bind(line)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Log lines with id greater than `after`, oldest first, at most `limit`.
    pub async fn deployment_logs(
        &self,
        deployment: DeploymentId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM deployment_logs WHERE deployment_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(deployment.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    id: row.try_get("id")?,
                    deployment_id: parse_id("deployment id", row.try_get("deployment_id")?)?,
                    application_name: row.try_get("application_name")?,
                    step: row.try_get("step")?,
                    timestamp: row.try_get("ts")?,
                    line: row.try_get("line")?,
                })
            })
            .collect()
    }

    /// What must exist in the runtime for `organization`: active resources, the serving
    /// and in-progress deployments, and the images they reference — including those of
    /// the last `keep_successful` successful deployments of each application (rollbacks).
    pub async fn desired_state(
        &self,
        organization: OrganizationId,
        keep_successful: u32,
    ) -> Result<DesiredState, StoreError> {
        let org = organization.to_string();
        let ids = |rows: Vec<String>, what: &'static str| -> Result<Vec<uuid::Uuid>, StoreError> {
            rows.iter().map(|r| parse_id::<uuid::Uuid>(what, r)).collect()
        };
        let projects: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM projects WHERE organization_id = ? AND status = 'active'",
        )
        .bind(&org)
        .fetch_all(self.pool())
        .await?;
        let environments: Vec<String> = sqlx::query_scalar(
            "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ? AND e.status = 'active'",
        )
        .bind(&org)
        .fetch_all(self.pool())
        .await?;
        let applications: Vec<String> = sqlx::query_scalar(
            "SELECT a.id FROM applications a JOIN environments e ON e.id = a.environment_id JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ? AND a.status = 'active'",
        )
        .bind(&org)
        .fetch_all(self.pool())
        .await?;
        let databases: Vec<String> = sqlx::query_scalar(
            "SELECT d.id FROM databases d JOIN environments e ON e.id = d.environment_id JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ? AND d.status = 'active'",
        )
        .bind(&org)
        .fetch_all(self.pool())
        .await?;
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT a.current_deployment_id FROM applications a WHERE a.status = 'active' AND a.current_deployment_id IS NOT NULL
             UNION SELECT id FROM deployments WHERE status IN ('queued', 'running')",
        )
        .fetch_all(self.pool())
        .await?;
        // Images of serving and in-progress deployments, and of the last successful
        // deployments (kept for redeploys and rollbacks).
        let images: Vec<String> = sqlx::query_scalar(
            "SELECT image FROM (
                SELECT s.image, d.status, d.id AS deployment_id, a.current_deployment_id,
                       ROW_NUMBER() OVER (PARTITION BY s.application_id, d.status = 'succeeded' ORDER BY d.created_at DESC, d.rowid DESC) AS recency
                FROM deployment_services s
                JOIN deployments d ON d.id = s.deployment_id
                JOIN applications a ON a.id = s.application_id
                WHERE s.image IS NOT NULL AND a.status = 'active')
             WHERE status IN ('queued', 'running') OR deployment_id = current_deployment_id
                OR (status = 'succeeded' AND recency <= ?)",
        )
        .bind(i64::from(keep_successful))
        .fetch_all(self.pool())
        .await?;
        Ok(DesiredState {
            organization: Some(organization),
            projects: ids(projects, "project id")?.into_iter().map(ProjectId::from_uuid).collect(),
            environments: ids(environments, "environment id")?
                .into_iter()
                .map(EnvironmentId::from_uuid)
                .collect(),
            applications: ids(applications, "application id")?
                .into_iter()
                .map(ApplicationId::from_uuid)
                .collect(),
            databases: ids(databases, "database id")?
                .into_iter()
                .map(berth_domain::DatabaseId::from_uuid)
                .collect(),
            live_deployments: ids(live, "deployment id")?
                .into_iter()
                .map(DeploymentId::from_uuid)
                .collect(),
            referenced_images: images.into_iter().collect::<BTreeSet<_>>(),
        })
    }
}
