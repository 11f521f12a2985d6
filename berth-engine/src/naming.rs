//! Names of the runtime objects Berth creates. They are derived from ids (never from
//! user-supplied text alone) so they are unique and safe, with the readable names added
//! for people reading `docker ps`.

use berth_domain::{ApplicationId, DeploymentId, EnvironmentId, ProjectId, ResourceName};
use sha2::{Digest, Sha256};

/// The per-environment network; every service of the environment joins it.
pub fn environment_network(environment: EnvironmentId) -> String {
    format!("berth-env-{environment}")
}

/// The base name of an application's containers for one deployment.
pub fn application_container(
    project: &ResourceName,
    environment: &ResourceName,
    application: &ResourceName,
    deployment: DeploymentId,
) -> String {
    // Docker names may be long, but keep them readable: truncate the human parts.
    let cut = |s: &str| s.chars().take(20).collect::<String>();
    format!(
        "berth-{}-{}-{}-{}",
        cut(project.as_str()),
        cut(environment.as_str()),
        cut(application.as_str()),
        deployment.short()
    )
}

/// The container of a database (it lives across deployments).
pub fn database_container(
    project: &ResourceName,
    environment: &ResourceName,
    database: &ResourceName,
) -> String {
    let cut = |s: &str| s.chars().take(20).collect::<String>();
    format!(
        "berth-{}-{}-{}-db",
        cut(project.as_str()),
        cut(environment.as_str()),
        cut(database.as_str())
    )
}

/// The volume holding a database's data.
pub fn database_volume(database: berth_domain::DatabaseId) -> String {
    format!("berth-db-{database}")
}

/// The Docker volume behind an application's named volume.
pub fn application_volume(application: ApplicationId, name: &ResourceName) -> String {
    format!("berth-vol-{application}-{name}")
}

/// The container of instance `index` of a deployment (`<base>-<index>`).
pub fn instance_container(base: &str, index: u16) -> String {
    format!("{base}-{index}")
}

/// The inputs that determine a built image: the same inputs reuse the same image.
#[derive(Debug)]
pub struct BuildInputs<'a> {
    pub project: ProjectId,
    pub application: ApplicationId,
    pub commit: &'a str,
    pub root_path: &'a str,
    pub dockerfile_path: &'a str,
    pub build_args: &'a std::collections::BTreeMap<String, String>,
}

/// Content-addressed tag: `berth/<project-id>/<application-id>:<hash of the inputs>`.
pub fn image_tag(inputs: &BuildInputs<'_>) -> String {
    let mut hasher = Sha256::new();
    for part in [inputs.commit, inputs.root_path, inputs.dockerfile_path] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (key, value) in inputs.build_args {
        hasher.update(key.as_bytes());
        hasher.update([b'=']);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    format!("berth/{}/{}:{}", inputs.project.short(), inputs.application, &digest[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tag_changes_with_inputs() {
        let (p, a) = (ProjectId::new_random(), ApplicationId::new_random());
        let args = std::collections::BTreeMap::new();
        let base = BuildInputs {
            project: p,
            application: a,
            commit: "abc",
            root_path: ".",
            dockerfile_path: "Dockerfile",
            build_args: &args,
        };
        let other_commit = BuildInputs { commit: "abd", ..base };
        let tag = image_tag(&BuildInputs { commit: "abc", ..other_commit });
        assert_eq!(
            tag,
            image_tag(&BuildInputs {
                project: p,
                application: a,
                commit: "abc",
                root_path: ".",
                dockerfile_path: "Dockerfile",
                build_args: &args
            })
        );
        assert_ne!(
            tag,
            image_tag(&BuildInputs {
                project: p,
                application: a,
                commit: "abd",
                root_path: ".",
                dockerfile_path: "Dockerfile",
                build_args: &args
            })
        );
        assert!(tag.starts_with("berth/"));
    }
}
