//! Database services in an environment deployment: their containers (one per database,
//! living across deployments, data in a labelled volume) are brought up and checked
//! before any application of the environment starts, and their coordinates become the
//! applications' `BERTH_DATABASE_<NAME>_*` variables.
//!
//! Guarantees: a running database container whose image and settings are unchanged is
//! left alone ("already done"); a stopped or changed one is stopped gracefully before it
//! is replaced; the volume is never removed here (only the reconciler removes it, after
//! the database was deleted).

use std::time::Duration;

use berth_domain::database::{
    builtin_variables, DatabaseCredentials, DatabaseEngine, DatabaseMode,
};
use berth_domain::deployment::StepName;
use berth_domain::labels;
use berth_store::{DatabaseRecord, EnvironmentRecord, Lifecycle, ProjectRecord};

use crate::adapters::{ContainerSpec, LogSink, NetworkSpec, VolumeMount, VolumeSpec};
use crate::engine::{Engine, EngineError};
use crate::executor::{Run, StepFailure, StepResult};
use crate::naming;

/// How long a database gets to shut down cleanly before it is killed.
pub(crate) const DATABASE_STOP_GRACE: Duration = Duration::from_secs(60);

impl Engine {
    /// A database's credentials, decrypted.
    pub fn database_credentials(
        &self,
        database: &DatabaseRecord,
    ) -> Result<DatabaseCredentials, EngineError> {
        let json = self
            .key
            .decrypt(&database.credentials_ciphertext)
            .map_err(|e| EngineError::Internal(format!("database {}: {e}", database.name)))?;
        serde_json::from_slice(&json).map_err(|e| {
            EngineError::Internal(format!("database {} credentials: {e}", database.name))
        })
    }

    /// Makes an image available locally (local first, else pull); `Err` is a message.
    pub async fn ensure_image_available(
        &self,
        reference: &berth_domain::source::ImageReference,
    ) -> Result<(), String> {
        struct Quiet;
        impl LogSink for Quiet {
            fn line(&self, _line: &str) {}
        }
        self.adapters.builder.ensure_image(reference, &Quiet).await.map_err(|e| e.to_string())
    }

    /// The built-in variables of every active database of an environment.
    pub(crate) async fn database_variables(
        &self,
        environment: berth_domain::EnvironmentId,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let mut variables = Vec::new();
        for database in self.store.list_databases(environment).await? {
            if database.lifecycle != Lifecycle::Active {
                continue;
            }
            let credentials = self.database_credentials(&database)?;
            variables.extend(builtin_variables(&database.name, database.spec.engine, &credentials));
        }
        Ok(variables)
    }
}

/// The container settings that make a database image behave: credentials through the
/// official images' variables, the data directory on the volume, Redis with a password
/// and an append-only file (so a kill loses no acknowledged write).
struct DatabaseContainer {
    env: Vec<(String, String)>,
    data_path: &'static str,
    command: Option<Vec<String>>,
}

fn database_container(
    engine_kind: DatabaseEngine,
    credentials: &DatabaseCredentials,
) -> DatabaseContainer {
    match engine_kind {
        DatabaseEngine::Postgresql => DatabaseContainer {
            env: vec![
                ("POSTGRES_USER".into(), credentials.user.clone()),
                ("POSTGRES_PASSWORD".into(), credentials.password.clone()),
                ("POSTGRES_DB".into(), credentials.database.clone()),
            ],
            data_path: "/var/lib/postgresql/data",
            command: None,
        },
        DatabaseEngine::Mariadb => DatabaseContainer {
            env: vec![
                ("MARIADB_USER".into(), credentials.user.clone()),
                ("MARIADB_PASSWORD".into(), credentials.password.clone()),
                ("MARIADB_DATABASE".into(), credentials.database.clone()),
                ("MARIADB_ROOT_PASSWORD".into(), credentials.password.clone()),
            ],
            data_path: "/var/lib/mysql",
            command: None,
        },
        // The password is on the command line: reading it with `docker inspect` needs
        // root on the host, which can read the volume anyway.
        DatabaseEngine::Redis => DatabaseContainer {
            env: vec![("REDIS_PASSWORD".into(), credentials.password.clone())],
            data_path: "/data",
            command: Some(vec![
                "redis-server".into(),
                "--appendonly".into(),
                "yes".into(),
                // Backups and clones replicate: start them at once, not after 5 s.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                "--requirepass".into(),
                credentials.password.clone(),
            ]),
        },
    }
}

/// The readiness command run inside the container; secrets come from the container's own
/// environment, never from this argument vector.
fn readiness_command(engine_kind: DatabaseEngine) -> Vec<String> {
    let script = match engine_kind {
        DatabaseEngine::Postgresql => {
            r#"pg_isready -q -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB""#
        }
        DatabaseEngine::Mariadb => {
            r#"MYSQL_PWD="$MARIADB_PASSWORD" mariadb -h 127.0.0.1 -u "$MARIADB_USER" -e 'SELECT 1' "$MARIADB_DATABASE" >/dev/null"#
        }
        DatabaseEngine::Redis => {
            r#"redis-cli --no-auth-warning -a "$REDIS_PASSWORD" ping | grep -q PONG"#
        }
    };
    vec!["sh".into(), "-c".into(), script.into()]
}

