//! Clone-with-data by method: the choice between a physical copy (PostgreSQL only) and a
//! streamed logical dump/restore (`backups.rs`, every engine), and the physical copy itself.
//!
//! The physical copy runs `pg_basebackup` inside the source's container, over its Unix
//! socket as its superuser (the images' `pg_hba.conf` trusts local replication
//! connections), and streams the tar it writes into a one-off container that extracts it
//! into the new database's volume. The source keeps serving: a base backup is an online,
//! consistent snapshot (the WAL written during the copy is included and replayed when the
//! copy first starts). Then the new database's container starts on the copy and the copy
//! is given the new database's credentials: the source's role is renamed (ownership of
//! every object follows the role, since it is the same role) and re-passworded, and the
//! database renamed, so the source's password does not open the copy.
//!
//! Guarantees: the target volume must be empty (nothing is overwritten); the one-off
//! container is removed whatever happens; WAL the copy needs is held by a temporary
//! replication slot that lives only as long as the copying shell (a crash drops it, so it
//! can never make the source keep WAL forever). Secrets stay in the containers'
//! environments, never in argument vectors or logs.

use std::time::Duration;

use berth_domain::database::{DatabaseEngine, DatabaseMode};
use berth_domain::labels;
use berth_store::{DatabaseRecord, EnvironmentRecord, ProjectRecord};
use bytes::Bytes;

use crate::adapters::{ContainerSpec, LogSink, NetworkSpec, VolumeMount, VolumeSpec};
use crate::backups::BackupError;
use crate::engine::{Engine, EngineError};
use crate::exec_pipe::pipe_between;
use crate::naming;

/// How a clone copies the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMethod {
    /// `pg_basebackup` of the whole server, online (PostgreSQL only).
    Physical,
    /// The engine's logical dump streamed into a restore.
    Dump,
}

impl CloneMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Physical => "physical",
            Self::Dump => "dump",
        }
    }

    /// Parses `physical` or `dump`; `Err` says what is accepted.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "physical" => Ok(Self::Physical),
            "dump" => Ok(Self::Dump),
            other => Err(format!("unknown clone method {other:?}: use physical or dump")),
        }
    }

    /// The method used when none is asked for: the faster one the database supports
    /// (measured by bench/clone-with-data.sh).
    pub fn default_for(database: &DatabaseRecord) -> Self {
        if Self::Physical.supported_by(database).is_ok() {
            Self::Physical
        } else {
            Self::Dump
        }
    }

    /// Whether this method can copy `database`; `Err` says why not and what to use.
    pub fn supported_by(self, database: &DatabaseRecord) -> Result<(), String> {
        match self {
            Self::Dump => Ok(()),
            Self::Physical => match (database.spec.engine, &database.spec.mode) {
                (DatabaseEngine::Postgresql, DatabaseMode::Container { .. }) => Ok(()),
                (DatabaseEngine::Postgresql, _) => Err(format!(
                    "the physical clone method copies only container databases, and {} is not one",
                    database.name
                )),
                (engine, _) => Err(format!(
                    "the physical clone method is for PostgreSQL only and {} is a {engine} database; use --method dump",
                    database.name
                )),
            },
        }
    }
}

impl std::fmt::Display for CloneMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a clone did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClonedData {
    pub method: CloneMethod,
    /// Bytes streamed from the source (the dump, or the base backup's tar).
    pub bytes: u64,
}

/// Where the images keep PostgreSQL's data (`PGDATA`).
const POSTGRES_DATA_PATH: &str = "/var/lib/postgresql/data";

/// How long the one-off container may live if this process dies mid-copy (it is also
/// labelled with the new database, so deleting that removes it).
const LOADER_LIFETIME_SECONDS: &str = "86400";

/// Writes a base backup of the whole server as a tar on standard output, run in the
/// source's container. `-X fetch` is the WAL method that can write a tar to standard
/// output (`-X stream` cannot); it collects the WAL at the end, so a temporary slot
/// reserves it from before the backup starts (a checkpoint during the copy would otherwise
/// be free to remove it). The slot belongs to a psql session reading from a FIFO held open
/// by this shell: when the shell ends, for whatever reason, the session and its slot end.
/// `--checkpoint=fast` starts at once instead of waiting for a spread checkpoint.
const POSTGRES_BASE_BACKUP: &str = r#"set -eu
dir=$(mktemp -d /tmp/berth-clone.XXXXXX)
trap 'exec 3>&-; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
mkfifo "$dir/hold"
psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres <"$dir/hold" >"$dir/session.log" 2>&1 &
session=$!
exec 3>"$dir/hold"
printf "SELECT pg_create_physical_replication_slot('berth_clone_%s', true, true);\n" "$$" >&3
printf '%s %s\nSELECT 1;\n' '\o' "$dir/reserved" >&3
i=0
until [ -s "$dir/reserved" ]; do
  if ! kill -0 "$session" 2>/dev/null; then
    echo "could not reserve WAL for the copy: $(cat "$dir/session.log")" >&2; exit 1
  fi
  i=$((i+1)); [ "$i" -lt 600 ] || { echo "reserving WAL for the copy took over 30 s" >&2; exit 1; }
  sleep 0.05
