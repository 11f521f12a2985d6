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
//! line), then removes every container, network and volume labelled with this server's
//! organization and every image labelled with one of its projects — best effort, so a
//! failing test leaves nothing behind.
//!
//! Caveats: a test process killed with SIGKILL runs no destructor; its server, proxy and
//! containers then stay (they are all labelled with the organization id printed in
//! `server.log`). Helpers panic with a message saying what failed: a broken fixture is a
//! failed test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The docker.io CLI (`/usr/local/bin/docker` may be a newer client; see MACHINE-NOTES).
pub const DOCKER_CLI: &str = "/usr/bin/docker";
/// The offline base image made by `scripts/build-base-images.sh`.
pub const BASE_IMAGE: &str = "berth/busybox:1";

const START_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Long enough for a deployment that builds an image on a loaded 2-core machine.
const CLI_DEADLINE: Duration = Duration::from_secs(240);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How to start a [`TestServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--health-timeout-secs`: how long a new container has to accept connections.
    pub health_timeout_secs: Option<u64>,
    /// Further `berth server` arguments.
    pub extra_args: Vec<String>,
}

/// What one CLI invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output and standard error, as a user at a terminal sees them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command succeeded; returns `self`.
    #[track_caller]
    pub fn expect_success(self) -> CliOutput {
        assert!(
            self.success(),
            "`berth {}` failed ({}):\n{}",
            self.args.join(" "),
            self.status,
            self
        );
        self
    }

    /// Panics with the whole output if the command succeeded; returns `self`.
    #[track_caller]
    pub fn expect_failure(self) -> CliOutput {
        assert!(
            !self.success(),
            "`berth {}` succeeded but should fail:\n{}",
            self.args.join(" "),
            self
        );
        self
    }

    /// Standard output parsed as JSON (for `--output json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!("`berth {}` printed no JSON ({error}):\n{self}", self.args.join(" "))
        })
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// An HTTP response: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {} {}", self.status, self.body))
    }
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
            command.arg("--health-timeout-secs").arg(seconds.to_string());
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
        response.json()["id"].as_str().expect("project id").to_owned()
    }

    /// Creates a project and an environment of mode production in it through the CLI.
    pub fn create_project_and_environment(&self, project: &str, environment: &str) {
        self.cli(&["project", "create", project]).expect_success();
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

    fn known_project_ids(&self) -> Vec<String> {
        if self.stopped || self.token.is_empty() {
            return Vec::new();
        }
        let authorization = format!("Bearer {}", self.token);
        let Ok(response) = http_request(
            self.api_address,
            "GET",
            "/api/v1/projects",
            &[("Authorization", &authorization)],
            None,
        ) else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Array(projects)) = serde_json::from_str(&response.body) else {
            return Vec::new();
        };
        projects.iter().filter_map(|project| project["id"].as_str().map(str::to_owned)).collect()
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
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until `condition` holds; panics after `timeout` with `what` in the message.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(timeout, what, || condition().then_some(()));
}

