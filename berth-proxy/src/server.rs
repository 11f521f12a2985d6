//! The proxy's lifecycle: binding the traffic listener and the admin socket, loading the
//! saved route table, accepting connections, and draining them on shutdown.
//!
//! Expected flow: [`ProxyServer::bind`] prepares everything that can fail (directories,
//! stale socket, listeners, saved table), then [`ProxyServer::serve`] runs until its
//! shutdown future completes. Guarantees: once `bind` returns, connections queue on both
//! listeners and the saved table is what they will be routed by; once `serve` returns, no
//! connection is being served and the admin socket file is gone. Caveats: requests still
//! running when the drain timeout passes are cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_domain::routes::RouteTable;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{serve_admin_connection, Admin};
use crate::config::ProxyConfig;
use crate::forward::{serve_connection, ClientConnection, ForwardedProto, Forwarder};
use crate::state::load_route_table;
use crate::table::RouteState;

/// Accepting fails mostly when the process is out of file descriptors; retrying at once
/// would spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen for HTTP traffic on {addr}: is another proxy or server using it?")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the directory {path} for the proxy's admin socket or saved routes")]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another process already answers on the proxy admin socket {path}: is a `berth proxy` already running?")]
    AdminSocketInUse { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; the proxy will not replace it with its admin socket"
    )]
    AdminSocketPathOccupied { path: PathBuf },
    #[error("cannot remove the stale proxy admin socket {path}")]
    RemoveStaleAdminSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the proxy admin socket {path}")]
    AdminSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot install the {signal} handler that stops the proxy")]
    SignalHandler {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A proxy whose listeners are bound, ready to [`serve`](Self::serve).
pub struct ProxyServer {
    config: ProxyConfig,
    listener: TcpListener,
    admin_listener: UnixListener,
    routes: Arc<RouteState>,
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProxyServer")
            .field("config", &self.config)
            .field("local_addr", &self.listener.local_addr().ok())
            .field("generation", &self.routes.snapshot().generation())
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    pub async fn bind(config: ProxyConfig) -> Result<Self, ProxyError> {
        for path in [&config.admin_socket, &config.state_file] {
            create_parent_directory(path)?;
        }
        remove_stale_admin_socket(&config.admin_socket).await?;

        let table = load_saved_table(&config.state_file);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ProxyError::Listen { addr: config.listen, source })?;
        let admin_listener = bind_admin_socket(&config.admin_socket)?;
        Ok(Self { config, listener, admin_listener, routes: Arc::new(RouteState::new(table)) })
    }

    /// The traffic address actually bound (useful when the configured port is 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    pub fn admin_socket(&self) -> &Path {
        &self.config.admin_socket
    }

    /// Serves traffic and the admin API until `shutdown` completes, then stops accepting,
    /// lets in-flight requests finish within the configured drain timeout, removes the
    /// admin socket file and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let Self { config, listener, admin_listener, routes } = self;
        let forwarder =
            Arc::new(Forwarder::new(Arc::clone(&routes), config.upstream_connect_timeout));
        let admin = Arc::new(Admin::new(Arc::clone(&routes), config.state_file.clone()));
        tracing::info!(
            listen = %listener.local_addr().unwrap_or(config.listen),
            admin_socket = %config.admin_socket.display(),
            generation = routes.snapshot().generation(),
            "berth proxy serving"
        );

        let stop = CancellationToken::new();
        tokio::join!(
            async {
                shutdown.await;
                tracing::info!("berth proxy shutting down: draining connections");
                stop.cancel();
            },
            serve_traffic(listener, forwarder, stop.clone(), config.drain_timeout),
            serve_admin(admin_listener, admin, stop.clone(), config.drain_timeout),
        );

        if let Err(error) = std::fs::remove_file(&config.admin_socket) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(
                    path = %config.admin_socket.display(),
                    %error,
                    "cannot remove the admin socket"
                );
            }
        }
        tracing::info!("berth proxy stopped");
        Ok(())
    }
}

