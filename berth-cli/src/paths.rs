//! The API's URL paths, built as plain strings from user-given names. Every name is
//! percent-encoded as one path segment, so a name can never add segments, a query or a
//! fragment; `.` and `..` (which URL parsers collapse even when encoded) are refused here.
//! The server validates names; this module only makes sure they arrive as the user typed
//! them.

use berth_api::API_PREFIX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not a valid name: {reason}")]
pub(crate) struct InvalidName {
    kind: &'static str,
    value: String,
    reason: &'static str,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn segment(kind: &'static str, value: &str) -> Result<String, InvalidName> {
    let refuse = |reason| Err(InvalidName { kind, value: value.to_owned(), reason });
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value == "." || value == ".." {
        return refuse("'.' and '..' are not names");
    }
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

pub(crate) fn organization() -> String {
    format!("{API_PREFIX}/organization")
}

pub(crate) fn projects() -> String {
    format!("{API_PREFIX}/projects")
}

pub(crate) fn project(project: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/{}", projects(), segment("project", project)?))
}

pub(crate) fn environments(project: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/environments", self::project(project)?))
}

pub(crate) fn environment(project: &str, environment: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/{}", environments(project)?, segment("environment", environment)?))
}

pub(crate) fn applications(project: &str, environment: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/applications", self::environment(project, environment)?))
}

pub(crate) fn application(
    project: &str,
    environment: &str,
    application: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/{}", applications(project, environment)?, segment("application", application)?))
}

pub(crate) fn databases(project: &str, environment: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/databases", self::environment(project, environment)?))
}

pub(crate) fn database(
    project: &str,
    environment: &str,
    database: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/{}", databases(project, environment)?, segment("database", database)?))
}

/// `.../databases/{database}/backups` (POST takes one, GET lists them).
pub(crate) fn database_backups(
    project: &str,
    environment: &str,
    database: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/backups", self::database(project, environment, database)?))
}

/// `.../databases/{database}/backups/{backup}` (DELETE removes it).
pub(crate) fn database_backup(
    project: &str,
    environment: &str,
    database: &str,
    backup: &str,
) -> Result<String, InvalidName> {
    Ok(format!(
        "{}/{}",
        database_backups(project, environment, database)?,
        segment("backup", backup)?
    ))
}

pub(crate) fn database_restore(
    project: &str,
    environment: &str,
    database: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/restore", self::database(project, environment, database)?))
}

pub(crate) fn database_clone(
    project: &str,
    environment: &str,
    database: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/clone", self::database(project, environment, database)?))
}

pub(crate) fn application_logs(
    project: &str,
    environment: &str,
    application: &str,
    tail: u32,
    follow: bool,
) -> Result<String, InvalidName> {
    let base = self::application(project, environment, application)?;
    let follow = if follow { "&follow=true" } else { "" };
    Ok(format!("{base}/logs?tail={tail}{follow}"))
}

pub(crate) fn environment_deployments(
    project: &str,
    environment: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/deployments", self::environment(project, environment)?))
}

/// The deployment history of an environment, or of one of its applications.
pub(crate) fn deployment_history(
    project: &str,
    environment: &str,
    application: Option<&str>,
) -> Result<String, InvalidName> {
    let base = environment_deployments(project, environment)?;
    match application {
        // A segment's encoding is also a valid query value (`&`, `=`, `+` are encoded).
        Some(application) => {
            Ok(format!("{base}?application={}", segment("application", application)?))
        }
        None => Ok(base),
    }
}

/// The dry-run plan of a deployment of an environment, or of one of its applications.
pub(crate) fn deployment_plan(
    project: &str,
    environment: &str,
    application: Option<&str>,
) -> Result<String, InvalidName> {
    let base = format!("{}/deployment-plan", self::environment(project, environment)?);
    match application {
        Some(application) => {
            Ok(format!("{base}?application={}", segment("application", application)?))
        }
        None => Ok(base),
    }
}

pub(crate) fn environment_rollback(
    project: &str,
    environment: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/rollback", self::environment(project, environment)?))
}

pub(crate) fn application_exec(
    project: &str,
    environment: &str,
    application: &str,
) -> Result<String, InvalidName> {
    Ok(format!("{}/exec", self::application(project, environment, application)?))
}

pub(crate) fn environment_status(project: &str, environment: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/status", self::environment(project, environment)?))
}

pub(crate) fn deployment(id: &str) -> Result<String, InvalidName> {
    Ok(format!("{API_PREFIX}/deployments/{}", segment("deployment id", id)?))
}

pub(crate) fn deployment_cancel(id: &str) -> Result<String, InvalidName> {
    Ok(format!("{}/cancel", deployment(id)?))
}

pub(crate) fn deployment_logs(id: &str, follow: bool) -> Result<String, InvalidName> {
    let follow = if follow { "?follow=true" } else { "" };
    Ok(format!("{}/logs{follow}", deployment(id)?))
}

/// Where a variable is set: a project, one of its environments, or one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VariableScope {
    Project { project: String },
    Environment { project: String, environment: String },
    Application { project: String, environment: String, application: String },
}

