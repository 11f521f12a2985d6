//! The plan of `berth apply`: a pure comparison of the desired spec (the file) with the
//! current one (the server's state read into the same model), giving the changes in the
//! order they must be applied, the API request of each, what the API cannot change, and
//! the secrets that must exist first.
//!
//! Order: project, environments, databases, applications, variables, aliases (an alias
//! follows a database, a variable belongs to an application); deletions (only with
//! `prune`) last, innermost first. Deleting an environment or an application deletes what
//! it holds, so what it holds is not listed separately.

use std::collections::BTreeMap;

use berth_api::{
    CreateApplication, CreateDatabase, CreateEnvironment, SetVariable, UpdateApplication,
};

use super::diff_application::{create_application, show_option, update_application};
use super::model::{DatabaseSpec, EnvironmentSpec, ProjectSpec, VariableSpec};

/// Where a variable lives, relative to the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeRef {
    Project,
    Environment { environment: String },
    Application { environment: String, application: String },
}

impl ScopeRef {
    /// `in the project`, `in production`, `in production/web`.
    fn describe(&self) -> String {
        match self {
            ScopeRef::Project => "project".into(),
            ScopeRef::Environment { environment } => environment.clone(),
            ScopeRef::Application { environment, application } => {
                format!("{environment}/{application}")
            }
        }
    }

    /// The flags of `berth env-var set` for this scope.
    pub(crate) fn flags(&self, project: &str) -> String {
        match self {
            ScopeRef::Project => format!("--project {project}"),
            ScopeRef::Environment { environment } => {
                format!("--project {project} --environment {environment}")
            }
            ScopeRef::Application { environment, application } => format!(
                "--project {project} --environment {environment} --application {application}"
            ),
        }
    }
}

/// One API call of the plan.
#[derive(Debug, Clone)]
pub(crate) enum Operation {
    CreateProject,
    CreateEnvironment(CreateEnvironment),
    /// `url_from`: the environment variable holding an external database's URL.
    CreateDatabase {
        environment: String,
        body: CreateDatabase,
        url_from: Option<String>,
    },
    CreateApplication {
        environment: String,
        body: Box<CreateApplication>,
    },
    UpdateApplication {
        environment: String,
        name: String,
        body: Box<UpdateApplication>,
    },
    SetVariable {
        scope: ScopeRef,
        body: SetVariable,
    },
    DeleteVariable {
        scope: ScopeRef,
        name: String,
    },
    DeleteApplication {
        environment: String,
        name: String,
    },
    DeleteDatabase {
        environment: String,
        name: String,
    },
    DeleteEnvironment {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Update,
    Delete,
}

/// One line of the printed diff and the call that makes it true.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) action: Action,
    /// `application production/web`.
    pub(crate) resource: String,
    /// `port 8080 → 9090`, or a summary for a creation.
    pub(crate) details: Vec<String>,
    pub(crate) operation: Operation,
}

impl Change {
    /// `+ application production/web (port 8080)`, `~ application production/api: port
    /// 8080 → 9090`, `- database production/old`.
    pub(crate) fn line(&self) -> String {
        let details = self.details.join(", ");
        match self.action {
            Action::Create if details.is_empty() => format!("+ {}", self.resource),
            Action::Create => format!("+ {} ({details})", self.resource),
            Action::Update => format!("~ {}: {details}", self.resource),
            Action::Delete => format!("- {}", self.resource),
        }
    }
}

/// A secret the file references that does not exist at its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingSecret {
    pub(crate) scope: ScopeRef,
    pub(crate) name: String,
    /// The scope itself is created by this apply, so the secret could not exist yet.
    pub(crate) scope_is_new: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub(crate) changes: Vec<Change>,
    /// What the API cannot change in place (an environment's branch, a database's engine,
    /// removing a CPU limit): apply refuses before changing anything.
    pub(crate) refusals: Vec<String>,
    pub(crate) missing_secrets: Vec<MissingSecret>,
    /// Without `prune`: what exists on the server but not in the file (left alone).
    pub(crate) unmanaged: Vec<String>,
}

impl Plan {
    pub(crate) fn deletions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|change| change.action == Action::Delete)
    }
}

