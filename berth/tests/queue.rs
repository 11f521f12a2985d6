//! Cancelling and queueing deployments, end to end: a running deployment (held in a slow
//! release command) is cancelled quickly, ends `cancelled`, leaves no container, and the
//! old version serves throughout; of three deployments requested in a row while the first
//! runs, the middle one is superseded by the last (it never runs), and the last one runs
//! once the first ends and is what serves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{as_pairs, unique_name, wait_until, ServerOptions, TestServer};
use test_support::harness_ext::{
    deployment_containers, deployment_record, isolated_files, wait_for_only_current_containers,
    wait_for_running_step, wait_for_terminal_deployment, TestApp, TrafficProbe,
};

/// Clone and build of the fixture take seconds.
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// A cancelled step stops at once, not when its command would have finished.
const CANCEL_DEADLINE: Duration = Duration::from_secs(30);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// Long enough never to finish within the test.
const SLOW_RELEASE: &str = "echo waiting for the database; sleep 300";

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn cancelling_a_running_deployment_keeps_the_old_version() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("qc");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(&server, &project, "web", &repo, &[]);
    app.deploy_and_wait(&server).expect_success();
    let first = app.latest_deployment(&server)["id"].as_str().expect("id").to_owned();
    let application_id = app.id(&server);
    let probe = TrafficProbe::start(&server, &app.host, "/");

    app.update(&server, &["--release-command", SLOW_RELEASE]);
    repo.commit(&[("content.txt", "version two\n")], "main");
    let slow = app.deploy(&server);
    wait_for_running_step(&server, &slow, "release", STEP_DEADLINE);
    wait_until(STEP_DEADLINE, "the release command's container", || {
        !deployment_containers(&slow).is_empty()
    });

    let cancelled = server.cli(&["deployment", "cancel", &slow]).expect_success();
    assert!(cancelled.stdout.contains(&slow), "{cancelled}");
    let record = wait_for_terminal_deployment(&server, &slow, CANCEL_DEADLINE);
    assert_eq!(record["status"], "cancelled", "{record:#}");
    assert_eq!(record["failure"]["step"], "release", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cancelled"), "{record:#}");
    let open_steps = record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter(|s| s["status"] == "running").count())
        .unwrap_or_default();
    assert_eq!(open_steps, 0, "no step stays running: {record:#}");

    // The release container goes, the old version keeps serving, nothing else runs.
    wait_until(CONVERGE_DEADLINE, "no container of the cancelled deployment", || {
        deployment_containers(&slow).is_empty()
    });
    wait_for_only_current_containers(&application_id, &first, 1, CONVERGE_DEADLINE);
    assert_eq!(app.served_content(&server), "version one");
    let status = app.status(&server);
    assert_eq!(status["deployment"], first.as_str(), "{status:#}");
    assert_eq!(status["status"], "running", "{status:#}");
    probe.wait_for_requests(10, Duration::from_secs(30));
    let report = probe.stop();
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.sequence, vec!["version one"], "{report}");

    // A cancelled deployment cannot be cancelled again.
    let again = server.cli(&["deployment", "cancel", &slow]).expect_failure();
    assert!(again.combined().contains("cancelled"), "{again}");
}

#[test]
fn a_newer_request_supersedes_the_queued_one() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("qs");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(&server, &project, "web", &repo, &[]);
    app.deploy_and_wait(&server).expect_success();
    let application_id = app.id(&server);

    // The first of three requests runs and holds the environment in its release command.
    app.update(&server, &["--release-command", SLOW_RELEASE]);
    repo.commit(&[("content.txt", "version two\n")], "main");
    let running = app.deploy(&server);
    wait_for_running_step(&server, &running, "release", STEP_DEADLINE);
    let middle = app.deploy(&server);
    let last = app.deploy(&server);

    let status_of = |id: &str| deployment_record(&server, id)["status"].as_str().map(str::to_owned);
    assert_eq!(status_of(&middle).as_deref(), Some("superseded"));
    assert_eq!(status_of(&last).as_deref(), Some("queued"));
    assert_eq!(status_of(&running).as_deref(), Some("running"));

    // Once the running one ends, the last request runs (without the slow command now).
    app.update(&server, &["--no-release-command"]);
    server.cli(&["deployment", "cancel", &running]).expect_success();
    let record = wait_for_terminal_deployment(&server, &running, CANCEL_DEADLINE);
    assert_eq!(record["status"], "cancelled", "{record:#}");
    let record = wait_for_terminal_deployment(&server, &last, STEP_DEADLINE);
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(app.served_content(&server), "version two");

    // The superseded request never ran: no step, no container, and it stays superseded.
    let superseded = deployment_record(&server, &middle);
    assert_eq!(superseded["status"], "superseded", "{superseded:#}");
    assert_eq!(superseded["steps"].as_array().map(Vec::len), Some(0), "{superseded:#}");
    assert!(deployment_containers(&middle).is_empty());
    let refused = server.cli(&["deployment", "cancel", &middle]).expect_failure();
    assert!(refused.combined().contains("superseded"), "{refused}");
    wait_for_only_current_containers(&application_id, &last, 1, CONVERGE_DEADLINE);
}
