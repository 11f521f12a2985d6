//! Changing a database's credentials: a new generated password for a container database
//! (`rotate_database_credentials`) or a new URL for an external one
//! (`change_external_database_url`), after which the environment's applications are
//! redeployed so they receive the new `BERTH_DATABASE_<NAME>_*` values.
//!
//! Expected flow (container mode):
//! 1. the database container must be running with the stored credentials (its
//!    `berth.database-credentials` label, when present, matches them);
//! 2. a new password (32 letters and digits, from the OS's random source) is applied in
//!    the running server by the engine's own client inside the container, authenticated
//!    as the container's own credentials: PostgreSQL `ALTER ROLE` over the Unix socket,
//!    MariaDB `ALTER USER` for every host of the user and of `root` (whose password is the
//!    same), Redis `CONFIG SET requirepass`. The password reaches the container on the
//!    exec's standard input, never on a command line, and the SQL text is constant;
//! 3. the new credentials are stored, encrypted with the master key;
//! 4. the container is stopped gracefully and created again from the stored credentials
//!    on the same volume (its environment and, for Redis, its `--requirepass` carry the
//!    new password, so readiness checks, backups and a `docker restart` use it), and
//!    the step waits until it accepts connections;
//! 5. a deployment of the environment is queued (trigger `credentials of database NAME
//!    changed`) when it has applications.
//!
//! Guarantees: a failure in step 2 changes nothing; a failure to store (3) puts the old
//! password back. After step 3 the stored credentials are the truth: the container
//! carries a fingerprint of them in its `berth.database-credentials` label, and the next
//! deployment recreates a container whose label differs (covering a crash between 3 and
//! 4). Old application instances lose access at step 2 until the new ones replace them.
//!
//! A rollback redeploys an earlier deployment's recorded variables, but with the current
//! database credentials (`refresh_database_credentials`): the recorded ones may have
//! been rotated away.
//!
//! Caveats: a crash of the server exactly between steps 2 and 3 leaves the database with
//! a password Berth did not store. PostgreSQL is repaired by rotating again (the change
//! is authenticated by the container's socket, not a password); Redis by restarting its
//! container (`CONFIG SET` is not persisted: the stored password on its command line
//! comes back); MariaDB needs its password set by hand. Rotations of one database are
//! not serialised with a deployment running at the same time; the queued deployment
//! that follows brings everything to the stored state.

use berth_domain::database::{DatabaseCredentials, DatabaseEngine, DatabaseMode};
use berth_store::{DatabaseRecord, DeploymentRecord, EnvironmentRecord, Lifecycle, ProjectRecord};
use bytes::Bytes;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

use crate::adapters::LogSink;
use crate::database_access::ExternalDatabaseError;
use crate::databases::DATABASE_STOP_GRACE;
use crate::engine::{Engine, EngineError};

/// The label that records which credentials a database container was created with.
pub(crate) const CREDENTIALS_LABEL: &str = "berth.database-credentials";

/// Why credentials could not be changed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("database {0} is external: its password is changed on the server that runs it; give Berth the new URL with `berth database update --external-url`")]
    External(String),
    #[error("database {0} runs in a container: Berth generates its credentials; use `berth database rotate-credentials`")]
    NotExternal(String),
    #[error(
        "the database container {0} is not running; deploy the environment first (`berth deploy`)"
    )]
    NotRunning(String),
    #[error("the database container {0} was created with other credentials than the stored ones; deploy the environment first (`berth deploy`) so that they agree")]
    OutOfDate(String),
    #[error("{engine} refused the new password (exit code {code}): {stderr}; nothing was changed")]
    Refused { engine: DatabaseEngine, code: i64, stderr: String },
    #[error("the new credentials were not stored: {0}")]
    NotStored(String),
    #[error("the new URL was refused, nothing was changed: {0}")]
    Unverified(#[from] ExternalDatabaseError),
    #[error("the new password is in effect and stored, but restarting the database container failed: {0}; deploy the environment (`berth deploy`) to retry")]
    Restart(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a change of credentials did.
#[derive(Debug)]
pub struct CredentialsChanged {
    /// The database with its new credentials.
    pub database: DatabaseRecord,
    /// The deployment queued to give the applications the new values, if the environment
    /// has applications.
    pub deployment: Option<DeploymentRecord>,
}

/// A fingerprint of credentials for a container label: it tells whether a container was
/// created with the stored credentials without revealing them (a SHA-256 over 190 bits
/// of random password, shortened).
pub(crate) fn credentials_fingerprint(credentials: &DatabaseCredentials) -> String {
    let mut hasher = Sha256::new();
    for part in [&credentials.user, &credentials.password, &credentials.database] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize()).chars().take(32).collect()
}

/// Whether a container's labels allow the stored credentials: containers made before
/// the label existed are taken as matching (they are not recreated for it).
pub(crate) fn container_has_credentials(
    labels: &std::collections::BTreeMap<String, String>,
    credentials: &DatabaseCredentials,
) -> bool {
    labels.get(CREDENTIALS_LABEL).is_none_or(|label| *label == credentials_fingerprint(credentials))
}

/// A new password: 32 letters and digits (about 190 bits) from the OS's random source.
/// Letters and digits only, so no client or URL ever needs to quote it.
pub(crate) fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32)
}

