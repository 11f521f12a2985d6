//! The end-to-end harness: a real `berth server` (with its detached edge proxy) in a
//! temporary data directory on free loopback ports, the CLI run against it, plain HTTP to
//! the API and through the proxy, and Docker queries by label.
//!
//! Expected flow: [`TestServer::start`] picks free ports, spawns the server (its output goes
//! to `<temp>/server.log`), waits with a deadline until `GET /api/v1/health` answers, and
//! reads the admin token and the organization id. Tests then drive it with
//! [`TestServer::cli`] and look at the result with [`TestServer::proxy_get`],
//! [`labelled_objects`] and friends.
//!
//! Guarantees: dropping the server sends SIGTERM to the server and to the proxy (only the
//! pids in this data directory's `server.pid`/`proxy.pid`, checked against their command
//! line or environment), then removes every container, network and volume labelled with this server's
//! organization and every image labelled with one of its projects — best effort, so a
//! failing test leaves nothing behind.
//!
//! Caveats: a test process killed with SIGKILL runs no destructor; its server, proxy and
//! containers then stay (they are all labelled with the organization id printed in
//! `server.log`). Helpers panic with a message saying what failed: a broken fixture is a
//! failed test.

mod docker;
mod http;
mod process;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use docker::{
    docker, docker_output, labelled_objects, ContainerGuard, ImageGuard, BASE_IMAGE, DOCKER_CLI,
};
pub(crate) use http::parse_response;
pub use http::HttpResponse;
pub use process::{run_program, CliOutput};

use docker::docker_lines;
use http::http_request;
use process::{
    command_line_contains, environment_contains, process_running, read_pid, run_with_deadline,
    terminate,
};

const START_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Long enough for a deployment that builds an image on a loaded 2-core machine.
const CLI_DEADLINE: Duration = Duration::from_secs(240);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How to start a [`TestServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--health-timeout`: how long a new container has to accept connections.
    pub health_timeout_secs: Option<u64>,
    /// Further `berth server` arguments.
    pub extra_args: Vec<String>,
}

/// A running `berth server` with its edge proxy, stopped and cleaned up on drop.
pub struct TestServer {
    binary: PathBuf,
    directory: tempfile::TempDir,
    data_dir: PathBuf,
    api_address: SocketAddr,
    proxy_address: SocketAddr,
    token: String,
    organization_id: String,
    server: Option<Child>,
    server_log_path: PathBuf,
    stopped: bool,
    /// Ids of the projects the test looked up or created, so that their images are removed
    /// on drop even when the project itself is gone.
    seen_projects: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("data_dir", &self.data_dir)
            .field("api_address", &self.api_address)
            .field("proxy_address", &self.proxy_address)
            .field("organization_id", &self.organization_id)
            .finish()
    }
}

impl TestServer {
    /// Starts `binary server` on free loopback ports and waits until its API answers.
    pub fn start(binary: &Path, options: ServerOptions) -> TestServer {
        let directory = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("create a temporary directory for the server");
        let data_dir = directory.path().join("data");
        std::fs::create_dir_all(directory.path().join("config")).expect("create the config dir");
        let mut server = TestServer {
            binary: binary.to_owned(),
            server_log_path: directory.path().join("server.log"),
            data_dir,
            api_address: free_loopback_address(),
            proxy_address: free_loopback_address(),
            token: String::new(),
            organization_id: String::new(),
            server: None,
            stopped: false,
            seen_projects: Mutex::default(),
            directory,
        };
        let mut last_failure = String::new();
        // A free port is found by binding and releasing it, so another process may take it
        // before the server binds it: try again with new ports.
        for _ in 0..START_ATTEMPTS {
            match server.launch(&options) {
                Ok(()) => return server,
                Err(failure) => {
                    last_failure = failure;
                    server.kill();
                    server.stopped = false;
                    server.api_address = free_loopback_address();
                    server.proxy_address = free_loopback_address();
                }
            }
        }
        server.stopped = true;
        panic!("berth server did not start: {last_failure}");
    }

