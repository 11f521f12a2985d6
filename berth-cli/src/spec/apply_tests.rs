//! Tests of `apply.rs` against the stand-in server: what is printed, and which requests
//! are sent (none but reads for a dry run, in dependency order for a real one).

use expect_test::expect;

use crate::commands::testing::run_cli;
use crate::output::Terminals;
use crate::test_server::{Reply, StubServer};

const SPEC: &str = r#"project = "shop"

[variables]
LOG_LEVEL = "info"

[environments.production]
mode = "production"

[environments.production.variables]
DATABASE_URL = { alias = "BERTH_DATABASE_MAIN_URL" }

[environments.production.databases.main]
engine = "postgresql"

[environments.production.applications.web]
image = "nginx:1.25"
port = 80
depends_on = ["main"]
"#;

fn spec_file() -> (tempfile::TempDir, String) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("berth.toml");
    std::fs::write(&path, SPEC).unwrap();
    let path = path.display().to_string();
    (directory, path)
}

#[tokio::test]
async fn a_dry_run_only_reads_and_prints_the_plan_as_json() {
    let stub = StubServer::start(vec![(
        "GET /api/v1/projects/shop",
        vec![Reply::not_found("project \"shop\" does not exist")],
    )])
    .await;
    let (_directory, path) = spec_file();
    let outcome = run_cli(
        &stub.url,
        &["apply", "-f", &path, "--dry-run", "-o", "json"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        {
          "changes": [
            {
              "action": "create",
              "details": [],
              "resource": "project shop"
            },
            {
              "action": "create",
              "details": [
                "mode production",
                "branch main"
              ],
              "resource": "environment production"
            },
            {
              "action": "create",
              "details": [
                "postgresql 15",
                "container",
                "1 GB"
              ],
              "resource": "database production/main"
            },
            {
              "action": "create",
              "details": [
                "image nginx:1.25",
                "port 80"
              ],
              "resource": "application production/web"
            },
            {
              "action": "create",
              "details": [
                "\"info\""
              ],
              "resource": "variable LOG_LEVEL in project"
            },
            {
              "action": "create",
              "details": [
                "alias of BERTH_DATABASE_MAIN_URL"
              ],
              "resource": "variable DATABASE_URL in production"
            }
          ],
          "missing_secrets": [],
          "project": "shop",
          "refusals": [],
          "unmanaged": []
        }
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.request_lines(), "GET /api/v1/projects/shop\n");
}

#[tokio::test]
async fn apply_sends_the_changes_in_dependency_order() {
    let created = || vec![Reply::json(201, "{}")];
    let stub = StubServer::start(vec![
        ("GET /api/v1/projects/shop", vec![Reply::not_found("project \"shop\" does not exist")]),
        ("POST /api/v1/projects", created()),
        ("POST /api/v1/projects/shop/environments", created()),
        ("POST /api/v1/projects/shop/environments/production/databases", created()),
        ("POST /api/v1/projects/shop/environments/production/applications", created()),
        ("PUT /api/v1/projects/shop/variables", vec![Reply::json(200, "{}")]),
        (
            "PUT /api/v1/projects/shop/environments/production/variables",
            vec![Reply::json(200, "{}")],
        ),
    ])
    .await;
    let (_directory, path) = spec_file();
    let outcome = run_cli(&stub.url, &["apply", "-f", &path], "", Terminals::default()).await;
    expect![[r#"
        + project shop
        + environment production (mode production, branch main)
        + database production/main (postgresql 15, container, 1 GB)
        + application production/web (image nginx:1.25, port 80)
        + variable LOG_LEVEL in project ("info")
        + variable DATABASE_URL in production (alias of BERTH_DATABASE_MAIN_URL)
        plan: 6 to create, 0 to update, 0 to delete
        applied 6 changes
        deploy the changes with `berth deploy --project shop --environment production --wait`
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        GET /api/v1/projects/shop
        POST /api/v1/projects
        POST /api/v1/projects/shop/environments
        POST /api/v1/projects/shop/environments/production/databases
        POST /api/v1/projects/shop/environments/production/applications
        PUT /api/v1/projects/shop/variables
        PUT /api/v1/projects/shop/environments/production/variables
    "#]]
    .assert_eq(&stub.request_lines());
    let application =
        stub.bodies("POST /api/v1/projects/shop/environments/production/applications");
    let application: serde_json::Value = serde_json::from_str(&application[0]).unwrap();
    assert_eq!(application["depends_on"], serde_json::json!(["main"]));
    assert_eq!(application["port"], 80);
}

const EXTERNAL: &str = r#"project = "shop"

[environments.production.databases.legacy]
engine = "postgresql"
mode = "external"
url = { secret = "BERTH_CLI_TEST_LEGACY_URL" }
"#;

#[tokio::test]
async fn an_external_database_url_comes_from_the_environment_only_when_created() {
    let created = || vec![Reply::json(201, "{}")];
    let stub = StubServer::start(vec![
        ("GET /api/v1/projects/shop", vec![Reply::not_found("no"), Reply::not_found("no")]),
        ("POST /api/v1/projects", created()),
        ("POST /api/v1/projects/shop/environments", created()),
        ("POST /api/v1/projects/shop/environments/production/databases", created()),
    ])
    .await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("berth.toml");
    std::fs::write(&path, EXTERNAL).unwrap();
    let path = path.display().to_string();

    // Without the variable: refused before the first write.
    let refused = run_cli(&stub.url, &["apply", "-f", &path], "", Terminals::default()).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains(
            "database production/legacy needs its URL in the environment variable BERTH_CLI_TEST_LEGACY_URL; nothing was changed"
        ),
        "{}",
        refused.transcript()
    );
    assert_eq!(stub.request_lines(), "GET /api/v1/projects/shop\n");

    // The only test that sets this variable; nothing else reads it.
    std::env::set_var("BERTH_CLI_TEST_LEGACY_URL", "postgresql://app:pw@db.example:5432/app");
    let applied = run_cli(&stub.url, &["apply", "-f", &path], "", Terminals::default()).await;
    std::env::remove_var("BERTH_CLI_TEST_LEGACY_URL");
    assert!(applied.success, "{}", applied.transcript());
    assert!(!applied.transcript().contains("pw@"), "the URL is never printed");
    let bodies = stub.bodies("POST /api/v1/projects/shop/environments/production/databases");
    let body: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["url"], "postgresql://app:pw@db.example:5432/app");
    assert_eq!(body["mode"], "external");
}
