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

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{
    docker, docker_output, free_loopback_address, wait_for, CliOutput, FixtureRepo, HttpResponse,
    TestServer,
};

const START_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// A request through the proxy that takes longer than this counts as failed.
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two probe requests: a steady trickle, not a load test (CI has 2 cores and
/// several servers running at once).
const PROBE_PACE: Duration = Duration::from_millis(20);
/// How many failures a probe keeps the details of.
const PROBE_KEPT_FAILURES: usize = 20;

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

/// What a [`TrafficProbe`] saw.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    /// Requests that ended (answered or failed).
    pub total: u64,
    /// How many failed: no connection, no answer within the timeout, or a status other
    /// than 200.
    pub failed: u64,
    /// The first failures, with the time since the probe started.
    pub failures: Vec<String>,
    /// How many answers carried each `content:` line value.
    pub contents: BTreeMap<String, u64>,
    /// The `content:` values in the order they were served, consecutive repeats merged
    /// (`["version one", "version two"]` for one switch).
    pub sequence: Vec<String>,
}

impl std::fmt::Display for TrafficReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} request(s), {} failed; contents {:?}; sequence {:?}",
            self.total, self.failed, self.contents, self.sequence
        )?;
        for failure in &self.failures {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

/// A thread that sends `GET path` through the proxy one request after another until it is
/// stopped, and records every failure.
pub struct TrafficProbe {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    report: Arc<Mutex<TrafficReport>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TrafficProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficProbe").field("completed", &self.completed()).finish()
    }
}

impl TrafficProbe {
    /// Starts sending requests for `host` (without port) to the proxy of `server`.
    pub fn start(server: &TestServer, host: &str, path: &str) -> TrafficProbe {
        let proxy = proxy_address(server);
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(TrafficReport::default()));
        let host_header = format!("{host}:{}", proxy.port());
        let path = path.to_owned();
        let handle = {
            let (stop, completed, report) = (stop.clone(), completed.clone(), report.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let outcome = http_get(proxy, &host_header, &path, Some(PROBE_REQUEST_TIMEOUT));
                    let mut report = report.lock().expect("probe report lock");
                    report.total += 1;
                    match outcome {
                        Ok(response) if response.status == 200 => {
                            let content = line_value(&response.body, "content")
                                .unwrap_or_else(|| response.body.trim().to_owned());
                            *report.contents.entry(content.clone()).or_default() += 1;
                            if report.sequence.last() != Some(&content) {
                                report.sequence.push(content);
                            }
                        }
                        failure => {
                            report.failed += 1;
                            if report.failures.len() < PROBE_KEPT_FAILURES {
                                let what = match failure {
                                    Ok(response) => {
                                        format!("{} {}", response.status, response.body.trim())
                                    }
                                    Err(error) => error,
                                };
                                report.failures.push(format!(
                                    "after {:.1} s: {what}",
                                    started.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                    drop(report);
                    completed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(PROBE_PACE);
                }
            })
        };
        TrafficProbe { stop, completed, report, handle: Some(handle) }
    }

    /// Requests that ended so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// What the probe saw so far.
    pub fn report(&self) -> TrafficReport {
        self.report.lock().expect("probe report lock").clone()
    }

    /// Waits until `count` more requests have ended than when called.
    #[track_caller]
    pub fn wait_for_requests(&self, count: u64, timeout: Duration) {
        let target = self.completed() + count;
        wait_for(timeout, &format!("{count} more requests through the proxy"), || {
            (self.completed() >= target).then_some(())
        });
    }

    /// Stops the thread and returns everything it saw.
    pub fn stop(mut self) -> TrafficReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for TrafficProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The loopback address of the edge proxy of `server`.
pub fn proxy_address(server: &TestServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.proxy_port()))
}

/// `GET path` through the proxy of `server` with `Host: <host>:<proxy port>`, failing after
/// `timeout` without an answer.
pub fn proxy_get_within(
    server: &TestServer,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let host = format!("{host}:{}", server.proxy_port());
    http_get(proxy_address(server), &host, path, Some(timeout))
}

/// `GET path` on `address` with `Host: host`, one request per connection, failing after
/// `timeout` (default 30 s) without an answer.
pub fn http_get(
    address: SocketAddr,
    host: &str,
    path: &str,
    timeout: Option<Duration>,
) -> Result<HttpResponse, String> {
    let timeout = timeout.unwrap_or(Duration::from_secs(30));
    let mut stream = TcpStream::connect_timeout(&address, timeout.min(Duration::from_secs(5)))
        .map_err(|error| format!("connect to {address}: {error}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| format!("send to {address}: {error}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|error| format!("read from {address}: {error}"))?;
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
        body.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The value of the first `name: value` line of `body`.
pub fn line_value(body: &str, name: &str) -> Option<String> {
    body.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    })
}

/// An application in environment `production` of its own project, created through the CLI,
/// with the CLI calls the rollout tests make about it.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub project: String,
    pub environment: String,
    pub name: String,
    /// The host name the proxy serves it under.
    pub host: String,
}

