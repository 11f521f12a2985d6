//! The plan of an environment deployment, as `berth deploy --dry-run` shows it: the waves
//! (databases first, then applications in dependency order) and, per application, what
//! would happen — build a commit, reuse an existing image, share another application's
//! build, run an image, or nothing (skipped).
//!
//! Pure: the engine gathers the facts (branch heads, which images exist) and this module
//! decides; the executor uses the same [`BuildIdentity`] to decide which applications
//! share one build.

use std::collections::BTreeMap;

use crate::ordering::{application_waves, DependencyError, DependencyNode};

/// Everything that determines a built image. Applications of one deployment with equal
/// identities build once and run the same image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildIdentity {
    pub repository: String,
    pub commit: String,
    pub root_path: String,
    pub dockerfile_path: String,
    pub build_args: BTreeMap<String, String>,
}

/// What is known about one application before deploying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanApplication {
    pub name: String,
    pub depends_on: Vec<String>,
    pub source: PlanSource,
    /// Set when the application would not be deployed (e.g. no watched file changed).
    pub skip_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// Built from Git: the identity at the branch head, and whether its image exists.
    Git { build: BuildIdentity, image: String, image_exists: bool },
    /// Runs a given image.
    Image { reference: String },
}

/// What the deployment would do with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedAction {
    /// A database: started, or left alone when it already runs the same image.
    EnsureDatabase,
    Build {
        commit: String,
    },
    ReuseImage {
        image: String,
    },
    SharedBuild {
        with: String,
    },
    RunImage {
        reference: String,
    },
    Skip {
        reason: String,
    },
}

impl PlannedAction {
    /// A one-word summary (`build`, `reuse`, `shared`, `image`, `skip`, `ensure`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EnsureDatabase => "ensure",
            Self::Build { .. } => "build",
            Self::ReuseImage { .. } => "reuse",
            Self::SharedBuild { .. } => "shared",
            Self::RunImage { .. } => "image",
            Self::Skip { .. } => "skip",
        }
    }

    /// What a person reads in the plan.
    pub fn describe(&self) -> String {
        match self {
            Self::EnsureDatabase => "start, or keep running when unchanged".to_owned(),
            Self::Build { commit } => format!("build commit {}", short_commit(commit)),
            Self::ReuseImage { image } => format!("reuse image {image} (same commit and settings)"),
            Self::SharedBuild { with } => format!("shared build with {with}"),
            Self::RunImage { reference } => format!("run image {reference}"),
            Self::Skip { reason } => format!("skip: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedService {
    pub name: String,
    /// `database` or `application`.
    pub kind: &'static str,
    pub action: PlannedAction,
}

/// Services of one wave deploy in parallel; a wave starts when the previous one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWave {
    pub services: Vec<PlannedService>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentPlan {
    pub waves: Vec<PlanWave>,
}

/// Orders the services into waves and decides each application's action.
pub fn plan_deployment(
    databases: &[String],
    applications: &[PlanApplication],
) -> Result<DeploymentPlan, DependencyError> {
    let nodes: Vec<DependencyNode> = applications
        .iter()
        .map(|a| DependencyNode { name: a.name.clone(), depends_on: a.depends_on.clone() })
        .collect();
    let mut plan = DeploymentPlan::default();
    if !databases.is_empty() {
        plan.waves.push(PlanWave {
            services: databases
                .iter()
                .map(|name| PlannedService {
                    name: name.clone(),
                    kind: "database",
                    action: PlannedAction::EnsureDatabase,
                })
                .collect(),
        });
    }
    let by_name: BTreeMap<&str, &PlanApplication> =
        applications.iter().map(|a| (a.name.as_str(), a)).collect();
    // The first application (in wave order) to build an identity builds it.
    let mut builders: BTreeMap<&BuildIdentity, &str> = BTreeMap::new();
    for wave in application_waves(&nodes)? {
        let mut services = Vec::new();
        for name in &wave {
            let Some(application) = by_name.get(name.as_str()) else { continue };
            let action = match (&application.skip_reason, &application.source) {
                (Some(reason), _) => PlannedAction::Skip { reason: reason.clone() },
                (None, PlanSource::Image { reference }) => {
                    PlannedAction::RunImage { reference: reference.clone() }
                }
                (None, PlanSource::Git { build, image, image_exists }) => {
                    match builders.get(build) {
                        Some(builder) => PlannedAction::SharedBuild { with: (*builder).to_owned() },
                        None => {
                            builders.insert(build, application.name.as_str());
                            if *image_exists {
                                PlannedAction::ReuseImage { image: image.clone() }
                            } else {
                                PlannedAction::Build { commit: build.commit.clone() }
                            }
                        }
                    }
                }
            };
            services.push(PlannedService { name: name.clone(), kind: "application", action });
        }
        plan.waves.push(PlanWave { services });
    }
    Ok(plan)
}

/// The first 12 characters of a commit id, as shown to people.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(name: &str, depends_on: &[&str], root: &str, exists: bool) -> PlanApplication {
        PlanApplication {
            name: name.to_owned(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            source: PlanSource::Git {
                build: BuildIdentity {
                    repository: "https://git.example/mono.git".into(),
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    root_path: root.into(),
                    dockerfile_path: "Dockerfile".into(),
                    build_args: BTreeMap::new(),
                },
                image: format!("berth/p/{name}:hash"),
                image_exists: exists,
            },
            skip_reason: None,
        }
    }

    fn render(plan: &DeploymentPlan) -> String {
        plan.waves
            .iter()
            .enumerate()
            .map(|(i, wave)| {
                let services: Vec<String> = wave
                    .services
                    .iter()
                    .map(|s| format!("{} ({}): {}", s.name, s.kind, s.action.describe()))
                    .collect();
                format!("wave {}: {}", i + 1, services.join("; "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn databases_first_then_dependency_order_with_shared_builds() {
        let mut skipped = git("docs", &[], "docs", false);
        skipped.skip_reason = Some("no watched file changed since 0123456".into());
        let plan = plan_deployment(
            &["db".to_owned()],
            &[
                git("web", &["api"], "services/web", false),
                git("api", &["db"], "services/api", true),
                git("worker", &[], "services/api", false),
                skipped,
                PlanApplication {
                    name: "cache-ui".into(),
                    depends_on: vec![],
                    source: PlanSource::Image { reference: "berth/busybox:1".into() },
                    skip_reason: None,
                },
            ],
        )
        .unwrap();
        expect_test::expect![[r#"
            wave 1: db (database): start, or keep running when unchanged
            wave 2: api (application): reuse image berth/p/api:hash (same commit and settings); worker (application): shared build with api; docs (application): skip: no watched file changed since 0123456; cache-ui (application): run image berth/busybox:1
            wave 3: web (application): build commit 0123456789ab"#]]
        .assert_eq(&render(&plan));
    }

    #[test]
    fn a_cycle_is_an_error() {
        let apps = [git("a", &["b"], ".", false), git("b", &["a"], ".", false)];
        assert!(plan_deployment(&[], &apps).is_err());
    }
}
