//! Database services of environments.

use berth_domain::database::DatabaseSpec;
use berth_domain::{EnvironmentId, OrganizationId, ResourceName};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::{parse_id, parse_name};
use crate::{now_rfc3339, DatabaseRecord, Lifecycle, Store, StoreError};

pub(crate) fn database_from_row(row: &SqliteRow) -> Result<DatabaseRecord, StoreError> {
    let spec_json: &str = row.try_get("spec_json")?;
    Ok(DatabaseRecord {
        id: parse_id("database id", row.try_get("id")?)?,
        environment_id: parse_id("environment id", row.try_get("environment_id")?)?,
        name: parse_name(row.try_get("name")?)?,
        spec: serde_json::from_str(spec_json)
            .map_err(|e| StoreError::corrupt("database spec", e))?,
        credentials_ciphertext: row.try_get("credentials_ciphertext")?,
        lifecycle: Lifecycle::parse(row.try_get("status")?)?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a database; its name must not be taken by an application of the same
    /// environment either, since both become host names on the environment's network.
    pub async fn create_database(
        &self,
        environment: EnvironmentId,
        name: &ResourceName,
        spec: &DatabaseSpec,
        credentials_ciphertext: &[u8],
    ) -> Result<DatabaseRecord, StoreError> {
        self.ensure_service_name_free(environment, name, ServiceTable::Applications).await?;
        let record = DatabaseRecord {
            id: berth_domain::DatabaseId::new_random(),
            environment_id: environment,
            name: name.clone(),
            spec: spec.clone(),
            credentials_ciphertext: credentials_ciphertext.to_vec(),
            lifecycle: Lifecycle::Active,
            created_at: now_rfc3339(),
        };
        let spec_json =
            serde_json::to_string(spec).map_err(|e| StoreError::corrupt("database spec", e))?;
        sqlx::query(
            "INSERT INTO databases (id, environment_id, name, spec_json, credentials_ciphertext, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(environment.to_string())
        .bind(name.as_str())
        .bind(spec_json)
        .bind(credentials_ciphertext)
        .bind(record.lifecycle.as_str())
        .bind(&record.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, || format!("this environment already has a database named \"{name}\"; choose another name")))?;
        Ok(record)
    }

    pub async fn list_databases(
        &self,
        environment: EnvironmentId,
    ) -> Result<Vec<DatabaseRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM databases WHERE environment_id = ? ORDER BY name")
            .bind(environment.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(database_from_row).collect()
    }

    pub async fn database_by_name(
        &self,
        environment: EnvironmentId,
        name: &str,
    ) -> Result<Option<DatabaseRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM databases WHERE environment_id = ? AND name = ?")
            .bind(environment.to_string())
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(database_from_row).transpose()
    }

    /// Every database of the organization, any lifecycle (the reconciler's view).
    pub async fn all_databases(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<DatabaseRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.* FROM databases d JOIN environments e ON e.id = d.environment_id JOIN projects p ON p.id = e.project_id WHERE p.organization_id = ?",
        )
        .bind(organization.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(database_from_row).collect()
    }

    pub async fn mark_database_deleting(
        &self,
        id: berth_domain::DatabaseId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE databases SET status = 'deleting' WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Replaces a database's credentials (ciphertext sealed with the master key): a
    /// rotated password or an external database's new URL.
    pub async fn set_database_credentials(
        &self,
        id: berth_domain::DatabaseId,
        credentials_ciphertext: &[u8],
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE databases SET credentials_ciphertext = ? WHERE id = ?")
            .bind(credentials_ciphertext)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("database {id} no longer exists")));
        }
        Ok(())
    }

    pub async fn delete_database(&self, id: berth_domain::DatabaseId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM databases WHERE id = ?")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// The other kind of service whose names a new service must not take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServiceTable {
    Applications,
    Databases,
}

impl Store {
    /// Applications and databases of an environment share one namespace (both become host
    /// names on its network): refuses `name` when the other kind already uses it.
    pub(crate) async fn ensure_service_name_free(
        &self,
        environment: EnvironmentId,
        name: &ResourceName,
        other: ServiceTable,
    ) -> Result<(), StoreError> {
        let (query, kind) = match other {
            ServiceTable::Applications => (
                "SELECT id FROM applications WHERE environment_id = ? AND name = ?",
                "an application",
            ),
            ServiceTable::Databases => {
                ("SELECT id FROM databases WHERE environment_id = ? AND name = ?", "a database")
            }
        };
        let taken: Option<String> = sqlx::query_scalar(query)
            .bind(environment.to_string())
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?;
        match taken {
            Some(_) => Err(StoreError::Conflict(format!(
                "{kind} named \"{name}\" exists in this environment; services share one namespace, choose another name"
            ))),
            None => Ok(()),
        }
    }
}