done
pg_basebackup -h /var/run/postgresql -U "$POSTGRES_USER" -D - -F tar -X fetch --checkpoint=fast --no-manifest
"#;

/// Extracts the base backup read from standard input into the (empty) data directory, in
/// the one-off container. A backup of a standby would carry recovery signals: without
/// them the copy starts as a primary (the backup label makes it replay the included WAL
/// first, to a consistent state).
const POSTGRES_EXTRACT: &str = r#"set -eu
cd "$1"
if [ -n "$(ls -A)" ]; then echo "the new database's volume is not empty; nothing was overwritten" >&2; exit 1; fi
tar -xf -
rm -f standby.signal recovery.signal
[ -s PG_VERSION ] || { echo "the base backup holds no PostgreSQL data directory" >&2; exit 1; }
"#;

/// Gives the started copy the new database's credentials (its container's POSTGRES_USER,
/// POSTGRES_PASSWORD, POSTGRES_DB), connected as the source's role ($1) over the Unix
/// socket. A session cannot rename its own session user, so a temporary superuser role
/// becomes the session user for the renames and is dropped at the end. Renaming keeps
/// the role's OID, so every object it owned is still its own. The password is set from
/// the environment through psql variables, never on a command line.
const POSTGRES_RECREDENTIAL: &str = r#"set -eu
psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$1" -d postgres \
  --set old_user="$1" --set old_db="$2" --set new_user="$POSTGRES_USER" \
  --set new_db="$POSTGRES_DB" --set new_password="$POSTGRES_PASSWORD" >/dev/null <<'SQL'
CREATE ROLE berth_clone_recredential SUPERUSER NOLOGIN;
SET SESSION AUTHORIZATION berth_clone_recredential;
SELECT format('ALTER ROLE %I RENAME TO %I', :'old_user', :'new_user') WHERE :'old_user' <> :'new_user' \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'new_user', :'new_password') \gexec
SELECT format('ALTER DATABASE %I RENAME TO %I', :'old_db', :'new_db') WHERE :'old_db' <> :'new_db' \gexec
RESET SESSION AUTHORIZATION;
DROP ROLE berth_clone_recredential;
SQL
"#;

fn sh(script: &str, arguments: &[&str]) -> Vec<String> {
    let mut command = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned(), "sh".to_owned()];
    command.extend(arguments.iter().map(|argument| (*argument).to_owned()));
    command
}

/// Progress of a clone goes to the server log.
struct TracingSink;

impl LogSink for TracingSink {
    fn line(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// The two ends of a clone: the source database with its project and environment, and
/// the new target record (with its own credentials) with its environment.
#[derive(Clone, Copy)]
pub(crate) struct CloneEnds<'a> {
    pub project: &'a ProjectRecord,
    pub source_environment: &'a EnvironmentRecord,
    pub source: &'a DatabaseRecord,
    pub target_environment: &'a EnvironmentRecord,
    pub target: &'a DatabaseRecord,
}

fn tool_failed(tool: &'static str, exit: crate::adapters::StreamedExit) -> BackupError {
    BackupError::ToolFailed { tool, code: exit.exit_code, stderr: exit.stderr_tail.join("; ") }
}

impl Engine {
    /// Copies a running database into `target` (a new record with its own credentials)
    /// by the default method for its engine; returns the bytes copied.
    pub async fn clone_database(
        &self,
        project: &ProjectRecord,
        source_environment: &EnvironmentRecord,
        source: &DatabaseRecord,
        target_environment: &EnvironmentRecord,
        target: &DatabaseRecord,
    ) -> Result<u64, BackupError> {
        let cloned = self
            .clone_database_with_method(
                project,
                source_environment,
                source,
                target_environment,
                target,
                None,
            )
            .await?;
        Ok(cloned.bytes)
    }

