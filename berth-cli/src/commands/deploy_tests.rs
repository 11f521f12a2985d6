//! Tests of `berth deploy` and `berth deployment logs --follow` against the stand-in server
//! of `test_server`, and the deployment fixtures shared with the other deployment tests.

use expect_test::expect;
use serde_json::json;

use super::last_lines;
use crate::commands::testing::run_cli;
use crate::output::Terminals;
use crate::test_server::{Reply, StubServer};

pub(crate) fn deployment_json(status: &str) -> serde_json::Value {
    let finished = super::is_finished(status);
    json!({
        "id": "d1", "project": "shop", "environment": "prod", "application": null,
        "status": status, "trigger": "user:admin", "created_at": "2024-05-01T10:00:00Z",
        "started_at": "2024-05-01T10:00:00.5Z",
        "finished_at": if finished { json!("2024-05-01T10:00:13Z") } else { json!(null) },
        "failure": null,
        "services": if status == "succeeded" { json!([{"application": "web", "commit": "0123456789abcdef", "image": null}]) } else { json!([]) },
        "steps": match status {
            "queued" => json!([]),
            "running" => json!([step("clone", "succeeded", Some(800), None), step("build", "running", None, None)]),
            _ => json!([step("clone", "succeeded", Some(800), None), step("build", "succeeded", Some(9_000), None),
                        step("start", "succeeded", Some(1_000), None), step("health", "succeeded", Some(500), None)]),
        },
    })
}

fn step(name: &str, status: &str, ms: Option<u64>, message: Option<&str>) -> serde_json::Value {
    json!({"application": "web", "name": name, "status": status, "started_at": "2024-05-01T10:00:01Z",
           "finished_at": null, "duration_ms": ms, "message": message})
}

pub(crate) fn failed_deployment_json() -> serde_json::Value {
    json!({
        "id": "d2", "project": "shop", "environment": "prod", "application": "web",
        "status": "failed", "trigger": "user:admin", "created_at": "2024-05-01T10:00:00Z",
        "started_at": "2024-05-01T10:00:01Z", "finished_at": "2024-05-01T10:00:05Z",
        "failure": {"step": "build", "application": "web", "message": "the Dockerfile's RUN step exited with code 127"},
        "services": [],
        "steps": [step("clone", "succeeded", Some(800), None), step("build", "failed", Some(3_100), Some("exit code 127"))],
    })
}

fn log(step: &str, application: &str, line: &str) -> serde_json::Value {
    json!({"timestamp": "2024-05-01T10:00:02Z", "application": application, "step": step, "line": line})
}

/// A deployment of `web` that failed at its release command (nothing switched).
pub(crate) fn release_failed_deployment_json(id: &str) -> serde_json::Value {
    json!({
        "id": id, "project": "shop", "environment": "prod", "application": "web",
        "status": "failed", "trigger": "user:admin", "created_at": "2024-05-01T10:00:00Z",
        "started_at": "2024-05-01T10:00:01Z", "finished_at": "2024-05-01T10:00:09Z",
        "failure": {"step": "release", "application": "web",
                    "message": "the release command exited with code 3; the previous version keeps serving"},
        "services": [],
        "steps": [step("clone", "succeeded", Some(800), None), step("build", "succeeded", Some(9_000), None),
                  step("release", "failed", Some(2_400), Some("exit code 3"))],
    })
}

/// Progress lines carry elapsed seconds; the tests do not depend on timing.
pub(crate) fn without_elapsed(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("s] ") {
            Some((prefix, rest)) if prefix.starts_with('[') => format!("[Ns] {rest}\n"),
            _ => format!("{line}\n"),
        })
        .collect()
}

async fn stub(final_deployment: serde_json::Value, id: &str) -> StubServer {
    stub_for("POST /api/v1/projects/shop/environments/prod/deployments", final_deployment, id).await
}