impl VariableScope {
    pub(crate) fn new(
        project: String,
        environment: Option<String>,
        application: Option<String>,
    ) -> Self {
        match (environment, application) {
            (Some(environment), Some(application)) => {
                VariableScope::Application { project, environment, application }
            }
            (Some(environment), None) => VariableScope::Environment { project, environment },
            // clap makes --application require --environment.
            (None, _) => VariableScope::Project { project },
        }
    }

    pub(crate) fn variables(&self) -> Result<String, InvalidName> {
        let base = match self {
            VariableScope::Project { project } => self::project(project)?,
            VariableScope::Environment { project, environment } => {
                self::environment(project, environment)?
            }
            VariableScope::Application { project, environment, application } => {
                self::application(project, environment, application)?
            }
        };
        Ok(format!("{base}/variables"))
    }

    pub(crate) fn variable(&self, name: &str) -> Result<String, InvalidName> {
        Ok(format!("{}/{}", self.variables()?, segment("variable", name)?))
    }

    /// `project "shop"`, `environment "prod" of project "shop"`, ...
    pub(crate) fn describe(&self) -> String {
        match self {
            VariableScope::Project { project } => format!("project {project:?}"),
            VariableScope::Environment { project, environment } => {
                format!("environment {environment:?} of project {project:?}")
            }
            VariableScope::Application { project, environment, application } => format!(
                "application {application:?} of environment {environment:?} of project {project:?}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn every_route_the_cli_uses() {
        let app_scope = VariableScope::new("p".into(), Some("e".into()), Some("a".into()));
        let routes = [
            organization(),
            projects(),
            project("shop").unwrap(),
            environments("shop").unwrap(),
            environment("shop", "prod").unwrap(),
            applications("shop", "prod").unwrap(),
            application("shop", "prod", "web").unwrap(),
            databases("shop", "prod").unwrap(),
            database("shop", "prod", "main").unwrap(),
            database_backups("shop", "prod", "main").unwrap(),
            database_restore("shop", "prod", "main").unwrap(),
            database_clone("shop", "prod", "main").unwrap(),
            application_logs("shop", "prod", "web", 20, true).unwrap(),
            application_logs("shop", "prod", "web", 100, false).unwrap(),
            environment_deployments("shop", "prod").unwrap(),
            deployment_history("shop", "prod", None).unwrap(),
            deployment_history("shop", "prod", Some("web")).unwrap(),
            deployment_history("shop", "prod", Some("a&b=c d")).unwrap(),
            environment_rollback("shop", "prod").unwrap(),
            application_exec("shop", "prod", "web").unwrap(),
            environment_status("shop", "prod").unwrap(),
            deployment("d-1").unwrap(),
            deployment_cancel("d-1").unwrap(),
            deployment_logs("d-1", true).unwrap(),
            VariableScope::new("p".into(), None, None).variables().unwrap(),
            VariableScope::new("p".into(), Some("e".into()), None).variable("KEY").unwrap(),
            app_scope.variable("KEY").unwrap(),
        ];
        expect![[r#"
            /api/v1/organization
            /api/v1/projects
            /api/v1/projects/shop
            /api/v1/projects/shop/environments
            /api/v1/projects/shop/environments/prod
            /api/v1/projects/shop/environments/prod/applications
            /api/v1/projects/shop/environments/prod/applications/web
            /api/v1/projects/shop/environments/prod/databases
            /api/v1/projects/shop/environments/prod/databases/main
            /api/v1/projects/shop/environments/prod/databases/main/backups
            /api/v1/projects/shop/environments/prod/databases/main/restore
            /api/v1/projects/shop/environments/prod/databases/main/clone
            /api/v1/projects/shop/environments/prod/applications/web/logs?tail=20&follow=true
            /api/v1/projects/shop/environments/prod/applications/web/logs?tail=100
            /api/v1/projects/shop/environments/prod/deployments
            /api/v1/projects/shop/environments/prod/deployments
            /api/v1/projects/shop/environments/prod/deployments?application=web
            /api/v1/projects/shop/environments/prod/deployments?application=a%26b%3Dc%20d
            /api/v1/projects/shop/environments/prod/rollback
            /api/v1/projects/shop/environments/prod/applications/web/exec
            /api/v1/projects/shop/environments/prod/status
            /api/v1/deployments/d-1
            /api/v1/deployments/d-1/cancel
            /api/v1/deployments/d-1/logs?follow=true
            /api/v1/projects/p/variables
            /api/v1/projects/p/environments/e/variables/KEY
            /api/v1/projects/p/environments/e/applications/a/variables/KEY
        "#]]
        .assert_eq(&(routes.join("\n") + "\n"));
    }

    #[test]
    fn hostile_names_stay_inside_their_segment() {
        expect!["/api/v1/projects/a%2F..%2Fb%3Fx%3D1%23f%20%C3%A9"]
            .assert_eq(&project("a/../b?x=1#f é").unwrap());
        let errors: Vec<String> =
            ["", ".", ".."].iter().map(|name| project(name).unwrap_err().to_string()).collect();
        expect![[r#"
            [
                "project \"\" is not a valid name: it is empty",
                "project \".\" is not a valid name: '.' and '..' are not names",
                "project \"..\" is not a valid name: '.' and '..' are not names",
            ]
        "#]]
        .assert_debug_eq(&errors);
    }
}