/// Compares `desired` with `current` (`None`: the project does not exist yet). Both are
/// normalized specs (see `load`); `prune` adds the deletions of what the file leaves out.
pub(crate) fn plan(desired: &ProjectSpec, current: Option<&ProjectSpec>, prune: bool) -> Plan {
    let mut plan = Plan::default();
    let empty = ProjectSpec {
        project: desired.project.clone(),
        variables: BTreeMap::new(),
        environments: BTreeMap::new(),
    };
    let project_is_new = current.is_none();
    if project_is_new {
        plan.changes.push(Change {
            action: Action::Create,
            resource: format!("project {}", desired.project),
            details: Vec::new(),
            operation: Operation::CreateProject,
        });
    }
    let current = current.unwrap_or(&empty);
    let mut creations = Vec::new();
    let mut databases = Vec::new();
    let mut applications = Vec::new();
    let mut variables = Vec::new();
    let mut aliases = Vec::new();
    let mut deletions = Vec::new();

    let mut variable_diff = |scope: ScopeRef,
                             wanted: &BTreeMap<String, VariableSpec>,
                             existing: Option<&BTreeMap<String, VariableSpec>>,
                             plan: &mut Plan,
                             deletions: &mut Vec<Change>| {
        let scope_is_new = existing.is_none();
        let none = BTreeMap::new();
        let existing = existing.unwrap_or(&none);
        for (name, value) in wanted {
            let resource = format!("variable {name} in {}", scope.describe());
            let have = existing.get(name);
            let (body, detail) = match (value, have) {
                (VariableSpec::Secret, Some(VariableSpec::Secret)) => continue,
                (VariableSpec::Secret, _) => {
                    plan.missing_secrets.push(MissingSecret {
                        scope: scope.clone(),
                        name: name.clone(),
                        scope_is_new,
                    });
                    continue;
                }
                (wanted, Some(have)) if wanted == have => continue,
                (VariableSpec::Plain(text), _) => (
                    SetVariable {
                        name: name.clone(),
                        value: text.clone(),
                        secret: false,
                        alias_of: None,
                    },
                    None,
                ),
                (VariableSpec::Alias(target), _) => (
                    SetVariable {
                        name: name.clone(),
                        value: String::new(),
                        secret: false,
                        alias_of: Some(target.clone()),
                    },
                    Some(()),
                ),
            };
            let change = Change {
                action: if have.is_some() { Action::Update } else { Action::Create },
                resource,
                details: match have {
                    Some(have) => {
                        vec![format!("{} → {}", show_variable(have), show_variable(value))]
                    }
                    None => vec![show_variable(value)],
                },
                operation: Operation::SetVariable { scope: scope.clone(), body },
            };
            if detail.is_some() {
                aliases.push(change);
            } else {
                variables.push(change);
            }
        }
        for (name, value) in existing {
            if wanted.contains_key(name) {
                continue;
            }
            let resource = format!("variable {name} in {}", scope.describe());
            if prune {
                deletions.push(Change {
                    action: Action::Delete,
                    resource,
                    details: vec![show_variable(value)],
                    operation: Operation::DeleteVariable {
                        scope: scope.clone(),
                        name: name.clone(),
                    },
                });
            } else {
                plan.unmanaged.push(resource);
            }
        }
    };

    let project_variables = (!project_is_new).then_some(&current.variables);
    variable_diff(
        ScopeRef::Project,
        &desired.variables,
        project_variables,
        &mut plan,
        &mut deletions,
    );

    for (environment_name, environment) in &desired.environments {
        let existing = current.environments.get(environment_name);
        match existing {
            None => creations.push(Change {
                action: Action::Create,
                resource: format!("environment {environment_name}"),
                details: vec![
                    format!("mode {}", environment.mode),
                    format!("branch {}", environment.branch),
                ],
                operation: Operation::CreateEnvironment(CreateEnvironment {
                    name: environment_name.clone(),
                    mode: Some(environment.mode.clone()),
                    branch: Some(environment.branch.clone()),
                }),
            }),
            Some(have) => {
                for (field, from, to) in [
                    ("mode", &have.mode, &environment.mode),
                    ("branch", &have.branch, &environment.branch),
                ] {
                    if from != to {
                        plan.refusals.push(format!(
                            "environment {environment_name}: the API cannot change an environment's {field} ({from} → {to}); put it back to {from} in the file, or create a new environment with that {field}"
                        ));
                    }
                }
            }
        }
        let environment_scope = ScopeRef::Environment { environment: environment_name.clone() };
        variable_diff(
            environment_scope,
            &environment.variables,
            existing.map(|have| &have.variables),
            &mut plan,
            &mut deletions,
        );
        diff_databases(environment_name, environment, existing, &mut databases, &mut plan);
        let mut application_updates = Vec::new();
        for application_name in creation_order(environment) {
            let Some(application) = environment.applications.get(&application_name) else {
                continue;
            };
            let have = existing.and_then(|have| have.applications.get(&application_name));
            match have {
                None => applications.push(create_application(
                    environment_name,
                    &application_name,
                    application,
                )),
                Some(have) => {
                    if let Some(change) = update_application(
                        environment_name,
                        &application_name,
                        application,
                        have,
                        &mut plan,
                    ) {
                        application_updates.push(change);
                    }
                }
            }
            variable_diff(
                ScopeRef::Application {
                    environment: environment_name.clone(),
                    application: application_name.clone(),
                },
                &application.variables,
                have.map(|have| &have.variables),
                &mut plan,
                &mut deletions,
            );
        }
        // Updates after creations: an update may depend on an application created here.
        applications.extend(application_updates);
        if let Some(existing) = existing {
            for name in existing.applications.keys() {
                if !environment.applications.contains_key(name) {
                    let resource = format!("application {environment_name}/{name}");
                    if prune {
                        deletions.push(Change {
                            action: Action::Delete,
                            resource,
                            details: Vec::new(),
                            operation: Operation::DeleteApplication {
                                environment: environment_name.clone(),
                                name: name.clone(),
                            },
                        });
                    } else {
                        plan.unmanaged.push(resource);
                    }
                }
            }
            for name in existing.databases.keys() {
                if !environment.databases.contains_key(name) {
                    let resource = format!("database {environment_name}/{name}");
                    if prune {
                        deletions.push(Change {
                            action: Action::Delete,
                            resource,
                            details: vec!["its data volume is deleted too".into()],
                            operation: Operation::DeleteDatabase {
                                environment: environment_name.clone(),
                                name: name.clone(),
                            },
                        });
                    } else {
                        plan.unmanaged.push(resource);
                    }
                }
            }
        }
    }
    for (name, environment) in &current.environments {
        // Preview environments come and go with pull requests: Berth manages them.
        if !desired.environments.contains_key(name) && environment.mode != "preview" {
            let resource = format!("environment {name}");
            if prune {
                deletions.push(Change {
                    action: Action::Delete,
                    resource,
                    details: vec!["with its applications, databases and data".into()],
                    operation: Operation::DeleteEnvironment { name: name.clone() },
                });
            } else {
                plan.unmanaged.push(resource);
            }
        }
    }
    // Innermost first: variables, then applications, databases, environments.
    deletions.sort_by_key(|change| match change.operation {
        Operation::DeleteVariable { .. } => 0,
        Operation::DeleteApplication { .. } => 1,
        Operation::DeleteDatabase { .. } => 2,
        _ => 3,
    });
    plan.changes.extend(creations);
    plan.changes.extend(databases);
    plan.changes.extend(applications);
    plan.changes.extend(variables);
    plan.changes.extend(aliases);
    plan.changes.extend(deletions);
    plan
}

