//! Docker as a test sees it, through the engine's own CLI: objects by label, and guards
//! that remove what a test created itself (decoys, pushed images).

use std::process::{Command, Stdio};

/// The docker.io CLI (`/usr/local/bin/docker` may be a newer client; see MACHINE-NOTES).
pub const DOCKER_CLI: &str = "/usr/bin/docker";
/// The offline base image made by `scripts/build-base-images.sh`.
pub const BASE_IMAGE: &str = "berth/busybox:1";

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
pub(crate) fn docker_lines(args: &[&str]) -> Vec<String> {
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
