//! Tests of `berth application`: request bodies, credentials, tables, against the stand-in
//! server of `test_server`.

use expect_test::expect;
use serde_json::json;

use crate::commands::testing::run_cli;
use crate::output::Terminals;
use crate::test_server::{Reply, StubServer};

const APPS: &str = "/api/v1/projects/shop/environments/prod/applications";

fn web() -> serde_json::Value {
    json!({
        "id": "a1", "project": "shop", "environment": "prod", "name": "web",
        "git": {"repository": "https://git.example/shop.git", "branch": null, "effective_branch": "main",
                "root_path": "apps/web", "dockerfile_path": "Dockerfile",
                "build_args": {"MODE": "prod"}, "credential": "token"},
        "image": null, "port": 3000, "private": false, "cpu": 0.5, "memory_mb": 256,
        "instances": 2,
        "health_check": {"kind": "http", "path": "/healthz", "expected_status": "200-399",
                         "start_delay_secs": 0.0, "interval_secs": 2.0, "timeout_secs": 2.0,
                         "failure_threshold": 3},
        "release_command": "bin/migrate --yes", "drain_secs": 5.0,
        "url": "http://web.prod.shop.localhost:8000", "status": "running",
        "current_deployment": "d1", "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:05:00Z"
    })
}

fn worker() -> serde_json::Value {
    json!({
        "id": "a2", "project": "shop", "environment": "prod", "name": "worker",
        "git": null, "image": "127.0.0.1:5000/worker:1", "port": null, "private": true, "cpu": null,
        "memory_mb": null, "instances": 1,
        "health_check": {"kind": "tcp", "path": null, "expected_status": null,
                         "start_delay_secs": 0.0, "interval_secs": 2.0, "timeout_secs": 2.0,
                         "failure_threshold": 3},
        "release_command": null, "drain_secs": 0.5,
        "url": null, "status": "never_deployed", "current_deployment": null,
        "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z"
    })
}

async fn stub() -> StubServer {
    let web_path = format!("GET {APPS}/web");
    let worker_path = format!("GET {APPS}/worker");
    let post = format!("POST {APPS}");
    let list = format!("GET {APPS}");
    let patch_web = format!("PATCH {APPS}/web");
    StubServer::start(vec![
        (post.as_str(), vec![Reply::value(201, &web())]),
        (list.as_str(), vec![Reply::value(200, &json!([web(), worker()]))]),
        (web_path.as_str(), vec![Reply::value(200, &web())]),
        (worker_path.as_str(), vec![Reply::value(200, &worker())]),
        (patch_web.as_str(), vec![Reply::value(200, &web())]),
    ])
    .await
}

