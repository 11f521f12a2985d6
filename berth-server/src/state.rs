//! What every request handler can reach: the store, the engine, the master key and the
//! server settings that shape responses (base domain, proxy port).

use std::sync::Arc;

use berth_domain::{Hostname, OrganizationId};
use berth_engine::secrets::MasterKey;
use berth_engine::Engine;
use berth_store::Store;

#[derive(Debug, Clone)]
pub struct PublicSettings {
    pub base_domain: Hostname,
    /// The port of the edge proxy, shown in application URLs (omitted when 80).
    pub proxy_port: u16,
    pub allow_local_repositories: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub key: MasterKey,
    pub organization: OrganizationId,
    pub settings: Arc<PublicSettings>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("organization", &self.organization).finish_non_exhaustive()
    }
}
