//! Keeps an edge proxy running for the server: finds one answering on the admin socket,
//! or starts `berth proxy` as a detached process so that it outlives server restarts and
//! crashes. Also the engine's `Router`: it publishes route tables through the admin
//! socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use berth_domain::routes::RouteTable;
use berth_engine::adapters::{Router, RouterError};
use berth_process::ProcessSpec;
use berth_proxy::{ApplyOutcome, ProxyAdminClient, ProxyConfig};

/// Where the proxy of a data directory keeps its socket, saved routes and log.
pub(crate) fn proxy_state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("proxy")
}

pub(crate) fn admin_client(data_dir: &Path) -> ProxyAdminClient {
    ProxyAdminClient::new(ProxyConfig::in_state_directory(&proxy_state_dir(data_dir)).admin_socket)
}

/// Makes sure a proxy serves `listen`, starting one if none answers. Returns its pid.
pub(crate) async fn ensure_proxy(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<u32> {
    let client = admin_client(data_dir);
    if let Ok(health) = client.health().await {
        return Ok(health.pid);
    }
    if tokio::net::TcpStream::connect(listen).await.is_ok() {
        bail!(
            "the proxy address {listen} is in use by another program; stop it or choose another address with --proxy-listen"
        );
    }
    let state_dir = proxy_state_dir(data_dir);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let exe = std::env::current_exe()
        .context("cannot find the berth executable to start `berth proxy`")?;
    let spec = ProcessSpec::new(exe, Duration::from_secs(0))
        .arg("proxy")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(listen.to_string());
    let log = data_dir.join("proxy.log");
    let pid = berth_process::spawn_detached(&spec, &log)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(health) = client.health().await {
            std::fs::write(data_dir.join("proxy.pid"), format!("{}\n", health.pid)).ok();
            tracing::info!(pid = health.pid, %listen, "started the edge proxy");
            return Ok(health.pid);
        }
        if tokio::time::Instant::now() >= deadline || !berth_process::is_alive(pid) {
            bail!("the edge proxy did not start; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Restarts the proxy if it stops answering (checked every few seconds), until shutdown.
pub(crate) async fn supervise(
    data_dir: PathBuf,
    listen: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let client = admin_client(&data_dir);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if client.health().await.is_err() {
            tracing::warn!("the edge proxy does not answer; starting it again");
            if let Err(error) = ensure_proxy(&data_dir, listen).await {
                tracing::error!(%error, "could not restart the edge proxy");
            }
        }
    }
}

/// The engine's router in single-machine mode: the edge proxy's admin socket.
pub(crate) struct ProxyRouter {
    client: ProxyAdminClient,
}

impl ProxyRouter {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self { client: admin_client(data_dir) }
    }
}

#[async_trait]
impl Router for ProxyRouter {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError> {
        let outcome =
            self.client.put_routes(table).await.map_err(|e| RouterError(e.to_string()))?;
        match outcome {
            ApplyOutcome::Applied { .. } => Ok(()),
            // The proxy holds a table from a clock ahead of ours (e.g. after the clock was
            // set back): ours is computed from the current store, so it wins.
            ApplyOutcome::Stale { current_generation } => {
                let newer =
                    RouteTable { generation: current_generation + 1, routes: table.routes.clone() };
                match self
                    .client
                    .put_routes(&newer)
                    .await
                    .map_err(|e| RouterError(e.to_string()))?
                {
                    ApplyOutcome::Applied { .. } => Ok(()),
                    ApplyOutcome::Stale { .. } => {
                        Err(RouterError("the proxy keeps a newer table; retrying later".into()))
                    }
                }
            }
        }
    }
}