fn pretty(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[tokio::test]
async fn create_from_git_reads_the_token_from_stdin() {
    let stub = stub().await;
    let args = [
        "application",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "web",
        "--git",
        "https://git.example/shop.git",
        "--root-path",
        "apps/web",
        "--build-arg",
        "MODE=prod",
        "--git-token-stdin",
        "--port",
        "3000",
        "--cpu",
        "0.5",
        "--memory",
        "256",
    ];
    let outcome = run_cli(&stub.url, &args, "ghp_secret\n", Terminals::default()).await;
    expect![[r#"
        created application web in environment prod of project shop
        deploy it with `berth deploy --project shop --environment prod --application web --wait`
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        {
          "cpu": 0.5,
          "depends_on": [],
          "drain_secs": null,
          "git": {
            "branch": null,
            "build_args": {
              "MODE": "prod"
            },
            "dockerfile_path": null,
            "repository": "https://git.example/shop.git",
            "root_path": "apps/web"
          },
          "git_token": "ghp_secret",
          "health_check": null,
          "image": null,
          "instances": null,
          "memory_mb": 256,
          "name": "web",
          "port": 3000,
          "private": false,
          "release_command": null,
          "ssh_private_key": null,
          "volumes": [],
          "watch_paths": []
        }
    "#]]
    .assert_eq(&pretty(&stub.bodies("POST")[0]));
}

#[tokio::test]
async fn create_with_an_ssh_key_sends_the_file_and_refuses_a_public_key() {
    let stub = stub().await;
    let dir = tempfile::tempdir().unwrap();
    let private_key = dir.path().join("id_ed25519");
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(&private_key, key).unwrap();
    let public_key = dir.path().join("id_ed25519.pub");
    std::fs::write(&public_key, "ssh-ed25519 AAAA me@host\n").unwrap();

    let base = [
        "app",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "web",
        "--git",
        "ssh://git@127.0.0.1:2222/shop.git",
    ];
    let private_arg = private_key.to_str().unwrap();
    let args: Vec<&str> = base.iter().copied().chain(["--ssh-key-file", private_arg]).collect();
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success, "{}", outcome.transcript());
    let body: serde_json::Value = serde_json::from_str(&stub.bodies("POST")[0]).unwrap();
    assert_eq!(body["ssh_private_key"], key);

    let public_arg = public_key.to_str().unwrap();
    let args: Vec<&str> = base.iter().copied().chain(["--ssh-key-file", public_arg]).collect();
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    let transcript = outcome.transcript().replace(dir.path().to_str().unwrap(), "$TMP");
    expect![[r#"
        --- stderr
        error: $TMP/id_ed25519.pub is a public key
        hint: pass the private key (the file without .pub); the public key goes to the Git host as a deploy key
        --- failed
    "#]]
    .assert_eq(&transcript);
    assert_eq!(stub.bodies("POST").len(), 1, "nothing sent for the refused key");
}

#[tokio::test]
async fn create_from_an_image() {
    let stub = stub().await;
    let args = [
        "app",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "worker",
        "--image",
        "127.0.0.1:5000/worker:1",
        "--private",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success, "{}", outcome.transcript());
    expect![[r#"{"name":"worker","git":null,"image":"127.0.0.1:5000/worker:1","port":null,"private":true,"cpu":null,"memory_mb":null,"git_token":null,"ssh_private_key":null,"instances":null,"health_check":null,"release_command":null,"drain_secs":null,"volumes":[],"depends_on":[],"watch_paths":[]}"#]]
        .assert_eq(&stub.bodies("POST")[0]);
}

#[tokio::test]
async fn update_of_one_git_option_keeps_the_others() {
    let stub = stub().await;
    let args = [
        "app",
        "update",
        "-p",
        "shop",
        "-e",
        "prod",
        "web",
        "--branch",
        "develop",
        "--no-port",
        "--public",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        updated application web
        deploy the change with `berth deploy --project shop --environment prod --application web --wait`
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        GET /api/v1/projects/shop/environments/prod/applications/web
        PATCH /api/v1/projects/shop/environments/prod/applications/web
    "#]]
    .assert_eq(&stub.request_lines());
    expect![[r#"
        {
          "clear_credentials": false,
          "clear_port": true,
          "clear_release_command": false,
          "cpu": null,
          "depends_on": null,
          "drain_secs": null,
          "git": {
            "branch": "develop",
            "build_args": {
              "MODE": "prod"
            },
            "dockerfile_path": "Dockerfile",
            "repository": "https://git.example/shop.git",
            "root_path": "apps/web"
          },
          "git_token": null,
          "health_check": null,
          "image": null,
          "instances": null,
          "memory_mb": null,
          "port": null,
          "private": false,
          "release_command": null,
          "ssh_private_key": null,
          "volumes": null,
          "watch_paths": null
        }
    "#]]
    .assert_eq(&pretty(&stub.bodies("PATCH")[0]));
}

#[tokio::test]
async fn update_refusals() {
    let stub = stub().await;
    let nothing = run_cli(
        &stub.url,
        &["app", "update", "-p", "shop", "-e", "prod", "web"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        --- stderr
        error: nothing to change
        hint: pass at least one option; see `berth application update --help`
        --- failed
    "#]]
    .assert_eq(&nothing.transcript());
    let args = ["app", "update", "-p", "shop", "-e", "prod", "worker", "--root-path", "x"];
    let image_app = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        --- stderr
        error: application "worker" is not built from a Git repository
        hint: pass --git URL to build it from a repository
        --- failed
    "#]]
    .assert_eq(&image_app.transcript());
    assert!(stub.bodies("PATCH").is_empty());
}

#[tokio::test]
async fn list_and_show() {
    let stub = stub().await;
    let list =
        run_cli(&stub.url, &["app", "list", "-p", "shop", "-e", "prod"], "", Terminals::default())
            .await;
    expect![[r#"
        NAME     STATUS           PORT   URL                                   SOURCE
        web      running          3000   http://web.prod.shop.localhost:8000   https://git.example/shop.git (main, apps/web)
        worker   never_deployed   -      - (worker: no port)                   image 127.0.0.1:5000/worker:1
    "#]]
    .assert_eq(&list.transcript());
    let show = run_cli(
        &stub.url,
        &["app", "show", "-p", "shop", "-e", "prod", "web"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        name:            web
        project:         shop
        environment:     prod
        status:          running
        url:             http://web.prod.shop.localhost:8000
        repository:      https://git.example/shop.git
        branch:          main (the environment's)
        root path:       apps/web
        dockerfile:      Dockerfile
        build args:      MODE=prod
        credential:      token
        port:            3000
        visibility:      public
        cpu:             0.5 cores
        memory:          256 MiB
        instances:       2
        health check:    http GET /healthz expecting 200-399, every 2s, timeout 2s, 3 failures
        release command: bin/migrate --yes
        drain:           5s
        volumes:         -
        depends on:      -
        watch paths:     -
        deployment:      d1
        created:         2024-05-01 10:00:00
        updated:         2024-05-01 10:05:00
    "#]]
    .assert_eq(&show.transcript());
    let json = run_cli(
        &stub.url,
        &["app", "show", "-p", "shop", "-e", "prod", "web", "--output", "json"],
        "",
        Terminals::default(),
    )
    .await;
    let shown: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(shown["url"], "http://web.prod.shop.localhost:8000");
}

#[tokio::test]
async fn rollout_settings_are_sent_on_create_and_update() {
    let stub = stub().await;
    let args = [
        "app",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "web",
        "--image",
        "127.0.0.1:5000/web:1",
        "--port",
        "3000",
        "--instances",
        "2",
        "--health-path",
        "/healthz",
        "--health-status",
        "200-299",
        "--health-start-delay",
        "5",
        "--health-interval",
        "1.5",
        "--health-timeout",
        "0.5",
        "--health-threshold",
        "4",
        "--release-command",
        "bin/migrate --yes",
        "--drain",
        "10",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success, "{}", outcome.transcript());
    let body: serde_json::Value = serde_json::from_str(&stub.bodies("POST")[0]).unwrap();
    expect![[r#"
        {
          "drain_secs": 10.0,
          "health_check": {
            "expected_status": "200-299",
            "failure_threshold": 4,
            "interval_secs": 1.5,
            "kind": "http",
            "path": "/healthz",
            "start_delay_secs": 5.0,
            "timeout_secs": 0.5
          },
          "instances": 2,
          "release_command": "bin/migrate --yes"
        }
    "#]]
    .assert_eq(&pretty(
        &json!({
            "drain_secs": body["drain_secs"], "health_check": body["health_check"],
            "instances": body["instances"], "release_command": body["release_command"],
        })
        .to_string(),
    ));

    let args = [
        "app",
        "update",
        "-p",
        "shop",
        "-e",
        "prod",
        "web",
        "--health-check",
        "tcp",
        "--no-release-command",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success, "{}", outcome.transcript());
    expect![[r#"
        {
          "clear_credentials": false,
          "clear_port": false,
          "clear_release_command": true,
          "cpu": null,
          "depends_on": null,
          "drain_secs": null,
          "git": null,
          "git_token": null,
          "health_check": {
            "expected_status": null,
            "failure_threshold": null,
            "interval_secs": null,
            "kind": "tcp",
            "path": null,
            "start_delay_secs": null,
            "timeout_secs": null
          },
          "image": null,
          "instances": null,
          "memory_mb": null,
          "port": null,
          "private": null,
          "release_command": null,
          "ssh_private_key": null,
          "volumes": null,
          "watch_paths": null
        }
    "#]]
    .assert_eq(&pretty(&stub.bodies("PATCH")[0]));
    assert_eq!(stub.request_lines().matches("GET").count(), 0, "no read-modify-write needed");
}

#[test]
fn health_checks_read_as_a_sentence() {
    use berth_api::HealthCheckSettings;

    use super::health_check_summary;
    let http = HealthCheckSettings {
        kind: Some("http".into()),
        path: Some("/healthz".into()),
        expected_status: Some("200-399".into()),
        start_delay_secs: Some(0.0),
        interval_secs: Some(2.0),
        timeout_secs: Some(2.0),
        failure_threshold: Some(3),
    };
    let delayed = HealthCheckSettings {
        start_delay_secs: Some(7.5),
        interval_secs: Some(0.5),
        ..http.clone()
    };
    let summaries = [
        health_check_summary(&http, Some(3000)),
        health_check_summary(&delayed, Some(3000)),
        health_check_summary(&HealthCheckSettings::default(), Some(8080)),
        health_check_summary(&http, None),
    ];
    expect![[r#"
        [
            "http GET /healthz expecting 200-399, every 2s, timeout 2s, 3 failures",
            "http GET /healthz expecting 200-399, first after 7.5s, every 0.5s, timeout 2s, 3 failures",
            "tcp port 8080, every 2s, timeout 2s, 3 failures",
            "none (no port: the instance only has to keep running)",
        ]
    "#]]
    .assert_debug_eq(&summaries);
}
