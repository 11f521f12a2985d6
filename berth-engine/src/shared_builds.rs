//! Shared builds within one deployment: applications built from the same repository,
//! branch, root path, Dockerfile and build arguments build once. Before the applications
//! run, the first of each such group (in deployment order: waves, then the environment's
//! order) is designated its builder; the others wait in their own `build` step for the
//! builder's outcome and, when it built the very same commit, use its image ("shared build
//! with APP"). Otherwise (the builder failed, was skipped, or fetched another commit
//! because a push landed in between) they build themselves.
//!
//! Deterministic on purpose: the plan of `berth deploy --dry-run` names the same builder,
//! and the builder's content-addressed tag (which carries its application id) is found
//! again by the next deployment of an unchanged commit.
//!
//! Guarantees: no waiting without end — every designated builder publishes an outcome
//! (`publish_built` after its build, `publish_not_built` when it ends in any other way), and
//! waiters sit inside their build step's deadline. A builder comes before its waiters in
//! deployment order, so with the fair concurrency semaphore it always gets to run.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_domain::deploy_plan::BuildIdentity;
use tokio::sync::watch;

/// What a designated builder did.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    Built { identity: BuildIdentity, image: String },
    NotBuilt,
}

pub(crate) type Outcome = Option<Published>;

#[derive(Default)]
struct Designations {
    /// Builder → where it publishes.
    builders: HashMap<String, watch::Sender<Outcome>>,
    /// Waiting application → its builder and where to read the outcome.
    waiters: HashMap<String, (String, watch::Receiver<Outcome>)>,
}

/// The builders and waiters of one deployment.
#[derive(Default)]
pub(crate) struct SharedBuilds {
    designations: Mutex<Designations>,
}

impl SharedBuilds {
    /// Designates builders. `applications` is in deployment order, each with its group
    /// key (`None`: not built from Git, shares nothing).
    pub(crate) fn designate(&self, applications: &[(String, Option<String>)]) {
        let Ok(mut designations) = self.designations.lock() else { return };
        let mut first_of_group: HashMap<&str, &str> = HashMap::new();
        for (name, key) in applications {
            let Some(key) = key else { continue };
            match first_of_group.get(key.as_str()) {
                None => {
                    first_of_group.insert(key, name);
                }
                Some(builder) => {
                    let sender = designations
                        .builders
                        .entry((*builder).to_owned())
                        .or_insert_with(|| watch::channel(None).0);
                    let receiver = sender.subscribe();
                    designations.waiters.insert(name.clone(), ((*builder).to_owned(), receiver));
                }
            }
        }
    }

    /// The builder `application` should wait for, if any.
    pub(crate) fn builder_for(
        &self,
        application: &str,
    ) -> Option<(String, watch::Receiver<Outcome>)> {
        let designations = self.designations.lock().ok()?;
        designations.waiters.get(application).cloned()
    }

    /// The designated builder `application` built `identity` as `image`.
    pub(crate) fn publish_built(&self, application: &str, identity: BuildIdentity, image: &str) {
        self.publish(application, Published::Built { identity, image: image.to_owned() });
    }

    /// `application` ended without building (failed, skipped, cancelled): its waiters
    /// build for themselves. Nothing happens when it already published.
    pub(crate) fn publish_not_built(&self, application: &str) {
        self.publish(application, Published::NotBuilt);
    }

    fn publish(&self, application: &str, outcome: Published) {
        let Ok(designations) = self.designations.lock() else { return };
        if let Some(sender) = designations.builders.get(application) {
            sender.send_if_modified(|current| {
                if current.is_some() {
                    return false;
                }
                *current = Some(outcome);
                true
            });
        }
    }
}

/// Waits for the builder's outcome; the image when it built `identity`.
pub(crate) async fn wait_for_build(
    mut receiver: watch::Receiver<Outcome>,
    identity: &BuildIdentity,
) -> Option<String> {
    let outcome = receiver.wait_for(Option::is_some).await.ok()?.clone();
    match outcome {
        Some(Published::Built { identity: built, image }) if &built == identity => Some(image),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(commit: &str) -> BuildIdentity {
        BuildIdentity {
            repository: "https://git.example/mono.git".into(),
            commit: commit.into(),
            root_path: "services/api".into(),
            dockerfile_path: "Dockerfile".into(),
            build_args: Default::default(),
        }
    }

    fn order() -> Vec<(String, Option<String>)> {
        vec![
            ("api".into(), Some("k".into())),
            ("image-app".into(), None),
            ("api-copy".into(), Some("k".into())),
            ("web".into(), Some("other".into())),
        ]
    }

    #[tokio::test]
    async fn the_first_of_a_group_builds_and_the_others_share_its_image() {
        let builds = SharedBuilds::default();
        builds.designate(&order());
        assert!(builds.builder_for("api").is_none());
        assert!(builds.builder_for("web").is_none());
        let (builder, receiver) = builds.builder_for("api-copy").unwrap();
        assert_eq!(builder, "api");
        builds.publish_built("api", identity("c1"), "berth/p/api:1");
        builds.publish_not_built("api");
        assert_eq!(
            wait_for_build(receiver.clone(), &identity("c1")).await.as_deref(),
            Some("berth/p/api:1")
        );
        // Another commit (a push in between): build yourself.
        assert_eq!(wait_for_build(receiver, &identity("c2")).await, None);
    }

    #[tokio::test]
    async fn a_builder_that_does_not_build_releases_its_waiters() {
        let builds = SharedBuilds::default();
        builds.designate(&order());
        let (_, receiver) = builds.builder_for("api-copy").unwrap();
        let waiting = tokio::spawn(async move { wait_for_build(receiver, &identity("c1")).await });
        builds.publish_not_built("api");
        assert_eq!(waiting.await.unwrap(), None);
    }
}
