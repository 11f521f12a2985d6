//! The store's deployment queue and retention rules, against a real SQLite database:
//! one running deployment per environment, newer requests superseding older queued ones,
//! and the images kept for rollbacks.

#![allow(clippy::unwrap_used)] // Test fixtures: a failed setup should panic with its error.

use berth_domain::deployment::{DeploymentStatus, EnvironmentMode};
use berth_domain::health::HealthCheck;
use berth_domain::source::ImageReference;
use berth_domain::spec::{ApplicationSource, ApplicationSpec, Visibility, DEFAULT_DRAIN_MS};
use berth_domain::{BranchName, ResourceName};
use berth_store::{DeploymentServiceRecord, Store};

fn name(value: &str) -> ResourceName {
    ResourceName::parse(value).unwrap()
}

fn spec() -> ApplicationSpec {
    ApplicationSpec {
        source: ApplicationSource::Image {
            reference: ImageReference::parse("berth/busybox:1").unwrap(),
        },
        port: Some(8080),
        visibility: Visibility::Public,
        cpu: None,
        memory: None,
        instances: 1,
        health_check: HealthCheck::default(),
        release_command: None,
        drain_ms: DEFAULT_DRAIN_MS,
        volumes: Vec::new(),
        depends_on: Vec::new(),
        watch_paths: Vec::new(),
        auto_deploy: true,
    }
}

#[tokio::test]
async fn one_running_deployment_per_environment_and_newer_requests_supersede() {
    let store = Store::open_in_memory().await.unwrap();
    let org = store.create_organization("o").await.unwrap();
    let project = store.create_project(org.id, &name("shop")).await.unwrap();
    let branch = BranchName::main();
    let a = store
        .create_environment(project.id, &name("a"), EnvironmentMode::Development, &branch)
        .await
        .unwrap();
    let b = store
        .create_environment(project.id, &name("b"), EnvironmentMode::Development, &branch)
        .await
        .unwrap();

    let first = store.create_deployment(project.id, a.id, None, "t", None).await.unwrap();
    let claimed = store.claim_next_deployment().await.unwrap().unwrap();
    assert_eq!(claimed.id, first.id);
    let second = store.create_deployment(project.id, a.id, None, "t", None).await.unwrap();
    let third = store.create_deployment(project.id, a.id, None, "t", None).await.unwrap();
    let other = store.create_deployment(project.id, b.id, None, "t", None).await.unwrap();
    // Environment a is busy: only b's deployment can start.
    assert_eq!(store.claim_next_deployment().await.unwrap().unwrap().id, other.id);
    assert!(store.claim_next_deployment().await.unwrap().is_none());
    assert_eq!(
        store.deployment(second.id).await.unwrap().unwrap().status,
        DeploymentStatus::Superseded
    );
    assert_eq!(store.deployment(third.id).await.unwrap().unwrap().status, DeploymentStatus::Queued);
    store.finish_deployment(first.id, DeploymentStatus::Succeeded, None).await.unwrap();
    assert_eq!(store.claim_next_deployment().await.unwrap().unwrap().id, third.id);
}

#[tokio::test]
async fn images_of_the_last_successful_deployments_are_kept() {
    let store = Store::open_in_memory().await.unwrap();
    let org = store.create_organization("o").await.unwrap();
    let project = store.create_project(org.id, &name("shop")).await.unwrap();
    let env = store
        .create_environment(
            project.id,
            &name("prod"),
            EnvironmentMode::Production,
            &BranchName::main(),
        )
        .await
        .unwrap();
    let app = store.create_application(env.id, &name("web"), &spec(), None).await.unwrap();
    for index in 0..4 {
        let deployment =
            store.create_deployment(project.id, env.id, None, "t", None).await.unwrap();
        store.claim_next_deployment().await.unwrap();
        store
            .record_service(&DeploymentServiceRecord {
                deployment_id: deployment.id,
                application_id: app.id,
                application_name: "web".into(),
                git_commit: None,
                image: Some(format!("image:{index}")),
                container_name: Some("c".into()),
                instances: 1,
                config_snapshot: None,
            })
            .await
            .unwrap();
        let status =
            if index == 3 { DeploymentStatus::Failed } else { DeploymentStatus::Succeeded };
        store.finish_deployment(deployment.id, status, None).await.unwrap();
        if status == DeploymentStatus::Succeeded {
            store.set_current_deployment(app.id, deployment.id).await.unwrap();
        }
    }
    let desired = store.desired_state(org.id, 2).await.unwrap();
    let kept: Vec<&str> = desired.referenced_images.iter().map(String::as_str).collect();
    // The two newest successful ones (2 is also current); the failed one's image goes.
    assert_eq!(kept, ["image:1", "image:2"]);
}
