//! A real container image registry on loopback for tests: Debian's `docker-registry`
//! (Distribution 2.8) run as a child process with its own configuration and storage in a
//! temporary directory, so tests can push an image and make Berth pull it by reference
//! without any registry outside the machine.
//!
//! Expected flow: [`LocalRegistry::start`] picks a free port, writes the configuration,
//! starts the registry and waits (with a deadline) until `GET /v2/` answers;
//! [`LocalRegistry::push_image`] pushes a local image through `/usr/bin/docker` (the
//! engine treats registries on 127.0.0.0/8 as insecure-allowed, so plain HTTP works);
//! dropping the value kills the registry by PID and deletes its storage.
//!
//! Assumptions: `scripts/setup-host.sh` installed `docker-registry` and started the
//! Docker engine. The functions block (they are for test set-up) and panic with a message
//! saying what to do when something is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// The docker.io client; `/usr/local/bin/docker` may be a newer client (see MACHINE-NOTES).
const DOCKER_CLI: &str = "/usr/bin/docker";
const START_DEADLINE: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;

/// A running registry, killed on drop.
pub struct LocalRegistry {
    child: Child,
    address: SocketAddr,
    // Holds the configuration, the storage and the log until the registry is gone.
    directory: tempfile::TempDir,
}

impl std::fmt::Debug for LocalRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRegistry")
            .field("pid", &self.child.id())
            .field("address", &self.address)
            .finish()
    }
}

impl LocalRegistry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until it answers.
    pub fn start() -> LocalRegistry {
        assert!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing; install it with scripts/setup-host.sh (Debian package docker-registry)"
        );
        let directory = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .expect("create a temporary directory for the registry");
        let mut last_failure = String::new();
        // The free port is found by binding and releasing it, so another process may take
        // it before the registry binds it: try again on a new port.
        for _ in 0..START_ATTEMPTS {
            match start_once(directory.path()) {
                Ok((child, address)) => return LocalRegistry { child, address, directory },
                Err(failure) => last_failure = failure,
            }
        }
        panic!("the local registry did not start: {last_failure}");
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Pushes the local image `local_tag` as `repo_name` (`team/app` or `team/app:1.0`;
    /// without a tag, `latest`) and returns the full reference,
    /// e.g. `127.0.0.1:PORT/team/app:1.0`. The temporary local tag used for the push is
    /// removed again, so the reference is not present locally afterwards and using it
    /// makes the engine pull.
    pub fn push_image(&self, local_tag: &str, repo_name: &str) -> String {
        let last_component = repo_name.rsplit('/').next().unwrap_or(repo_name);
        let reference = if last_component.contains(':') {
            format!("{}/{repo_name}", self.address)
        } else {
            format!("{}/{repo_name}:latest", self.address)
        };
        docker(&["tag", local_tag, &reference]);
        docker(&["push", &reference]);
        docker(&["image", "rm", &reference]);
        reference
    }

    /// The registry's own log (for diagnosing a failing test).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_once(directory: &Path) -> Result<(Child, SocketAddr), String> {
    let address = free_loopback_address();
    let storage = directory.join("storage");
    std::fs::create_dir_all(&storage).map_err(|error| format!("create {storage:?}: {error}"))?;
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {address}\n",
        storage.display()
    );
    let config_path = directory.join("config.yml");
    std::fs::write(&config_path, config).map_err(|error| format!("write the config: {error}"))?;
    let log_path = directory.join("registry.log");
    let log =
        std::fs::File::create(&log_path).map_err(|error| format!("create the log: {error}"))?;
    let log_err = log.try_clone().map_err(|error| format!("open the log: {error}"))?;

    // Test-only code: a long-running child process whose PID we keep to kill it on drop,
    // which berth-process's run-to-completion helper does not model.
    #[allow(clippy::disallowed_methods)]
    let mut child = Command::new(REGISTRY_BINARY)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|error| format!("cannot run {REGISTRY_BINARY}: {error}"))?;

    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if answers_v2(address) {
            return Ok((child, address));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("the registry exited ({status}) on {address}: {log}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "the registry did not answer on {address} within {} s: {log}",
                START_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("read the bound address")
}

/// Whether `GET /v2/` answers 200 (the registry API's "I am here").
fn answers_v2(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

fn docker(args: &[&str]) {
    // Test-only code: the docker.io CLI pushes with the engine's own registry client.
    #[allow(clippy::disallowed_methods)]
    let output =
        Command::new(DOCKER_CLI).args(args).stdin(Stdio::null()).output().unwrap_or_else(|error| {
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
}