/// Docker objects carrying a label: `label_filter` is `key=value` (or `key`). Each entry is
/// `"<kind> <name>"`, kind one of container (all states), network, volume, image (by tag, or
/// id when untagged).
pub fn labelled_objects(label_filter: &str) -> Vec<String> {
    let filter = format!("label={label_filter}");
    let mut objects = Vec::new();
    let listings: [(&str, &[&str]); 4] = [
        ("container", &["ps", "-a", "--format", "{{.Names}}"]),
        ("network", &["network", "ls", "--format", "{{.Name}}"]),
        ("volume", &["volume", "ls", "--format", "{{.Name}}"]),
        ("image", &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
    ];
    for (kind, listing) in listings {
        let mut args = listing.to_vec();
        args.extend(["--filter", &filter]);
        for line in docker_lines(&args) {
            objects.push(format!("{kind} {line}"));
        }
    }
    objects
}

/// Runs `/usr/bin/docker ARGS`, panicking with its output unless it succeeds; returns
/// standard output.
#[track_caller]
pub fn docker(args: &[&str]) -> String {
    let output = docker_output(args).unwrap_or_else(|error| {
        panic!("cannot run {DOCKER_CLI}: {error}; run scripts/setup-host.sh")
    });
    assert!(
        output.status.success(),
        "{DOCKER_CLI} {} failed ({}): {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `/usr/bin/docker ARGS` and returns its raw output, success or not.
pub fn docker_output(args: &[&str]) -> std::io::Result<std::process::Output> {
    // Dev-only harness: inspecting and cleaning up Docker with the engine's own CLI.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new(DOCKER_CLI);
    command.args(args).stdin(Stdio::null()).output()
}

/// The non-empty lines `docker ARGS` prints (none when it fails).
fn docker_lines(args: &[&str]) -> Vec<String> {
    docker_output(args)
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes containers by name on drop (decoys and other objects a test makes itself).
#[derive(Debug, Default)]
pub struct ContainerGuard {
    names: Vec<String>,
}

impl ContainerGuard {
    pub fn new() -> ContainerGuard {
        ContainerGuard::default()
    }

    /// Runs `docker run -d --name NAME ARGS...` and remembers the container for removal.
    pub fn run(&mut self, name: &str, args: &[&str]) {
        self.names.push(name.to_owned());
        let mut all = vec!["run", "-d", "--name", name];
        all.extend(args);
        docker(&all);
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = docker_output(&["rm", "-f", name]);
        }
    }
}

/// Removes images by reference on drop.
#[derive(Debug, Default)]
pub struct ImageGuard {
    references: Vec<String>,
}

impl ImageGuard {
    pub fn new() -> ImageGuard {
        ImageGuard::default()
    }

    pub fn add(&mut self, reference: &str) {
        self.references.push(reference.to_owned());
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for reference in &self.references {
            let _ = docker_output(&["rmi", "-f", reference]);
        }
    }
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

/// Runs `program ARGS` in `cwd` with `envs` added to an environment without `BERTH_*`
/// variables, panicking if it has not finished within `timeout` (for scripts such as
/// `scripts/quickstart.sh`).
pub fn run_program(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    envs: &[(&str, String)],
    timeout: Duration,
) -> CliOutput {
    // Dev-only harness: runs the project's own scripts the way a user does.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BERTH_") {
            command.env_remove(name);
        }
    }
    command.args(args).current_dir(cwd);
    for (name, value) in envs {
        command.env(name, value);
    }
    let args = args.iter().map(|arg| (*arg).to_owned()).collect();
    run_with_deadline(command, &program.display().to_string(), args, None, timeout)
}

/// Runs `command` with `stdin` (or none), capturing its output; kills it and panics at
/// `timeout`.
fn run_with_deadline(
    mut command: Command,
    program: &str,
    args: Vec<String>,
    stdin: Option<&str>,
    timeout: Duration,
) -> CliOutput {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        command.spawn().unwrap_or_else(|error| panic!("cannot run {program} {args:?}: {error}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` did not finish within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                args.join(" "),
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliOutput {
        args,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn terminate(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Whether `pid` exists and is not a zombie.
fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

fn command_line_contains(pid: u32, needle: &str) -> bool {
    proc_entries_contain(pid, "cmdline", needle)
}

fn environment_contains(pid: u32, entry: &str) -> bool {
    proc_entries_contain(pid, "environ", entry)
}

/// Whether one of the NUL-separated entries of `/proc/<pid>/<file>` is exactly `needle`.
fn proc_entries_contain(pid: u32, file: &str, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|bytes| bytes.split(|byte| *byte == 0).any(|part| part == needle.as_bytes()))
        .unwrap_or(false)
}

/// A minimal HTTP/1.1 client (one request per connection), enough for the API and the
/// proxy: `Content-Length` and chunked bodies.
fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|error| format!("connect to {address}: {error}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|error| error.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    // A server may answer (e.g. 413) and close before reading a large body: read the
    // answer even when sending failed.
    let sent = stream.write_all(request.as_bytes());
    let mut raw = Vec::new();
    let received = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        if let Err(error) = sent {
            return Err(format!("send to {address}: {error}"));
        }
        if let Err(error) = received {
            return Err(format!("read from {address}: {error}"));
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response: {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut body = raw[end + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse { status, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end =
            data.windows(2).position(|window| window == b"\r\n").ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|error| format!("bad chunk size {size_text:?}: {error}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}
