//! Ownership labels. Every container, network and volume Berth creates carries them, and
//! cleanup selects by them only: an object without `berth.managed-by=berth` is never
//! touched.

use std::collections::BTreeMap;

use crate::ids::{
    ApplicationId, DatabaseId, DeploymentId, EnvironmentId, OrganizationId, ProjectId,
};

pub const MANAGED_BY: &str = "berth.managed-by";
pub const MANAGED_BY_VALUE: &str = "berth";
pub const ORGANIZATION: &str = "berth.organization";
pub const PROJECT: &str = "berth.project";
pub const ENVIRONMENT: &str = "berth.environment";
pub const SERVICE: &str = "berth.service";
pub const SERVICE_KIND: &str = "berth.service-kind";
pub const DEPLOYMENT: &str = "berth.deployment";

/// What kind of service an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Application,
    Database,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Database => "database",
        }
    }
}

/// Labels for an environment-wide object (its network).
pub fn environment_labels(
    organization: OrganizationId,
    project: ProjectId,
    environment: EnvironmentId,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (ORGANIZATION.to_owned(), organization.to_string()),
        (PROJECT.to_owned(), project.to_string()),
        (ENVIRONMENT.to_owned(), environment.to_string()),
    ])
}

/// Labels for an application container of one deployment.
pub fn application_container_labels(
    organization: OrganizationId,
    project: ProjectId,
    environment: EnvironmentId,
    application: ApplicationId,
    deployment: DeploymentId,
) -> BTreeMap<String, String> {
    let mut labels = environment_labels(organization, project, environment);
    labels.insert(SERVICE.to_owned(), application.to_string());
    labels.insert(SERVICE_KIND.to_owned(), ServiceKind::Application.as_str().to_owned());
    labels.insert(DEPLOYMENT.to_owned(), deployment.to_string());
    labels
}

/// Labels for an application's persistent volume: no deployment, since it outlives them;
/// removed only with the application.
pub fn application_volume_labels(
    organization: OrganizationId,
    project: ProjectId,
    environment: EnvironmentId,
    application: ApplicationId,
) -> BTreeMap<String, String> {
    let mut labels = environment_labels(organization, project, environment);
    labels.insert(SERVICE.to_owned(), application.to_string());
    labels.insert(SERVICE_KIND.to_owned(), ServiceKind::Application.as_str().to_owned());
    labels
}

/// Labels for a database's container and volume. They carry no deployment: a database
/// container lives across deployments, and its volume until the database is deleted.
pub fn database_labels(
    organization: OrganizationId,
    project: ProjectId,
    environment: EnvironmentId,
    database: DatabaseId,
) -> BTreeMap<String, String> {
    let mut labels = environment_labels(organization, project, environment);
    labels.insert(SERVICE.to_owned(), database.to_string());
    labels.insert(SERVICE_KIND.to_owned(), ServiceKind::Database.as_str().to_owned());
    labels
}

/// Labels for an image built for a project. Images are shared between deployments, so they
/// carry only the organization and project and are removed when no record references them.
pub fn image_labels(organization: OrganizationId, project: ProjectId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (ORGANIZATION.to_owned(), organization.to_string()),
        (PROJECT.to_owned(), project.to_string()),
    ])
}
