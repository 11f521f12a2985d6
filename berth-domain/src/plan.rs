//! The reconciler's pure planning function: given what should exist (from the store) and
//! what does exist (observed in the runtime, by labels), decide which Berth-owned objects
//! to remove. It never proposes touching an object without Berth's ownership labels or
//! owned by another organization.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{
    ApplicationId, DatabaseId, DeploymentId, EnvironmentId, OrganizationId, ProjectId,
};
use crate::labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    // Order matters: containers go before the networks, volumes and images they use.
    Container,
    Network,
    Volume,
    Image,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Network => "network",
            Self::Volume => "volume",
            Self::Image => "image",
        }
    }
}

/// An object seen in the runtime, with its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedObject {
    pub kind: ObjectKind,
    /// The runtime's id (container id, network id, volume name, image tag).
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What the store says should exist.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    pub organization: Option<OrganizationId>,
    pub projects: BTreeSet<ProjectId>,
    pub environments: BTreeSet<EnvironmentId>,
    pub applications: BTreeSet<ApplicationId>,
    /// Databases whose container and volume must stay.
    pub databases: BTreeSet<DatabaseId>,
    /// Deployments whose containers must stay: the serving release of each application
    /// and any deployment in progress.
    pub live_deployments: BTreeSet<DeploymentId>,
    /// Image tags referenced by a service or a retained deployment.
    pub referenced_images: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub kind: ObjectKind,
    pub id: String,
    pub name: String,
    pub reason: String,
}

fn label_id<T: std::str::FromStr>(object: &ObservedObject, key: &str) -> Option<T> {
    object.labels.get(key).and_then(|v| v.parse().ok())
}

/// Computes the removals that bring the runtime to the desired state, containers first.
pub fn plan_cleanup(desired: &DesiredState, observed: &[ObservedObject]) -> Vec<Removal> {
    let mut removals = Vec::new();
    for object in observed {
        if object.labels.get(labels::MANAGED_BY).map(String::as_str)
            != Some(labels::MANAGED_BY_VALUE)
        {
            continue;
        }
        // Another Berth (another organization) may share the engine: its objects, and
        // objects without a readable organization, are not ours to remove.
        let organization: Option<OrganizationId> = label_id(object, labels::ORGANIZATION);
        if desired.organization.is_some() && organization != desired.organization {
            continue;
        }
        if let Some(reason) = removal_reason(desired, object) {
            removals.push(Removal {
                kind: object.kind,
                id: object.id.clone(),
                name: object.name.clone(),
                reason,
            });
        }
    }
    removals.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.name.cmp(&b.name)));
    removals
}

fn removal_reason(desired: &DesiredState, object: &ObservedObject) -> Option<String> {
    let project: Option<ProjectId> = label_id(object, labels::PROJECT);
    match project {
        Some(project) if !desired.projects.contains(&project) => {
            return Some(format!("project {project} was deleted"));
        }
        // An owned object without a readable project label is malformed: leave it alone
        // rather than guess.
        None => return None,
        Some(_) => {}
    }
    if object.kind == ObjectKind::Image {
        return (!desired.referenced_images.contains(&object.id))
            .then(|| "no service or retained deployment references this image".to_owned());
    }
    let environment: Option<EnvironmentId> = label_id(object, labels::ENVIRONMENT);
    if let Some(environment) = environment {
        if !desired.environments.contains(&environment) {
            return Some(format!("environment {environment} was deleted"));
        }
    }
    if object.kind == ObjectKind::Network {
        return None;
    }
    let service: Option<ApplicationId> = label_id(object, labels::SERVICE);
    let is_application =
        object.labels.get(labels::SERVICE_KIND).map(String::as_str) == Some("application");
    if let (Some(service), true) = (service, is_application) {
        if !desired.applications.contains(&service) {
            return Some(format!("application {service} was deleted"));
        }
    }
    let is_database =
        object.labels.get(labels::SERVICE_KIND).map(String::as_str) == Some("database");
    if is_database {
        let database: Option<DatabaseId> = label_id(object, labels::SERVICE);
        return match database {
            Some(database) if !desired.databases.contains(&database) => {
                Some(format!("database {database} was deleted"))
            }
            _ => None,
        };
    }
    if object.kind == ObjectKind::Container && is_application {
        let deployment: Option<DeploymentId> = label_id(object, labels::DEPLOYMENT);
        match deployment {
            Some(d) if !desired.live_deployments.contains(&d) => {
                return Some(format!("deployment {d} no longer serves"));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrganizationId {
        OrganizationId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn container(
        name: &str,
        project: ProjectId,
        env: EnvironmentId,
        app: ApplicationId,
        dep: DeploymentId,
    ) -> ObservedObject {
        ObservedObject {
            kind: ObjectKind::Container,
            id: name.to_owned(),
            name: name.to_owned(),
            labels: labels::application_container_labels(org(), project, env, app, dep),
        }
    }

    #[test]
    fn removes_only_owned_objects_that_are_no_longer_desired() {
        let (p, e, a) =
            (ProjectId::new_random(), EnvironmentId::new_random(), ApplicationId::new_random());
        let (live, old) = (DeploymentId::new_random(), DeploymentId::new_random());
        let deleted_project = ProjectId::new_random();
        let desired = DesiredState {
            organization: Some(org()),
            projects: [p].into(),
            environments: [e].into(),
            applications: [a].into(),
            databases: Default::default(),
            live_deployments: [live].into(),
            referenced_images: ["berth/p/web:abc".to_owned()].into(),
        };
        let mut unlabelled = container("berth-decoy", deleted_project, e, a, old);
        unlabelled.labels.remove(labels::MANAGED_BY);
        let mut foreign_org = container("other-org", deleted_project, e, a, old);
        foreign_org
            .labels
            .insert(labels::ORGANIZATION.into(), uuid::Uuid::from_u128(2).to_string());
        let observed = vec![
            container("live", p, e, a, live),
            container("old", p, e, a, old),
            container("gone-project", deleted_project, e, a, live),
            unlabelled,
            foreign_org,
            ObservedObject {
                kind: ObjectKind::Image,
                id: "berth/p/web:old".into(),
                name: "berth/p/web:old".into(),
                labels: labels::image_labels(org(), p),
            },
            ObservedObject {
                kind: ObjectKind::Image,
                id: "berth/p/web:abc".into(),
                name: "berth/p/web:abc".into(),
                labels: labels::image_labels(org(), p),
            },
        ];
        let removed: Vec<String> = plan_cleanup(&desired, &observed)
            .into_iter()
            .map(|r| format!("{} {}", r.kind.as_str(), r.name))
            .collect();
        assert_eq!(removed, ["container gone-project", "container old", "image berth/p/web:old"]);
    }

    #[test]
    fn database_volumes_go_only_with_their_database() {
        let (p, e) = (ProjectId::new_random(), EnvironmentId::new_random());
        let (kept, deleted) = (DatabaseId::new_random(), DatabaseId::new_random());
        let desired = DesiredState {
            organization: Some(org()),
            projects: [p].into(),
            environments: [e].into(),
            databases: [kept].into(),
            ..DesiredState::default()
        };
        let volume = |name: &str, db| ObservedObject {
            kind: ObjectKind::Volume,
            id: name.to_owned(),
            name: name.to_owned(),
            labels: labels::database_labels(org(), p, e, db),
        };
        let observed = vec![volume("kept", kept), volume("deleted", deleted)];
        let removed: Vec<String> =
            plan_cleanup(&desired, &observed).into_iter().map(|r| r.name).collect();
        assert_eq!(removed, ["deleted"]);
    }
}
