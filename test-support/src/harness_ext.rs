//! Harness extensions for the rollout, queue, crash-safety and Docker-restart tests: a
//! server that can be killed with SIGKILL and started again on the same data directory
//! and ports ([`RestartableServer`]), a client that keeps sending requests through the
//! edge proxy and records every failure ([`TrafficProbe`]), an application under test with
//! the CLI calls those tests repeat ([`TestApp`]), and readers for deployment records and
//! the containers labelled for an application.
//!
//! Expected flow: [`RestartableServer::start`] spawns `berth server` itself (output in
//! `<data>/server.log`) and hands it to [`TestServer::adopt`], so every helper of
//! [`TestServer`] works through `Deref`. [`RestartableServer::kill_hard`] sends SIGKILL to
//! that process (its own child, by pid) and reaps it; the detached proxy keeps running.
//! [`RestartableServer::start_again`] runs a new server on the same data directory and
//! addresses, with other flags if wanted (`--test-pause-at STEP` or none).
//!
//! Guarantees: dropping a [`RestartableServer`] starts the server again if it is down (so
//! that the adopted [`TestServer`] can list its projects and remove their images), then
//! lets the adopted server stop the server and proxy and remove everything labelled with
//! its organization, and finally reaps the child. A [`TrafficProbe`] stops its thread when
//! dropped.
//!
//! Caveats: the restarted server binds the same API port; if another process took it in
//! between, the restart fails loudly (the proxy keeps its own port for the whole test).

mod records;
mod traffic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{files_in, free_loopback_address, unique_name, CliOutput, TestServer};

pub use records::{
    application_containers, deployment_containers, deployment_record, exec_in_container,
    is_terminal, project_images, wait_for_only_current_containers, wait_for_running_step,
    wait_for_terminal_deployment, LabelledContainer, TestApp,
};
pub use traffic::{
    http_get, line_value, proxy_address, proxy_get_within, TrafficProbe, TrafficReport,
};

const START_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// A `berth server` that the test can SIGKILL and start again on the same data directory.
pub struct RestartableServer {
    binary: PathBuf,
    data_dir: PathBuf,
    config_dir: PathBuf,
    api_address: SocketAddr,
    proxy_address: SocketAddr,
    /// The server process while it runs (this process's child).
    child: Option<Child>,
    /// `None` only while dropping.
    server: Option<TestServer>,
}

impl std::fmt::Debug for RestartableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestartableServer")
            .field("data_dir", &self.data_dir)
            .field("api_address", &self.api_address)
            .field("proxy_address", &self.proxy_address)
            .field("pid", &self.pid())
            .finish()
    }
}

impl std::ops::Deref for RestartableServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.server.as_ref().expect("the server is adopted until dropped")
    }
}

impl RestartableServer {
    /// Starts `binary server` with `extra_args` on free loopback ports and waits until its
    /// API answers.
    pub fn start(binary: &Path, extra_args: &[&str]) -> RestartableServer {
        let directory = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("create a temporary directory for the server");
        let data_dir = directory.path().join("data");
        let config_dir = directory.path().join("config");
        std::fs::create_dir_all(&data_dir).expect("create the data directory");
        std::fs::create_dir_all(&config_dir).expect("create the config directory");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            // A free port is found by binding and releasing it, so another process may take
            // it before the server binds it: try again with new ports.
            let api_address = free_loopback_address();
            let proxy_address = free_loopback_address();
            let mut child = spawn_server(
                binary,
                &data_dir,
                &config_dir,
                api_address,
                proxy_address,
                extra_args,
            );
            match wait_until_answering(&mut child, api_address, &data_dir) {
                Ok(()) => {
                    let server =
                        TestServer::adopt(binary, directory, &data_dir, api_address, proxy_address);
                    return RestartableServer {
                        binary: binary.to_owned(),
                        data_dir,
                        config_dir,
                        api_address,
                        proxy_address,
                        child: Some(child),
                        server: Some(server),
                    };
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    stop_detached_proxy(&data_dir);
                    last_failure = failure;
                }
            }
        }
        panic!("berth server did not start: {last_failure}");
    }

    /// The pid of the running server process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends SIGKILL to the server process (by its pid) and reaps it. The proxy, a detached
    /// process, keeps running.
    #[track_caller]
    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("kill_hard: the server is not running");
        // `Child::kill` is SIGKILL on Unix: no handler runs, as in a crash.
        child.kill().expect("send SIGKILL to the server");
        child.wait().expect("reap the killed server");
    }

    /// Stops the server with SIGTERM (SIGKILL after a deadline) and reaps it.
    #[track_caller]
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("stop: the server is not running");
        stop_child(&mut child);
    }

    /// Starts the server again on the same data directory and addresses with
    /// `extra_args`, and waits until its API answers.
    #[track_caller]
    pub fn start_again(&mut self, extra_args: &[&str]) {
        assert!(self.child.is_none(), "start_again: the server still runs");
        let mut child = spawn_server(
            &self.binary,
            &self.data_dir,
            &self.config_dir,
            self.api_address,
            self.proxy_address,
            extra_args,
        );
        if let Err(failure) = wait_until_answering(&mut child, self.api_address, &self.data_dir) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start again: {failure}");
        }
        self.child = Some(child);
    }

    /// Stops the server (SIGTERM) and starts it again with `extra_args`.
    #[track_caller]
    pub fn restart(&mut self, extra_args: &[&str]) {
        self.stop();
        self.start_again(extra_args);
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        if self.child.is_none() {
            // The adopted server lists the projects through the API to remove their
            // images: give it a server to ask. Best effort.
            let mut child = spawn_server(
                &self.binary,
                &self.data_dir,
                &self.config_dir,
                self.api_address,
                self.proxy_address,
                &[],
            );
            match wait_until_answering(&mut child, self.api_address, &self.data_dir) {
                Ok(()) => self.child = Some(child),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        // Stops the server and the proxy by their pid files and removes Docker objects.
        drop(self.server.take());
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// Starts `binary server` on `data_dir` with output appended to `<data_dir>/server.log`,
/// in an environment without `BERTH_*` variables (as the harness does).
fn spawn_server(
    binary: &Path,
    data_dir: &Path,
    config_dir: &Path,
    api_address: SocketAddr,
    proxy_address: SocketAddr,
    extra_args: &[&str],
) -> Child {
    let log_path = data_dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|error| panic!("open {}: {error}", log_path.display()));
    let log_err = log.try_clone().expect("duplicate the server log handle");
    // Dev-only harness: it starts the binary under test; berth-process is the product's
    // subprocess helper and does not model long-running children.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BERTH_") {
            command.env_remove(name);
        }
    }
    command
        .env("XDG_CONFIG_HOME", config_dir)
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(api_address.to_string())
        .arg("--proxy-listen")
        .arg(proxy_address.to_string())
        .arg("--allow-local-repositories")
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    command.spawn().unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()))
}

