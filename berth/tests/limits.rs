//! The effect of resource limits, end to end: an application that allocates past
//! `--memory` while starting fails its deployment at `health` with an OOM message naming
//! the limit; one that does so while running is OOM-killed and `status` says it hit its
//! memory limit; and
//! `--cpu`/`--memory` are the limits of the running container as Docker reports them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{
    as_pairs, docker, files_in, labelled_objects, unique_name, wait_for_ok, wait_until,
    ServerOptions, TestServer,
};
use test_support::harness_ext::create_git_application;

const DELETE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Creates project/production/`hog` from the memory-hog fixture with `limits`.
fn create_memory_hog(server: &TestServer, project: &str, limits: &[&str]) {
    server.create_project_and_environment(project, "production");
    let repo = server.fixture_repo(&as_pairs(&files_in(&fixture("memory-hog"))), "main");
    create_git_application(server, project, "production", "hog", &repo.file_url(), limits)
        .expect_success();
}

fn application_id(server: &TestServer, project: &str) -> String {
    let shown = server
        .cli(&[
            "application",
            "show",
            "--project",
            project,
            "--environment",
            "production",
            "hog",
            "--output",
            "json",
        ])
        .expect_success();
    shown.json()["id"].as_str().expect("application id").to_owned()
}

fn delete_project_and_check_nothing_left(server: &TestServer, project: &str) {
    let project_id = server.project_id(project);
    server.cli_within(DELETE_DEADLINE, &["project", "delete", project, "--yes"]).expect_success();
    assert_eq!(labelled_objects(&format!("berth.project={project_id}")), Vec::<String>::new());
}

#[test]
fn allocating_past_the_memory_limit_at_start_fails_the_deployment_with_oom() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("lm");
    create_memory_hog(&server, &project, &["--memory", "16"]);
    server
        .cli(&[
            "env-var",
            "set",
            "--project",
            &project,
            "--environment",
            "production",
            "--application",
            "hog",
            "ALLOCATE_AT_START=1",
        ])
        .expect_success();
    let failed =
        server.cli(&["deploy", "--project", &project, "--environment", "production", "--wait"]);
    assert!(!failed.success(), "{failed}");
    let text = failed.combined();
    assert!(text.contains("failed at step health"), "{failed}");
    assert!(text.contains("exceeded its memory limit of 16 MiB (OOM)"), "{failed}");
    assert!(text.contains("memory-hog: allocating 64 MiB"), "shows the last output:\n{failed}");

    let status = server
        .cli(&["status", "--project", &project, "--environment", "production"])
        .expect_success();
    assert!(status.stdout.contains("memory limit of 16 MiB (OOM)"), "status says why:\n{status}");
    let id = application_id(&server, &project);
    let left =
        docker(&["ps", "--all", "--quiet", "--filter", &format!("label=berth.service={id}")]);
    assert_eq!(left.trim(), "", "no container is left for the application");
    delete_project_and_check_nothing_left(&server, &project);
}

#[test]
fn limits_apply_to_the_running_container_and_a_later_oom_kill_shows_in_status() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("lc");
    create_memory_hog(&server, &project, &["--memory", "16", "--cpu", "0.5"]);
    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let served = server.proxy_get(&server.app_host(&project, "production", "hog"), "/");
    assert_eq!(served.body.trim(), "memory-hog is up", "{served:?}");

    let id = application_id(&server, &project);
    let container = docker(&["ps", "--quiet", "--filter", &format!("label=berth.service={id}")])
        .trim()
        .to_owned();
    assert_eq!(container.lines().count(), 1, "one running container: {container:?}");
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
        &container,
    ]);
    assert_eq!(limits.trim(), format!("500000000 {}", 16 * 1024 * 1024), "NanoCpus and Memory");

    // Make the running application allocate past its limit: Docker OOM-kills it (and
    // restarts it, to be killed again); `status` must say why it keeps crashing.
    docker(&["exec", &container, "touch", "/tmp/allocate"]);
    wait_until(Duration::from_secs(20), "Docker to OOM-kill the container", || {
        docker(&["inspect", "--format", "{{.State.OOMKilled}}", &container]).trim() == "true"
    });
    let status = wait_for_ok(Duration::from_secs(30), "status to report the OOM kill", || {
        let status = server.cli(&["status", "--project", &project, "--environment", "production"]);
        let line = status.stdout.lines().find(|line| line.starts_with("hog ")).unwrap_or_default();
        if line.contains("OOM") || line.contains("memory limit") {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    });
    let line = status.stdout.lines().find(|line| line.starts_with("hog ")).unwrap_or_default();
    assert!(line.contains("memory limit"), "status names the memory limit:\n{status}");
    delete_project_and_check_nothing_left(&server, &project);
}
