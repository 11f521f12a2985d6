//! The admin API's paths and JSON bodies, shared by the admin server and its client so
//! that the two cannot drift apart.

use serde::{Deserialize, Serialize};

pub(crate) const ROUTES_PATH: &str = "/routes";
pub(crate) const HEALTH_PATH: &str = "/health";

/// What `GET /health` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyHealth {
    /// `"ok"` while the proxy serves.
    pub status: String,
    /// Process id of the proxy, for operators and for "is it the proxy I started?".
    pub pid: u32,
    /// Generation of the route table being served.
    pub generation: u64,
}

/// `PUT /routes` answered 200.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AppliedResponse {
    pub(crate) generation: u64,
    pub(crate) routes: usize,
}

/// `PUT /routes` answered 409: the proxy already serves a newer table.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StaleResponse {
    pub(crate) current_generation: u64,
}

/// Every other non-2xx answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorResponse {
    pub(crate) error: String,
}