impl Run<'_> {
    /// Brings every active container-mode database of the environment up, in order.
    pub(crate) async fn ensure_databases(
        &self,
    ) -> Result<Result<(), (String, StepFailure)>, EngineError> {
        for database in self.engine.store.list_databases(self.environment.id).await? {
            if database.lifecycle != Lifecycle::Active
                || database.spec.mode == DatabaseMode::External
            {
                continue;
            }
            let name = database.name.to_string();
            let started = self
                .step(
                    &name,
                    StepName::Start,
                    self.engine.config.deadlines.start + DATABASE_STOP_GRACE,
                    self.start_database(&database),
                )
                .await?;
            let container = match started {
                Ok(container) => container,
                Err(failure) => return Ok(Err((name, failure))),
            };
            let healthy = self
                .step(
                    &name,
                    StepName::Health,
                    self.engine.config.deadlines.health,
                    self.wait_database_ready(&database, &container),
                )
                .await?;
            if let Err(failure) = healthy {
                return Ok(Err((name, failure)));
            }
        }
        Ok(Ok(()))
    }

    async fn start_database(&self, database: &DatabaseRecord) -> StepResult<String> {
        let sink = self.log.for_step(Some(database.name.as_str()), StepName::Start.as_str());
        self.engine
            .start_database(self.project, self.environment, database, &sink)
            .await
            .map(|(name, message)| (name, Some(message)))
            .map_err(|message| StepFailure::new(StepName::Start, message))
    }

    async fn wait_database_ready(
        &self,
        database: &DatabaseRecord,
        container: &str,
    ) -> StepResult<()> {
        self.engine
            .wait_database_ready(database, container)
            .await
            .map(|message| ((), Some(message)))
            .map_err(|message| StepFailure::new(StepName::Health, message))
    }
}

impl Engine {
    /// Starts a database's container (or finds it running with the same image), its
    /// volume and network created if needed. Returns the container name and a message.
    pub(crate) async fn start_database(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        database: &DatabaseRecord,
        sink: &dyn LogSink,
    ) -> Result<(String, String), String> {
        let engine = self;
        let runtime = &engine.adapters.runtime;
        let fail = |message: String| message;
        let credentials = engine.database_credentials(database).map_err(|e| fail(e.to_string()))?;
        let spec = &database.spec;
        let image = spec.engine.image(&spec.version);
        let reference =
            berth_domain::source::ImageReference::parse(&image).map_err(|e| fail(e.to_string()))?;
        engine.adapters.builder.ensure_image(&reference, sink).await.map_err(|e| {
            fail(format!(
                "{e}; the images built offline by scripts/build-base-images.sh --with-databases provide {} {}",
                spec.engine,
                spec.engine.default_version()
            ))
        })?;
        let network = naming::environment_network(environment.id);
        runtime
            .ensure_network(&NetworkSpec {
                name: network.clone(),
                labels: labels::environment_labels(engine.organization, project.id, environment.id),
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
        let owner_labels =
            labels::database_labels(engine.organization, project.id, environment.id, database.id);
        let volume = naming::database_volume(database.id);
        runtime
            .ensure_volume(&VolumeSpec { name: volume.clone(), labels: owner_labels.clone() })
            .await
            .map_err(|e| fail(e.to_string()))?;
        let DatabaseContainer { env, data_path, command } =
            database_container(spec.engine, &credentials);
        let name = naming::database_container(&project.name, &environment.name, &database.name);
        let mut labels = owner_labels;
        // What the container was created with, so a change of version is noticed.
        labels.insert("berth.database-image".to_owned(), image.clone());
        // And with which credentials, so a container left with old ones after a rotation
        // is recreated (`database_credentials.rs`).
        labels.insert(
            crate::database_credentials::CREDENTIALS_LABEL.to_owned(),
            crate::database_credentials::credentials_fingerprint(&credentials),
        );
        if let Some(existing) =
            runtime.inspect_container(&name).await.map_err(|e| fail(e.to_string()))?
        {
            if existing.running
                && existing.labels.get("berth.database-image") == Some(&image)
                && crate::database_credentials::container_has_credentials(
                    &existing.labels,
                    &credentials,
                )
            {
                return Ok((name, format!("{} {} already running", spec.engine, spec.version)));
            }
            sink.line(&format!("stopping {name} gracefully before starting it again"));
            runtime
                .remove_container(&name, DATABASE_STOP_GRACE)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        let container = ContainerSpec {
            name: name.clone(),
            image,
            env,
            labels,
            network,
            network_aliases: vec![database.name.to_string()],
            port: Some(spec.engine.port()),
            cpu_millis: None,
            memory_bytes: None,
            command,
            mounts: vec![VolumeMount { volume: volume.clone(), path: data_path.to_owned() }],
        };
        runtime.start_container(&container).await.map_err(|e| fail(e.to_string()))?;
        // A database keeps running across server restarts and crashes of its own.
        runtime.set_restart_on_failure(&name, true).await.map_err(|e| fail(e.to_string()))?;
        Ok((name, format!("started {} {} with volume {volume}", spec.engine, spec.version)))
    }

    /// Waits until the database answers a client command run inside its container.
    pub(crate) async fn wait_database_ready(
        &self,
        database: &DatabaseRecord,
        container: &str,
    ) -> Result<String, String> {
        let runtime = &self.adapters.runtime;
        let command = readiness_command(database.spec.engine);
        let deadline = tokio::time::Instant::now() + self.config.deadlines.health;
        loop {
            let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
            let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
            let ready = runtime.exec_in_container(container, &command, sender).await;
            drain.abort();
            if matches!(ready, Ok(0)) {
                return Ok(format!("{} accepts connections", database.spec.engine));
            }
            let state = runtime.inspect_container(container).await.map_err(|e| e.to_string())?;
            if let Some(state) = state.filter(|s| !s.running && s.restart_count == 0) {
                let tail = runtime.container_logs(container, 15).await.unwrap_or_default();
                return Err(format!(
                    "the database exited with code {}; last output:\n{}",
                    state.exit_code.unwrap_or(-1),
                    tail.join("\n")
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the database did not accept connections within {} s",
                    self.config.deadlines.health.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
