//! Start-first rollouts as a user sees them, end to end with a real server, proxy, Git
//! repository and Docker engine:
//!
//! - a new version whose HTTP health check answers 404, and one whose release command exits
//!   3, each fail their deployment at the right step with the reason (the 404; the exit
//!   code and the command's output), leave no container behind, and never stop the old
//!   version from serving (a client sends requests through the proxy all along);
//! - a rollback serves the old content with the old variables (the deployment's snapshot),
//!   although the variables have changed since;
//! - two instances both serve; one whose server process stops answering leaves rotation
//!   after its failure threshold (no failed request after that) and the status says
//!   degraded; one whose process crashes is restarted by Docker, and the status counts it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{
    as_pairs, docker, unique_name, wait_for, wait_until, ServerOptions, TestServer,
};
use test_support::harness_ext::{
    application_containers, deployment_containers, deployment_record, exec_in_container,
    isolated_files, line_value, proxy_get_within, wait_for_only_current_containers, TestApp,
    TrafficProbe,
};

/// Reconcile passes run after each deployment and every 10 s.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn id_of(deployment: &serde_json::Value) -> String {
    deployment["id"].as_str().expect("deployment id").to_owned()
}

#[test]
fn a_failing_health_check_or_release_command_keeps_the_old_version_serving() {
    // A short health deadline: the 404 is final, waiting a minute proves nothing more.
    let server = TestServer::start(
        berth_binary(),
        ServerOptions { health_timeout_secs: Some(5), ..ServerOptions::default() },
    );
    let project = unique_name("rf");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(&server, &project, "web", &repo, &[]);
    app.deploy_and_wait(&server).expect_success();
    let first = id_of(&app.latest_deployment(&server));
    let application_id = app.id(&server);
    let probe = TrafficProbe::start(&server, &app.host, "/");

    // Version two's health check asks for a page it does not have.
    app.update(&server, &["--health-path", "/missing"]);
    repo.commit(&[("content.txt", "version two\n")], "main");
    let failed = app.deploy_and_wait(&server).expect_failure();
    assert!(failed.combined().contains("404"), "deploy --wait shows the 404:\n{failed}");
    let record = app.latest_deployment(&server);
    let second = id_of(&record);
    assert_ne!(second, first);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(record["failure"]["step"], "health", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("GET /missing answered 404"), "the reason: {record:#}");
    wait_until(CONVERGE_DEADLINE, "no container of the failed deployment", || {
        deployment_containers(&second).is_empty()
    });
    assert_eq!(app.served_content(&server), "version one");

    // Version three has a healthy check but its release command fails.
    app.update(
        &server,
        &[
            "--health-check",
            "tcp",
            "--release-command",
            "echo migrating to version three; echo the schema is locked >&2; exit 3",
        ],
    );
    repo.commit(&[("content.txt", "version three\n")], "main");
    let failed = app.deploy_and_wait(&server).expect_failure();
    assert!(failed.combined().contains("code 3"), "deploy --wait shows the exit code:\n{failed}");
    let record = app.latest_deployment(&server);
    let third = id_of(&record);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(record["failure"]["step"], "release", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap_or_default();
    for expected in ["exited with code 3", "migrating to version three", "the schema is locked"] {
        assert!(message.contains(expected), "the reason lacks {expected:?}: {record:#}");
    }
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!steps.contains(&"start"), "nothing started after the release failed: {steps:?}");
    wait_until(CONVERGE_DEADLINE, "no container of the failed release", || {
        deployment_containers(&third).is_empty()
    });

    // The old version served every request, and is all that runs.
    assert_eq!(app.served_content(&server), "version one");
    probe.wait_for_requests(10, Duration::from_secs(30));
    let report = probe.stop();
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.sequence, vec!["version one"], "{report}");
    wait_for_only_current_containers(&application_id, &first, 1, CONVERGE_DEADLINE);
    // The monitor checks instances with the application's current health check, which
    // was /missing until version three's update: running again after its next check.
    let status = wait_for(CONVERGE_DEADLINE, "the status to say running", || {
        let status = app.status(&server);
        (status["status"] == "running").then_some(status)
    });
    assert_eq!(status["deployment"], first.as_str(), "{status:#}");
}

#[test]
fn rollback_serves_the_old_content_with_the_old_variables() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("rb");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(&server, &project, "web", &repo, &[]);
    app.set_variable(&server, "GREETING=hello from one");
    app.deploy_and_wait(&server).expect_success();
    let first = app.latest_deployment(&server);
    let page = app.page(&server);
    assert_eq!(line_value(&page, "greeting").as_deref(), Some("hello from one"), "{page}");

    app.set_variable(&server, "GREETING=hello from two");
    repo.commit(&[("content.txt", "version two\n")], "main");
    app.deploy_and_wait(&server).expect_success();
    let page = app.page(&server);
    assert_eq!(line_value(&page, "content").as_deref(), Some("version two"), "{page}");
    assert_eq!(line_value(&page, "greeting").as_deref(), Some("hello from two"), "{page}");

    let rolled_back = server
        .cli(&[
            "rollback",
            "--project",
            &project,
            "--environment",
            "production",
            "--to",
            &id_of(&first),
            "--wait",
        ])
        .expect_success();
    let page = app.page(&server);
    assert_eq!(line_value(&page, "content").as_deref(), Some("version one"), "{page}");
    assert_eq!(
        line_value(&page, "greeting").as_deref(),
        Some("hello from one"),
        "the rollback runs with the variables of the deployment it returns to:\n{page}\n{rolled_back}"
    );
    let rollback = app.latest_deployment(&server);
    assert_eq!(rollback["status"], "succeeded", "{rollback:#}");
    assert_ne!(rollback["id"], first["id"], "a rollback is a new deployment");
    assert_eq!(
        rollback["services"][0]["image"], first["services"][0]["image"],
        "the rollback reuses the first deployment's image"
    );
    assert_eq!(rollback["services"][0]["commit"], first["services"][0]["commit"]);
    let built: Vec<&serde_json::Value> = rollback["steps"]
        .as_array()
        .map(|steps| steps.iter().filter(|s| s["name"] == "clone").collect())
        .unwrap_or_default();
    assert!(built.is_empty(), "a rollback does not clone: {rollback:#}");
    wait_for_only_current_containers(&app.id(&server), &id_of(&rollback), 1, CONVERGE_DEADLINE);
}