/// Sets the password read from standard input for the container's own role, over the
/// Unix socket (local connections are trusted inside the container). `\getenv` (psql 15)
/// reads it from the environment, so it is on no command line; `%L` quotes it.
const POSTGRES_SET_PASSWORD: &str = r#"set -eu
IFS= read -r BERTH_NEW_PASSWORD
export BERTH_NEW_PASSWORD
psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres >/dev/null <<'SQL'
\getenv new_password BERTH_NEW_PASSWORD
SELECT format('ALTER ROLE %I PASSWORD %L', current_user, :'new_password') \gexec
SQL
"#;

/// Sets the password read from standard input for every host of the application's user
/// and of root (Berth gives both the same password), authenticated as root with the
/// container's current password (`MYSQL_PWD`: environment, not argv). The SQL goes on the
/// client's standard input; the password is checked to be letters and digits first, so
/// it needs no quoting inside the SQL string.
const MARIADB_SET_PASSWORD: &str = r#"set -euf
IFS= read -r new_password
case "$new_password" in '' | *[!A-Za-z0-9]*) echo "the new password must be letters and digits" >&2; exit 2 ;; esac
export MYSQL_PWD="$MARIADB_ROOT_PASSWORD"
accounts=$(printf "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE User IN ('root', '%s');\n" "$MARIADB_USER" | mariadb --protocol=socket -uroot -N -B)
[ -n "$accounts" ] || { echo "no account of user $MARIADB_USER was found" >&2; exit 1; }
{
  printf '%s\n' "SET @@SESSION.SQL_LOG_BIN=0;"
  for account in $accounts; do
    printf "ALTER USER %s IDENTIFIED BY '%s';\n" "$account" "$new_password"
  done
} | mariadb --protocol=socket -uroot
"#;

/// Sets `requirepass` (the default user's only password) to the one read from standard
/// input, authenticated with the container's current password through `REDISCLI_AUTH`.
const REDIS_SET_PASSWORD: &str = r#"set -eu
IFS= read -r new_password
case "$new_password" in '' | *[!A-Za-z0-9]*) echo "the new password must be letters and digits" >&2; exit 2 ;; esac
answer=$(printf 'CONFIG SET requirepass %s\n' "$new_password" | REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli 2>&1)
[ "$answer" = OK ] || { echo "redis-cli answered: $answer" >&2; exit 1; }
"#;

