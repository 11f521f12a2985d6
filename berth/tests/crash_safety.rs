//! The engine is crash-safe and the control plane is not in the request path, end to end:
//! for every step of a deployment (clone, build, release, start, health, route, retire) the
//! test pauses the engine there with the `--test-pause-at` hook, kills the server with
//! SIGKILL, and starts it again without the hook. Then the interrupted deployment has a
//! final record (failed "interrupted" before traffic switched, succeeded after), the proxy
//! serves the version that record says and kept serving while the server was dead, no
//! container of a deployment that is not current remains, and no image is left that no
//! deployment records. A second test kills and restarts the server twice while a client
//! sends requests through the proxy: not one fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{as_pairs, unique_name, wait_until};
use test_support::harness_ext::{
    application_containers, deployment_containers, deployment_record, is_terminal, isolated_files,
    project_images, wait_for_only_current_containers, wait_for_terminal_deployment,
    RestartableServer, TestApp, TrafficProbe,
};

/// Building the fixture and starting it takes seconds; minutes mean a hang.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(120);
/// Reconcile passes run at start and every 10 s.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// Requests that must succeed through the proxy while the server is dead.
const REQUESTS_WHILE_DEAD: u64 = 25;

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Version one is deployed and serving on a server that then pauses at `step` during the
/// deployment of version two, is killed there with SIGKILL, and starts again.
fn kill_at_step_and_restart(step: &str) {
    let mut server = RestartableServer::start(berth_binary(), &[]);
    let project = unique_name("cs");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    // A release command so that the release step exists; a short health interval so the
    // monitor notices quickly.
    let app = TestApp::create(
        &server,
        &project,
        "web",
        &repo,
        &["--release-command", "echo migrating", "--health-interval", "1"],
    );
    app.deploy_and_wait(&server).expect_success();
    let first = app.latest_deployment(&server)["id"].as_str().expect("deployment id").to_owned();
    assert_eq!(app.served_content(&server), "version one");
    let application_id = app.id(&server);
    let project_id = server.project_id(&project);

    server.restart(&["--test-pause-at", step]);
    repo.commit(&[("content.txt", "version two\n")], "main");
    let probe = TrafficProbe::start(&server, &app.host, "/");
    let second = app.deploy(&server);
    let marker = server.data_dir().join(format!("paused-at-{step}"));
    wait_until(DEPLOY_DEADLINE, &format!("the engine to pause at {step}"), || {
        let record = deployment_record(&server, &second);
        let status = record["status"].as_str().unwrap_or_default();
        assert!(!is_terminal(status), "deployment {second} ended before {step}: {record:#}");
        marker.exists()
    });

    // The engine is where the test wants it: in `step`, with the new instances started
    // from `health` on (so that collecting them afterwards is not vacuous).
    let before = deployment_record(&server, &second);
    let last_step = before["steps"].as_array().and_then(|steps| steps.last()).cloned();
    assert_eq!(before["status"], "running", "{before:#}");
    assert_eq!(last_step.as_ref().map(|s| &s["name"]), Some(&step.into()), "{before:#}");
    assert_eq!(last_step.as_ref().map(|s| &s["status"]), Some(&"running".into()), "{before:#}");
    let new_containers = deployment_containers(&second);
    let started = matches!(step, "health" | "route" | "retire");
    assert_eq!(!new_containers.is_empty(), started, "at {step}: {new_containers:?}");

    server.kill_hard();
    // The proxy serves on its own while the control plane is dead.
    probe.wait_for_requests(REQUESTS_WHILE_DEAD, Duration::from_secs(60));
    let while_dead = probe.report();
    assert_eq!(
        while_dead.failed, 0,
        "requests failed while the server was dead (killed at {step}): {while_dead}"
    );
    server.start_again(&[]);

    // The record is final and says what happened.
    let record = wait_for_terminal_deployment(&server, &second, CONVERGE_DEADLINE);
    let status = record["status"].as_str().unwrap_or_default();
    let switched = match step {
        // The hook pauses before a step's work: at `retire` traffic has switched, at `route`
        // it has not yet (either record is honest there as long as what serves agrees).
        "retire" => true,
        "route" => status == "succeeded",
        _ => false,
    };
    if switched {
        assert_eq!(status, "succeeded", "killed at {step}: {record:#}");
    } else {
        assert_eq!(status, "failed", "killed at {step}: {record:#}");
        let failure = &record["failure"];
        assert_eq!(failure["step"], step, "the failure names the step: {record:#}");
        let message = failure["message"].as_str().unwrap_or_default();
        assert!(message.contains("interrupted"), "the reason says interrupted: {record:#}");
    }
    let open_steps: Vec<&serde_json::Value> = record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter(|s| s["status"] == "running").collect())
        .unwrap_or_default();
    assert!(open_steps.is_empty(), "steps still running after the restart: {record:#}");

    // The environment converges to the version the record says, and nothing else remains.
    let (current, expected_content) =
        if switched { (&second, "version two") } else { (&first, "version one") };
    wait_for_only_current_containers(&application_id, current, 1, CONVERGE_DEADLINE);
    assert_eq!(app.served_content(&server), expected_content, "killed at {step}");
    let status = app.status(&server);
    assert_eq!(status["deployment"], current.as_str(), "killed at {step}: {status:#}");
    assert_eq!(status["status"], "running", "killed at {step}: {status:#}");

    // Every image labelled for the project is one a deployment records.
    let recorded: Vec<String> = [&first, &second]
        .iter()
        .filter_map(|id| {
            deployment_record(&server, id)["services"][0]["image"].as_str().map(str::to_owned)
        })
        .collect();
    wait_until(CONVERGE_DEADLINE, "no image without a deployment record", || {
        project_images(&project_id).iter().all(|image| recorded.contains(image))
    });

    probe.wait_for_requests(10, Duration::from_secs(30));
    let report = probe.stop();
    assert_eq!(report.failed, 0, "requests failed (killed at {step}): {report}");
    let expected_sequence: Vec<&str> =
        if switched { vec!["version one", "version two"] } else { vec!["version one"] };
    assert_eq!(
        report.sequence, expected_sequence,
        "what the proxy served (killed at {step}) switched at most once, to the recorded version"
    );
    assert!(
        application_containers(&application_id).iter().all(|c| &c.deployment == current),
        "containers of another deployment came back"
    );
}

