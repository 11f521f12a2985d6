//! The edge proxy's route table: which Host header goes to which upstream addresses.
//! The engine computes it from desired state and observed containers; the proxy loads it
//! into an atomically swapped snapshot. It is serialised as JSON between the two processes
//! and persisted by the proxy so that it can serve its last table after a restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One routed hostname and the addresses (published on loopback) that serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Lower-case hostname without port, e.g. `web.production.shop.localhost`.
    pub host: String,
    /// Healthy upstreams; requests are balanced across them. Empty means "known host,
    /// nothing healthy": the proxy answers 503 rather than 404.
    pub upstreams: Vec<SocketAddr>,
}

/// The complete table. `generation` increases with every change the engine makes, so a
/// proxy never replaces a newer table with an older one that arrives late.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub generation: u64,
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// Routes keyed by host for lookups; later duplicates of a host merge their upstreams.
    pub fn by_host(&self) -> BTreeMap<String, Vec<SocketAddr>> {
        let mut map: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for route in &self.routes {
            map.entry(route.host.to_ascii_lowercase())
                .or_default()
                .extend(route.upstreams.iter().copied());
        }
        map
    }
}
