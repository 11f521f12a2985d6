//! The configuration a deployment ran with (the application's spec and its resolved
//! variables), sealed with the master key because it holds secrets. A rollback starts
//! from it, so it reproduces the old version exactly.

use berth_domain::spec::ApplicationSpec;
use berth_domain::variables::{resolve, ResolvedVariable};
use berth_domain::{ApplicationId, EnvironmentId, ProjectId};
use berth_store::{StoredValue, VariableOwner};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::secrets::{MasterKey, SecretError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServiceSnapshot {
    pub(crate) spec: ApplicationSpec,
    /// User variables after scope resolution, secrets in clear (hence sealed at rest).
    pub(crate) variables: Vec<(String, String)>,
}

impl ServiceSnapshot {
    pub(crate) fn seal(&self, key: &MasterKey) -> Result<Vec<u8>, SecretError> {
        let json = serde_json::to_vec(self).map_err(|_| SecretError::Encrypt)?;
        key.encrypt(&json)
    }

    pub(crate) fn open(key: &MasterKey, sealed: &[u8]) -> Result<Self, SecretError> {
        let json = key.decrypt(sealed)?;
        serde_json::from_slice(&json).map_err(|_| SecretError::Decrypt)
    }
}

/// Project, environment and application variables of an application, secrets decrypted,
/// aliases following the built-in variables in `builtins`, narrower scopes winning.
/// `Err` is a message for the deployment log.
pub(crate) async fn resolve_application_variables(
    engine: &Engine,
    project: ProjectId,
    environment: EnvironmentId,
    application: ApplicationId,
    builtins: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let records = engine
        .store
        .variables_for_application(VariableOwner {
            project_id: project,
            environment_id: Some(environment),
            application_id: Some(application),
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut resolved = Vec::with_capacity(records.len());
    for record in records {
        let (value, secret) = match &record.value {
            StoredValue::Plain(text) => (text.clone(), false),
            StoredValue::Encrypted(sealed) => (
                engine
                    .key
                    .decrypt_string(sealed)
                    .map_err(|e| format!("variable {}: {e}", record.name))?,
                true,
            ),
            StoredValue::Alias(target) => {
                let value = builtins
                    .iter()
                    .find(|(name, _)| name == target.as_str())
                    .map(|(_, v)| v.clone());
                let value = value.ok_or_else(|| {
                    format!(
                        "variable {} follows {target}, which is not a built-in variable of this environment; create the database it names or delete the alias",
                        record.name
                    )
                })?;
                // Built-ins carry passwords: treat an alias as secret.
                (value, true)
            }
        };
        resolved.push(ResolvedVariable {
            scope: record.owner.scope(),
            name: record.name,
            value,
            secret,
        });
    }
    Ok(resolve(&resolved).into_values().map(|v| (v.name.to_string(), v.value)).collect())
}
