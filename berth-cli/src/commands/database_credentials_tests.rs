//! `berth database rotate-credentials` and `database update --external-url` against the
//! stand-in server: the confirmation (refused without a terminal, cancelled by "n"), the
//! request sent, and what is printed about the redeployment.

use expect_test::expect;
use serde_json::json;

use crate::commands::testing::run_cli;
use crate::output::Terminals;
use crate::test_server::{Reply, StubServer};

const DATABASE: &str = "/api/v1/projects/shop/environments/prod/databases/main";
const DEPLOYMENT_ID: &str = "0b6f8f3e-5d7e-4c1e-9a77-3f0c2b1d4e5f";

fn database(mode: &str, queued_deployment: Option<&str>) -> serde_json::Value {
    let (host, url) = match mode {
        "external" => ("db.example", "postgresql://app:********@db.example:5432/main"),
        _ => ("main", "postgresql://main:********@main:5432/main"),
    };
    let mut value = json!({
        "id": "main-id", "project": "shop", "environment": "prod", "name": "main",
        "engine": "postgresql", "version": "15", "mode": mode, "storage_gb": null,
        "host": host, "port": 5432, "user": "main", "database": "main", "url": url,
        "variables": ["BERTH_DATABASE_MAIN_URL"], "status": "active",
        "runtime_status": "running", "created_at": "2024-05-01T10:00:00Z",
    });
    if let Some(id) = queued_deployment {
        value["queued_deployment"] = json!(id);
    }
    value
}

const ROTATE: [&str; 7] = ["database", "rotate-credentials", "-p", "shop", "-e", "prod", "main"];

#[tokio::test]
async fn rotation_is_refused_without_a_terminal_and_cancelled_by_no() {
    let stub = StubServer::start(vec![]).await;
    let refused = run_cli(&stub.url, &ROTATE, "y\n", Terminals::default()).await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("refusing to rotate credentials without confirmation"));
    let terminal = Terminals { stdin: true, stderr: true };
    let cancelled = run_cli(&stub.url, &ROTATE, "n\n", terminal).await;
    expect![[r#"
        --- stderr
        Rotate the password of database "main" of environment "prod" in project "shop"? The new password takes effect at once and the database container restarts; application instances running now lose access to the database until the redeployment that follows replaces them. [y/N] error: cancelled: the credentials of database "main" were not changed
        --- failed
    "#]]
    .assert_eq(&cancelled.transcript());
    assert_eq!(stub.request_lines(), "");
}

#[tokio::test]
async fn rotation_names_the_redeployment() {
    let path = format!("POST {DATABASE}/rotate-credentials");
    let reply = Reply::value(200, &database("container", Some(DEPLOYMENT_ID)));
    let stub = StubServer::start(vec![(path.as_str(), vec![reply])]).await;
    let terminal = Terminals { stdin: true, stderr: true };
    let rotated = run_cli(&stub.url, &ROTATE, "y\n", terminal).await;
    assert!(rotated.success, "{}", rotated.transcript());
    expect![[r#"
        rotated the password of database main (postgresql): the new one is in effect and stored, and the database container was restarted with it
        the environment's applications are being redeployed with the new values (deployment 0b6f8f3e-5d7e-4c1e-9a77-3f0c2b1d4e5f)
        follow it with `berth deployment logs 0b6f8f3e-5d7e-4c1e-9a77-3f0c2b1d4e5f --follow`
    "#]]
    .assert_eq(&rotated.stdout);
    assert_eq!(stub.request_lines(), format!("{path}\n"));
}

#[tokio::test]
async fn a_new_external_url_is_sent_and_never_printed() {
    let path = format!("PATCH {DATABASE}");
    let reply = Reply::value(200, &database("external", None));
    let stub = StubServer::start(vec![(path.as_str(), vec![reply])]).await;
    let args = ["database", "update", "-p", "shop", "-e", "prod", "main", "--external-url-stdin"];
    let url = "postgresql://app:s3cret@db.example:5432/main";
    let updated = run_cli(&stub.url, &args, &format!("{url}\n"), Terminals::default()).await;
    expect![[r#"
        updated database main: it now connects to postgresql://app:********@db.example:5432/main
        no application of the environment to redeploy: applications created later receive the new values
    "#]]
    .assert_eq(&updated.transcript());
    assert_eq!(
        stub.bodies("PATCH"),
        [format!(r#"{{"backup_schedule":null,"backup_retention":null,"external_url":"{url}"}}"#)]
    );
}