/// A server where `post` queues deployment `id`, which runs for two polls and then looks
/// like `final_deployment`; with a log (clone, 25 build lines, a release command's output),
/// and the environment's status.
pub(crate) async fn stub_for(
    post: &str,
    final_deployment: serde_json::Value,
    id: &str,
) -> StubServer {
    let get = format!("GET /api/v1/deployments/{id}");
    let logs = format!("GET /api/v1/deployments/{id}/logs");
    let status = json!({"project": "shop", "environment": "prod", "last_deployment": null, "applications": [
        {"name": "web", "status": "running", "url": "http://web.prod.shop.localhost:8000", "commit": "0123456789",
         "deployment": "d1", "instances": 2, "instances_running": 2, "restart_count": 0, "message": null},
        {"name": "other", "status": "running", "url": "http://other.prod.shop.localhost:8000", "commit": null,
         "deployment": "d0", "instances": 1, "instances_running": 1, "restart_count": 0, "message": null}]});
    let mut queued = deployment_json("queued");
    queued["id"] = json!(id);
    let mut running = deployment_json("running");
    running["id"] = json!(id);
    let mut build_lines: Vec<serde_json::Value> =
        (1..=25).map(|n| log("build", "web", &format!("build output {n}"))).collect();
    build_lines.insert(0, log("clone", "web", "Cloning into..."));
    build_lines.push(log("build", "other", "other app's line"));
    build_lines.push(log("release", "web", "migrating 0042_orders"));
    build_lines.push(log("release", "web", "error: relation \"orders\" already exists"));
    StubServer::start(vec![
        (post, vec![Reply::value(202, &queued)]),
        (
            get.as_str(),
            vec![
                Reply::value(200, &running),
                Reply::value(200, &running),
                Reply::value(200, &final_deployment),
            ],
        ),
        (logs.as_str(), vec![Reply::value(200, &json!(build_lines))]),
        ("GET /api/v1/projects/shop/environments/prod/status", vec![Reply::value(200, &status)]),
    ])
    .await
}