impl TestApp {
    /// Creates `project`, its environment `production` and application `name` from `repo`
    /// (port 8080) with further `application create` flags.
    #[track_caller]
    pub fn create(
        server: &TestServer,
        project: &str,
        name: &str,
        repo: &FixtureRepo,
        flags: &[&str],
    ) -> TestApp {
        server.create_project_and_environment(project, "production");
        let url = repo.file_url();
        let mut args = vec![
            "application",
            "create",
            "--project",
            project,
            "--environment",
            "production",
            name,
            "--git",
            &url,
            "--port",
            "8080",
        ];
        args.extend(flags);
        server.cli(&args).expect_success();
        TestApp {
            project: project.to_owned(),
            environment: "production".to_owned(),
            name: name.to_owned(),
            host: server.app_host(project, "production", name),
        }
    }

    fn scope(&self) -> [&str; 4] {
        ["--project", &self.project, "--environment", &self.environment]
    }

    /// `berth application update ... FLAGS`, which must succeed.
    #[track_caller]
    pub fn update(&self, server: &TestServer, flags: &[&str]) {
        let mut args = vec!["application", "update"];
        args.extend(self.scope());
        args.push(&self.name);
        args.extend(flags);
        server.cli(&args).expect_success();
    }

    /// `berth env-var set` at the application's scope.
    #[track_caller]
    pub fn set_variable(&self, server: &TestServer, assignment: &str) {
        let mut args = vec!["env-var", "set"];
        args.extend(self.scope());
        args.extend(["--application", &self.name, assignment]);
        server.cli(&args).expect_success();
    }

    /// `berth deploy --wait` of the environment (success or not).
    pub fn deploy_and_wait(&self, server: &TestServer) -> CliOutput {
        let mut args = vec!["deploy"];
        args.extend(self.scope());
        args.push("--wait");
        server.cli(&args)
    }

