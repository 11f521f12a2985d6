//! The server's side of `apply` and `export`: reads a project's current state through the
//! REST API into the spec model ([`fetch`]), and performs one planned operation
//! ([`perform`]). Conversions from wire types are pure functions ([`application_spec`],
//! [`database_spec`], [`variables_spec`]) so that the diff tests can build "current
//! state" from the same JSON the server sends.
//!
//! Resources being deleted (`status = "deleting"`) count as absent.

use std::collections::BTreeMap;

use berth_api::{Application, Database, Environment, Project, Variable};

use super::diff::{Operation, ScopeRef};
use super::model::{
    ApplicationSpec, DatabaseSpec, EnvironmentSpec, HealthCheckSpec, ProjectSpec, SecretSource,
    VariableSpec, Visibility, VolumeSpec,
};
use crate::client::{ApiClient, ClientError};
use crate::paths::{self, VariableScope};

const DELETING: &str = "deleting";

/// The project as the server holds it, or `None` when it does not exist.
pub(crate) async fn fetch(
    client: &ApiClient,
    project: &str,
) -> Result<Option<ProjectSpec>, ClientError> {
    let found: Project = match client.get(&paths::project(project)?).await {
        Ok(found) => found,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error),
    };
    if found.status == DELETING {
        return Ok(None);
    }
    let project_scope = VariableScope::Project { project: project.to_owned() };
    let variables: Vec<Variable> = client.get(&project_scope.variables()?).await?;
    let mut spec = ProjectSpec {
        project: project.to_owned(),
        variables: variables_spec(&variables),
        environments: BTreeMap::new(),
    };
    let environments: Vec<Environment> = client.get(&paths::environments(project)?).await?;
    for environment in environments.into_iter().filter(|e| e.status != DELETING) {
        let name = environment.name.clone();
        let scope =
            VariableScope::Environment { project: project.to_owned(), environment: name.clone() };
        let variables: Vec<Variable> = client.get(&scope.variables()?).await?;
        let databases: Vec<Database> = client.get(&paths::databases(project, &name)?).await?;
        let applications: Vec<Application> =
            client.get(&paths::applications(project, &name)?).await?;
        let mut environment_spec = EnvironmentSpec {
            mode: environment.mode,
            branch: environment.branch,
            variables: variables_spec(&variables),
            databases: BTreeMap::new(),
            applications: BTreeMap::new(),
        };
        for database in databases.iter().filter(|d| d.status != DELETING) {
            environment_spec.databases.insert(database.name.clone(), database_spec(database));
        }
        for application in applications.iter().filter(|a| a.status != DELETING) {
            let scope = VariableScope::Application {
                project: project.to_owned(),
                environment: name.clone(),
                application: application.name.clone(),
            };
            let variables: Vec<Variable> = client.get(&scope.variables()?).await?;
            let mut application_spec = application_spec(application);
            application_spec.variables = variables_spec(&variables);
            environment_spec.applications.insert(application.name.clone(), application_spec);
        }
        spec.environments.insert(name, environment_spec);
    }
    Ok(Some(spec))
}

pub(crate) fn variables_spec(variables: &[Variable]) -> BTreeMap<String, VariableSpec> {
    variables
        .iter()
        .map(|variable| {
            let value = match (&variable.alias_of, variable.secret) {
                (Some(target), _) => VariableSpec::Alias(target.clone()),
                (None, true) => VariableSpec::Secret,
                (None, false) => VariableSpec::Plain(variable.value.clone()),
            };
            (variable.name.clone(), value)
        })
        .collect()
}

/// The environment variable an exported external database's URL is expected in:
/// `orders-db` → `ORDERS_DB_DATABASE_URL`.
pub(crate) fn external_url_variable(database: &str) -> String {
    format!("{}_DATABASE_URL", database.to_ascii_uppercase().replace('-', "_"))
}

pub(crate) fn database_spec(database: &Database) -> DatabaseSpec {
    let external = database.mode == "external";
    DatabaseSpec {
        engine: database.engine.clone(),
        version: Some(database.version.clone()),
        mode: database.mode.clone(),
        storage_gb: if external { None } else { Some(database.storage_gb.unwrap_or(1)) },
        url: external.then(|| SecretSource { secret: external_url_variable(&database.name) }),
    }
}