#[tokio::test]
async fn deploy_without_wait_prints_the_id() {
    let stub = stub(deployment_json("succeeded"), "d1").await;
    let outcome =
        run_cli(&stub.url, &["deploy", "-p", "shop", "-e", "prod"], "", Terminals::default()).await;
    expect![[r#"
        deployment d1 queued
        follow it with `berth deployment logs d1 --follow`
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.bodies("POST"), [r#"{"application":null}"#]);
}

#[tokio::test]
async fn deploy_wait_shows_steps_then_urls() {
    let stub = stub(deployment_json("succeeded"), "d1").await;
    let outcome = run_cli(
        &stub.url,
        &["deploy", "-p", "shop", "-e", "prod", "--wait"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        deployment d1 queued
        deployment d1 succeeded in 12.5s
        APPLICATION   URL
        web           http://web.prod.shop.localhost:8000
        --- stderr
        [Ns] clone web: succeeded in 800ms
        [Ns] build web: running
        [Ns] build web: succeeded in 9.0s
        [Ns] start web: succeeded in 1.0s
        [Ns] health web: succeeded in 500ms
    "#]]
    .assert_eq(&without_elapsed(&outcome.transcript()));
    expect![[r#"
        POST /api/v1/projects/shop/environments/prod/deployments
        GET /api/v1/deployments/d1 (x3)
        GET /api/v1/projects/shop/environments/prod/status
    "#]]
    .assert_eq(&stub.request_lines());
}

#[tokio::test]
async fn deploy_wait_on_a_terminal_rewrites_one_line() {
    let stub = stub(deployment_json("succeeded"), "d1").await;
    let terminal = Terminals { stdin: false, stderr: true };
    let outcome =
        run_cli(&stub.url, &["deploy", "-p", "shop", "-e", "prod", "-w"], "", terminal).await;
    let lines: Vec<&str> = outcome.stderr.split("\r\u{1b}[2K").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("deploying: build web ("), "{lines:?}");
    assert!(lines[2].starts_with("deployment succeeded ("), "{lines:?}");
    assert!(outcome.stderr.ends_with("\r\u{1b}[2K"), "the line is cleared at the end");
}

#[tokio::test]
async fn a_failed_deployment_names_step_application_reason_and_log() {
    let stub = stub(failed_deployment_json(), "d2").await;
    let mut args = vec!["deploy", "-p", "shop", "-e", "prod", "--application", "web", "--wait"];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(!outcome.success);
    expect![[r#"
        deployment d2 queued
        --- stderr
        [Ns] clone web: succeeded in 800ms
        [Ns] build web: running
        [Ns] build web: failed in 3.1s: exit code 127
        error: deployment d2 failed at step build of application web: the Dockerfile's RUN step exited with code 127
        last log lines of build web:
          2024-05-01 10:00:02 [build web] build output 6
          2024-05-01 10:00:02 [build web] build output 7
          2024-05-01 10:00:02 [build web] build output 8
          2024-05-01 10:00:02 [build web] build output 9
          2024-05-01 10:00:02 [build web] build output 10
          2024-05-01 10:00:02 [build web] build output 11
          2024-05-01 10:00:02 [build web] build output 12
          2024-05-01 10:00:02 [build web] build output 13
          2024-05-01 10:00:02 [build web] build output 14
          2024-05-01 10:00:02 [build web] build output 15
          2024-05-01 10:00:02 [build web] build output 16
          2024-05-01 10:00:02 [build web] build output 17
          2024-05-01 10:00:02 [build web] build output 18
          2024-05-01 10:00:02 [build web] build output 19
          2024-05-01 10:00:02 [build web] build output 20
          2024-05-01 10:00:02 [build web] build output 21
          2024-05-01 10:00:02 [build web] build output 22
          2024-05-01 10:00:02 [build web] build output 23
          2024-05-01 10:00:02 [build web] build output 24
          2024-05-01 10:00:02 [build web] build output 25
        hint: read the whole log with `berth deployment logs d2`
        --- failed
    "#]]
    .assert_eq(&without_elapsed(&outcome.transcript()));
    assert_eq!(stub.bodies("POST"), [r#"{"application":"web"}"#]);

    args.extend(["--output", "json"]);
    let json = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(!json.success);
    let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(printed["failure"]["step"], "build", "stdout is the final deployment's JSON");
}

#[test]
fn failure_log_falls_back_to_the_whole_application_log() {
    let lines: Vec<berth_api::LogLine> = serde_json::from_value(json!([
        log("clone", "web", "a"),
        log("clone", "api", "b"),
        log("clone", "web", "c")
    ]))
    .unwrap();
    let picked: Vec<&str> =
        last_lines(&lines, Some("web"), Some("health")).iter().map(|l| l.line.as_str()).collect();
    assert_eq!(picked, ["a", "c"]);
}

#[tokio::test]
async fn following_a_deployment_log_ends_with_its_verdict() {
    let line = r#"{"timestamp":"2024-05-01T10:00:02Z","application":"web","step":"build","line":"Step 1/2"}"#;
    let ok = format!("data: {line}\n\nevent: end\ndata: {}\n\n", deployment_json("succeeded"));
    let failed = format!("data: {line}\n\nevent: end\ndata: {}\n\n", failed_deployment_json());
    let stub = StubServer::start(vec![
        ("GET /api/v1/deployments/d1/logs?follow=true", vec![Reply::events(ok)]),
        ("GET /api/v1/deployments/d2/logs?follow=true", vec![Reply::events(failed)]),
        (
            "GET /api/v1/deployments/d3/logs?follow=true",
            vec![Reply::events(format!("data: {line}\n\n"))],
        ),
    ])
    .await;
    let ok =
        run_cli(&stub.url, &["deployment", "logs", "d1", "--follow"], "", Terminals::default())
            .await;
    expect![[r#"
        2024-05-01 10:00:02 [build web] Step 1/2
        --- stderr
        deployment d1 succeeded
    "#]]
    .assert_eq(&ok.transcript());
    let failed =
        run_cli(&stub.url, &["deployment", "logs", "d2", "-f"], "", Terminals::default()).await;
    expect![[r#"
        2024-05-01 10:00:02 [build web] Step 1/2
        --- stderr
        error: deployment d2 failed at step build of application web: the Dockerfile's RUN step exited with code 127
        hint: read the whole log with `berth deployment logs d2`
        --- failed
    "#]]
    .assert_eq(&failed.transcript());
    let cut =
        run_cli(&stub.url, &["deployment", "logs", "d3", "-f"], "", Terminals::default()).await;
    expect![[r#"
        2024-05-01 10:00:02 [build web] Step 1/2
        --- stderr
        error: the server closed the log stream before the deployment ended
        hint: check it with `berth deployment show d3`
        --- failed
    "#]]
    .assert_eq(&cut.transcript());
}

#[tokio::test]
async fn a_failing_release_command_is_the_failed_step_with_its_output() {
    let stub = stub(release_failed_deployment_json("d4"), "d4").await;
    let args = ["deploy", "-p", "shop", "-e", "prod", "-a", "web", "--wait"];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        deployment d4 queued
        --- stderr
        [Ns] clone web: succeeded in 800ms
        [Ns] build web: running
        [Ns] build web: succeeded in 9.0s
        [Ns] release web: failed in 2.4s: exit code 3
        error: deployment d4 failed at step release of application web: the release command exited with code 3; the previous version keeps serving
        last log lines of release web:
          2024-05-01 10:00:02 [release web] migrating 0042_orders
          2024-05-01 10:00:02 [release web] error: relation "orders" already exists
        hint: read the whole log with `berth deployment logs d4`
        --- failed
    "#]]
    .assert_eq(&without_elapsed(&outcome.transcript()));
}

#[test]
fn the_release_step_is_shown_like_any_other() {
    use crate::progress::{DeployProgress, ProgressStyle};
    let running: berth_api::Deployment = serde_json::from_value(json!({
        "id": "d4", "project": "shop", "environment": "prod", "application": null,
        "status": "running", "trigger": "user:admin", "created_at": "2024-05-01T10:00:00Z",
        "started_at": null, "finished_at": null, "failure": null, "services": [],
        "steps": [step("build", "succeeded", Some(9_000), None), step("release", "running", None, None)],
    }))
    .unwrap();
    let mut line = DeployProgress::new(ProgressStyle::UpdatingLine);
    assert_eq!(
        line.update(&running, std::time::Duration::from_secs(7)),
        "\r\u{1b}[2Kdeploying: release web (7s)"
    );
}

#[test]
fn the_dry_run_plan_is_a_table_of_waves() {
    let plan: berth_api::DeploymentPlan = serde_json::from_value(json!({
        "project": "shop", "environment": "prod",
        "waves": [
            {"wave": 1, "services": [{"name": "main", "kind": "database", "action": "ensure", "detail": "start, or keep running when unchanged"}]},
            {"wave": 2, "services": [
                {"name": "api", "kind": "application", "action": "build", "commit": "0123456789abcdef", "detail": "build commit 0123456789ab"},
                {"name": "worker", "kind": "application", "action": "shared", "shared_with": "api", "detail": "shared build with api"}]},
            {"wave": 3, "services": [{"name": "web", "kind": "application", "action": "reuse", "detail": "reuse image berth/p/web:1 (same commit and settings)"}]}
        ]
    }))
    .unwrap();
    expect![[r#"
        WAVE   SERVICE   KIND          ACTION   DETAIL
        1      main      database      ensure   start, or keep running when unchanged
        2      api       application   build    build commit 0123456789ab
        2      worker    application   shared   shared build with api
        3      web       application   reuse    reuse image berth/p/web:1 (same commit and settings)
    "#]]
    .assert_eq(&super::plan_table(&plan));
}
