//! Environment variables and secrets at project, environment and application scope.

use berth_domain::{EnvVarName, VariableId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::records::{parse_id, parse_opt_id};
use crate::{now_rfc3339, Store, StoreError, StoredValue, VariableOwner, VariableRecord};

fn variable_from_row(row: &SqliteRow) -> Result<VariableRecord, StoreError> {
    let name: &str = row.try_get("name")?;
    let secret: bool = row.try_get("secret")?;
    let alias: Option<String> = row.try_get("alias_of")?;
    let value = if let Some(alias) = alias {
        StoredValue::Alias(
            EnvVarName::parse_any(&alias).map_err(|e| StoreError::corrupt("variable alias", e))?,
        )
    } else if secret {
        let bytes: Option<Vec<u8>> = row.try_get("value_ciphertext")?;
        StoredValue::Encrypted(bytes.ok_or_else(|| StoreError::corrupt("secret", "no ciphertext"))?)
    } else {
        let text: Option<String> = row.try_get("value_plain")?;
        StoredValue::Plain(text.unwrap_or_default())
    };
    Ok(VariableRecord {
        id: parse_id("variable id", row.try_get("id")?)?,
        owner: VariableOwner {
            project_id: parse_id("project id", row.try_get("project_id")?)?,
            environment_id: parse_opt_id("environment id", row.try_get("environment_id")?)?,
            application_id: parse_opt_id("application id", row.try_get("application_id")?)?,
        },
        name: EnvVarName::parse_any(name).map_err(|e| StoreError::corrupt("variable name", e))?,
        value,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Creates or replaces the variable `name` at `owner`'s scope.
    pub async fn set_variable(
        &self,
        owner: VariableOwner,
        name: &EnvVarName,
        value: &StoredValue,
    ) -> Result<(), StoreError> {
        let (plain, cipher, secret, alias) = match value {
            StoredValue::Plain(text) => (Some(text.as_str()), None, false, None),
            StoredValue::Encrypted(bytes) => (None, Some(bytes.as_slice()), true, None),
            StoredValue::Alias(target) => (None, None, false, Some(target.as_str())),
        };
        let mut tx = self.write_transaction().await?;
        delete_in(&mut tx, owner, name.as_str()).await?;
        sqlx::query(
            "INSERT INTO variables (id, project_id, environment_id, application_id, scope, name, value_plain, value_ciphertext, secret, alias_of, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(VariableId::new_random().to_string())
        .bind(owner.project_id.to_string())
        .bind(owner.environment_id.map(|id| id.to_string()))
        .bind(owner.application_id.map(|id| id.to_string()))
        .bind(scope_str(owner))
        .bind(name.as_str())
        .bind(plain)
        .bind(cipher)
        .bind(secret)
        .bind(alias)
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Variables set exactly at `owner`'s scope.
    pub async fn list_variables(
        &self,
        owner: VariableOwner,
    ) -> Result<Vec<VariableRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM variables WHERE project_id = ? AND IFNULL(environment_id, '') = ? AND IFNULL(application_id, '') = ? ORDER BY name",
        )
        .bind(owner.project_id.to_string())
        .bind(owner.environment_id.map(|id| id.to_string()).unwrap_or_default())
        .bind(owner.application_id.map(|id| id.to_string()).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(variable_from_row).collect()
    }

    /// Variables of every scope that apply to an application (its project's, its
    /// environment's and its own), for resolution.
    pub async fn variables_for_application(
        &self,
        owner: VariableOwner,
    ) -> Result<Vec<VariableRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM variables WHERE project_id = ? AND (environment_id IS NULL OR environment_id = ?) AND (application_id IS NULL OR application_id = ?)",
        )
        .bind(owner.project_id.to_string())
        .bind(owner.environment_id.map(|id| id.to_string()).unwrap_or_default())
        .bind(owner.application_id.map(|id| id.to_string()).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(variable_from_row).collect()
    }

    /// Deletes a variable; `Ok(false)` when there was none of that name at that scope.
    pub async fn delete_variable(
        &self,
        owner: VariableOwner,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_transaction().await?;
        let deleted = delete_in(&mut tx, owner, name).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

fn scope_str(owner: VariableOwner) -> &'static str {
    match owner.scope() {
        berth_domain::variables::VariableScope::Project => "project",
        berth_domain::variables::VariableScope::Environment => "environment",
        berth_domain::variables::VariableScope::Application => "application",
    }
}

async fn delete_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    owner: VariableOwner,
    name: &str,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "DELETE FROM variables WHERE project_id = ? AND IFNULL(environment_id, '') = ? AND IFNULL(application_id, '') = ? AND name = ?",
    )
    .bind(owner.project_id.to_string())
    .bind(owner.environment_id.map(|id| id.to_string()).unwrap_or_default())
    .bind(owner.application_id.map(|id| id.to_string()).unwrap_or_default())
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() > 0)
}
