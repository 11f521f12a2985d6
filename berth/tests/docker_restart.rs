//! A restart of the Docker daemon in the middle of a deployment converges, end to end: the
//! deployment (held in its release command while the daemon stops) ends with a final
//! record, the application serves again through the proxy with the version that record
//! says (its published port may have changed: the proxy follows), no container of another
//! deployment remains, and the next deployment succeeds.
//!
//! This test stops and starts the machine's shared dockerd, which disturbs every other test
//! using Docker. It is its own test binary, and `.config/nextest.toml` puts it in the
//! `serial-docker` group with every test thread reserved, so nextest runs it with nothing
//! else; CI may also run it in a separate invocation
//! (`cargo nextest run -p berth --test docker_restart`).
//!
//! Assumptions: dockerd was started by `scripts/setup-host.sh` (its log is
//! `/var/log/berth-dockerd.log` and its command line `dockerd --host
//! unix:///var/run/docker.sock`), and the test runs as root, as `scripts/test.sh` does. The
//! test stops that process by its pid with SIGTERM and runs the script again to start it;
//! it refuses to touch a daemon started any other way (e.g. by systemd).
//! Guarantees: if the test fails while the daemon is down, a guard starts it again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use test_support::harness::{
    as_pairs, docker, docker_output, run_program, unique_name, wait_until, ServerOptions,
    TestServer,
};
use test_support::harness_ext::{
    deployment_containers, isolated_files, process_alive, send_sigterm,
    wait_for_only_current_containers, wait_for_running_step, wait_for_terminal_deployment, TestApp,
};

const DOCKERD_LOG: &str = "/var/log/berth-dockerd.log";
/// How `scripts/setup-host.sh` starts the daemon.
const DOCKERD_COMMAND_LINE: [&str; 3] = ["dockerd", "--host", "unix:///var/run/docker.sock"];
/// dockerd stops its containers (SIGTERM, then SIGKILL after their stop timeout) first.
const DOCKERD_STOP_DEADLINE: Duration = Duration::from_secs(90);
const DOCKERD_START_DEADLINE: Duration = Duration::from_secs(120);
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// After the daemon returns: a failed step, a reconcile pass (every 10 s), restarted
/// containers and the health monitor's new routes.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(120);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn docker_answers() -> bool {
    docker_output(&["version", "--format", "{{.Server.Version}}"])
        .is_ok_and(|output| output.status.success())
}

/// The dockerd that `scripts/setup-host.sh` started, found the way `pidof dockerd` does and
/// checked against the script's command line.
struct ScriptStartedDockerd {
    pid: u32,
}

impl ScriptStartedDockerd {
    #[track_caller]
    fn find() -> ScriptStartedDockerd {
        assert!(
            Path::new(DOCKERD_LOG).exists(),
            "{DOCKERD_LOG} does not exist: this test restarts only a dockerd started by \
             scripts/setup-host.sh (run it as root first)"
        );
        let pids = dockerd_pids();
        assert_eq!(pids.len(), 1, "expected exactly one dockerd process, found {pids:?}");
        let pid = pids[0];
        let command_line = command_line(pid);
        assert_eq!(
            command_line, DOCKERD_COMMAND_LINE,
            "dockerd (pid {pid}) was not started by scripts/setup-host.sh; not touching it"
        );
        ScriptStartedDockerd { pid }
    }

    /// SIGTERM to the daemon, then waits until it is gone and the socket no longer answers.
    fn stop(&self) {
        send_sigterm(self.pid);
        let deadline = Instant::now() + DOCKERD_STOP_DEADLINE;
        while process_alive(self.pid) || docker_answers() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not stop within {DOCKERD_STOP_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Starts dockerd with `scripts/setup-host.sh` if it does not answer (also on drop, so a
/// failing test does not leave the machine without Docker).
struct DaemonGuard;

impl DaemonGuard {
    #[track_caller]
    fn ensure_running(&self) {
        if docker_answers() {
            return;
        }
        let root = repository_root();
        let started = run_program(
            &root.join("scripts/setup-host.sh"),
            &[],
            &root,
            &[],
            DOCKERD_START_DEADLINE,
        );
        assert!(started.success(), "scripts/setup-host.sh failed:\n{started}");
        wait_until(DOCKERD_START_DEADLINE, "dockerd to answer again", docker_answers);
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if !docker_answers() {
            let root = repository_root();
            let _ = run_program(
                &root.join("scripts/setup-host.sh"),
                &[],
                &root,
                &[],
                DOCKERD_START_DEADLINE,
            );
        }
    }
}

fn dockerd_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "dockerd")
        })
        .filter(|pid| process_alive(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

fn command_line(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

fn published_address(container: &str) -> String {
    docker(&["port", container, "8080/tcp"]).lines().next().unwrap_or_default().trim().to_owned()
}

#[test]
fn a_docker_daemon_restart_mid_deployment_converges() {
    let dockerd = ScriptStartedDockerd::find();
    let guard = DaemonGuard;
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("dd");
    let mut repo =
        server.fixture_repo(&as_pairs(&isolated_files(&fixture("rollout-page"))), "main");
    let app = TestApp::create(&server, &project, "web", &repo, &["--health-interval", "1"]);
    app.deploy_and_wait(&server).expect_success();
    let first = app.latest_deployment(&server)["id"].as_str().expect("id").to_owned();
    let application_id = app.id(&server);
    let serving = deployment_containers(&first);
    assert_eq!(serving.len(), 1, "{serving:?}");
    let address_before = published_address(&serving[0]);

    // Version two is held in its release command when the daemon goes away.
    app.update(&server, &["--release-command", "echo migrating; sleep 300"]);
    repo.commit(&[("content.txt", "version two\n")], "main");
    let second = app.deploy(&server);
    wait_for_running_step(&server, &second, "release", STEP_DEADLINE);
    wait_until(STEP_DEADLINE, "the release command's container", || {
        !deployment_containers(&second).is_empty()
    });
    dockerd.stop();
    guard.ensure_running();

    // The deployment ends, and what serves is what its record says.
    let record = wait_for_terminal_deployment(&server, &second, CONVERGE_DEADLINE);
    let (current, content) = match record["status"].as_str().unwrap_or_default() {
        "failed" => (&first, "version one"),
        "succeeded" => (&second, "version two"),
        other => panic!("deployment {second} ended {other} after the daemon restart: {record:#}"),
    };
    if current == &first {
        assert_eq!(record["failure"]["step"], "release", "{record:#}");
    }
    wait_until(CONVERGE_DEADLINE, &format!("the proxy to serve {content} again"), || {
        server.try_proxy_get(&app.host, "/").is_ok_and(|page| {
            page.status == 200 && page.body.contains(&format!("content: {content}"))
        })
    });
    wait_for_only_current_containers(&application_id, current, 1, CONVERGE_DEADLINE);
    wait_until(CONVERGE_DEADLINE, "the status to say running", || {
        app.status(&server)["status"] == "running"
    });
    let address_after = published_address(&deployment_containers(current)[0]);
    eprintln!(
        "published address before the daemon restart: {address_before}, after: {address_after}"
    );

    // The engine works with the restarted daemon: the next deployment succeeds.
    app.update(&server, &["--no-release-command"]);
    repo.commit(&[("content.txt", "version three\n")], "main");
    app.deploy_and_wait(&server).expect_success();
    assert_eq!(app.served_content(&server), "version three");
    let third = app.latest_deployment(&server)["id"].as_str().expect("id").to_owned();
    wait_for_only_current_containers(&application_id, &third, 1, CONVERGE_DEADLINE);
}