fn set_password_command(engine: DatabaseEngine) -> Vec<String> {
    let script = match engine {
        DatabaseEngine::Postgresql => POSTGRES_SET_PASSWORD,
        DatabaseEngine::Mariadb => MARIADB_SET_PASSWORD,
        DatabaseEngine::Redis => REDIS_SET_PASSWORD,
    };
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Lines of the container restart go to the server log.
struct TracingSink;

impl LogSink for TracingSink {
    fn line(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// The trigger recorded on the deployment that hands out new credentials.
pub fn credentials_trigger(database: &DatabaseRecord) -> String {
    format!("credentials of database {} changed", database.name)
}

/// Brings the database credentials in a rollback's recorded variables up to date:
/// every built-in `BERTH_DATABASE_*` variable of a database that still exists takes its
/// current value, and so does every other variable (an alias, or a copy) whose recorded
/// value was exactly the recorded URL or password of a database. Everything else stays
/// as recorded.
pub(crate) fn refresh_database_credentials(
    recorded: &mut [(String, String)],
    current: &[(String, String)],
) {
    let current_value =
        |name: &str| current.iter().find(|(current, _)| current == name).map(|(_, v)| v.clone());
    // Recorded secret-bearing values of the built-ins, and the built-in each came from.
    let recorded_secrets: Vec<(String, String)> = recorded
        .iter()
        .filter(|(name, value)| {
            name.starts_with("BERTH_DATABASE_")
                && (name.ends_with("_URL") || name.ends_with("_PASSWORD"))
                && !value.is_empty()
        })
        .map(|(name, value)| (value.clone(), name.clone()))
        .collect();
    for (name, value) in recorded.iter_mut() {
        let source = if name.starts_with("BERTH_DATABASE_") {
            Some(name.clone())
        } else {
            recorded_secrets
                .iter()
                .find(|(secret, _)| secret == value)
                .map(|(_, builtin)| builtin.clone())
        };
        if let Some(fresh) = source.as_deref().and_then(current_value) {
            *value = fresh;
        }
    }
}

impl Engine {
    /// Gives a container database a new generated password (see the module doc for the
    /// steps and guarantees).
    pub async fn rotate_database_credentials(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
    ) -> Result<CredentialsChanged, CredentialsError> {
        if database.spec.mode == DatabaseMode::External {
            return Err(CredentialsError::External(database.name.to_string()));
        }
        let old = self.database_credentials(database)?;
        let (container, state) =
            self.running_database_state(project, environment, database).await?;
        let state = state.ok_or_else(|| CredentialsError::NotRunning(container.clone()))?;
        if !container_has_credentials(&state.labels, &old) {
            return Err(CredentialsError::OutOfDate(container));
        }
        let new = DatabaseCredentials { password: generate_password(), ..old.clone() };
        self.set_live_password(database.spec.engine, &container, &new.password).await?;
        let stored = match self.store_credentials(database, &new).await {
            Ok(stored) => stored,
            Err(error) => {
                // Put the old password back so the server and the store still agree.
                if let Err(revert) =
                    self.set_live_password(database.spec.engine, &container, &old.password).await
                {
                    tracing::error!(
                        "database {}: the new password could not be stored ({error}) nor the old one put back ({revert})",
                        database.name
                    );
                }
                return Err(error);
            }
        };
        tracing::info!(
            "database {} of environment {}: password rotated; restarting its container",
            database.name,
            environment.name
        );
        self.recreate_database_container(project, environment, &stored, &container).await?;
        let deployment = self.queue_credentials_deployment(project, environment, &stored).await?;
        Ok(CredentialsChanged { database: stored, deployment })
    }

    /// Points an external database at new credentials (a new URL): they are checked by
    /// opening a session first (nothing changes when that fails), stored encrypted, and
    /// the environment's applications redeployed.
    pub async fn change_external_database_url(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
        credentials: &DatabaseCredentials,
    ) -> Result<CredentialsChanged, CredentialsError> {
        if database.spec.mode != DatabaseMode::External {
            return Err(CredentialsError::NotExternal(database.name.to_string()));
        }
        self.verify_external_database(database.spec.engine, credentials).await?;
        let stored = self.store_credentials(database, credentials).await?;
        let deployment = self.queue_credentials_deployment(project, environment, &stored).await?;
        Ok(CredentialsChanged { database: stored, deployment })
    }

    /// Runs the engine's own client in the container to set `password`, given on its
    /// standard input.
    async fn set_live_password(
        &self,
        engine: DatabaseEngine,
        container: &str,
        password: &str,
    ) -> Result<(), CredentialsError> {
        let (input, input_receiver) = tokio::sync::mpsc::channel(1);
        // The channel has room for the one message: this never waits.
        let _ = input.try_send(Bytes::from(format!("{password}\n")));
        drop(input);
        let (output, mut output_receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
        let drain = tokio::spawn(async move { while output_receiver.recv().await.is_some() {} });
        let exit = self
            .adapters
            .runtime
            .exec_streaming(container, &set_password_command(engine), Some(input_receiver), output)
            .await;
        drain.abort();
        let exit = exit.map_err(EngineError::from)?;
        if exit.exit_code != 0 {
            return Err(CredentialsError::Refused {
                engine,
                code: exit.exit_code,
                stderr: exit.stderr_tail.join("; "),
            });
        }
        Ok(())
    }

    /// Encrypts and stores `credentials` for `database`; returns the updated record.
    async fn store_credentials(
        &self,
        database: &DatabaseRecord,
        credentials: &DatabaseCredentials,
    ) -> Result<DatabaseRecord, CredentialsError> {
        let json = serde_json::to_vec(credentials)
            .map_err(|e| CredentialsError::NotStored(e.to_string()))?;
        let sealed =
            self.key.encrypt(&json).map_err(|e| CredentialsError::NotStored(e.to_string()))?;
        self.store
            .set_database_credentials(database.id, &sealed)
            .await
            .map_err(|e| CredentialsError::NotStored(e.to_string()))?;
        Ok(DatabaseRecord { credentials_ciphertext: sealed, ..database.clone() })
    }

    /// Stops the container gracefully and creates it again from the stored credentials on
    /// the same volume, then waits until it accepts connections.
    async fn recreate_database_container(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
        container: &str,
    ) -> Result<(), CredentialsError> {
        self.adapters
            .runtime
            .remove_container(container, DATABASE_STOP_GRACE)
            .await
            .map_err(|e| CredentialsError::Restart(e.to_string()))?;
        let (name, _) = self
            .start_database(project, environment, database, &TracingSink)
            .await
            .map_err(CredentialsError::Restart)?;
        self.wait_database_ready(database, &name).await.map_err(CredentialsError::Restart)?;
        Ok(())
    }

    /// Queues a deployment of the environment when it has applications to hand the new
    /// values to.
    async fn queue_credentials_deployment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
    ) -> Result<Option<DeploymentRecord>, CredentialsError> {
        let has_applications = self
            .store
            .list_applications(environment.id)
            .await
            .map_err(EngineError::from)?
            .iter()
            .any(|application| application.lifecycle == Lifecycle::Active);
        if !has_applications {
            return Ok(None);
        }
        let deployment = self
            .store
            .create_deployment(
                project.id,
                environment.id,
                None,
                &credentials_trigger(database),
                None,
            )
            .await
            .map_err(EngineError::from)?;
        self.notify();
        Ok(Some(deployment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(password: &str) -> DatabaseCredentials {
        DatabaseCredentials {
            host: "main".into(),
            port: 5432,
            user: "main".into(),
            password: password.into(),
            database: "main".into(),
        }
    }

    #[test]
    fn fingerprints_differ_with_the_password_and_never_contain_it() {
        let old = credentials_fingerprint(&credentials("aaaaaaaa"));
        let new = credentials_fingerprint(&credentials("bbbbbbbb"));
        assert_ne!(old, new);
        assert_eq!(old.len(), 32);
        assert!(!old.contains("aaaaaaaa"));
    }

    #[test]
    fn containers_without_the_label_are_taken_as_matching() {
        let mut labels = std::collections::BTreeMap::new();
        assert!(container_has_credentials(&labels, &credentials("x")));
        labels.insert(CREDENTIALS_LABEL.to_owned(), credentials_fingerprint(&credentials("x")));
        assert!(container_has_credentials(&labels, &credentials("x")));
        assert!(!container_has_credentials(&labels, &credentials("y")));
    }

    #[test]
    fn a_rollback_gets_the_current_credentials_and_keeps_everything_else() {
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        let mut recorded = owned(&[
            ("BERTH_DATABASE_MAIN_URL", "postgresql://main:old@main:5432/main"),
            ("BERTH_DATABASE_MAIN_PASSWORD", "old"),
            ("BERTH_DATABASE_GONE_URL", "postgresql://gone:x@gone:5432/gone"),
            ("DATABASE_URL", "postgresql://main:old@main:5432/main"),
            ("LOG_LEVEL", "debug"),
        ]);
        let current = owned(&[
            ("BERTH_DATABASE_MAIN_URL", "postgresql://main:new@main:5432/main"),
            ("BERTH_DATABASE_MAIN_PASSWORD", "new"),
        ]);
        refresh_database_credentials(&mut recorded, &current);
        assert_eq!(
            recorded,
            owned(&[
                ("BERTH_DATABASE_MAIN_URL", "postgresql://main:new@main:5432/main"),
                ("BERTH_DATABASE_MAIN_PASSWORD", "new"),
                ("BERTH_DATABASE_GONE_URL", "postgresql://gone:x@gone:5432/gone"),
                ("DATABASE_URL", "postgresql://main:new@main:5432/main"),
                ("LOG_LEVEL", "debug"),
            ])
        );
    }

    #[test]
    fn generated_passwords_are_long_letters_and_digits() {
        let password = generate_password();
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, generate_password());
    }

    #[test]
    fn no_password_change_command_carries_a_password() {
        for engine in [DatabaseEngine::Postgresql, DatabaseEngine::Mariadb, DatabaseEngine::Redis] {
            let command = set_password_command(engine);
            assert_eq!(command.len(), 3, "a constant script and nothing else");
        }
    }
}
