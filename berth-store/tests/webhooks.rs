//! The store's Git automation records against a real SQLite database: one webhook secret
//! per project however many first requests race, settings round trips, deliveries newest
//! first, polled heads and branch environments.

#![allow(clippy::unwrap_used)] // Test fixtures: a failed setup should panic with its error.

use berth_domain::deployment::EnvironmentMode;
use berth_domain::{BranchName, ResourceName};
use berth_store::{NewWebhookDelivery, ProjectGitSettings, Store};

fn name(value: &str) -> ResourceName {
    ResourceName::parse(value).unwrap()
}

#[tokio::test]
async fn secrets_settings_deliveries_heads_and_branch_environments() {
    let store = Store::open_in_memory().await.unwrap();
    let org = store.create_organization("o").await.unwrap();
    let project = store.create_project(org.id, &name("shop")).await.unwrap();
    assert_eq!(
        store.project_git_settings(project.id).await.unwrap(),
        ProjectGitSettings::default()
    );

    // The first secret stored wins; a second "first use" gets the same one back.
    let first = store.ensure_webhook_secret(project.id, b"sealed-one").await.unwrap();
    let second = store.ensure_webhook_secret(project.id, b"sealed-two").await.unwrap();
    assert_eq!(first, b"sealed-one");
    assert_eq!(second, b"sealed-one");
    store.replace_webhook_secret(project.id, b"sealed-three").await.unwrap();

    let settings = ProjectGitSettings {
        webhook_secret_ciphertext: None,
        poll_interval_seconds: Some(2),
        branch_environments_glob: Some("feature/*".into()),
        branch_blueprint: Some("staging".into()),
        branch_environments_with_data: true,
    };
    store.save_project_git_settings(project.id, &settings).await.unwrap();
    let saved = store.project_git_settings(project.id).await.unwrap();
    assert_eq!(saved.webhook_secret_ciphertext.as_deref(), Some(&b"sealed-three"[..]));
    assert_eq!(saved.poll_interval_seconds, Some(2));
    assert!(saved.branch_environments_with_data);
    assert_eq!(store.projects_with_polling().await.unwrap(), vec![(project.id, 2)]);

    for verdict in ["refused", "accepted"] {
        let delivery = NewWebhookDelivery {
            project_id: Some(project.id),
            project_name: "shop",
            provider: "github",
            event: "push",
            verdict,
            reason: "r",
            triggered: "",
        };
        store.record_webhook_delivery(&delivery).await.unwrap();
    }
    let listed = store.list_webhook_deliveries("shop", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.verdict.as_str()).collect::<Vec<_>>(),
        ["accepted", "refused"]
    );

    let main = BranchName::main();
    assert_eq!(store.polled_head(project.id, "host/repo", &main).await.unwrap(), None);
    store.set_polled_head(project.id, "host/repo", &main, "abc").await.unwrap();
    store.set_polled_head(project.id, "host/repo", &main, "def").await.unwrap();
    assert_eq!(
        store.polled_head(project.id, "host/repo", &main).await.unwrap().as_deref(),
        Some("def")
    );

    let branch = BranchName::parse("feature/x").unwrap();
    let environment = store
        .create_environment(project.id, &name("feature-x"), EnvironmentMode::Development, &branch)
        .await
        .unwrap();
    store.record_branch_environment(project.id, environment.id, &branch).await.unwrap();
    assert_eq!(store.branch_environments(project.id, &branch).await.unwrap(), vec![environment.id]);
    assert!(store.branch_environments(project.id, &main).await.unwrap().is_empty());
}