pub(crate) fn application_spec(application: &Application) -> ApplicationSpec {
    let git = application.git.as_ref();
    let check = &application.health_check;
    let http = check.kind.as_deref() == Some("http");
    ApplicationSpec {
        git: git.map(|git| git.repository.clone()),
        image: application.image.clone(),
        branch: git.and_then(|git| git.branch.clone()),
        root_path: git.map(|git| git.root_path.clone()),
        dockerfile_path: git.map(|git| git.dockerfile_path.clone()),
        port: application.port.map(u32::from),
        visibility: if application.private { Visibility::Private } else { Visibility::Public },
        cpu: application.cpu,
        memory_mb: application.memory_mb,
        instances: application.instances,
        drain_secs: application.drain_secs,
        release_command: application.release_command.clone(),
        build_args: git.map(|git| git.build_args.clone()).unwrap_or_default(),
        health_check: HealthCheckSpec {
            kind: check.kind.clone().unwrap_or_else(|| "tcp".into()),
            path: if http { check.path.clone() } else { None },
            expected_status: if http { check.expected_status.clone() } else { None },
            start_delay_secs: check.start_delay_secs.unwrap_or(0.0),
            interval_secs: check.interval_secs.unwrap_or(2.0),
            timeout_secs: check.timeout_secs.unwrap_or(2.0),
            failure_threshold: check.failure_threshold.unwrap_or(3),
        },
        volumes: application
            .volumes
            .iter()
            .map(|volume| VolumeSpec {
                name: volume.name.clone(),
                path: volume.path.clone(),
                size_gb: volume.size_gb.unwrap_or(1),
            })
            .collect(),
        depends_on: application.depends_on.clone(),
        watch_paths: application.watch_paths.clone(),
        auto_deploy: application.auto_deploy,
        variables: BTreeMap::new(),
    }
}

fn variable_scope(project: &str, scope: &ScopeRef) -> VariableScope {
    match scope {
        ScopeRef::Project => VariableScope::Project { project: project.to_owned() },
        ScopeRef::Environment { environment } => VariableScope::Environment {
            project: project.to_owned(),
            environment: environment.clone(),
        },
        ScopeRef::Application { environment, application } => VariableScope::Application {
            project: project.to_owned(),
            environment: environment.clone(),
            application: application.clone(),
        },
    }
}

/// Performs one operation of the plan. `external_url` is the URL of an external database
/// being created (read from the environment by the caller).
pub(crate) async fn perform(
    client: &ApiClient,
    project: &str,
    operation: &Operation,
    external_url: Option<String>,
) -> Result<(), ClientError> {
    match operation {
        Operation::CreateProject => {
            let body = berth_api::CreateProject { name: project.to_owned() };
            let _: serde_json::Value = client.post(&paths::projects(), &body).await?;
        }
        Operation::CreateEnvironment(body) => {
            let _: serde_json::Value = client.post(&paths::environments(project)?, body).await?;
        }
        Operation::CreateDatabase { environment, body, .. } => {
            let mut body = body.clone();
            body.url = external_url;
            // Creating a container database may pull its image first.
            let _: serde_json::Value = client
                .post_within(
                    &paths::databases(project, environment)?,
                    Some(&body),
                    crate::client::LONG_REQUEST_TIMEOUT,
                )
                .await?;
        }
        Operation::CreateApplication { environment, body } => {
            let _: serde_json::Value =
                client.post(&paths::applications(project, environment)?, body.as_ref()).await?;
        }
        Operation::UpdateApplication { environment, name, body } => {
            let _: serde_json::Value = client
                .patch(&paths::application(project, environment, name)?, body.as_ref())
                .await?;
        }
        Operation::SetVariable { scope, body } => {
            let _: serde_json::Value =
                client.put(&variable_scope(project, scope).variables()?, body).await?;
        }
        Operation::DeleteVariable { scope, name } => {
            client.delete(&variable_scope(project, scope).variable(name)?).await?;
        }
        Operation::DeleteApplication { environment, name } => {
            client.delete(&paths::application(project, environment, name)?).await?;
        }
        Operation::DeleteDatabase { environment, name } => {
            client
                .delete_within(
                    &paths::database(project, environment, name)?,
                    crate::client::LONG_REQUEST_TIMEOUT,
                )
                .await?;
        }
        Operation::DeleteEnvironment { name } => {
            client.delete(&paths::environment(project, name)?).await?;
        }
    }
    Ok(())
}