    /// Copies a running database into `target` by `method` (default: `default_for`).
    /// A method the source does not support is refused before anything is touched.
    pub async fn clone_database_with_method(
        &self,
        project: &ProjectRecord,
        source_environment: &EnvironmentRecord,
        source: &DatabaseRecord,
        target_environment: &EnvironmentRecord,
        target: &DatabaseRecord,
        method: Option<CloneMethod>,
    ) -> Result<ClonedData, BackupError> {
        let method = method.unwrap_or_else(|| CloneMethod::default_for(source));
        method.supported_by(source).map_err(BackupError::Store)?;
        let ends = CloneEnds { project, source_environment, source, target_environment, target };
        let bytes = match method {
            CloneMethod::Dump => self.clone_database_by_dump(ends).await?,
            CloneMethod::Physical => self.clone_postgres_physically(ends).await?,
        };
        tracing::info!(source = %source.name, target = %target.name, method = %method, bytes, "database cloned with its data");
        Ok(ClonedData { method, bytes })
    }

    async fn clone_postgres_physically(&self, ends: CloneEnds<'_>) -> Result<u64, BackupError> {
        let CloneEnds { project, source_environment, source, target_environment, target } = ends;
        let runtime = &self.adapters.runtime;
        let source_container =
            self.running_database_container(project, source_environment, source).await?;
        let source_credentials = self.database_credentials(source)?;

        // The one-off container that fills the new database's volume.
        let owner_labels = labels::database_labels(
            self.organization,
            project.id,
            target_environment.id,
            target.id,
        );
        let volume = naming::database_volume(target.id);
        runtime
            .ensure_volume(&VolumeSpec { name: volume.clone(), labels: owner_labels.clone() })
            .await
            .map_err(EngineError::from)?;
        let network = naming::environment_network(target_environment.id);
        runtime
            .ensure_network(&NetworkSpec {
                name: network.clone(),
                labels: labels::environment_labels(
                    self.organization,
                    project.id,
                    target_environment.id,
                ),
            })
            .await
            .map_err(EngineError::from)?;
        let loader = ContainerSpec {
            name: format!("berth-clone-{}", uuid::Uuid::new_v4().simple()),
            image: target.spec.engine.image(&target.spec.version),
            labels: owner_labels,
            network,
            command: Some(vec!["sleep".into(), LOADER_LIFETIME_SECONDS.into()]),
            mounts: vec![VolumeMount { volume, path: POSTGRES_DATA_PATH.to_owned() }],
            ..ContainerSpec::default()
        };
        runtime.start_container(&loader).await.map_err(EngineError::from)?;
        let copied = self.stream_base_backup(&source_container, &loader.name).await;
        // Whatever happened, the one-off container goes (the volume stays for the target,
        // or for the reconciler to remove with a failed clone's record).
        if let Err(error) = runtime.remove_container(&loader.name, Duration::from_secs(1)).await {
            tracing::warn!(container = %loader.name, %error, "could not remove the clone's one-off container");
        }
        let copied = copied?;

        let (target_container, _) = self
            .start_database(project, target_environment, target, &TracingSink)
            .await
            .map_err(BackupError::Store)?;
        self.wait_database_ready(target, &target_container).await.map_err(BackupError::Store)?;
        let recredential = sh(
            POSTGRES_RECREDENTIAL,
            &[source_credentials.user.as_str(), source_credentials.database.as_str()],
        );
        let (output, mut output_receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let drain = tokio::spawn(async move { while output_receiver.recv().await.is_some() {} });
        let exit = runtime
            .exec_streaming(&target_container, &recredential, None, output)
            .await
            .map_err(EngineError::from)?;
        drain.abort();
        if exit.exit_code != 0 {
            return Err(tool_failed("setting the clone's credentials (psql)", exit));
        }
        Ok(copied)
    }

    /// Streams `pg_basebackup`'s tar from the source's container into the loader's `tar`.
    async fn stream_base_backup(
        &self,
        source_container: &str,
        loader_container: &str,
    ) -> Result<u64, BackupError> {
        let piped = pipe_between(
            &self.adapters.runtime,
            source_container,
            sh(POSTGRES_BASE_BACKUP, &[]),
            loader_container,
            sh(POSTGRES_EXTRACT, &[POSTGRES_DATA_PATH]),
            8,
        )
        .await?;
        if piped.producer.exit_code != 0 {
            return Err(tool_failed("pg_basebackup", piped.producer));
        }
        if piped.consumer.exit_code != 0 {
            return Err(tool_failed("tar (extracting the base backup)", piped.consumer));
        }
        Ok(piped.copied)
    }
}
