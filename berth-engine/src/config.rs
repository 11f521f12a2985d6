//! The engine's settings, read once by the binary and passed in.

use std::path::PathBuf;
use std::time::Duration;

use berth_domain::Hostname;

/// Deadlines of each step: no deployment stays in progress forever.
#[derive(Debug, Clone)]
pub struct StepDeadlines {
    pub clone: Duration,
    pub build: Duration,
    pub start: Duration,
    /// How long a release command may run.
    pub release: Duration,
    /// How long a new container has to accept connections on its port.
    pub health: Duration,
    pub route: Duration,
    /// Grace period for old containers between SIGTERM and SIGKILL.
    pub retire_grace: Duration,
}

impl Default for StepDeadlines {
    fn default() -> Self {
        Self {
            clone: Duration::from_secs(600),
            build: Duration::from_secs(1800),
            start: Duration::from_secs(120),
            release: Duration::from_secs(900),
            health: Duration::from_secs(60),
            route: Duration::from_secs(30),
            retire_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where checkouts and the SSH known_hosts file live.
    pub data_dir: PathBuf,
    pub base_domain: Hostname,
    /// Whether applications may use local paths and file:// URLs.
    pub allow_local_repositories: bool,
    pub deadlines: StepDeadlines,
    /// How many deployments run at once (each in a different environment).
    pub max_parallel_deployments: usize,
    /// How many independent applications of one deployment deploy at once.
    pub deploy_concurrency: usize,
    /// Images of this many most recent successful deployments per application are kept
    /// (for redeploys and rollbacks); older ones are pruned.
    pub keep_successful_images: u32,
    /// Test hook: stop the engine (sleep forever) when a deployment reaches this step,
    /// after writing `<data-dir>/paused-at-<step>`, so a test can kill the server there.
    pub pause_at: Option<berth_domain::deployment::StepName>,
}

impl EngineConfig {
    pub fn checkouts_dir(&self) -> PathBuf {
        self.data_dir.join("checkouts")
    }

    pub fn known_hosts_file(&self) -> PathBuf {
        self.data_dir.join("known_hosts")
    }
}
