//! Organizations, API tokens, projects, environments and applications.

use berth_domain::deployment::EnvironmentMode;
use berth_domain::spec::ApplicationSpec;
use berth_domain::{
    ApiTokenId, ApplicationId, BranchName, DeploymentId, EnvironmentId, OrganizationId, ProjectId,
    ResourceName,
};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::{parse_id, parse_name, parse_opt_id};
use crate::{
    now_rfc3339, ApiTokenRecord, ApplicationRecord, EnvironmentRecord, Lifecycle,
    OrganizationRecord, ProjectRecord, Store, StoreError,
};

fn project_from_row(row: &SqliteRow) -> Result<ProjectRecord, StoreError> {
    Ok(ProjectRecord {
        id: parse_id("project id", row.try_get("id")?)?,
        organization_id: parse_id("organization id", row.try_get("organization_id")?)?,
        name: parse_name(row.try_get("name")?)?,
        lifecycle: Lifecycle::parse(row.try_get("status")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn environment_from_row(row: &SqliteRow) -> Result<EnvironmentRecord, StoreError> {
    let mode: &str = row.try_get("mode")?;
    let branch: &str = row.try_get("branch")?;
    Ok(EnvironmentRecord {
        id: parse_id("environment id", row.try_get("id")?)?,
        project_id: parse_id("project id", row.try_get("project_id")?)?,
        name: parse_name(row.try_get("name")?)?,
        mode: mode.parse().map_err(|e| StoreError::corrupt("environment mode", e))?,
        branch: BranchName::parse(branch).map_err(|e| StoreError::corrupt("branch", e))?,
        lifecycle: Lifecycle::parse(row.try_get("status")?)?,
        stopped: row.try_get("stopped")?,
        created_at: row.try_get("created_at")?,
    })
}

fn application_from_row(row: &SqliteRow) -> Result<ApplicationRecord, StoreError> {
    let spec_json: &str = row.try_get("spec_json")?;
    Ok(ApplicationRecord {
        id: parse_id("application id", row.try_get("id")?)?,
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        name: parse_name(row.try_get("name")?)?,
        spec: serde_json::from_str(spec_json)
            .map_err(|e| StoreError::corrupt("application spec", e))?,
        credential_ciphertext: row.try_get("credential_ciphertext")?,
        lifecycle: Lifecycle::parse(row.try_get("status")?)?,
        current_deployment_id: parse_opt_id(
            "deployment id",
            row.try_get("current_deployment_id")?,
        )?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn spec_json(spec: &ApplicationSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::corrupt("application spec", e))
}

impl Store {
    // ---- organizations and tokens ----

    /// The organization created on first start, if any.
    pub async fn first_organization(&self) -> Result<Option<OrganizationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, created_at FROM organizations ORDER BY created_at LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(OrganizationRecord {
                id: parse_id("organization id", row.try_get("id")?)?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    pub async fn create_organization(&self, name: &str) -> Result<OrganizationRecord, StoreError> {
        let record = OrganizationRecord {
            id: OrganizationId::new_random(),
            name: name.to_owned(),
            created_at: now_rfc3339(),
        };
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)")
            .bind(record.id.to_string())
            .bind(&record.name)
            .bind(&record.created_at)
            .execute(self.pool())
            .await?;
        Ok(record)
    }

    /// Records a token by the SHA-256 hex digest of its value.
    pub async fn create_api_token(
        &self,
        organization: OrganizationId,
        name: &str,
        token_sha256_hex: &str,
        role: &str,
    ) -> Result<ApiTokenRecord, StoreError> {
        let id = ApiTokenId::new_random();
        sqlx::query(
            "INSERT INTO api_tokens (id, organization_id, name, token_hash, role, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(organization.to_string())
        .bind(name)
        .bind(token_sha256_hex)
        .bind(role)
        .bind(now_rfc3339())
        .execute(self.pool())
        .await?;
        Ok(ApiTokenRecord {
            id,
            organization_id: organization,
            name: name.to_owned(),
            role: role.to_owned(),
        })
    }

    pub async fn find_api_token(
        &self,
        token_sha256_hex: &str,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, organization_id, name, role FROM api_tokens WHERE token_hash = ?",
        )
        .bind(token_sha256_hex)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(ApiTokenRecord {
                id: parse_id("token id", row.try_get("id")?)?,
                organization_id: parse_id("organization id", row.try_get("organization_id")?)?,
                name: row.try_get("name")?,
                role: row.try_get("role")?,
            })
        })
        .transpose()
    }

    // ---- projects ----

    pub async fn create_project(
        &self,
        organization: OrganizationId,
        name: &ResourceName,
    ) -> Result<ProjectRecord, StoreError> {
        let record = ProjectRecord {
            id: ProjectId::new_random(),
            organization_id: organization,
            name: name.clone(),
            lifecycle: Lifecycle::Active,
            created_at: now_rfc3339(),
        };
        sqlx::query("INSERT INTO projects (id, organization_id, name, status, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(record.id.to_string())
            .bind(organization.to_string())
            .bind(name.as_str())
            .bind(record.lifecycle.as_str())
            .bind(&record.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| {
                StoreError::unique_as_conflict(e, || format!("a project named \"{name}\" already exists; choose another name"))
            })?;
        Ok(record)
    }

    pub async fn list_projects(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<ProjectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM projects WHERE organization_id = ? ORDER BY name")
            .bind(organization.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(project_from_row).collect()
    }

    pub async fn project_by_name(
        &self,
        organization: OrganizationId,
        name: &str,
    ) -> Result<Option<ProjectRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM projects WHERE organization_id = ? AND name = ?")
            .bind(organization.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    pub async fn project(&self, id: ProjectId) -> Result<Option<ProjectRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM projects WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// Marks a project and everything in it for deletion by the reconciler.
    pub async fn mark_project_deleting(&self, id: ProjectId) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query("UPDATE projects SET status = 'deleting' WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE environments SET status = 'deleting' WHERE project_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE applications SET status = 'deleting' WHERE environment_id IN (SELECT id FROM environments WHERE project_id = ?)",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE databases SET status = 'deleting' WHERE environment_id IN (SELECT id FROM environments WHERE project_id = ?)",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the project's records (its environments, applications, variables and
    /// deployments go with it).
    pub async fn delete_project(&self, id: ProjectId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM projects WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    // ---- environments ----

    pub async fn create_environment(
        &self,
        project: ProjectId,
        name: &ResourceName,
        mode: EnvironmentMode,
        branch: &BranchName,
    ) -> Result<EnvironmentRecord, StoreError> {
        let record = EnvironmentRecord {
            id: EnvironmentId::new_random(),
            project_id: project,
            name: name.clone(),
            mode,
            branch: branch.clone(),
            lifecycle: Lifecycle::Active,
            stopped: false,
            created_at: now_rfc3339(),
        };
        sqlx::query(
            "INSERT INTO environments (id, project_id, name, mode, branch, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(project.to_string())
        .bind(name.as_str())
        .bind(mode.as_str())
        .bind(branch.as_str())
        .bind(record.lifecycle.as_str())
        .bind(&record.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::unique_as_conflict(e, || {
                format!("this project already has an environment named \"{name}\"; choose another name")
            })
        })?;
        Ok(record)
    }

    pub async fn list_environments(
        &self,
        project: ProjectId,
    ) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM environments WHERE project_id = ? ORDER BY name")
            .bind(project.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(environment_from_row).collect()
    }

    pub async fn environment_by_name(
        &self,
        project: ProjectId,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM environments WHERE project_id = ? AND name = ?")
            .bind(project.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    pub async fn environment(
        &self,
        id: EnvironmentId,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM environments WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    /// Every environment of the organization, any lifecycle (the reconciler's view).
    pub async fn all_environments(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.* FROM environments e JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ?",
        )
        .bind(organization.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(environment_from_row).collect()
    }

    pub async fn mark_environment_deleting(&self, id: EnvironmentId) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        sqlx::query("UPDATE environments SET status = 'deleting' WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE applications SET status = 'deleting' WHERE environment_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE databases SET status = 'deleting' WHERE environment_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_environment(&self, id: EnvironmentId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM environments WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    // ---- applications ----

    pub async fn create_application(
        &self,
        environment: EnvironmentId,
        name: &ResourceName,
        spec: &ApplicationSpec,
        credential_ciphertext: Option<&[u8]>,
    ) -> Result<ApplicationRecord, StoreError> {
        self.ensure_service_name_free(environment, name, crate::databases::ServiceTable::Databases)
            .await?;
        let now = now_rfc3339();
        let record = ApplicationRecord {
            id: ApplicationId::new_random(),
            environment_id: environment,
            name: name.clone(),
            spec: spec.clone(),
            credential_ciphertext: credential_ciphertext.map(<[u8]>::to_vec),
            lifecycle: Lifecycle::Active,
            current_deployment_id: None,
            created_at: now.clone(),
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO applications (id, environment_id, name, spec_json, credential_ciphertext, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(environment.to_string())
        .bind(name.as_str())
        .bind(spec_json(spec)?)
        .bind(credential_ciphertext)
        .bind(record.lifecycle.as_str())
        .bind(&record.created_at)
        .bind(&record.updated_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::unique_as_conflict(e, || {
                format!("this environment already has an application named \"{name}\"; choose another name or use `application update`")
            })
        })?;
        Ok(record)
    }

    /// Replaces an application's spec and credential (`None` keeps no credential).
    pub async fn update_application(
        &self,
        id: ApplicationId,
        spec: &ApplicationSpec,
        credential_ciphertext: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE applications SET spec_json = ?, credential_ciphertext = ?, updated_at = ? WHERE id = ?")
            .bind(spec_json(spec)?)
            .bind(credential_ciphertext)
            .bind(now_rfc3339())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn list_applications(
        &self,
        environment: EnvironmentId,
    ) -> Result<Vec<ApplicationRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM applications WHERE environment_id = ? ORDER BY name")
            .bind(environment.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(application_from_row).collect()
    }

    pub async fn application_by_name(
        &self,
        environment: EnvironmentId,
        name: &str,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM applications WHERE environment_id = ? AND name = ?")
            .bind(environment.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    pub async fn application(
        &self,
        id: ApplicationId,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    pub async fn mark_application_deleting(&self, id: ApplicationId) -> Result<(), StoreError> {
        sqlx::query("UPDATE applications SET status = 'deleting' WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_application(&self, id: ApplicationId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM applications WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn set_current_deployment(
        &self,
        application: ApplicationId,
        deployment: DeploymentId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE applications SET current_deployment_id = ? WHERE id = ?")
            .bind(deployment.to_string())
            .bind(application.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every application of the organization, any lifecycle (the reconciler's view).
    pub async fn all_applications(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<ApplicationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.* FROM applications a JOIN environments e ON e.id = a.environment_id JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ?",
        )
        .bind(organization.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(application_from_row).collect()
    }
}
