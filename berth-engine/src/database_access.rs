//! Reaching a database from outside its environment: where a tunnel (`berth database
//! connect`) connects to, and the check that an external database's URL really opens a
//! session before it is recorded.
//!
//! The check itself is an adapter (`berth-database-check` speaks the PostgreSQL, MySQL
//! and Redis protocols); the engine only knows the [`DatabaseVerifier`] trait, so neither
//! the API handlers nor `berth-domain` know any wire protocol.
//!
//! Guarantees: a tunnel target is always either a port published on 127.0.0.1 (container
//! mode; Berth never publishes a database on another address) or the external server's
//! own host and port; errors name the database and the address, never a credential.

use std::time::Duration;

use async_trait::async_trait;
use berth_domain::database::{DatabaseCredentials, DatabaseEngine, DatabaseMode};
use berth_store::{DatabaseRecord, EnvironmentRecord, ProjectRecord};

use crate::adapters::ContainerState;
use crate::engine::{Engine, EngineError};
use crate::naming;

/// How long the external check may take to connect (and, separately, to authenticate).
pub const EXTERNAL_DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an external database's URL was refused. Messages name the host, the port, the
/// user or the database that failed, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalDatabaseError {
    #[error("could not connect to {host}:{port} within {seconds} s: {detail}")]
    Unreachable { host: String, port: u16, seconds: u64, detail: String },
    #[error("authentication failed for user {user:?} at {host}:{port}: {detail}")]
    AuthenticationFailed { host: String, port: u16, user: String, detail: String },
    #[error("database {database:?} does not exist on {host}:{port}: {detail}")]
    UnknownDatabase { host: String, port: u16, database: String, detail: String },
    #[error("{host}:{port} did not behave like a {engine} server: {detail}")]
    Protocol { host: String, port: u16, engine: String, detail: String },
}

/// Opens one session on an existing database server with the given credentials and
/// closes it: connect, authenticate, select the database, a trivial query (`SELECT 1`,
/// `PING`). Implemented by `berth-database-check`.
#[async_trait]
pub trait DatabaseVerifier: Send + Sync {
    async fn verify(
        &self,
        engine: DatabaseEngine,
        credentials: &DatabaseCredentials,
        timeout: Duration,
    ) -> Result<(), ExternalDatabaseError>;
}

/// Why a tunnel to a database cannot be opened now.
#[derive(Debug, thiserror::Error)]
pub enum TunnelTargetError {
    #[error("database {database} is not running; deploy the environment first (`berth deploy`)")]
    NotRunning { database: String },
    #[error("database {database} runs but publishes no port on 127.0.0.1; redeploy the environment (`berth deploy`) to recreate its container")]
    NotPublished { database: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Connects to an external database with `credentials` and authenticates, within
    /// [`EXTERNAL_DATABASE_CHECK_TIMEOUT`] per phase.
    pub async fn verify_external_database(
        &self,
        engine: DatabaseEngine,
        credentials: &DatabaseCredentials,
    ) -> Result<(), ExternalDatabaseError> {
        self.adapters
            .database_verifier
            .verify(engine, credentials, EXTERNAL_DATABASE_CHECK_TIMEOUT)
            .await
    }

    /// The name of `database`'s container and, when it is running, what the runtime
    /// reports about it (`None` when it is stopped or missing: each caller names that
    /// in its own error).
    pub(crate) async fn running_database_state(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
    ) -> Result<(String, Option<ContainerState>), EngineError> {
        let container =
            naming::database_container(&project.name, &environment.name, &database.name);
        let state = self
            .adapters
            .runtime
            .inspect_container(&container)
            .await?
            .filter(|state| state.running);
        Ok((container, state))
    }

    /// The `host:port` a tunnel to `database` connects to: the container's port published
    /// on 127.0.0.1, or the external server's address.
    pub async fn database_tunnel_target(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
    ) -> Result<String, TunnelTargetError> {
        if database.spec.mode == DatabaseMode::External {
            let credentials = self.database_credentials(database)?;
            return Ok(format_host_port(&credentials.host, credentials.port));
        }
        let (_, state) = self.running_database_state(project, environment, database).await?;
        let state = state
            .ok_or_else(|| TunnelTargetError::NotRunning { database: database.name.to_string() })?;
        // Only a loopback address is ever used: the adapter reports nothing else.
        match state.published {
            Some(address) if address.ip().is_loopback() => Ok(address.to_string()),
            _ => Err(TunnelTargetError::NotPublished { database: database.name.to_string() }),
        }
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(format_host_port("db.example", 5432), "db.example:5432");
        assert_eq!(format_host_port("::1", 6379), "[::1]:6379");
        assert_eq!(format_host_port("[::1]", 6379), "[::1]:6379");
    }
}