#[test]
fn killed_at_clone_the_old_version_keeps_serving() {
    kill_at_step_and_restart("clone");
}

#[test]
fn killed_at_build_the_old_version_keeps_serving() {
    kill_at_step_and_restart("build");
}

#[test]
fn killed_at_release_the_old_version_keeps_serving() {
    kill_at_step_and_restart("release");
}

#[test]
fn killed_at_start_the_old_version_keeps_serving() {
    kill_at_step_and_restart("start");
}

#[test]
fn killed_at_health_the_old_version_keeps_serving_and_new_containers_go() {
    kill_at_step_and_restart("health");
}

#[test]
fn killed_at_route_serving_matches_the_record() {
    kill_at_step_and_restart("route");
}

#[test]
fn killed_at_retire_the_new_version_serves_and_old_containers_go() {
    kill_at_step_and_restart("retire");
}

#[test]
fn killing_the_server_under_traffic_fails_no_request() {
    let mut server = RestartableServer::start(berth_binary(), &[]);
    let project = unique_name("ck");
    let repo = server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(
        &server,
        &project,
        "web",
        &repo,
        &["--instances", "2", "--health-interval", "1"],
    );
    app.deploy_and_wait(&server).expect_success();
    let deployment = app.latest_deployment(&server)["id"].as_str().expect("id").to_owned();
    let application_id = app.id(&server);

    let probe = TrafficProbe::start(&server, &app.host, "/");
    probe.wait_for_requests(20, Duration::from_secs(30));
    for round in 1..=2 {
        server.kill_hard();
        probe.wait_for_requests(REQUESTS_WHILE_DEAD, Duration::from_secs(60));
        server.start_again(&[]);
        // The restarted server re-synchronises the proxy (and its monitor checks every
        // instance) while requests keep flowing.
        wait_until(CONVERGE_DEADLINE, "the application to be running again", || {
            app.status(&server)["status"] == "running"
        });
        probe.wait_for_requests(REQUESTS_WHILE_DEAD, Duration::from_secs(60));
        let report = probe.report();
        assert_eq!(report.failed, 0, "requests failed in round {round}: {report}");
    }
    let report = probe.stop();
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.sequence, vec!["version one"], "{report}");
    // Nothing was redeployed or collected by mistake: the same two instances serve.
    wait_for_only_current_containers(&application_id, &deployment, 2, CONVERGE_DEADLINE);
}
