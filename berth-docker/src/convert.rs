//! Conversions between bollard's types and Berth's: label maps, engine errors turned into
//! messages a person can act on, and container inspection turned into `ContainerState`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use berth_domain::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use berth_engine::adapters::{ContainerState, RuntimeError};
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, PortMap};

/// Whether the engine answered 404 (no such object).
pub(crate) fn is_not_found(error: &EngineError) -> bool {
    matches!(error, EngineError::DockerResponseServerError { status_code: 404, .. })
}

/// Whether the engine answered 409 (conflict: in use, already exists, in progress).
pub(crate) fn is_conflict(error: &EngineError) -> bool {
    matches!(error, EngineError::DockerResponseServerError { status_code: 409, .. })
}

/// The engine's own message when it sent one, else a description of what went wrong on the
/// way, with a hint when the engine could not be reached at all.
pub(crate) fn engine_message(error: &EngineError) -> String {
    match error {
        EngineError::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        EngineError::DockerStreamError { error } => error.trim().to_owned(),
        EngineError::RequestTimeoutError => {
            "the Docker engine did not answer in time; it may be overloaded".to_owned()
        }
        EngineError::HyperResponseError { .. }
        | EngineError::IOError { .. }
        | EngineError::HttpClientError { .. }
        | EngineError::SocketNotFoundError(_) => format!(
            "cannot reach the Docker engine ({error}); is dockerd running? start it with scripts/setup-host.sh"
        ),
        other => other.to_string(),
    }
}

pub(crate) fn runtime_error(operation: impl Into<String>, error: &EngineError) -> RuntimeError {
    RuntimeError::Engine { operation: operation.into(), message: engine_message(error) }
}

pub(crate) fn to_hash_map(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
}

pub(crate) fn to_btree_map(labels: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    labels.unwrap_or_default().into_iter().collect()
}

pub(crate) fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// Docker's names carry a leading `/`.
pub(crate) fn container_name(raw: &str) -> String {
    raw.trim_start_matches('/').to_owned()
}

/// The first port published on 127.0.0.1 (Berth publishes nothing else). A stopped
/// container has no published ports.
fn published_loopback(ports: Option<&PortMap>) -> Option<SocketAddr> {
    let mut bindings: Vec<_> = ports?
        .iter()
        .filter(|(port, _)| port.ends_with("/tcp"))
        .filter_map(|(port, bindings)| Some((port, bindings.as_ref()?)))
        .collect();
    // Several published ports: report the lowest container port, deterministically.
    bindings
        .sort_by_key(|(port, _)| port.trim_end_matches("/tcp").parse::<u16>().unwrap_or(u16::MAX));
    bindings.into_iter().flat_map(|(_, list)| list.iter()).find_map(|binding| {
        let ip: Ipv4Addr = binding.host_ip.as_deref()?.parse().ok()?;
        let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
        (ip.is_loopback() && port != 0).then_some(SocketAddr::from((ip, port)))
    })
}

pub(crate) fn container_state(inspected: ContainerInspectResponse) -> ContainerState {
    let state = inspected.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let finished = matches!(
        state.status,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
    );
    ContainerState {
        id: inspected.id.unwrap_or_default(),
        name: container_name(inspected.name.as_deref().unwrap_or_default()),
        running,
        // Docker reports 0 for containers that never ran or still run; only a finished
        // container has a meaningful exit code.
        exit_code: if finished && !running { state.exit_code } else { None },
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_count: inspected.restart_count.unwrap_or(0).try_into().unwrap_or(0),
        published: published_loopback(
            inspected.network_settings.as_ref().and_then(|settings| settings.ports.as_ref()),
        ),
        labels: to_btree_map(inspected.config.and_then(|config| config.labels)),
    }
}

/// Splits streamed output into complete lines, keeping a partial last line for later.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: String,
}

impl LineSplitter {
    /// Appends a chunk and returns the lines it completed (without their line ends).
    pub(crate) fn push(&mut self, chunk: &str) -> Vec<String> {
        self.pending.push_str(chunk);
        let Some(last_newline) = self.pending.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        complete.lines().map(|line| line.trim_end_matches('\r').to_owned()).collect()
    }

    /// The partial last line, if any.
    pub(crate) fn finish(self) -> Option<String> {
        let line = self.pending.trim_end_matches('\r');
        (!line.is_empty()).then(|| line.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::PortBinding;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push("Step 1/2 : FR").is_empty());
        assert_eq!(splitter.push("OM x\n ---> abc\r\nparti"), ["Step 1/2 : FROM x", " ---> abc"]);
        assert_eq!(splitter.push("\n\n"), ["parti", ""]);
        assert_eq!(splitter.push("tail").len(), 0);
        assert_eq!(splitter.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn only_loopback_bindings_are_reported() {
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(port.to_owned()),
        };
        let ports: PortMap = HashMap::from([
            (
                "8080/tcp".to_owned(),
                Some(vec![binding("0.0.0.0", "5000"), binding("127.0.0.1", "49153")]),
            ),
            ("9000/udp".to_owned(), Some(vec![binding("127.0.0.1", "1")])),
            ("9090/tcp".to_owned(), None),
        ]);
        assert_eq!(published_loopback(Some(&ports)), Some("127.0.0.1:49153".parse().unwrap()));
        assert_eq!(published_loopback(None), None);
    }
}