    /// `berth deploy` without waiting; returns the new deployment's id.
    #[track_caller]
    pub fn deploy(&self, server: &TestServer) -> String {
        let mut args = vec!["deploy"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let output = server.cli(&args).expect_success();
        output.json()["id"].as_str().expect("the deployment's id").to_owned()
    }

    /// The newest deployment of the environment (`deployment list`).
    #[track_caller]
    pub fn latest_deployment(&self, server: &TestServer) -> serde_json::Value {
        let mut args = vec!["deployment", "list"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let listed = server.cli(&args).expect_success().json();
        listed[0].clone()
    }

    /// The application's entry in `berth status --output json`.
    #[track_caller]
    pub fn status(&self, server: &TestServer) -> serde_json::Value {
        let mut args = vec!["status"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let status = server.cli(&args).expect_success().json();
        status["applications"]
            .as_array()
            .and_then(|apps| apps.iter().find(|app| app["name"] == self.name.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("no application {} in the status: {status}", self.name))
    }

    /// The application's id (`application show`).
    #[track_caller]
    pub fn id(&self, server: &TestServer) -> String {
        let mut args = vec!["application", "show"];
        args.extend(self.scope());
        args.extend([self.name.as_str(), "--output", "json"]);
        let shown = server.cli(&args).expect_success().json();
        shown["id"].as_str().expect("application id").to_owned()
    }

    /// `GET /` through the proxy; panics unless it answers 200.
    #[track_caller]
    pub fn page(&self, server: &TestServer) -> String {
        let page = server.proxy_get(&self.host, "/");
        assert_eq!(page.status, 200, "GET http://{}/ through the proxy: {page:?}", self.host);
        page.body
    }

    /// The `content:` line of the page served now.
    #[track_caller]
    pub fn served_content(&self, server: &TestServer) -> String {
        let page = self.page(server);
        line_value(&page, "content").unwrap_or_else(|| panic!("no content line in {page:?}"))
    }
}

/// `GET /api/v1/deployments/{id}` as JSON.
#[track_caller]
pub fn deployment_record(server: &TestServer, id: &str) -> serde_json::Value {
    let response = server.api("GET", &format!("/api/v1/deployments/{id}"), None);
    assert_eq!(response.status, 200, "GET deployment {id}: {}", response.body);
    response.json()
}

/// Whether a deployment status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "superseded")
}

/// Waits until deployment `id` has a final status and returns its record.
#[track_caller]
pub fn wait_for_terminal_deployment(
    server: &TestServer,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_for(timeout, &format!("deployment {id} to end"), || {
        let record = deployment_record(server, id);
        is_terminal(record["status"].as_str().unwrap_or_default()).then_some(record)
    })
}

/// Waits until deployment `id` has a step `step` in state `running`.
#[track_caller]
pub fn wait_for_running_step(server: &TestServer, id: &str, step: &str, timeout: Duration) {
    wait_for(timeout, &format!("step {step} of deployment {id} to run"), || {
        let record = deployment_record(server, id);
        let status = record["status"].as_str().unwrap_or_default().to_owned();
        assert!(!is_terminal(&status), "deployment {id} ended before its {step} step: {record}");
        record["steps"]
            .as_array()
            .is_some_and(|steps| {
                steps.iter().any(|s| s["name"] == step && s["status"] == "running")
            })
            .then_some(())
    });
}

/// A container Berth labelled for an application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelledContainer {
    pub name: String,
    /// Its `berth.deployment` label.
    pub deployment: String,
    /// Docker's state word: `running`, `exited`, `created`, `restarting`...
    pub state: String,
}

/// Every container (any state) labelled `berth.service=<application_id>`, by name.
pub fn application_containers(application_id: &str) -> Vec<LabelledContainer> {
    let filter = format!("label=berth.service={application_id}");
    let listed = docker(&[
        "ps",
        "--all",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Label \"berth.deployment\"}} {{.State}}",
    ]);
    let mut containers: Vec<LabelledContainer> = listed
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(LabelledContainer {
                name: parts.next()?.to_owned(),
                deployment: parts.next().unwrap_or_default().to_owned(),
                state: parts.next().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    containers.sort();
    containers
}

/// Every container (any state) labelled `berth.deployment=<deployment_id>`.
pub fn deployment_containers(deployment_id: &str) -> Vec<String> {
    let filter = format!("label=berth.deployment={deployment_id}");
    docker(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the containers of `application_id` are exactly `instances` running
/// containers of deployment `current`: nothing of another deployment remains.
#[track_caller]
pub fn wait_for_only_current_containers(
    application_id: &str,
    current: &str,
    instances: usize,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = application_containers(application_id);
        let converged = last.len() == instances
            && last.iter().all(|c| c.deployment == current && c.state == "running");
        if converged {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "after {timeout:?} the containers of application {application_id} are not \
                 {instances} running container(s) of deployment {current}: {last:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `docker exec CONTAINER sh -c SCRIPT`, which must succeed.
#[track_caller]
pub fn exec_in_container(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

/// Images labelled `berth.project=<project_id>`, as `repository:tag`.
pub fn project_images(project_id: &str) -> Vec<String> {
    let filter = format!("label=berth.project={project_id}");
    let output =
        docker_output(&["images", "--filter", &filter, "--format", "{{.Repository}}:{{.Tag}}"]);
    output
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
        .unwrap_or_default()
}