/// The environment's applications with every application after those it depends on (the
/// API refuses a dependency on an application that does not exist yet). Validation has
/// ruled out cycles; any left over are appended in name order.
fn creation_order(environment: &EnvironmentSpec) -> Vec<String> {
    let mut ordered: Vec<String> = Vec::new();
    loop {
        let before = ordered.len();
        for (name, application) in &environment.applications {
            let ready = application.depends_on.iter().all(|dependency| {
                !environment.applications.contains_key(dependency) || ordered.contains(dependency)
            });
            if ready && !ordered.contains(name) {
                ordered.push(name.clone());
            }
        }
        if ordered.len() == before {
            break;
        }
    }
    for name in environment.applications.keys() {
        if !ordered.contains(name) {
            ordered.push(name.clone());
        }
    }
    ordered
}

fn diff_databases(
    environment_name: &str,
    environment: &EnvironmentSpec,
    existing: Option<&EnvironmentSpec>,
    changes: &mut Vec<Change>,
    plan: &mut Plan,
) {
    for (name, database) in &environment.databases {
        match existing.and_then(|have| have.databases.get(name)) {
            None => changes.push(create_database(environment_name, name, database)),
            Some(have) => {
                let version = |spec: &DatabaseSpec| spec.version.clone().unwrap_or_default();
                let storage = |spec: &DatabaseSpec| spec.storage_gb.map(|gb| format!("{gb} GB"));
                for (field, from, to) in [
                    ("engine", have.engine.clone(), database.engine.clone()),
                    ("version", version(have), version(database)),
                    ("mode", have.mode.clone(), database.mode.clone()),
                    ("storage_gb", show_option(storage(have)), show_option(storage(database))),
                ] {
                    if from != to {
                        plan.refusals.push(format!(
                            "database {environment_name}/{name}: the API cannot change a database's {field} ({from} → {to}); put it back in the file, or add a database under a new name (`berth database clone` copies the data)"
                        ));
                    }
                }
            }
        }
    }
}

fn create_database(environment: &str, name: &str, database: &DatabaseSpec) -> Change {
    let mut details =
        vec![format!("{} {}", database.engine, database.version.as_deref().unwrap_or("default"))];
    details.push(database.mode.clone());
    if let Some(storage) = database.storage_gb {
        details.push(format!("{storage} GB"));
    }
    let url_from = database.url.as_ref().map(|source| source.secret.clone());
    if let Some(variable) = &url_from {
        details.push(format!("URL from ${variable}"));
    }
    Change {
        action: Action::Create,
        resource: format!("database {environment}/{name}"),
        details,
        operation: Operation::CreateDatabase {
            environment: environment.to_owned(),
            body: CreateDatabase {
                name: name.to_owned(),
                engine: database.engine.clone(),
                version: database.version.clone(),
                mode: Some(database.mode.clone()),
                url: None,
                storage_gb: database.storage_gb,
                ..CreateDatabase::default()
            },
            url_from,
        },
    }
}

/// A variable's value as shown in the diff: plain values quoted and shortened, secrets
/// and aliases by what they are.
fn show_variable(value: &VariableSpec) -> String {
    match value {
        VariableSpec::Plain(text) => {
            let mut shown: String = text.chars().take(40).collect();
            if text.chars().count() > 40 {
                shown.push('…');
            }
            format!("{shown:?}")
        }
        VariableSpec::Secret => "secret".into(),
        VariableSpec::Alias(target) => format!("alias of {target}"),
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