#[test]
fn instances_share_traffic_leave_rotation_when_unhealthy_and_restart_after_a_crash() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("ri");
    let repo = server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(
        &server,
        &project,
        "web",
        &repo,
        &[
            "--instances",
            "2",
            "--health-path",
            "/healthz",
            "--health-interval",
            "1",
            "--health-timeout",
            "1",
            "--health-threshold",
            "2",
        ],
    );
    app.deploy_and_wait(&server).expect_success();
    let deployment = id_of(&app.latest_deployment(&server));
    let application_id = app.id(&server);
    let status = app.status(&server);
    assert_eq!(status["instances"], 2, "{status:#}");
    assert_eq!(status["instances_running"], 2, "{status:#}");
    assert_eq!(status["status"], "running", "{status:#}");

    // Both instances answer: the page shows the container's hostname.
    let containers = application_containers(&application_id);
    assert_eq!(containers.len(), 2, "{containers:#?}");
    let hostname = |container: &str| {
        docker(&["inspect", "--format", "{{.Config.Hostname}}", container]).trim().to_owned()
    };
    let instances: Vec<(String, String)> =
        containers.iter().map(|c| (c.name.clone(), hostname(&c.name))).collect();
    let all_hostnames: BTreeSet<String> = instances.iter().map(|(_, h)| h.clone()).collect();
    let served_instance = || {
        let page = app.page(&server);
        line_value(&page, "instance").unwrap_or_else(|| panic!("no instance line: {page}"))
    };
    let mut seen = BTreeSet::new();
    wait_until(Duration::from_secs(30), "answers from both instances", || {
        seen.insert(served_instance());
        seen == all_hostnames
    });

    // Instance 0's server process stops answering (SIGSTOP): its health checks time out,
    // it leaves rotation after 2 failures, and the status says degraded.
    let (stopped_container, stopped_hostname) = instances[0].clone();
    let (_, healthy_hostname) = instances[1].clone();
    exec_in_container(&stopped_container, "kill -STOP \"$(cat /tmp/httpd.pid)\"");
    let degraded = wait_for(Duration::from_secs(30), "the status to say degraded", || {
        let status = app.status(&server);
        (status["status"] == "degraded").then_some(status)
    });
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(message.contains(&stopped_container), "the status names the instance: {degraded:#}");
    // Out of rotation: every request now succeeds, from the healthy instance, quickly.
    for _ in 0..20 {
        let answer = proxy_get_within(&server, &app.host, "/", Duration::from_secs(3))
            .unwrap_or_else(|error| panic!("a request after the threshold failed: {error}"));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(line_value(&answer.body, "instance"), Some(healthy_hostname.clone()));
    }
    // It comes back when it answers again.
    exec_in_container(&stopped_container, "kill -CONT \"$(cat /tmp/httpd.pid)\"");
    wait_until(Duration::from_secs(30), "the status to say running again", || {
        app.status(&server)["status"] == "running"
    });
    let mut seen = BTreeSet::new();
    wait_until(Duration::from_secs(30), "answers from both instances again", || {
        seen.insert(served_instance());
        seen.contains(&stopped_hostname)
    });

    // Instance 0's server process crashes: the container exits, Docker restarts it, and the
    // status counts the restart.
    exec_in_container(&stopped_container, "kill -KILL \"$(cat /tmp/httpd.pid)\"");
    let restarted = wait_for(Duration::from_secs(60), "a restart to be counted", || {
        let status = app.status(&server);
        (status["restart_count"].as_u64().unwrap_or(0) >= 1).then_some(status)
    });
    let restarts = docker(&["inspect", "--format", "{{.RestartCount}}", &stopped_container]);
    assert_eq!(restarts.trim(), "1", "Docker restarted the crashed instance once");
    let running = wait_for(Duration::from_secs(30), "both instances running", || {
        let status = app.status(&server);
        (status["instances_running"] == 2 && status["status"] == "running").then_some(status)
    });
    let message = running["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("restarted 1 time"),
        "the status says the instance was restarted: {running:#}\n(first seen: {restarted:#})"
    );
    let mut seen = BTreeSet::new();
    wait_until(Duration::from_secs(30), "the restarted instance to serve again", || {
        seen.insert(served_instance());
        seen.contains(&stopped_hostname)
    });
    wait_for_only_current_containers(&application_id, &deployment, 2, CONVERGE_DEADLINE);
    let record = deployment_record(&server, &deployment);
    assert_eq!(record["status"], "succeeded");
}