    /// Takes charge of a server that something else started (e.g. `scripts/quickstart.sh`)
    /// with `data_dir` (whose `server.log` is its log) on these addresses: the CLI and the
    /// helpers work as for a started server, and dropping it stops the server and proxy by
    /// their pid files and cleans up Docker. `directory` is kept until then.
    pub fn adopt(
        binary: &Path,
        directory: tempfile::TempDir,
        data_dir: &Path,
        api_address: SocketAddr,
        proxy_address: SocketAddr,
    ) -> TestServer {
        std::fs::create_dir_all(directory.path().join("config")).expect("create the config dir");
        let mut server = TestServer {
            binary: binary.to_owned(),
            server_log_path: data_dir.join("server.log"),
            data_dir: data_dir.to_owned(),
            api_address,
            proxy_address,
            token: String::new(),
            organization_id: String::new(),
            server: None,
            stopped: false,
            seen_projects: Mutex::default(),
            directory,
        };
        if let Err(failure) = server.connect() {
            panic!("cannot adopt the server on {api_address}: {failure}");
        }
        server
    }

    fn launch(&mut self, options: &ServerOptions) -> Result<(), String> {
        let log_path = self.server_log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("open {}: {error}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|error| format!("open the log: {error}"))?;
        let mut command = self.command();
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.api_address.to_string())
            .arg("--proxy-listen")
            .arg(self.proxy_address.to_string())
            .arg("--allow-local-repositories");
        if let Some(seconds) = options.health_timeout_secs {
            command.arg("--health-timeout").arg(seconds.to_string());
        }
        command.args(&options.extra_args).stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", self.binary.display()))?;
        self.server = Some(child);

        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let health = http_request(self.api_address, "GET", "/api/v1/health", &[], None);
            if health.as_ref().is_ok_and(|response| response.status == 200) {
                break;
            }
            let exited = self.server.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!("the server exited ({status}):\n{}", self.server_log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server did not answer on {} within {START_DEADLINE:?}:\n{}",
                    self.api_address,
                    self.server_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.connect()
    }

    /// Reads the admin token and the organization id of a server that answers.
    fn connect(&mut self) -> Result<(), String> {
        let token_path = self.data_dir.join("admin.token");
        self.token = std::fs::read_to_string(&token_path)
            .map_err(|error| format!("read {}: {error}", token_path.display()))?
            .trim()
            .to_owned();
        let organization = self.api("GET", "/api/v1/organization", None);
        if organization.status != 200 {
            return Err(format!("GET /api/v1/organization: {organization:?}"));
        }
        self.organization_id = organization.json()["id"]
            .as_str()
            .ok_or_else(|| format!("no organization id in {}", organization.body))?
            .to_owned();
        Ok(())
    }

    /// A command for the binary with a clean environment: no `BERTH_*` variable nor saved
    /// login of the user running the tests leaks in.
    fn command(&self) -> Command {
        // Dev-only harness: it starts the binary under test; berth-process is the
        // product's subprocess helper and does not model long-running children.
        #[allow(clippy::disallowed_methods)]
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(name);
            }
        }
        command.env("XDG_CONFIG_HOME", self.directory.path().join("config"));
        command
    }

    /// Runs `berth ARGS` against this server (standard input empty).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.run_cli(args, None, CLI_DEADLINE)
    }

    /// Runs `berth ARGS` with `stdin` as standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> CliOutput {
        self.run_cli(args, Some(stdin), CLI_DEADLINE)
    }

    /// Runs `berth ARGS`, panicking if it has not finished within `deadline` (for commands
    /// that wait, such as `delete`, when a hang is the failure to report).
    pub fn cli_within(&self, deadline: Duration, args: &[&str]) -> CliOutput {
        self.run_cli(args, None, deadline)
    }

    fn run_cli(&self, args: &[&str], stdin: Option<&str>, timeout: Duration) -> CliOutput {
        let mut command = self.command();
        command
            .args(args)
            .env("BERTH_URL", self.url())
            .env("BERTH_TOKEN", &self.token)
            .env("BERTH_DATA_DIR", &self.data_dir);
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        run_with_deadline(command, "berth", args, stdin, timeout)
    }

    /// A request to the REST API with the admin token (`body` sent as JSON).
    pub fn api(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> HttpResponse {
        let authorization = format!("Bearer {}", self.token);
        let body = body.map(serde_json::Value::to_string);
        http_request(
            self.api_address,
            method,
            path,
            &[("Authorization", &authorization), ("Content-Type", "application/json")],
            body.as_deref(),
        )
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// `GET path` through the edge proxy with `Host: host`.
    pub fn proxy_get(&self, host: &str, path: &str) -> HttpResponse {
        self.try_proxy_get(host, path)
            .unwrap_or_else(|error| panic!("GET http://{host}{path} through the proxy: {error}"))
    }

    /// Like [`TestServer::proxy_get`], but a connection failure is an `Err`.
    pub fn try_proxy_get(&self, host: &str, path: &str) -> Result<HttpResponse, String> {
        let host = format!("{host}:{}", self.proxy_address.port());
        http_request(self.proxy_address, "GET", path, &[("Host", &host)], None)
    }

    /// `http://...` URL of the REST API.
    pub fn url(&self) -> String {
        format!("http://{}", self.api_address)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn proxy_port(&self) -> u16 {
        self.proxy_address.port()
    }

    /// The id of the organization this server created on first start.
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }

    /// A scratch directory that lives as long as the server (for repositories, keys...).
    pub fn scratch_dir(&self) -> PathBuf {
        let path = self.directory.path().join("scratch");
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        path
    }

    /// The host name the proxy serves an application under (base domain `localhost`).
    pub fn app_host(&self, project: &str, environment: &str, application: &str) -> String {
        format!("{application}.{environment}.{project}.localhost")
    }

    pub fn server_log_path(&self) -> PathBuf {
        self.server_log_path.clone()
    }

    /// Everything the server has written to standard output and error so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.server_log_path()).unwrap_or_default()
    }

    /// The edge proxy's log (`<data>/proxy.log`).
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("proxy.log")).unwrap_or_default()
    }

    /// The id of project `name` (from `GET /api/v1/projects/{name}`).
    pub fn project_id(&self, name: &str) -> String {
        let response = self.api("GET", &format!("/api/v1/projects/{name}"), None);
        assert_eq!(response.status, 200, "GET project {name}: {}", response.body);
        let id = response.json()["id"].as_str().expect("project id").to_owned();
        if let Ok(mut seen) = self.seen_projects.lock() {
            seen.insert(id.clone());
        }
        id
    }

    /// Creates a project and an environment of mode production in it through the CLI.
    pub fn create_project_and_environment(&self, project: &str, environment: &str) {
        self.cli(&["project", "create", project]).expect_success();
        self.project_id(project);
        self.cli(&[
            "environment",
            "create",
            "--project",
            project,
            environment,
            "--mode",
            "production",
        ])
        .expect_success();
    }

    /// Creates a bare repository (under the scratch directory) whose `branch` holds
    /// `files`.
    pub fn fixture_repo(&self, files: &[(&str, &str)], branch: &str) -> FixtureRepo {
        let path = self.scratch_dir().join(format!("{}.git", unique_name("repo")));
        let commit = crate::repo::init_repo(&path, files, branch);
        FixtureRepo { path, commit }
    }

    /// Stops the server and its proxy (SIGTERM, then SIGKILL after a deadline). Only the
    /// processes of this data directory are signalled. Idempotent.
    pub fn kill(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let server_pid = read_pid(&self.data_dir.join("server.pid"));
        let proxy_pid = read_pid(&self.data_dir.join("proxy.pid"));
        if let Some(mut child) = self.server.take() {
            terminate(child.id());
            let deadline = Instant::now() + STOP_DEADLINE;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        } else if let Some(pid) = server_pid {
            // An adopted server (started by a script): not our child.
            self.stop_process_of_this_data_dir(pid);
        }
        // The proxy was started detached (it outlives the server on purpose), so it is not
        // our child either.
        if let Some(pid) = proxy_pid {
            self.stop_process_of_this_data_dir(pid);
        }
    }

    /// SIGTERM, then SIGKILL after a deadline, to `pid` if it is still a process of this
    /// data directory (its command line or its `BERTH_DATA_DIR` names it): pids are reused.
    fn stop_process_of_this_data_dir(&self, pid: u32) {
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let environment_entry = format!("BERTH_DATA_DIR={data_dir}");
        let ours =
            command_line_contains(pid, &data_dir) || environment_contains(pid, &environment_entry);
        if !ours {
            return;
        }
        terminate(pid);
        let deadline = Instant::now() + STOP_DEADLINE;
        while process_running(pid) {
            if Instant::now() > deadline {
                if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes everything Docker holds for this server: containers, networks and volumes
    /// labelled with its organization, images labelled with its projects (`project_ids`).
    fn remove_docker_objects(&self, project_ids: &[String]) {
        if self.organization_id.is_empty() {
            return;
        }
        let label = format!("label=berth.organization={}", self.organization_id);
        let containers = docker_lines(&["ps", "-aq", "--filter", &label]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker_output(&args);
        }
        for network in docker_lines(&["network", "ls", "-q", "--filter", &label]) {
            let _ = docker_output(&["network", "rm", &network]);
        }
        for volume in docker_lines(&["volume", "ls", "-q", "--filter", &label]) {
            let _ = docker_output(&["volume", "rm", "-f", &volume]);
        }
        for project in project_ids {
            let label = format!("label=berth.project={project}");
            for image in docker_lines(&["images", "-q", "--filter", &label]) {
                let _ = docker_output(&["rmi", "-f", &image]);
            }
        }
    }

    /// The projects this server has (asked while it still runs) and those the test saw.
    fn known_project_ids(&self) -> Vec<String> {
        let mut ids: BTreeSet<String> =
            self.seen_projects.lock().map(|seen| seen.clone()).unwrap_or_default();
        if !self.stopped && !self.token.is_empty() {
            let authorization = format!("Bearer {}", self.token);
            let listed = http_request(
                self.api_address,
                "GET",
                "/api/v1/projects",
                &[("Authorization", &authorization)],
                None,
            );
            let projects = listed.ok().and_then(|response| {
                serde_json::from_str::<Vec<serde_json::Value>>(&response.body).ok()
            });
            ids.extend(
                projects
                    .iter()
                    .flatten()
                    .filter_map(|project| project["id"].as_str().map(str::to_owned)),
            );
        }
        ids.into_iter().collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let project_ids = self.known_project_ids();
        self.kill();
        self.remove_docker_objects(&project_ids);
        if std::thread::panicking() {
            // Keep the evidence of a failed test in its output.
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.server_log_path().display(),
                self.server_log()
            );
        }
    }
}

/// A bare fixture repository and the commit its branch points at.
#[derive(Debug, Clone)]
pub struct FixtureRepo {
    pub path: PathBuf,
    pub commit: String,
}

impl FixtureRepo {
    /// `file://` URL of the repository (the server runs with `--allow-local-repositories`).
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Commits `files` on top of `branch` and returns the new commit id.
    pub fn commit(&mut self, files: &[(&str, &str)], branch: &str) -> String {
        self.commit = crate::repo::commit_files(&self.path, files, branch);
        self.commit.clone()
    }
}

/// Reads every file under `dir` as `(relative path, content)`, for turning a fixture
/// directory into a repository.
pub fn files_in(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let content = std::fs::read_to_string(&path)
                    .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
                let relative = path.strip_prefix(root).expect("path under root");
                files.push((relative.to_string_lossy().into_owned(), content));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// `files` as the `(&str, &str)` pairs the repository helpers take.
pub fn as_pairs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files.iter().map(|(path, content)| (path.as_str(), content.as_str())).collect()
}

/// A name unique to this test run (`prefix-` and 6 hex digits): a valid resource name for
/// projects, environments and applications when `prefix` is one.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let mixed = nanos
        ^ u64::from(std::process::id()).rotate_left(40)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mixed = mixed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    format!("{prefix}-{:06x}", (mixed >> 40) & 0xff_ffff)
}

/// Waits until `check` returns `Some`, polling, and returns its value; panics after
/// `timeout` with `what` in the message.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    wait_for_ok(timeout, what, || check().ok_or_else(String::new))
}

/// Like [`wait_for`], but `check` describes what it saw when the condition does not hold
/// (`Err`), and the timeout message shows the last description.
#[track_caller]
pub fn wait_for_ok<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{last}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until `condition` holds; panics after `timeout` with `what` in the message.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(timeout, what, || condition().then_some(()));
}

/// Whether a file exists at `path` (for "the marker file never appeared" checks).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Every file under `dir` whose bytes contain `needle` (for "no secret in clear" checks).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                walk(&path, needle, found);
            } else if kind.is_file() {
                let Ok(bytes) = std::fs::read(&path) else { continue };
                if bytes.windows(needle.len()).any(|window| window == needle) {
                    found.push(path);
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, needle.as_bytes(), &mut found);
    found
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}
