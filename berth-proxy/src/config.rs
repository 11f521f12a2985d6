//! The proxy's configuration: where it listens for traffic, where its admin socket and
//! persisted route table live, and its timeouts. The binary reads and validates it once and
//! hands it to [`crate::run`]; nothing here reads the environment or files.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `berth proxy` listens for application traffic unless told otherwise.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000));

/// File name of the admin socket inside a state directory.
pub const ADMIN_SOCKET_FILE_NAME: &str = "proxy.sock";

/// File name of the persisted route table inside a state directory.
pub const STATE_FILE_NAME: &str = "proxy-routes.json";

/// Everything [`crate::ProxyServer::bind`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Address for proxied HTTP/1.1 traffic.
    pub listen: SocketAddr,
    /// Unix socket of the admin API; created with mode 0600.
    pub admin_socket: PathBuf,
    /// Where the last applied route table is persisted, so that a restarted proxy serves it
    /// before the control plane is back.
    pub state_file: PathBuf,
    /// How long to wait for one upstream to accept a connection before trying the next.
    pub upstream_connect_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts before they are cut.
    pub drain_timeout: Duration,
}

impl ProxyConfig {
    /// Defaults with the admin socket and state file inside `state_directory`.
    pub fn in_state_directory(state_directory: &Path) -> Self {
        Self {
            listen: DEFAULT_LISTEN_ADDR,
            admin_socket: state_directory.join(ADMIN_SOCKET_FILE_NAME),
            state_file: state_directory.join(STATE_FILE_NAME),
            upstream_connect_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(30),
        }
    }
}