/// Binds as configured and serves until SIGINT or SIGTERM, then drains and returns.
pub async fn run(config: ProxyConfig) -> Result<(), ProxyError> {
    let shutdown = termination_signal()?;
    ProxyServer::bind(config).await?.serve(shutdown).await
}

/// Handlers are installed before anything is bound, so a signal arriving during start-up
/// is not lost.
fn termination_signal() -> Result<impl Future<Output = ()>, ProxyError> {
    let handler = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| ProxyError::SignalHandler { signal: name, source })
    };
    let mut interrupt = handler(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = handler(SignalKind::terminate(), "SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}

async fn serve_traffic(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    stop: CancellationToken,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_task_failure(finished);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%remote, %error, "cannot disable Nagle's algorithm");
                    }
                    let client = ClientConnection { remote, proto: ForwardedProto::Http };
                    connections.spawn(serve_connection(
                        stream,
                        client,
                        Arc::clone(&forwarder),
                        graceful.watcher(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a traffic connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    drain("traffic", graceful, connections, drain_timeout).await;
}

async fn serve_admin(
    listener: UnixListener,
    admin: Arc<Admin>,
    stop: CancellationToken,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_task_failure(finished);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_admin_connection(
                        stream,
                        Arc::clone(&admin),
                        graceful.watcher(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an admin connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    drain("admin", graceful, connections, drain_timeout).await;
}

async fn drain(
    listener: &'static str,
    graceful: GracefulShutdown,
    mut connections: JoinSet<()>,
    drain_timeout: Duration,
) {
    let open = connections.len();
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            listener,
            ?drain_timeout,
            "connections still busy after the drain timeout are being cut"
        );
        connections.abort_all();
    }
    while let Some(finished) = connections.join_next().await {
        log_task_failure(finished);
    }
    tracing::debug!(listener, open, "connections drained");
}

fn log_task_failure(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        if error.is_panic() {
            tracing::error!(%error, "a connection task panicked");
        }
    }
}

fn create_parent_directory(path: &Path) -> Result<(), ProxyError> {
    let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) else {
        return Ok(());
    };
    // Private by default: the directory holds the admin socket.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|source| ProxyError::CreateDirectory { path: parent.to_owned(), source })
}

/// A socket file left by a proxy that crashed would make `bind` fail; one that still
/// answers belongs to a running proxy and must be left alone.
async fn remove_stale_admin_socket(path: &Path) -> Result<(), ProxyError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ProxyError::RemoveStaleAdminSocket { path: path.to_owned(), source })
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(ProxyError::AdminSocketPathOccupied { path: path.to_owned() });
    }
    match UnixStream::connect(path).await {
        // A full accept backlog also means someone is listening.
        Ok(_) => return Err(ProxyError::AdminSocketInUse { path: path.to_owned() }),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            return Err(ProxyError::AdminSocketInUse { path: path.to_owned() })
        }
        Err(_) => {}
    }
    tracing::info!(path = %path.display(), "removing a stale admin socket");
    std::fs::remove_file(path)
        .map_err(|source| ProxyError::RemoveStaleAdminSocket { path: path.to_owned(), source })
}

fn bind_admin_socket(path: &Path) -> Result<UnixListener, ProxyError> {
    let admin_error = |source| ProxyError::AdminSocket { path: path.to_owned(), source };
    let listener = UnixListener::bind(path).map_err(admin_error)?;
    // The parent directory is private too, which covers the moment between bind and chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(admin_error)?;
    Ok(listener)
}

/// A missing, unreadable or corrupt file must not keep the proxy from starting: an empty
/// table serves 404s until the control plane sends the current one.
fn load_saved_table(path: &Path) -> RouteTable {
    match load_route_table(path) {
        Ok(Some(table)) => {
            tracing::info!(
                path = %path.display(),
                generation = table.generation,
                routes = table.routes.len(),
                "serving the saved route table"
            );
            table
        }
        Ok(None) => RouteTable::default(),
        Err(error) => {
            tracing::error!(
                error = %crate::error_chain(&error),
                "starting with an empty route table"
            );
            RouteTable::default()
        }
    }
}