fn wait_until_answering(
    child: &mut Child,
    api_address: SocketAddr,
    data_dir: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let health = http_get(api_address, &api_address.to_string(), "/api/v1/health", None);
        if health.as_ref().is_ok_and(|response| response.status == 200) {
            return Ok(());
        }
        let log = || std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}):\n{}", log()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server did not answer on {api_address} within {START_DEADLINE:?}:\n{}",
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Child) {
    signal(child.id(), rustix::process::Signal::TERM);
    let deadline = Instant::now() + STOP_DEADLINE;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the proxy a failed start may have left, if its pid file names a process of this
/// data directory.
fn stop_detached_proxy(data_dir: &Path) {
    let Some(pid) = std::fs::read_to_string(data_dir.join("proxy.pid"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return;
    };
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let data_dir = data_dir.to_string_lossy();
    if command_line.split(|byte| *byte == 0).any(|part| part == data_dir.as_bytes()) {
        signal(pid, rustix::process::Signal::TERM);
    }
}

/// The files of fixture directory `dir` (see [`files_in`]) with `build-id.txt` set to a
/// value unique to this call. A fixture whose Dockerfile copies that file first builds
/// layers no other test shares, so that another test's image cleanup cannot remove a
/// cached layer from under this test's build.
pub fn isolated_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> =
        files_in(dir).into_iter().filter(|(path, _)| path != "build-id.txt").collect();
    files.push(("build-id.txt".to_owned(), format!("{}\n", unique_name("build"))));
    files
}

/// `berth application create --project P --environment E NAME --git URL --port 8080`
/// followed by `extra` flags; the output is returned unchecked (some tests expect a
/// refusal).
pub fn create_git_application(
    server: &TestServer,
    project: &str,
    environment: &str,
    name: &str,
    git_url: &str,
    extra: &[&str],
) -> CliOutput {
    let mut args = vec![
        "application",
        "create",
        "--project",
        project,
        "--environment",
        environment,
        name,
        "--git",
        git_url,
        "--port",
        "8080",
    ];
    args.extend_from_slice(extra);
    server.cli(&args)
}

/// `berth application update --project P --environment E NAME FLAGS...`; the output is
/// returned unchecked (some tests expect a refusal).
pub fn update_application(
    server: &TestServer,
    project: &str,
    environment: &str,
    name: &str,
    flags: &[&str],
) -> CliOutput {
    let mut args =
        vec!["application", "update", "--project", project, "--environment", environment, name];
    args.extend_from_slice(flags);
    server.cli(&args)
}

/// `berth VERB... --project P --environment E REST...`; the output is returned unchecked.
pub fn cli_in(
    server: &TestServer,
    project: &str,
    environment: &str,
    verb: &[&str],
    rest: &[&str],
) -> CliOutput {
    let mut args = verb.to_vec();
    args.extend(["--project", project, "--environment", environment]);
    args.extend(rest);
    server.cli(&args)
}

/// `berth database VERB --project P --environment E ARGS --output json`, which must
/// succeed; its parsed output.
#[track_caller]
pub fn database_json_in(
    server: &TestServer,
    project: &str,
    environment: &str,
    verb: &str,
    args: &[&str],
) -> serde_json::Value {
    let mut rest = args.to_vec();
    rest.extend(["--output", "json"]);
    cli_in(server, project, environment, &["database", verb], &rest).expect_success().json()
}

/// A worker built `FROM berth/busybox:1` that runs until SIGTERM (then exits at once):
/// an application that needs no port, for tests about what it is configured with.
pub fn worker_files() -> [(&'static str, &'static str); 1] {
    [(
        "Dockerfile",
        "FROM berth/busybox:1\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep 2147483647 & wait\"]\n",
    )]
}

/// Sends SIGTERM to `pid` (for processes the test did not start, such as a daemon it
/// restarts: check that `pid` is the right process first).
pub fn send_sigterm(pid: u32) {
    signal(pid, rustix::process::Signal::TERM);
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
